package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/customdata-worker/customdata-worker/internal/natsconn"
)

// minLeaderTimeout keeps LEADER_TIMEOUT above two of the worker's 5 s
// heartbeats, so one late beat does not flush every cache.
const minLeaderTimeout = 10 * time.Second

// envPrefix is the reference issuer's own prefix: ISSUER_HTTP_ADDR, …
// The worker's CUSTOMDATA_* variables are not read, so the two can share
// an environment; the defaults match the worker's.
const envPrefix = "ISSUER"

// Config is every setting of the reference issuer, from the environment.
type Config struct {
	HTTPAddr string `envconfig:"HTTP_ADDR" default:"127.0.0.1:8090" desc:"address of the token API and /livez, /readyz, /metrics; loopback by default since /login trusts any user id (:8090 listens on every interface)"`

	// NATS, as the worker's CUSTOMDATA_NATS_* (one of user/password,
	// token, nkey seed, creds; TLS with any of them).
	natsconn.Env

	MongoURI      string   `envconfig:"MONGODB_URI" default:"mongodb://127.0.0.1:27017/?replicaSet=rs0" desc:"MongoDB connection string (the issuer only reads)"`
	Database      string   `envconfig:"MONGODB_DATABASE" default:"app" desc:"database of the custom-data collection (the worker's MONGODB_DATABASE)"`
	Collection    string   `envconfig:"MONGODB_COLLECTION" default:"custom_user_data" desc:"custom-data collection (the worker's MONGODB_COLLECTION)"`
	UserIDField   string   `envconfig:"USER_ID_FIELD" default:"userId" desc:"field holding the user id (the worker's USER_ID_FIELD)"`
	OversizeBytes int      `envconfig:"OVERSIZE_BYTES" default:"16384" desc:"size limit of custom data put in a token"`
	OmitFields    []string `envconfig:"OMIT_FIELDS" desc:"comma-separated top-level fields left out of tokens and the cache (e.g. lastLogin); pair with the worker's NOTICE_IGNORE_FIELDS"`
	Oversize      string   `envconfig:"OVERSIZE_POLICY" default:"flag" desc:"flag: put oversize data in the token and set custom_data_oversize; refuse: leave it out"`

	AuthSubjectPrefix   string        `envconfig:"AUTH_SUBJECT_PREFIX" default:"auth.events" desc:"LOGIN events are published on <prefix>.login (the worker's AUTH_SUBJECT_PREFIX)"`
	EventSigningSeed    string        `envconfig:"EVENT_SIGNING_SEED_FILE" desc:"nkey user seed file LOGIN events are signed with (needed when the worker sets TRUSTED_SIGNERS; never logged)"`
	NoticesEnabled      bool          `envconfig:"NOTICES_ENABLED" default:"true" desc:"keep the cache fresh from the worker's notices; false: TTL only"`
	NoticeSubjectPrefix string        `envconfig:"NOTICE_SUBJECT_PREFIX" default:"customdata.invalidated" desc:"the worker's NOTICE_SUBJECT_PREFIX"`
	NoticeStream        string        `envconfig:"NOTICE_STREAM" default:"CUSTOMDATA_NOTICES" desc:"the worker's NOTICE_STREAM"`
	LeaderTimeout       time.Duration `envconfig:"LEADER_TIMEOUT" default:"30s" desc:"with no heartbeat of the worker's notifier for this long (every worker down), stop caching and read MongoDB on every call until one comes; at least 10s (the worker beats every 5s); negative: never"`
	CacheMaxEntries     int           `envconfig:"CACHE_MAX_ENTRIES" default:"10000" desc:"most users cached; 0 disables the cache (every token reads MongoDB)"`
	CacheTTL            time.Duration `envconfig:"CACHE_TTL" default:"0" desc:"drop cached data this long after it was read; 0 = only notices drop it (required > 0 when notices are off)"`

	TokenIssuer      string        `envconfig:"TOKEN_ISSUER" default:"reference-issuer" desc:"iss claim of issued tokens"`
	TokenAudience    string        `envconfig:"TOKEN_AUDIENCE" default:"customdata-app" desc:"aud claim of issued tokens, required on /refresh"`
	TokenTTL         time.Duration `envconfig:"TOKEN_TTL" default:"15m" desc:"lifetime of an access token"`
	SessionMaxAge    time.Duration `envconfig:"SESSION_MAX_AGE" default:"12h" desc:"a session ends this long after /login (session_exp claim): /refresh refuses after it and no token outlives it; at least ISSUER_TOKEN_TTL"`
	RefreshNeedsDoc  bool          `envconfig:"REFRESH_REQUIRES_DOCUMENT" default:"false" desc:"true: /refresh refuses a user who has no custom-data document (deleted, or never created)"`
	SigningKeyFile   string        `envconfig:"SIGNING_KEY_FILE" desc:"PEM EC P-256 private key (SEC 1 or PKCS#8) signing tokens (ES256); required unless ISSUER_DEV_EPHEMERAL_KEY=true"`
	PreviousKeyFiles []string      `envconfig:"PREVIOUS_KEY_FILES" desc:"comma-separated PEM keys (private or public) that signed before a rotation: published in the JWKS and accepted on /refresh"`
	DevEphemeralKey  bool          `envconfig:"DEV_EPHEMERAL_KEY" default:"false" desc:"development only: without ISSUER_SIGNING_KEY_FILE, sign with a key generated at start (each replica its own; tokens die with the process)"`

	LogLevel  string `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat string `envconfig:"LOG_FORMAT" default:"json" desc:"json, or console for humans"`
}

func loadConfig() (Config, error) { return loadConfigWith(nil) }

// loadConfigWith reads the environment, lets adjust override settings (the
// demo's), then validates.
func loadConfigWith(adjust func(*Config)) (Config, error) {
	var c Config
	if err := envconfig.Process(envPrefix, &c); err != nil {
		return Config{}, fmt.Errorf("configuration: %w", err)
	}
	if adjust != nil {
		adjust(&c)
	}
	return c, c.validate()
}

func (c Config) tokenConfig() tokenConfig {
	return tokenConfig{
		keyConfig: keyConfig{SigningKeyFile: c.SigningKeyFile, PreviousKeyFiles: c.PreviousKeyFiles, AllowEphemeral: c.DevEphemeralKey},
		Issuer:    c.TokenIssuer, Audience: c.TokenAudience, TTL: c.TokenTTL, SessionMaxAge: c.SessionMaxAge,
	}
}

// natsConfig maps the NATS_* settings, each once.
func (c Config) natsConfig() natsconn.Config {
	return c.Env.Config(appName)
}

func (c Config) validate() error {
	var errs []error
	if c.LogFormat != "json" && c.LogFormat != "console" {
		errs = append(errs, fmt.Errorf("%s_LOG_FORMAT must be json or console, not %q", envPrefix, c.LogFormat))
	}
	if c.Oversize != "flag" && c.Oversize != "refuse" {
		errs = append(errs, fmt.Errorf("%s_OVERSIZE_POLICY must be flag or refuse, not %q", envPrefix, c.Oversize))
	}
	if c.LeaderTimeout >= 0 && c.LeaderTimeout < minLeaderTimeout {
		errs = append(errs, fmt.Errorf("%s_LEADER_TIMEOUT must be at least %s (the worker's notifier beats every 5s), or negative to never stop caching", envPrefix, minLeaderTimeout))
	}
	if c.CacheMaxEntries < 0 || c.CacheTTL < 0 {
		errs = append(errs, fmt.Errorf("%s_CACHE_MAX_ENTRIES and %s_CACHE_TTL must not be negative", envPrefix, envPrefix))
	}
	if c.CacheMaxEntries > 0 && !c.NoticesEnabled && c.CacheTTL == 0 {
		errs = append(errs, fmt.Errorf("%s_NOTICES_ENABLED=false needs %s_CACHE_TTL > 0 (or %s_CACHE_MAX_ENTRIES=0): nothing else would ever refresh cached data", envPrefix, envPrefix, envPrefix))
	}
	if c.TokenTTL <= 0 {
		errs = append(errs, fmt.Errorf("%s_TOKEN_TTL must be positive", envPrefix))
	}
	if c.SessionMaxAge < c.TokenTTL {
		errs = append(errs, fmt.Errorf("%s_SESSION_MAX_AGE (%s) must be at least %s_TOKEN_TTL (%s)", envPrefix, c.SessionMaxAge, envPrefix, c.TokenTTL))
	}
	if c.TokenAudience == "" {
		errs = append(errs, fmt.Errorf("%s_TOKEN_AUDIENCE is required", envPrefix))
	}
	if c.SigningKeyFile == "" && !c.DevEphemeralKey {
		errs = append(errs, errNoSigningKey)
	}
	if c.MongoURI == "" || c.NATSURL == "" {
		errs = append(errs, fmt.Errorf("%s_MONGODB_URI and %s_NATS_URL are required", envPrefix, envPrefix))
	} else if err := c.natsConfig().Validate(); err != nil {
		// Also reads the configured files: one missing stops the start.
		errs = append(errs, fmt.Errorf("%s_NATS_*: %w", envPrefix, err))
	}
	return errors.Join(errs...)
}

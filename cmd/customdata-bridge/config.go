package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/customdata-worker/customdata-worker/internal/bridge"
	"github.com/customdata-worker/customdata-worker/internal/bridge/webhook"
	"github.com/customdata-worker/customdata-worker/internal/natsconn"
	"github.com/customdata-worker/customdata-worker/issuer"
)

// envPrefix is the bridge's own prefix: CUSTOMDATA_BRIDGE_HTTP_ADDR, …
// The worker's CUSTOMDATA_* settings are not read (none of them starts
// with BRIDGE_), so the two can share an environment; the defaults match
// the worker's.
const envPrefix = "CUSTOMDATA_BRIDGE"

// Config is every setting of the bridge, from the environment.
type Config struct {
	HTTPAddr string `envconfig:"HTTP_ADDR" default:":8091" desc:"address of the hooks (every one authenticated: signature, API key or bearer token)"`
	OpsAddr  string `envconfig:"OPS_ADDR" default:":8092" desc:"address of /livez, /readyz and /metrics; empty disables"`

	// NATS, as the worker's CUSTOMDATA_NATS_* (one of user/password,
	// token, nkey seed, creds; TLS with any of them).
	natsconn.Env

	MongoURI      string   `envconfig:"MONGODB_URI" default:"mongodb://127.0.0.1:27017/?replicaSet=rs0" desc:"MongoDB connection string (the bridge only reads)"`
	Database      string   `envconfig:"MONGODB_DATABASE" default:"app" desc:"database of the custom-data collection (the worker's MONGODB_DATABASE)"`
	Collection    string   `envconfig:"MONGODB_COLLECTION" default:"custom_user_data" desc:"custom-data collection (the worker's MONGODB_COLLECTION)"`
	UserIDField   string   `envconfig:"USER_ID_FIELD" default:"userId" desc:"field holding the user id (the worker's USER_ID_FIELD): Supabase's user_id, Hydra's subject"`
	OversizeBytes int      `envconfig:"OVERSIZE_BYTES" default:"16384" desc:"size limit of custom data put in a token"`
	Oversize      string   `envconfig:"OVERSIZE_POLICY" default:"flag" desc:"flag: put oversize data in the token and set <CLAIM_NAME>_oversize; refuse: leave it out (still flagged)"`
	OmitFields    []string `envconfig:"OMIT_FIELDS" desc:"comma-separated top-level fields left out of tokens and the cache (e.g. lastLogin); pair with the worker's NOTICE_IGNORE_FIELDS"`

	NoticesEnabled      bool          `envconfig:"NOTICES_ENABLED" default:"true" desc:"keep the cache fresh from the worker's notices; false: TTL only"`
	NoticeSubjectPrefix string        `envconfig:"NOTICE_SUBJECT_PREFIX" default:"customdata.invalidated" desc:"the worker's NOTICE_SUBJECT_PREFIX"`
	NoticeStream        string        `envconfig:"NOTICE_STREAM" default:"CUSTOMDATA_NOTICES" desc:"the worker's NOTICE_STREAM"`
	CacheMaxEntries     int           `envconfig:"CACHE_MAX_ENTRIES" default:"10000" desc:"most users cached; 0 disables the cache (every call reads MongoDB)"`
	CacheTTL            time.Duration `envconfig:"CACHE_TTL" default:"0" desc:"drop cached data this long after it was read; 0 = only notices drop it (required > 0 when notices are off)"`

	ClaimName   string        `envconfig:"CLAIM_NAME" default:"custom_data" desc:"claim the custom data goes under (relaxed Extended JSON); <CLAIM_NAME>_oversize is true over the size limit"`
	HookTimeout time.Duration `envconfig:"HOOK_TIMEOUT" default:"2s" desc:"longest wait for a user's custom data in one call; then the hook answers its failure (Supabase Auth gives a hook 5s)"`

	SupabaseSecrets      string `envconfig:"SUPABASE_HOOK_SECRETS" desc:"enables the Supabase hook: its secrets as Supabase has them, v1,whsec_<base64>, several separated by | (rotation); never logged"`
	SupabasePublishLogin bool   `envconfig:"SUPABASE_PUBLISH_LOGINS" default:"false" desc:"publish a LOGIN auth event for every Supabase sign-in (authentication_method other than token_refresh)"`
	AuthSubjectPrefix    string `envconfig:"AUTH_SUBJECT_PREFIX" default:"auth.events" desc:"LOGIN events go to <prefix>.login (the worker's AUTH_SUBJECT_PREFIX)"`
	EventSigningSeed     string `envconfig:"EVENT_SIGNING_SEED_FILE" desc:"nkey user seed file LOGIN events are signed with (needed when the worker sets TRUSTED_SIGNERS; never logged)"`

	HydraAPIKeys    []string `envconfig:"HYDRA_API_KEYS" desc:"enables the Hydra token hook: accepted keys, comma-separated (rotation); never logged"`
	HydraAuthHeader string   `envconfig:"HYDRA_AUTH_HEADER" default:"Authorization" desc:"header Hydra's token_hook.auth sets: Authorization carries Bearer <key>, any other header the key itself"`
	HydraIDToken    bool     `envconfig:"HYDRA_ID_TOKEN" default:"false" desc:"also put the custom data in the ID token (default: access token only)"`

	APITokens []string `envconfig:"API_TOKENS" desc:"enables GET /v1/users/{userId}/custom-data: accepted bearer tokens, comma-separated (rotation); never logged"`

	LogLevel  string `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat string `envconfig:"LOG_FORMAT" default:"json" desc:"json, or console for humans"`
}

func loadConfig() (Config, error) {
	var c Config
	if err := envconfig.Process(envPrefix, &c); err != nil {
		return Config{}, fmt.Errorf("configuration: %w", err)
	}
	return c, c.validate()
}

func (c Config) sourceConfig() issuer.SourceConfig {
	sc := issuer.SourceConfig{Database: c.Database, Collection: c.Collection, UserIDField: c.UserIDField, OversizeBytes: c.OversizeBytes,
		OmitFields: c.OmitFields}
	if c.Oversize == "refuse" {
		sc.Oversize = issuer.OversizeRefuse
	}
	return sc
}

// natsConfig maps the NATS_* settings, each once.
func (c Config) natsConfig() natsconn.Config {
	return c.Env.Config(appName)
}

// needsNATS: notices keep the cache fresh, and LOGINs are published there.
func (c Config) needsNATS() bool {
	return (c.NoticesEnabled && c.CacheMaxEntries > 0) || c.SupabasePublishLogin
}

func (c Config) bridgeConfig() bridge.Config {
	return bridge.Config{ClaimName: c.ClaimName, Timeout: c.HookTimeout}
}

func (c Config) validate() error {
	var errs []error
	if c.LogFormat != "json" && c.LogFormat != "console" {
		errs = append(errs, fmt.Errorf("%s_LOG_FORMAT must be json or console, not %q", envPrefix, c.LogFormat))
	}
	if c.Oversize != "flag" && c.Oversize != "refuse" {
		errs = append(errs, fmt.Errorf("%s_OVERSIZE_POLICY must be flag or refuse, not %q", envPrefix, c.Oversize))
	}
	if c.CacheMaxEntries < 0 || c.CacheTTL < 0 {
		errs = append(errs, fmt.Errorf("%s_CACHE_MAX_ENTRIES and %s_CACHE_TTL must not be negative", envPrefix, envPrefix))
	}
	if c.CacheMaxEntries > 0 && !c.NoticesEnabled && c.CacheTTL == 0 {
		errs = append(errs, fmt.Errorf("%s_NOTICES_ENABLED=false needs %s_CACHE_TTL > 0 (or %s_CACHE_MAX_ENTRIES=0): nothing else would ever refresh cached data", envPrefix, envPrefix, envPrefix))
	}
	if c.HookTimeout <= 0 {
		errs = append(errs, fmt.Errorf("%s_HOOK_TIMEOUT must be positive", envPrefix))
	}
	if err := c.bridgeConfig().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%s_CLAIM_NAME: %w", envPrefix, err))
	}
	if err := c.sourceConfig().Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.SupabaseSecrets == "" && len(c.HydraAPIKeys) == 0 && len(c.APITokens) == 0 {
		errs = append(errs, fmt.Errorf("no endpoint enabled: set %s_SUPABASE_HOOK_SECRETS, %s_HYDRA_API_KEYS or %s_API_TOKENS", envPrefix, envPrefix, envPrefix))
	}
	if c.SupabaseSecrets != "" {
		if _, err := webhook.NewVerifier(webhook.ParseSecretList(c.SupabaseSecrets)); err != nil {
			errs = append(errs, fmt.Errorf("%s_SUPABASE_HOOK_SECRETS: %w", envPrefix, err))
		}
	}
	if c.SupabasePublishLogin && c.SupabaseSecrets == "" {
		errs = append(errs, fmt.Errorf("%s_SUPABASE_PUBLISH_LOGINS needs the Supabase hook (%s_SUPABASE_HOOK_SECRETS)", envPrefix, envPrefix))
	}
	if c.MongoURI == "" {
		errs = append(errs, fmt.Errorf("%s_MONGODB_URI is required", envPrefix))
	}
	if c.needsNATS() {
		if c.NATSURL == "" {
			errs = append(errs, fmt.Errorf("%s_NATS_URL is required for notices and LOGIN events", envPrefix))
		} else if err := c.natsConfig().Validate(); err != nil {
			// Also reads the configured files: one missing stops the start.
			errs = append(errs, fmt.Errorf("%s_NATS_*: %w", envPrefix, err))
		}
	}
	return errors.Join(errs...)
}

package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/customdata-worker/customdata-worker/internal/bridge"
	"github.com/customdata-worker/customdata-worker/internal/bridge/apikey"
	"github.com/customdata-worker/customdata-worker/internal/bridge/ingest"
	"github.com/customdata-worker/customdata-worker/internal/bridge/webhook"
	"github.com/customdata-worker/customdata-worker/internal/natsconn"
	"github.com/customdata-worker/customdata-worker/internal/tlsfiles"
	"github.com/customdata-worker/customdata-worker/issuer"
)

// minLeaderTimeout keeps LEADER_TIMEOUT above two of the worker's 5 s
// heartbeats, so one late beat does not flush every cache.
const minLeaderTimeout = 10 * time.Second

// envPrefix is the bridge's own prefix: CUSTOMDATA_BRIDGE_HTTP_ADDR, …
// The worker's CUSTOMDATA_* settings are not read (none of them starts
// with BRIDGE_), so the two can share an environment; the defaults match
// the worker's.
const envPrefix = "CUSTOMDATA_BRIDGE"

// Config is every setting of the bridge, from the environment.
type Config struct {
	HTTPAddr string `envconfig:"HTTP_ADDR" default:":8091" desc:"address of the hooks and ingest endpoints (every one authenticated: signature, API key, bearer token or client certificate)"`
	OpsAddr  string `envconfig:"OPS_ADDR" default:":8092" desc:"address of /livez, /readyz and /metrics; empty disables"`

	// NATS, as the worker's CUSTOMDATA_NATS_* (one of user/password,
	// token, nkey seed, creds; TLS with any of them).
	natsconn.Env

	MongoURI      string   `envconfig:"MONGODB_URI" default:"mongodb://127.0.0.1:27017/?replicaSet=rs0" desc:"MongoDB connection string (the bridge only reads; not used when only ingest endpoints are enabled)"`
	Database      string   `envconfig:"MONGODB_DATABASE" default:"app" desc:"database of the custom-data collection (the worker's MONGODB_DATABASE)"`
	Collection    string   `envconfig:"MONGODB_COLLECTION" default:"custom_user_data" desc:"custom-data collection (the worker's MONGODB_COLLECTION)"`
	UserIDField   string   `envconfig:"USER_ID_FIELD" default:"userId" desc:"field holding the user id (the worker's USER_ID_FIELD): Supabase's user_id, Hydra's subject"`
	OversizeBytes int      `envconfig:"OVERSIZE_BYTES" default:"16384" desc:"size limit of custom data put in a token"`
	Oversize      string   `envconfig:"OVERSIZE_POLICY" default:"flag" desc:"flag: put oversize data in the token and set <CLAIM_NAME>_oversize; refuse: leave it out (still flagged)"`
	OmitFields    []string `envconfig:"OMIT_FIELDS" desc:"comma-separated top-level fields left out of tokens and the cache (e.g. lastLogin); pair with the worker's NOTICE_IGNORE_FIELDS"`

	NoticesEnabled      bool          `envconfig:"NOTICES_ENABLED" default:"true" desc:"keep the cache fresh from the worker's notices; false: TTL only"`
	NoticeSubjectPrefix string        `envconfig:"NOTICE_SUBJECT_PREFIX" default:"customdata.invalidated" desc:"the worker's NOTICE_SUBJECT_PREFIX"`
	NoticeStream        string        `envconfig:"NOTICE_STREAM" default:"CUSTOMDATA_NOTICES" desc:"the worker's NOTICE_STREAM"`
	LeaderTimeout       time.Duration `envconfig:"LEADER_TIMEOUT" default:"30s" desc:"with no heartbeat of the worker's notifier for this long (every worker down), stop caching and read MongoDB on every call until one comes; at least 10s (the worker beats every 5s); negative: never"`
	CacheMaxEntries     int           `envconfig:"CACHE_MAX_ENTRIES" default:"10000" desc:"most users cached; 0 disables the cache (every call reads MongoDB)"`
	CacheTTL            time.Duration `envconfig:"CACHE_TTL" default:"0" desc:"drop cached data this long after it was read; 0 = only notices drop it (required > 0 when notices are off)"`

	ClaimName   string        `envconfig:"CLAIM_NAME" default:"custom_data" desc:"claim the custom data goes under (relaxed Extended JSON); <CLAIM_NAME>_oversize is true over the size limit"`
	HookTimeout time.Duration `envconfig:"HOOK_TIMEOUT" default:"2s" desc:"longest wait for a user's custom data in one call; then the hook answers its failure (Supabase Auth gives a hook 5s)"`

	SupabaseSecrets      string `envconfig:"SUPABASE_HOOK_SECRETS" desc:"enables the Supabase hook: its secrets as Supabase has them, v1,whsec_<base64>, several separated by | (rotation); never logged"`
	SupabasePublishLogin bool   `envconfig:"SUPABASE_PUBLISH_LOGINS" default:"false" desc:"publish a LOGIN auth event for every Supabase sign-in (authentication_method other than token_refresh)"`
	AuthSubjectPrefix    string `envconfig:"AUTH_SUBJECT_PREFIX" default:"auth.events" desc:"auth events go to <prefix>.login, .create, .delete (the worker's AUTH_SUBJECT_PREFIX)"`
	EventSigningSeed     string `envconfig:"EVENT_SIGNING_SEED_FILE" desc:"nkey user seed file auth events are signed with (needed when the worker sets TRUSTED_SIGNERS; never logged)"`

	HydraAPIKeys      []string `envconfig:"HYDRA_API_KEYS" desc:"enables the Hydra token hook: accepted keys, comma-separated (rotation); never logged"`
	HydraAuthHeader   string   `envconfig:"HYDRA_AUTH_HEADER" default:"Authorization" desc:"header Hydra's token_hook.auth sets: Authorization carries Bearer <key>, any other header the key itself"`
	HydraIDToken      bool     `envconfig:"HYDRA_ID_TOKEN" default:"false" desc:"also put the custom data in the ID token (default: access token only)"`
	HydraPublishLogin bool     `envconfig:"HYDRA_PUBLISH_LOGINS" default:"false" desc:"publish a LOGIN auth event (provider hydra) for every Hydra login grant: authorization_code, urn:ietf:params:oauth:grant-type:device_code or password; never refresh_token, client_credentials or jwt-bearer"`

	APITokens []string `envconfig:"API_TOKENS" desc:"enables GET /v1/users/{userId}/custom-data: accepted bearer tokens, comma-separated (rotation); never logged"`

	TLSCertFile        string   `envconfig:"TLS_CERT_FILE" desc:"PEM certificate (chain) of HTTP_ADDR: with TLS_KEY_FILE every endpoint there is served over HTTPS only (TLS 1.2 or later); read at start, a restart picks up a new one"`
	TLSKeyFile         string   `envconfig:"TLS_KEY_FILE" desc:"PEM private key of TLS_CERT_FILE"`
	TLSClientCAFile    string   `envconfig:"TLS_CLIENT_CA_FILE" desc:"PEM CA bundle: a client certificate presented on HTTP_ADDR must verify against it (else the handshake fails), and one that does authenticates GET /v1/users/{userId}/custom-data (enables it); needs TLS_CERT_FILE; other endpoints keep their own authentication"`
	GenericClientNames []string `envconfig:"GENERIC_CLIENT_NAMES" desc:"comma-separated: a client certificate authenticates GET /v1/users/{userId}/custom-data only if its subject common name or one of its DNS names is listed (403 otherwise); empty: any certificate TLS_CLIENT_CA_FILE verifies"`

	ClerkSecrets       string        `envconfig:"CLERK_WEBHOOK_SECRETS" desc:"enables POST /ingest/clerk: the endpoint's Signing Secret from Clerk's dashboard, whsec_<base64>, several separated by | (rotation); never logged"`
	KratosAPIKeys      []string      `envconfig:"KRATOS_API_KEYS" desc:"enables POST /ingest/kratos/registration and /ingest/kratos/login for Kratos's web_hook auth api_key: accepted keys, comma-separated (rotation); never logged"`
	KratosAuthHeader   string        `envconfig:"KRATOS_AUTH_HEADER" default:"Authorization" desc:"header Kratos's api_key auth sets (config.name): Authorization carries Bearer <key>, any other header the key itself"`
	KratosBasicAuth    []string      `envconfig:"KRATOS_BASIC_AUTH" desc:"enables the Kratos endpoints for Kratos's web_hook auth basic_auth: accepted user:password pairs, comma-separated; never logged"`
	Auth0Authorization []string      `envconfig:"AUTH0_AUTHORIZATION" desc:"enables POST /ingest/auth0: the log stream's Authorization Token exactly as entered in Auth0 (the whole Authorization header, e.g. Bearer <token>), several comma-separated (rotation); never logged"`
	IngestTimeout      time.Duration `envconfig:"INGEST_TIMEOUT" default:"5s" desc:"longest wait for JetStream's acks of one webhook request's events and dead letters; then it is answered 503 (the sender retries); below 15s, the HTTP write timeout"`
	DeadLetterStream   string        `envconfig:"DLQ_STREAM" default:"AUTH_EVENTS_DLQ" desc:"the worker's DLQ_STREAM: webhook bodies that cannot be mapped to an auth event are dead-lettered there"`
	DeadLetterPrefix   string        `envconfig:"DLQ_SUBJECT_PREFIX" default:"auth.deadletter" desc:"the worker's DLQ_SUBJECT_PREFIX: those dead letters go to <prefix>.<reason>"`

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

// hooksEnabled: a token-time hook or the generic read, which read the
// custom data (MongoDB, the cache).
func (c Config) hooksEnabled() bool {
	return c.SupabaseSecrets != "" || len(c.HydraAPIKeys) > 0 || c.genericEnabled()
}

// genericEnabled: GET /v1/users/{userId}/custom-data, for bearer tokens or
// client certificates.
func (c Config) genericEnabled() bool { return len(c.APITokens) > 0 || c.TLSClientCAFile != "" }

// ingestEnabled: an ingest endpoint, which publishes auth events.
func (c Config) ingestEnabled() bool {
	return c.ClerkSecrets != "" || len(c.KratosAPIKeys) > 0 || len(c.KratosBasicAuth) > 0 || len(c.Auth0Authorization) > 0
}

// publishes: auth events are published (Supabase and Hydra LOGINs,
// ingest).
func (c Config) publishes() bool {
	return c.SupabasePublishLogin || c.HydraPublishLogin || c.ingestEnabled()
}

// needsNATS: notices keep the cache fresh, and auth events and dead
// letters are published there.
func (c Config) needsNATS() bool {
	return (c.hooksEnabled() && c.NoticesEnabled && c.CacheMaxEntries > 0) || c.publishes()
}

func (c Config) ingestConfig() ingest.Config {
	return ingest.Config{DeadLetterStream: c.DeadLetterStream, DeadLetterPrefix: c.DeadLetterPrefix, Timeout: c.IngestTimeout}
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
	if c.LeaderTimeout >= 0 && c.LeaderTimeout < minLeaderTimeout {
		errs = append(errs, fmt.Errorf("%s_LEADER_TIMEOUT must be at least %s (the worker's notifier beats every 5s), or negative to never stop caching", envPrefix, minLeaderTimeout))
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
	if !c.hooksEnabled() && !c.ingestEnabled() {
		errs = append(errs, fmt.Errorf("no endpoint enabled: set %s_SUPABASE_HOOK_SECRETS, %s_HYDRA_API_KEYS, %s_API_TOKENS, %s_TLS_CLIENT_CA_FILE, %s_CLERK_WEBHOOK_SECRETS, %s_KRATOS_API_KEYS, %s_KRATOS_BASIC_AUTH or %s_AUTH0_AUTHORIZATION",
			envPrefix, envPrefix, envPrefix, envPrefix, envPrefix, envPrefix, envPrefix, envPrefix))
	}
	errs = append(errs, c.validateTLS()...)
	errs = append(errs, c.validateIngest()...)
	errs = append(errs, c.validateSecretLists()...)
	if c.SupabaseSecrets != "" {
		if _, err := webhook.NewVerifier(webhook.ParseSecretList(c.SupabaseSecrets)); err != nil {
			errs = append(errs, fmt.Errorf("%s_SUPABASE_HOOK_SECRETS: %w", envPrefix, err))
		}
	}
	if c.SupabasePublishLogin && c.SupabaseSecrets == "" {
		errs = append(errs, fmt.Errorf("%s_SUPABASE_PUBLISH_LOGINS needs the Supabase hook (%s_SUPABASE_HOOK_SECRETS)", envPrefix, envPrefix))
	}
	if c.HydraPublishLogin && len(c.HydraAPIKeys) == 0 {
		errs = append(errs, fmt.Errorf("%s_HYDRA_PUBLISH_LOGINS needs the Hydra token hook (%s_HYDRA_API_KEYS)", envPrefix, envPrefix))
	}
	if c.MongoURI == "" && c.hooksEnabled() {
		errs = append(errs, fmt.Errorf("%s_MONGODB_URI is required", envPrefix))
	}
	if c.needsNATS() {
		if c.NATSURL == "" {
			errs = append(errs, fmt.Errorf("%s_NATS_URL is required for notices, auth events and dead letters", envPrefix))
		} else if err := c.natsConfig().Validate(); err != nil {
			// Also reads the configured files: one missing stops the start.
			errs = append(errs, fmt.Errorf("%s_NATS_*: %w", envPrefix, err))
		}
	}
	return errors.Join(errs...)
}

// validateIngest checks the ingest settings; errors name settings, never
// secrets.
func (c Config) validateIngest() []error {
	var errs []error
	if c.ClerkSecrets != "" {
		if _, err := webhook.NewVerifier(webhook.ParseSecretList(c.ClerkSecrets)); err != nil {
			errs = append(errs, fmt.Errorf("%s_CLERK_WEBHOOK_SECRETS: %w", envPrefix, err))
		}
	}
	if len(c.KratosBasicAuth) > 0 {
		if _, err := apikey.NewBasic(c.KratosBasicAuth); err != nil && !errors.Is(err, apikey.ErrNoKey) {
			errs = append(errs, fmt.Errorf("%s_KRATOS_BASIC_AUTH: %w", envPrefix, err))
		}
	}
	// A key list set but blank is refused by validateSecretLists.
	switch {
	case c.IngestTimeout <= 0:
		errs = append(errs, fmt.Errorf("%s_INGEST_TIMEOUT must be positive", envPrefix))
	case c.IngestTimeout >= httpWriteTimeout:
		// The answer (503 included) must still fit in the connection's
		// write deadline, or the sender sees a cut connection instead.
		errs = append(errs, fmt.Errorf("%s_INGEST_TIMEOUT must be below %s, the HTTP write timeout", envPrefix, httpWriteTimeout))
	}
	if err := c.ingestConfig().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%s_DLQ_STREAM, %s_DLQ_SUBJECT_PREFIX: %w", envPrefix, envPrefix, err))
	}
	return errs
}

// validateSecretLists refuses a key list that enables its endpoint with
// no key: "," or " , " is a list of blank values (an unset variable
// interpolated into a list), which the endpoint would only refuse once
// NATS and MongoDB are connected, or retried forever while they are not.
// An empty setting leaves the endpoint off.
func (c Config) validateSecretLists() []error {
	var errs []error
	for _, l := range []struct {
		name   string
		values []string
	}{
		{"HYDRA_API_KEYS", c.HydraAPIKeys},
		{"API_TOKENS", c.APITokens},
		{"KRATOS_API_KEYS", c.KratosAPIKeys},
		{"KRATOS_BASIC_AUTH", c.KratosBasicAuth},
		{"AUTH0_AUTHORIZATION", c.Auth0Authorization},
	} {
		if len(l.values) == 0 {
			continue
		}
		if _, err := apikey.NewSet(l.values); errors.Is(err, apikey.ErrNoKey) {
			errs = append(errs, fmt.Errorf("%s_%s: every value is blank (%d separated by commas); leave it empty to disable the endpoint", envPrefix, l.name, len(l.values)))
		}
	}
	return errs
}

// validateTLS checks the listener's TLS settings and reads their files, so
// that one missing or unusable stops the start, naming the setting and the
// path, instead of failing every handshake.
func (c Config) validateTLS() []error {
	var errs []error
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, fmt.Errorf("%s_TLS_CERT_FILE and %s_TLS_KEY_FILE go together: set both to serve HTTPS, or neither", envPrefix, envPrefix))
	}
	if c.TLSClientCAFile != "" && c.TLSCertFile == "" {
		errs = append(errs, fmt.Errorf("%s_TLS_CLIENT_CA_FILE needs %s_TLS_CERT_FILE and %s_TLS_KEY_FILE: client certificates need HTTPS", envPrefix, envPrefix, envPrefix))
	}
	if len(c.GenericClientNames) > 0 {
		if c.TLSClientCAFile == "" {
			errs = append(errs, fmt.Errorf("%s_GENERIC_CLIENT_NAMES needs %s_TLS_CLIENT_CA_FILE (the names are those of client certificates it verifies)", envPrefix, envPrefix))
		}
		if slices.ContainsFunc(c.GenericClientNames, func(n string) bool { return strings.TrimSpace(n) == "" }) {
			errs = append(errs, fmt.Errorf("%s_GENERIC_CLIENT_NAMES has a blank name (%q)", envPrefix, strings.Join(c.GenericClientNames, ",")))
		}
	}
	if len(errs) == 0 && c.TLSCertFile != "" {
		if _, err := c.serverTLS(); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// serverTLS is the listener's TLS configuration, nil without
// TLS_CERT_FILE.
func (c Config) serverTLS() (*tls.Config, error) {
	if c.TLSCertFile == "" {
		return nil, nil
	}
	cfg, err := tlsfiles.ServerConfig(c.TLSCertFile, c.TLSKeyFile, c.TLSClientCAFile)
	if err != nil {
		return nil, fmt.Errorf("%s_TLS_CERT_FILE, %s_TLS_KEY_FILE, %s_TLS_CLIENT_CA_FILE: %w", envPrefix, envPrefix, envPrefix, err)
	}
	return cfg, nil
}

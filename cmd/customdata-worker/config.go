package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/natsconn"
	"github.com/customdata-worker/customdata-worker/internal/provision"
)

// envPrefix is prepended to every variable: CUSTOMDATA_NATS_URL, …
const envPrefix = "CUSTOMDATA"

// Config is every setting of the worker. It is read from the environment
// only (twelve-factor): `customdata-worker env` prints the table.
type Config struct {
	// NATS
	natsconn.Env
	NATSEmbedded    bool   `envconfig:"NATS_EMBEDDED" default:"false" desc:"dev only: run a NATS server with JetStream inside the worker instead of connecting to NATS_URL"`
	NATSEmbeddedDir string `envconfig:"NATS_EMBEDDED_DIR" desc:"dev only: JetStream store of the embedded server (default: a temp dir)"`

	// MongoDB and the custom-data collection
	MongoURI        string        `envconfig:"MONGODB_URI" default:"mongodb://127.0.0.1:27017/?replicaSet=rs0" desc:"MongoDB connection string (replica set: change streams need one); password is redacted in logs"`
	Database        string        `envconfig:"MONGODB_DATABASE" default:"app" desc:"database of the custom-data collection"`
	Collection      string        `envconfig:"MONGODB_COLLECTION" default:"custom_user_data" desc:"custom-data collection: one document per user"`
	UserIDField     string        `envconfig:"USER_ID_FIELD" default:"userId" desc:"field of each document holding the user id"`
	WriteConcern    string        `envconfig:"WRITE_CONCERN" default:"majority" desc:"write concern of trigger writes: majority or a number of nodes"`
	WriteTimeout    time.Duration `envconfig:"WRITE_TIMEOUT" default:"10s" desc:"timeout of one trigger BulkWrite"`
	AllowDuplicates bool          `envconfig:"ALLOW_DUPLICATE_USERS" default:"false" desc:"start even when several documents share a user id (no unique index; writes go to the first inserted)"`

	// Auth events in
	AuthSubjectPrefix string          `envconfig:"AUTH_SUBJECT_PREFIX" default:"auth.events" desc:"auth events arrive on <prefix>.login|create|delete"`
	AuthStream        string          `envconfig:"AUTH_STREAM" default:"AUTH_EVENTS" desc:"JetStream stream of auth events"`
	AuthConsumer      string          `envconfig:"AUTH_CONSUMER" default:"customdata-worker" desc:"durable pull consumer shared by all replicas"`
	AuthMaxAge        time.Duration   `envconfig:"AUTH_STREAM_MAX_AGE" default:"168h" desc:"how long auth events are kept"`
	AuthMaxBytes      int64           `envconfig:"AUTH_STREAM_MAX_BYTES" default:"0" desc:"size limit of the auth-event stream; 0 = unlimited; when full, producers get an error rather than events being dropped"`
	DuplicateWindow   time.Duration   `envconfig:"DUPLICATE_WINDOW" default:"2m" desc:"JetStream de-duplication window (Nats-Msg-Id) of both streams"`
	StreamReplicas    int             `envconfig:"STREAM_REPLICAS" default:"1" desc:"replicas of the streams and KV buckets the worker creates"`
	DeadLetterStream  string          `envconfig:"DLQ_STREAM" default:"AUTH_EVENTS_DLQ" desc:"stream of dead-lettered auth events"`
	DeadLetterPrefix  string          `envconfig:"DLQ_SUBJECT_PREFIX" default:"auth.deadletter" desc:"dead letters go to <prefix>.<reason>"`
	DeadLetterMaxAge  time.Duration   `envconfig:"DLQ_MAX_AGE" default:"720h" desc:"how long dead letters (whole events: personal data) are kept; 0 = until an operator removes them"`
	TrustedSigners    trustedSigners  `envconfig:"TRUSTED_SIGNERS" desc:"public nkeys (U…) whose signed events are accepted, comma-separated, each optionally :OP:OP (e.g. UAB…:LOGIN); set: unsigned and other events are dead-lettered; empty: no signature check"`
	EventSigningSeed  string          `envconfig:"EVENT_SIGNING_SEED_FILE" desc:"nkey user seed file the publish verb signs events with (never logged)"`
	Provision         string          `envconfig:"PROVISION" default:"create" desc:"create: create-or-update streams, consumer and buckets; verify: only check that an operator did"`
	BatchSize         int             `envconfig:"BATCH_SIZE" default:"500" desc:"most auth events fetched and written per batch"`
	BatchWait         time.Duration   `envconfig:"BATCH_WAIT" default:"200ms" desc:"longest wait to fill a batch"`
	CoalesceWindow    int             `envconfig:"COALESCE_WINDOW" desc:"during a backlog, most events fetched (already waiting, without waiting for more) and coalesced into one set of writes, so a hot user's events cost one write; between BATCH_SIZE and MAX_ACK_PENDING (default: 10000, or MAX_ACK_PENDING if lower)"`
	AckWait           time.Duration   `envconfig:"ACK_WAIT" default:"10s" desc:"redelivery timeout of an unacknowledged event: how soon a crashed replica's batch goes to another (a working replica extends it)"`
	MaxAckPending     int             `envconfig:"MAX_ACK_PENDING" default:"20000" desc:"most events in flight across replicas: during a backlog each replica holds up to COALESCE_WINDOW events, so at most MAX_ACK_PENDING / COALESCE_WINDOW replicas (2 with the defaults) work at once and the others wait; raise it to at least replicas × COALESCE_WINDOW"`
	MaxDeliver        int             `envconfig:"MAX_DELIVER" default:"10" desc:"deliveries before an event that keeps failing is dead-lettered"`
	RedeliveryBackoff []time.Duration `envconfig:"REDELIVERY_BACKOFF" default:"1s,5s,15s,30s,1m,2m,5m" desc:"delay before the 1st, 2nd, … redelivery of an event that failed; the last repeats"`
	TriggersFile      string          `envconfig:"TRIGGERS_FILE" desc:"YAML or JSON trigger config (see deploy/triggers.example.yaml); empty: built-in defaults"`

	// Notices out
	NoticesEnabled      bool          `envconfig:"NOTICES_ENABLED" default:"true" desc:"watch the collection and publish invalidation notices"`
	NoticeSubjectPrefix string        `envconfig:"NOTICE_SUBJECT_PREFIX" default:"customdata.invalidated" desc:"notices go to <prefix>.user.<token>, <prefix>.doc.<token>, <prefix>.all"`
	NoticeStream        string        `envconfig:"NOTICE_STREAM" default:"CUSTOMDATA_NOTICES" desc:"JetStream stream of notices (issuers replay from it)"`
	NoticeMaxAge        time.Duration `envconfig:"NOTICE_MAX_AGE" default:"1h" desc:"how long notices are kept for replay"`
	LeaseTTL            time.Duration `envconfig:"LEASE_TTL" default:"10s" desc:"change-stream leadership lease; a standby takes over within it"`
	StallAfter          time.Duration `envconfig:"STALL_AFTER" desc:"a leader whose change stream makes no progress this long steps down so a standby takes over (default: 30s, or 2 × LEASE_TTL if longer)"`
	OversizeBytes       int           `envconfig:"OVERSIZE_BYTES" default:"16384" desc:"documents above this size are flagged oversize in notices"`
	NoticeIgnoreFields  []string      `envconfig:"NOTICE_IGNORE_FIELDS" desc:"comma-separated top-level fields (e.g. lastLogin) whose updates publish no notice when the change event shows only them changed; pair with the issuer's ISSUER_OMIT_FIELDS"`
	PreAndPostImages    bool          `envconfig:"PRE_AND_POST_IMAGES" default:"false" desc:"enable changeStreamPreAndPostImages on the collection (MongoDB 6.0+) so deletes name the user"`
	NotifierPartitions  int           `envconfig:"NOTIFIER_PARTITIONS" default:"1" desc:"split the change stream into this many partitions (1 to 64) by a hash of each document's _id; each is a lease, change stream and checkpoint of its own, and replicas share them; above 1 needs MongoDB with $toHashedIndexKey (7.0+); changing it flushes issuers once"`

	// Operations
	LogLevel  string `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat string `envconfig:"LOG_FORMAT" default:"json" desc:"json, or console for humans"`
	HTTPAddr  string `envconfig:"HTTP_ADDR" default:":8080" desc:"address of /livez, /readyz and /metrics; empty disables"`
}

// loadConfig reads the environment.
func loadConfig() (Config, error) {
	var c Config
	if err := envconfig.Process(envPrefix, &c); err != nil {
		return Config{}, fmt.Errorf("configuration: %w", err)
	}
	return c, c.validate()
}

func (c Config) validate() error {
	var errs []error
	if c.LogFormat != "json" && c.LogFormat != "console" {
		errs = append(errs, fmt.Errorf("%s_LOG_FORMAT must be json or console, not %q", envPrefix, c.LogFormat))
	}
	if provision.Validate(provision.Mode(c.Provision)) != nil {
		errs = append(errs, fmt.Errorf("%s_PROVISION must be create or verify, not %q", envPrefix, c.Provision))
	}
	if c.MongoURI == "" {
		errs = append(errs, fmt.Errorf("%s_MONGODB_URI is empty", envPrefix))
	}
	return errors.Join(errs...)
}

// trustedSigners is TRUSTED_SIGNERS, parsed when the environment is read
// (the keys themselves are checked with the rest of the configuration).
type trustedSigners []events.TrustedSigner

// Decode implements envconfig.Decoder.
func (t *trustedSigners) Decode(value string) error {
	list, err := events.ParseTrustedSigners(value)
	*t = list
	return err
}

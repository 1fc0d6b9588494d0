package notify

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/provision"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

// Notifier defaults.
const (
	DefaultNoticeStream           = events.DefaultNoticeStream
	DefaultNoticeMaxAge           = time.Hour
	DefaultNotifierCheckpointKV   = "CUSTOMDATA_NOTIFIER_CHECKPOINTS"
	DefaultNotifierLeaseKV        = "CUSTOMDATA_NOTIFIER_LEASE"
	DefaultNotifierLeaseTTL       = 10 * time.Second
	DefaultNoticeOversizeBytes    = events.DefaultOversizeBytes
	DefaultNotifierRetryMax       = 10 * time.Second
	DefaultNotifierUnhealthyAfter = 30 * time.Second
	DefaultNotifierMaxAwait       = time.Second
	DefaultNotifierIdlePoll       = 20 * time.Millisecond
	DefaultNotifierCheckpointLag  = time.Second
	DefaultNotifierStallAfter     = 30 * time.Second
	// DefaultNotifierHeartbeat is how often the leader publishes
	// events.HeartbeatSubject; issuers stop caching after hearing none for
	// their LeaderTimeout (default 30s).
	DefaultNotifierHeartbeat = 5 * time.Second

	// MaxNotifierLeaseTTL bounds LeaseTTL: a longer lease delays failover
	// past what issuers tolerate without notices.
	MaxNotifierLeaseTTL = time.Minute
	// minNotifierLeaseTTL keeps renewals (every TTL/3) meaningful against
	// round-trip times.
	minNotifierLeaseTTL = 300 * time.Millisecond
	// maxFeedPollGrace caps how long a change-stream open or poll may
	// take beyond MaxAwaitTime before it counts as failed (hung).
	maxFeedPollGrace = 10 * time.Second
	// duplicateUserMemory bounds the set of users already warned about.
	duplicateUserMemory = 10_000
)

// kvBucketPattern is what JetStream accepts as a key-value bucket name.
var kvBucketPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// Config configures the change-stream notifier: the notice stream it
// publishes to, and where its checkpoint and leadership lease live. The
// settings both flows share (the watched collection: customdata.Config;
// provision mode, replicas and duplicate window: provision.Streams) are
// given to New beside it.
//
// Checkpoints live in NATS KV, next to the lease, not in MongoDB: a
// checkpoint may only be written after the notice's publish was
// acknowledged, and both the acknowledgement and the lease are NATS-side,
// so whenever the notifier can publish it can also checkpoint (and when
// NATS is away it can do neither, which is consistent). It also keeps the
// notifier read-only on MongoDB (changeStream + find privileges suffice)
// and needs no transactions, which a standalone or stand-in server lacks.
type Config struct {
	// SubjectPrefix of notices. Default events.DefaultNoticePrefix.
	SubjectPrefix string
	// Stream is the notice stream; it listens on "<SubjectPrefix>.>".
	// Default "CUSTOMDATA_NOTICES".
	Stream string
	// MaxAge is how long notices are kept for issuers to replay. Default
	// 1h; at least the duplicate window (provision.Streams), within which a
	// notice re-published after a restart or failover is stored once.
	MaxAge time.Duration

	// CheckpointBucket is the KV bucket holding resume tokens. Default
	// "CUSTOMDATA_NOTIFIER_CHECKPOINTS".
	CheckpointBucket string
	// LeaseBucket is the KV bucket holding the leadership lease; its TTL is
	// LeaseTTL. Default "CUSTOMDATA_NOTIFIER_LEASE".
	LeaseBucket string
	// LeaseTTL is how long a lease lives without renewal; the leader renews
	// every LeaseTTL/3 and a standby takes over at most about LeaseTTL
	// (+ LeaseTTL/3) after the leader died. Default 10s, at most 1m.
	LeaseTTL time.Duration
	// InstanceID names this replica in the lease. Default (picked by
	// New): the hostname plus a random suffix.
	InstanceID string

	// OversizeBytes: documents larger than this are flagged Oversize in
	// their notice (and counted). Default 16384.
	OversizeBytes int
	// PreAndPostImages enables changeStreamPreAndPostImages on the
	// collection at startup (MongoDB 6.0+; needs collMod privilege) and
	// requests pre-images, so deletes name the user. Off by default:
	// MongoDB before 6.0 rejects the fullDocumentBeforeChange option. If
	// the server refuses collMod the notifier warns and continues; deletes
	// then carry only the document id.
	PreAndPostImages bool
	// IgnoreFields are top-level fields whose changes issuers need not
	// hear of because tokens do not carry them (e.g. "lastLogin", which
	// every LOGIN sets): an update that, by its updateDescription, changed
	// only these fields publishes no notice. Anything the notifier cannot
	// classify (no updateDescription, a replace, an insert, a delete, an
	// owner change, an oversize document) is still announced. Pair it
	// with issuer.SourceConfig.OmitFields so issuers leave the same
	// fields out of what they cache. Default: none (every change is
	// announced). Must not hold the user-id field.
	IgnoreFields []string

	// RetryMaxInterval caps the backoff between attempts to reopen the
	// change feed or reach NATS. Default 10s.
	RetryMaxInterval time.Duration
	// UnhealthyAfter is how long the change feed or the lease may fail
	// before Healthy reports an error. Default 30s.
	UnhealthyAfter time.Duration
	// MaxAwaitTime is how long the server may hold an empty poll of the
	// change feed. Default 1s.
	MaxAwaitTime time.Duration
	// IdlePollInterval is the shortest time between two empty polls.
	// Servers normally hold an empty poll up to MaxAwaitTime, so this only
	// matters for servers that answer at once, which would otherwise be
	// polled in a tight loop. Default 20ms.
	IdlePollInterval time.Duration
	// CheckpointInterval bounds how far the checkpoint may lag behind the
	// last acknowledged notice while changes keep arriving (the checkpoint
	// is written as soon as the feed has nothing buffered). Default 1s.
	CheckpointInterval time.Duration
	// StallAfter: when the leader's change feed has made no progress
	// (no event, no answered poll) and has failed every attempt since, for
	// longer than this, the leader gives the lease up and stays out of the
	// competition for a lease TTL, so a replica whose MongoDB works takes
	// over. A poll or open that does not answer within MaxAwaitTime plus a
	// grace (StallAfter/4, between 1s and 10s) counts as failed, so a hung
	// server is caught too. Default 30s, or 2×LeaseTTL if that is longer;
	// must exceed LeaseTTL.
	StallAfter time.Duration
	// HeartbeatInterval is how often the leader publishes a heartbeat on
	// <SubjectPrefix>.heartbeat while its term runs, so that issuers can
	// tell that someone announces changes. Default 5s, at most 1m.
	HeartbeatInterval time.Duration

	// Partitions splits the change feed into this many partitions, by a
	// hash of each change's documentKey._id: each partition is a lease, a
	// change stream and a checkpoint of its own, led by any replica (a
	// replica may lead several), so several replicas share the work.
	// Default 1 (one change stream, keys and notices exactly as before
	// partitions existed); at most 64. N above 1 needs a server that
	// evaluates $toHashedIndexKey (New's Provision refuses otherwise), and
	// changing N starts every partition without a checkpoint: each
	// publishes a no_checkpoint flush-all.
	Partitions int
}

// SetDefaults replaces zero values by the defaults.
func (c *Config) SetDefaults() {
	c.SubjectPrefix = cmp.Or(c.SubjectPrefix, events.DefaultNoticePrefix)
	c.Stream = cmp.Or(c.Stream, DefaultNoticeStream)
	c.MaxAge = cmp.Or(c.MaxAge, DefaultNoticeMaxAge)
	c.CheckpointBucket = cmp.Or(c.CheckpointBucket, DefaultNotifierCheckpointKV)
	c.LeaseBucket = cmp.Or(c.LeaseBucket, DefaultNotifierLeaseKV)
	c.LeaseTTL = cmp.Or(c.LeaseTTL, DefaultNotifierLeaseTTL)
	c.OversizeBytes = cmp.Or(c.OversizeBytes, DefaultNoticeOversizeBytes)
	c.RetryMaxInterval = cmp.Or(c.RetryMaxInterval, DefaultNotifierRetryMax)
	c.UnhealthyAfter = cmp.Or(c.UnhealthyAfter, DefaultNotifierUnhealthyAfter)
	c.MaxAwaitTime = cmp.Or(c.MaxAwaitTime, DefaultNotifierMaxAwait)
	c.IdlePollInterval = cmp.Or(c.IdlePollInterval, DefaultNotifierIdlePoll)
	c.CheckpointInterval = cmp.Or(c.CheckpointInterval, DefaultNotifierCheckpointLag)
	c.StallAfter = cmp.Or(c.StallAfter, max(DefaultNotifierStallAfter, 2*c.LeaseTTL))
	c.HeartbeatInterval = cmp.Or(c.HeartbeatInterval, DefaultNotifierHeartbeat)
	c.Partitions = cmp.Or(c.Partitions, DefaultNotifierPartitions)
}

// feedOpTimeout bounds one open or poll of the change feed: the server
// holds an empty poll up to MaxAwaitTime, so anything much longer is a hung
// connection, counted as a failure rather than waited on forever.
func (c Config) feedOpTimeout() time.Duration {
	return c.MaxAwaitTime + min(maxFeedPollGrace, max(time.Second, c.StallAfter/4))
}

// Validate checks the configuration after defaults are applied.
func (c Config) Validate() error {
	c.SetDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("notifier: "+format, args...)) }
	if err := events.ValidatePrefix(c.SubjectPrefix); err != nil {
		add("subject prefix: %w", err)
	}
	if err := provision.ValidateName("stream", c.Stream); err != nil {
		add("%w", err)
	}
	if c.MaxAge < 0 {
		add("max age must not be negative")
	}
	for _, b := range []struct{ what, name string }{{"checkpoint bucket", c.CheckpointBucket}, {"lease bucket", c.LeaseBucket}} {
		if !kvBucketPattern.MatchString(b.name) {
			add("%s %q must match %s", b.what, b.name, kvBucketPattern)
		}
	}
	if c.CheckpointBucket == c.LeaseBucket {
		add("checkpoint and lease buckets must differ (the lease bucket expires keys)")
	}
	if c.LeaseTTL < minNotifierLeaseTTL || c.LeaseTTL > MaxNotifierLeaseTTL {
		add("lease TTL must be between %s and %s, got %s", minNotifierLeaseTTL, MaxNotifierLeaseTTL, c.LeaseTTL)
	}
	if c.StallAfter <= c.LeaseTTL {
		add("stall after %s must exceed the lease TTL %s", c.StallAfter, c.LeaseTTL)
	}
	if c.OversizeBytes < 0 {
		add("oversize bytes must not be negative")
	}
	for _, f := range c.IgnoreFields {
		if err := customdata.ValidateFieldName(f); err != nil {
			add("ignore fields: %w", err)
		}
	}
	for _, d := range []struct {
		what string
		v    time.Duration
	}{{"retry max interval", c.RetryMaxInterval}, {"unhealthy after", c.UnhealthyAfter}, {"max await time", c.MaxAwaitTime},
		{"idle poll interval", c.IdlePollInterval}, {"checkpoint interval", c.CheckpointInterval}} {
		if d.v < 0 {
			add("%s must not be negative", d.what)
		}
	}
	if c.HeartbeatInterval < 0 || c.HeartbeatInterval > time.Minute {
		add("heartbeat interval must be positive and at most 1m, got %s", c.HeartbeatInterval)
	}
	if c.Partitions < 1 || c.Partitions > MaxNotifierPartitions {
		add("partitions must be between 1 and %d, got %d", MaxNotifierPartitions, c.Partitions)
	}
	return errors.Join(errs...)
}

// ValidateWithData checks c against the watched collection's settings: a
// change of the user-id field moves a document between users and must
// always be announced.
func (c Config) ValidateWithData(data customdata.Config) error {
	data.SetDefaults()
	if slices.Contains(c.IgnoreFields, data.UserIDField) {
		return fmt.Errorf("notifier: ignore fields must not hold the user-id field %q", data.UserIDField)
	}
	return nil
}

// ValidateWith checks c against the shared stream settings: notices must
// be kept at least as long as the window that de-duplicates them.
func (c Config) ValidateWith(streams provision.Streams) error {
	c.SetDefaults()
	streams.SetDefaults()
	if c.MaxAge > 0 && streams.DuplicateWindow > c.MaxAge {
		return fmt.Errorf("notifier: duplicate window %s exceeds max age %s", streams.DuplicateWindow, c.MaxAge)
	}
	return nil
}

// noticeSubjects is the subject filter of the notice stream.
func (c Config) noticeSubjects() []string { return []string{c.SubjectPrefix + ".>"} }

// instanceName is the default InstanceID: the hostname plus a random
// suffix. New picks it, not SetDefaults, so that Validate has no side
// effects.
func instanceName() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "notifier"
	}
	return host + "-" + events.NewEventID()[:8]
}

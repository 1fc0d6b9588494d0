package authsync

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/provision"
)

// Auth consumer defaults.
const (
	DefaultAuthStream         = "AUTH_EVENTS"
	DefaultAuthConsumer       = "customdata-worker"
	DefaultDeadLetterStream   = events.DefaultDeadLetterStream
	DefaultDeadLetterPrefix   = events.DefaultDeadLetterPrefix
	DefaultAuthStreamMaxAge   = 7 * 24 * time.Hour
	DefaultAuthAckWait        = 10 * time.Second
	DefaultAuthMaxAckPending  = 20000
	DefaultAuthCoalesceWindow = 10000
	DefaultAuthMaxDeliver     = 10
	DefaultAuthBatchSize      = 500
	DefaultAuthBatchWait      = 200 * time.Millisecond
	DefaultAuthRetryMax       = 10 * time.Second
	DefaultAuthUnhealthyAfter = 30 * time.Second
	// DefaultDeadLetterMaxAge: dead letters hold whole events, personal
	// data among them, so they expire unless an operator chooses otherwise.
	DefaultDeadLetterMaxAge = 30 * 24 * time.Hour
	// KeepDeadLettersForever as DeadLetterMaxAge keeps dead letters until
	// an operator removes them.
	KeepDeadLettersForever time.Duration = -1
	maxAuthBatchSize                     = 1000
	maxAuthCoalesceWindow                = 50_000
	// maxCoalesceBytes bounds the payload bytes one coalescing window
	// holds in memory, whatever the events' sizes.
	maxCoalesceBytes            = 32 << 20
	minAuthAckWait              = time.Second
	defaultAuthRetryInitial     = 100 * time.Millisecond
	defaultAuthOperationTimeout = 5 * time.Second
	// provisionRequestTimeout bounds one provisioning call: two requests
	// (a stream's update, then its creation) at nats.go's own 5s default.
	provisionRequestTimeout = 10 * time.Second
)

// DefaultAuthBackOff is the redelivery delay after the 1st, 2nd, …
// failed delivery; the last step repeats.
func DefaultAuthBackOff() []time.Duration {
	return []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute}
}

// Config configures the auth-event consumer: the JetStream stream it
// reads, its durable pull consumer, the dead-letter stream, and batching.
// The settings both flows share (provision mode, replicas, duplicate
// window: provision.Streams; the collection: customdata.Config) are given
// to New beside it.
type Config struct {
	// Stream is the auth-event stream. Default "AUTH_EVENTS".
	Stream string
	// SubjectPrefix is where events are published. Default
	// events.DefaultAuthPrefix ("auth.events"); the stream listens on
	// "<prefix>.>" so events on unknown subjects are dead-lettered instead
	// of being lost at the producer.
	SubjectPrefix string
	// MaxAge bounds how long an unconsumed event is kept. Default 7 days.
	MaxAge time.Duration
	// MaxBytes bounds the stream size; 0 means unlimited. When full,
	// new publishes are refused (the producer sees an error) rather than
	// unconsumed events being discarded.
	MaxBytes int64
	// Consumer is the durable pull consumer name. Default "customdata-worker".
	Consumer string
	// AckWait is how long a delivered message may stay unacknowledged
	// before redelivery. The worker extends it (in-progress acks, see
	// progressInterval) while it works on a batch, however long that takes,
	// so AckWait only bounds how soon the batch of a crashed or hung
	// replica is handed to another. Default 10s.
	AckWait time.Duration
	// MaxAckPending bounds delivered-but-unacknowledged messages across
	// replicas. Default 20000: two replicas, each with a full
	// CoalesceWindow.
	MaxAckPending int
	// MaxDeliver is the delivery at which a message that still fails is
	// dead-lettered. Default 10. The worker enforces it, not the server
	// (the consumer's server-side max_deliver is unlimited), so a message
	// whose dead-letter publish fails is redelivered, never dropped.
	MaxDeliver int
	// BackOff is the redelivery delay after the 1st, 2nd, … failed
	// delivery (Nak with delay); the last step repeats. Default
	// DefaultAuthBackOff().
	BackOff []time.Duration
	// BatchSize is the most messages fetched and written at once. Default 500.
	BatchSize int
	// BatchWait is how long a fetch waits to fill a batch. Default 200ms.
	BatchWait time.Duration
	// CoalesceWindow is the most events processed as one unit during a
	// backlog: after a full batch the consumer keeps fetching what is
	// already waiting, without waiting for more, up to this many events
	// (or 32 MiB of payload), and decides, coalesces and writes them
	// together. A hot user's many events then cost one write, not one per
	// batch. Every guarantee holds across the window: an event is acked
	// only after the write covering it is acknowledged, and one user's
	// events keep their order. Default 10000 (or MaxAckPending if lower);
	// between BatchSize and MaxAckPending. Set it to BatchSize to process
	// each batch on its own.
	CoalesceWindow int

	// DeadLetterStream and DeadLetterPrefix: dead letters are published on
	// "<prefix>.<reason>" into that stream. Defaults "AUTH_EVENTS_DLQ" and
	// "auth.deadletter".
	DeadLetterStream string
	DeadLetterPrefix string
	// DeadLetterMaxAge bounds how long dead letters are kept. Default 30
	// days; KeepDeadLettersForever keeps them until an operator removes them.
	DeadLetterMaxAge time.Duration

	// RetryMaxInterval caps the backoff of in-place retries while MongoDB
	// or NATS is unavailable. Default 10s.
	RetryMaxInterval time.Duration
	// UnhealthyAfter is how long fetches or writes may fail before
	// Healthy reports an error. Default 30s.
	UnhealthyAfter time.Duration
	// MaxClockSkew is passed to the event decoder; 0 means
	// events.DefaultMaxClockSkew.
	MaxClockSkew time.Duration
	// TrustedSigners, when set, makes signed events required: an event
	// is processed only if signed (events.Signer) by one of these keys,
	// on the subject of an operation its key may send. Any other is
	// dead-lettered before it is decoded, with its reason (unsigned,
	// bad_signature, untrusted_signer, operation_not_allowed,
	// msg_id_not_signed). Several
	// keys at once allow rotation. Empty (the default): no check.
	TrustedSigners []events.TrustedSigner
}

// SetDefaults replaces zero values by the defaults.
func (c *Config) SetDefaults() {
	c.Stream = cmp.Or(c.Stream, DefaultAuthStream)
	c.SubjectPrefix = cmp.Or(c.SubjectPrefix, events.DefaultAuthPrefix)
	c.MaxAge = cmp.Or(c.MaxAge, DefaultAuthStreamMaxAge)
	c.Consumer = cmp.Or(c.Consumer, DefaultAuthConsumer)
	c.AckWait = cmp.Or(c.AckWait, DefaultAuthAckWait)
	c.MaxAckPending = cmp.Or(c.MaxAckPending, DefaultAuthMaxAckPending)
	c.MaxDeliver = cmp.Or(c.MaxDeliver, DefaultAuthMaxDeliver)
	if c.BackOff == nil {
		c.BackOff = DefaultAuthBackOff()
	}
	c.BatchSize = cmp.Or(c.BatchSize, DefaultAuthBatchSize)
	c.BatchWait = cmp.Or(c.BatchWait, DefaultAuthBatchWait)
	c.CoalesceWindow = cmp.Or(c.CoalesceWindow, max(c.BatchSize, min(DefaultAuthCoalesceWindow, c.MaxAckPending)))
	c.DeadLetterStream = cmp.Or(c.DeadLetterStream, DefaultDeadLetterStream)
	c.DeadLetterPrefix = cmp.Or(c.DeadLetterPrefix, DefaultDeadLetterPrefix)
	c.DeadLetterMaxAge = cmp.Or(c.DeadLetterMaxAge, DefaultDeadLetterMaxAge)
	c.RetryMaxInterval = cmp.Or(c.RetryMaxInterval, DefaultAuthRetryMax)
	c.UnhealthyAfter = cmp.Or(c.UnhealthyAfter, DefaultAuthUnhealthyAfter)
}

// Validate checks the configuration after defaults are applied.
func (c Config) Validate() error {
	c.SetDefaults()
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("auth consumer: "+format, args...)) }
	for _, n := range []struct{ what, name string }{
		{"stream", c.Stream}, {"dead-letter stream", c.DeadLetterStream}, {"consumer", c.Consumer},
	} {
		if err := provision.ValidateName(n.what, n.name); err != nil {
			add("%w", err)
		}
	}
	if c.Stream == c.DeadLetterStream {
		add("stream and dead-letter stream must differ")
	}
	if err := events.ValidatePrefix(c.SubjectPrefix); err != nil {
		add("subject prefix: %v", err)
	}
	if err := events.ValidatePrefix(c.DeadLetterPrefix); err != nil {
		add("dead-letter prefix: %v", err)
	}
	if events.PrefixesOverlap(c.SubjectPrefix, c.DeadLetterPrefix) {
		add("subject prefix %q and dead-letter prefix %q overlap", c.SubjectPrefix, c.DeadLetterPrefix)
	}
	if c.MaxAge < 0 || (c.DeadLetterMaxAge < 0 && c.DeadLetterMaxAge != KeepDeadLettersForever) {
		add("max ages must not be negative")
	}
	if c.MaxBytes < 0 {
		add("stream max bytes must not be negative (0 means unlimited)")
	}
	if c.AckWait < minAuthAckWait {
		add("ack wait must be at least %s, got %s", minAuthAckWait, c.AckWait)
	}
	if c.MaxAckPending < 1 {
		add("max ack pending must be at least 1 (bounded), got %d", c.MaxAckPending)
	}
	if c.MaxAckPending < c.BatchSize {
		add("max ack pending (%d) must be at least the batch size (%d)", c.MaxAckPending, c.BatchSize)
	}
	if c.MaxDeliver < 1 {
		add("max deliver must be at least 1, got %d", c.MaxDeliver)
	}
	for i, d := range c.BackOff {
		if d < 0 {
			add("backoff[%d] must not be negative", i)
		}
	}
	if c.BatchSize < 1 || c.BatchSize > maxAuthBatchSize {
		add("batch size must be 1 to %d, got %d", maxAuthBatchSize, c.BatchSize)
	}
	if c.CoalesceWindow < c.BatchSize || c.CoalesceWindow > c.MaxAckPending || c.CoalesceWindow > maxAuthCoalesceWindow {
		add("coalesce window must be between the batch size (%d) and max ack pending (%d), at most %d, got %d",
			c.BatchSize, c.MaxAckPending, maxAuthCoalesceWindow, c.CoalesceWindow)
	}
	if c.BatchWait <= 0 || c.BatchWait >= c.AckWait {
		add("batch wait must be positive and shorter than ack wait, got %s", c.BatchWait)
	}
	if c.RetryMaxInterval <= 0 {
		add("retry max interval must be positive")
	}
	if c.UnhealthyAfter <= 0 {
		add("unhealthy-after must be positive")
	}
	if len(c.TrustedSigners) > 0 {
		if _, err := events.NewVerifier(c.TrustedSigners); err != nil {
			add("trusted signers: %w", err)
		}
	}
	return errors.Join(errs...)
}

package issuer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
)

// DefaultNoticeStream is the worker's default CUSTOMDATA_NOTICE_STREAM.
const DefaultNoticeStream = "CUSTOMDATA_NOTICES"

// NoticeConfig names where the worker publishes notices. The zero value is
// the worker's defaults.
type NoticeConfig struct {
	// SubjectPrefix is the worker's NOTICE_SUBJECT_PREFIX
	// (default "customdata.invalidated").
	SubjectPrefix string
	// Stream is the worker's NOTICE_STREAM (default "CUSTOMDATA_NOTICES").
	Stream string
	// RetryWait is the longest pause between attempts to (re)start following
	// the stream (default 5s).
	RetryWait time.Duration
}

func (c *NoticeConfig) setDefaults() {
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = events.DefaultNoticePrefix
	}
	if c.Stream == "" {
		c.Stream = DefaultNoticeStream
	}
	if c.RetryWait == 0 {
		c.RetryWait = 5 * time.Second
	}
}

// Validate checks the configuration (after defaults).
func (c NoticeConfig) Validate() error {
	c.setDefaults()
	if err := events.ValidatePrefix(c.SubjectPrefix); err != nil {
		return fmt.Errorf("issuer: notice %w", err)
	}
	if strings.ContainsAny(c.Stream, ".*> \t") {
		return fmt.Errorf("issuer: notice stream name %q is invalid", c.Stream)
	}
	return nil
}

type feed struct {
	js  jetstream.JetStream
	cfg NoticeConfig

	running sync.Mutex // one Run at a time
	seqMu   sync.Mutex
	next    uint64 // stream sequence expected next
}

// Run follows the notice stream until ctx ends, keeping the cache fresh.
// It returns nil when ctx ends, ErrNoticesNotConfigured without
// WithNotices, and an error wrapping ErrNoticesLost when the NATS
// connection is closed for good. While it cannot follow the stream (stream
// missing, NATS down) it retries, and the cache reads through.
//
// How it follows, and why: it reads the CUSTOMDATA_NOTICES stream with an
// ordered consumer (ephemeral, no acks, flow-controlled) starting just after
// the stream's last sequence at the time it starts, rather than a plain
// subscription to <prefix>.>. A plain subscription gives no way to know a
// notice was missed (a slow-consumer drop or a disconnect loses messages
// silently). Stream sequences make every loss visible: the consumer
// resumes after the last sequence it delivered when it is recreated, and
// Run checks that each sequence follows the previous one, so a skipped
// sequence (notices aged out of the stream while we were away, a purge)
// flushes the cache. Around that check it also flushes, and reads through,
// whenever it cannot know notices are flowing: the connection drops
// (flush, read through until it is back, flush again), the consumer
// reports missed heartbeats or its deletion, or Run stops.
func (c *Cache) Run(ctx context.Context) error {
	f := c.feed
	if f == nil {
		return ErrNoticesNotConfigured
	}
	if !f.running.TryLock() {
		return errors.New("issuer: Run is already running")
	}
	defer f.running.Unlock()

	nc := f.js.Conn()
	status := nc.StatusChanged(nats.CONNECTED, nats.RECONNECTING, nats.DISCONNECTED, nats.CLOSED)
	defer nc.RemoveStatusListener(status)

	wait := 100 * time.Millisecond
	logged := false
	for {
		err := c.follow(ctx, nc, status)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrNoticesLost) || nc.IsClosed() {
			c.log.Error().Err(err).Msg("notice feed lost for good: reading MongoDB on every Get")
			return fmt.Errorf("issuer: %w", ErrNoticesLost)
		}
		if !logged {
			c.log.Warn().Err(err).Msg("cannot follow notices; reading through to MongoDB and retrying")
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, f.cfg.RetryWait)
	}
}

// follow runs one ordered consumer until it fails, the connection drops for
// good, or ctx ends. The cache keeps values only while it runs.
func (c *Cache) follow(ctx context.Context, nc *nats.Conn, status <-chan nats.Status) error {
	f := c.feed
	// Status changes seen before this attempt are history: the flush when
	// following starts covers them.
	for len(status) > 0 {
		<-status
	}
	stream, err := f.js.Stream(ctx, f.cfg.Stream)
	if err != nil {
		return fmt.Errorf("notice stream %s: %w", f.cfg.Stream, err)
	}
	start := stream.CachedInfo().State.LastSeq + 1
	f.seqMu.Lock()
	f.next = start
	f.seqMu.Unlock()
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{f.cfg.SubjectPrefix + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    start,
	})
	if err != nil {
		return fmt.Errorf("notice consumer: %w", err)
	}
	consumerErr := make(chan error, 1)
	cc, err := cons.Consume(c.onMessage,
		// Missed heartbeats are noticed within a few seconds, not the
		// default 30s pull expiry.
		jetstream.PullExpiry(10*time.Second), jetstream.PullHeartbeat(2*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			select {
			case consumerErr <- err:
			default:
			}
		}))
	if err != nil {
		return fmt.Errorf("consume notices: %w", err)
	}
	defer cc.Stop()

	c.setKeep(true, FlushFollowing)
	c.log.Info().Str("stream", f.cfg.Stream).Uint64("from_sequence", start).Msg("following invalidation notices")
	defer c.setKeep(false, FlushStopped)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case st, ok := <-status:
			switch {
			case !ok || st == nats.CLOSED:
				return ErrNoticesLost
			case st == nats.CONNECTED && nc.IsConnected():
				// The ordered consumer recreates itself after the last
				// sequence it delivered, so what changed meanwhile arrives
				// as replayed notices; still, nothing read while we were
				// away is trusted.
				c.setKeep(true, FlushReconnected)
				c.log.Info().Msg("NATS reconnected: cache flushed, following notices again")
			case nc.IsConnected():
				// A drop already healed (its CONNECTED is queued next).
				c.flush(FlushDisconnected)
			default:
				c.setKeep(false, FlushDisconnected)
				c.log.Warn().Str("status", st.String()).Msg("NATS connection lost: cache flushed, reading through until it is back")
			}
		case err := <-consumerErr:
			if errors.Is(err, jetstream.ErrConnectionClosed) {
				return ErrNoticesLost
			}
			// The ordered consumer recreates itself after missed
			// heartbeats or a deletion; meanwhile notices may be late.
			c.flush(FlushConsumer)
			c.log.Warn().Err(err).Msg("notice consumer failed: cache flushed")
		}
	}
}

func (c *Cache) onMessage(m jetstream.Msg) {
	c.m.notices.Inc()
	// A notice without metadata cannot be placed in the sequence: treat
	// it as a possible gap.
	md, err := m.Metadata()
	if err != nil {
		c.flush(FlushGap)
	} else if next, gap := c.feed.advance(md.Sequence.Stream); gap {
		c.flush(FlushGap)
		c.log.Warn().Uint64("expected", next).Uint64("got", md.Sequence.Stream).Msg("notice stream sequence gap: cache flushed")
	}
	c.HandleNotice(m.Subject(), m.Data())
}

// advance records that stream sequence seq was delivered and reports
// whether sequences were skipped before it. A sequence at or below the
// last one is a replay after the consumer recreated itself: harmless, the
// notice is applied again.
func (f *feed) advance(seq uint64) (expected uint64, gap bool) {
	f.seqMu.Lock()
	defer f.seqMu.Unlock()
	expected = f.next
	if seq >= f.next {
		f.next = seq + 1
	}
	return expected, seq > expected
}

// HandleNotice applies one notice, as the README's notice contract defines
// it. Run calls it for every notice; an issuer that receives notices its
// own way may call it directly.
//
//   - <prefix>.user.<token>: drop that user. If the payload also names a
//     document _id, drop every entry holding that document too: a change
//     that moved a document to another owner names only the new owner when
//     the server reports no pre-image (always so on servers without
//     updateDescription), and the previous owner's entry holds the
//     document's _id.
//   - <prefix>.doc.<token>: drop every entry holding that document _id.
//   - <prefix>.all, or a payload of kind flush_all: drop everything.
//   - anything else under the prefix (an unknown subject, an undecodable
//     token): drop everything, since it may have named anyone.
func (c *Cache) HandleNotice(subject string, payload []byte) {
	prefix := events.DefaultNoticePrefix
	if c.feed != nil {
		prefix = c.feed.cfg.SubjectPrefix
	}
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		return // not a notice subject: nothing to do with us
	}
	n, perr := events.DecodeNotice(payload)
	if rest == "all" || (perr == nil && n.Kind == events.NoticeFlushAll) {
		c.flush(FlushNotice)
		c.log.Info().Str("reason", string(n.Reason)).Msg("flush-all notice: cache flushed")
		return
	}
	kind, token, _ := strings.Cut(rest, ".")
	id, err := events.DecodeUserToken(token)
	if err != nil {
		c.flush(FlushUnreadable)
		c.log.Warn().Str("subject", subject).Err(err).Msg("notice subject names nobody readable: cache flushed")
		return
	}
	switch kind {
	case "user":
		c.mu.Lock()
		c.dropUser(id)
		if perr == nil && n.DocumentID != "" {
			c.dropDocument(n.DocumentID)
		}
		c.mu.Unlock()
		c.m.invUser.Inc()
	case "doc":
		c.InvalidateDocument(id)
	default:
		c.flush(FlushUnreadable)
		c.log.Warn().Str("subject", subject).Msg("unknown notice subject: cache flushed")
	}
}

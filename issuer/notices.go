package issuer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
)

// DefaultNoticeStream is the worker's default CUSTOMDATA_NOTICE_STREAM.
const DefaultNoticeStream = events.DefaultNoticeStream

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
	// LeaderTimeout: while following, the cache keeps nothing (reads
	// through) when it has heard no heartbeat of the worker's leading
	// notifier for this long — of some partition, when the worker runs
	// NOTIFIER_PARTITIONS above 1 (each partition's leader beats for it);
	// every worker down, NATS KV unreachable, notices off — since then no
	// one would announce (some) changes. It caches again once every
	// partition is heard. Default 30s (the worker beats every
	// 5s); negative: never stop caching for want of heartbeats.
	LeaderTimeout time.Duration
}

func (c *NoticeConfig) setDefaults() {
	c.SubjectPrefix = cmp.Or(c.SubjectPrefix, events.DefaultNoticePrefix)
	c.Stream = cmp.Or(c.Stream, DefaultNoticeStream)
	c.RetryWait = cmp.Or(c.RetryWait, 5*time.Second)
	c.LeaderTimeout = cmp.Or(c.LeaderTimeout, DefaultLeaderTimeout)
}

// DefaultLeaderTimeout is NoticeConfig.LeaderTimeout's default: six of
// the worker's heartbeats, and longer than a takeover with its default
// lease.
const DefaultLeaderTimeout = 30 * time.Second

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

// heartbeat records a heartbeat of the leading notifier of one partition
// (payload: the heartbeat notice; one that names no partition speaks for
// partition 0 of 1, as heartbeats did before partitions). One that cannot
// be read is ignored: it vouches for no leader, and counting it would
// keep caching while none announces changes.
func (c *Cache) heartbeat(payload []byte) {
	if c.feed == nil {
		return
	}
	n, err := events.DecodeNotice(payload)
	if err != nil {
		return
	}
	c.feed.beats.heard(n.PartitionOf(), n.PartitionsOf(), time.Now())
	select {
	case c.feed.beat <- struct{}{}:
	default:
	}
}

// Run follows the notice stream until ctx ends, keeping the cache fresh.
// It returns nil when ctx ends, ErrNoticesNotConfigured without
// WithNotices, and an error wrapping ErrNoticesLost (and its cause) when
// the NATS connection is closed for good. While it cannot follow the
// stream (stream missing, NATS down) it retries, and the cache reads
// through: it keeps nothing.
//
// How it follows, and why: it reads the CUSTOMDATA_NOTICES stream with an
// ordered consumer (ephemeral, no acks, flow-controlled) starting just after
// the stream's last sequence at the time it starts, rather than a plain
// subscription to <prefix>.>. A plain subscription gives no way to know a
// notice was missed (a slow-consumer drop or a disconnect loses messages
// silently). With stream sequences Run checks that each notice follows the
// previous one, so a skipped sequence (a purge, notices aged out) flushes
// the cache. And whenever it cannot know that notices are flowing — the
// connection drops or comes back, the consumer reports missed heartbeats or
// its deletion, the stream was recreated (its creation time changed, or its
// last sequence went below one already delivered) — it stops keeping
// values, flushes, and starts a new consumer from the stream's end as it
// is then, flushing again. It never relies on a consumer resuming by
// itself: after a server restart with an empty store or a recreated
// stream, sequences start again at 1 and a resumed consumer would wait
// for numbers the new stream reaches only much later.
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

	const firstWait = 100 * time.Millisecond
	wait, reason := firstWait, FlushFollowing
	var out outage
	for {
		followed, err := c.follow(ctx, nc, status, reason)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errConnClosed) || nc.IsClosed() {
			c.log.Error().Err(err).Msg("notice feed lost for good: reading MongoDB on every Get")
			return fmt.Errorf("issuer: %w: %w", ErrNoticesLost, err)
		}
		if followed {
			wait, out = firstWait, outage{} // a new outage: say so
		}
		c.logOutage(&out, err, time.Now())
		reason = FlushFollowing
		switch {
		case errors.Is(err, errInterrupted), errors.Is(err, errNotConnected):
			reason = FlushReconnected
		case errors.Is(err, errStreamReset):
			reason = FlushStreamReset
		}
		timer := time.NewTimer(wait)
	waiting:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case st, ok := <-status:
				if !ok || st == nats.CLOSED {
					timer.Stop()
					c.log.Error().Msg("notice feed lost for good: reading MongoDB on every Get")
					return fmt.Errorf("issuer: %w: %w", ErrNoticesLost, errConnClosed)
				}
				if st == nats.CONNECTED {
					timer.Stop()
					reason = FlushReconnected
					break waiting // back: try at once
				}
			case <-timer.C:
				break waiting
			}
		}
		wait = min(2*wait, f.cfg.RetryWait)
	}
}

// follow runs one ordered consumer, from the stream's end as it is now,
// until it fails, the connection drops, the stream turns out to have been
// recreated, or ctx ends. The cache keeps values only while it runs; it
// reports whether it got that far.
func (c *Cache) follow(ctx context.Context, nc *nats.Conn, status <-chan nats.Status, reason string) (bool, error) {
	f := c.feed
	// Status changes seen before this attempt are history: the flush when
	// following starts covers them. Read the state first: the client sends
	// a change's status event as it changes the state, so once connected
	// every CONNECTED up to then is in the channel, and drained.
	connected := nc.IsConnected()
	for len(status) > 0 {
		if st := <-status; st == nats.CLOSED {
			return false, errConnClosed
		}
	}
	if !connected {
		// Requests now would be buffered until the reconnect, whose
		// CONNECTED would then interrupt the follow they start: wait for
		// it instead (Run tries again at once on CONNECTED).
		return false, errNotConnected
	}
	// Each request is bounded here: nats.go applies its default timeout
	// only to a context without a deadline, and a request whose reply is
	// lost in a reconnect would otherwise wait for Run's deadline, however
	// far (seen in a chaos run: minutes without following).
	rctx, cancel := context.WithTimeout(ctx, f.requestTimeout())
	stream, err := f.js.Stream(rctx, f.cfg.Stream)
	cancel()
	if err != nil {
		return false, fmt.Errorf("notice stream %s: %w", f.cfg.Stream, err)
	}
	info := stream.CachedInfo()
	start := info.State.LastSeq + 1
	f.seqMu.Lock()
	if reset := f.resetBy(info); reset != "" {
		reason = FlushStreamReset
		c.log.Warn().Str("stream", f.cfg.Stream).Str("why", reset).Msg("notice stream was recreated: following it from its new end")
	}
	f.gen++
	gen := f.gen
	f.next, f.created = start, info.Created
	f.seqMu.Unlock()
	rctx, cancel = context.WithTimeout(ctx, f.requestTimeout())
	cons, err := stream.OrderedConsumer(rctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{f.cfg.SubjectPrefix + ".>"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    start,
		// Run, not the consumer, recovers from a failure (see Run).
		MaxResetAttempts: 1,
	})
	cancel()
	if err != nil {
		return false, fmt.Errorf("notice consumer: %w", err)
	}
	consumerErr := make(chan error, 1)
	cc, err := cons.Consume(func(m jetstream.Msg) { c.onMessage(gen, m) },
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
		return false, fmt.Errorf("consume notices: %w", err)
	}
	defer cc.Stop()

	c.setKeep(true, reason)
	c.log.Info().Str("stream", f.cfg.Stream).Uint64("from_sequence", start).Msg("following invalidation notices")
	// Whatever ends this follow, nothing kept so far is trusted, and
	// nothing is kept until the next one starts.
	stopped := FlushStopped // the flush reason when this follow ends
	defer func() { c.setKeep(false, stopped) }()
	check := time.NewTicker(f.checkInterval())
	defer check.Stop()
	// The start of following counts as a heartbeat: a leader's first one
	// is at most its interval away.
	var watchLeader <-chan time.Time
	leaderless := false
	if f.cfg.LeaderTimeout > 0 {
		f.beats.start(time.Now())
		t := time.NewTicker(max(f.cfg.LeaderTimeout/4, 10*time.Millisecond))
		defer t.Stop()
		watchLeader = t.C
	}
	for {
		select {
		case <-watchLeader:
			if silent, of, missing := f.beats.silence(time.Now(), f.cfg.LeaderTimeout); !leaderless && silent > 0 {
				leaderless = true
				c.setKeep(false, FlushNoLeader)
				ev := c.log.Warn().Dur("silent_for", silent.Round(time.Second)).Str("cache", "reading through to MongoDB, keeping nothing")
				if of > 1 {
					ev = ev.Int("partitions", of).Ints("silent_partitions", missing)
				}
				ev.Msg("no heartbeat of the worker's notifier (of every partition of its change stream): no one announces some changes")
			}
		case <-f.beat:
			// Caching again only once every partition is heard.
			if silent, _, _ := f.beats.silence(time.Now(), f.cfg.LeaderTimeout); leaderless && silent == 0 {
				leaderless = false
				c.setKeep(true, FlushFollowing)
				c.log.Info().Msg("the worker's notifier beats again: caching")
			}
		case <-ctx.Done():
			return true, ctx.Err()
		case st, ok := <-status:
			if !ok || st == nats.CLOSED {
				return true, errConnClosed
			}
			// Disconnected, reconnecting, or already back: notices may
			// have been missed, and the stream may not be the one we
			// followed (a server restarted with an empty store).
			stopped = FlushDisconnected
			return true, fmt.Errorf("%w (%s)", errInterrupted, st)
		case err := <-consumerErr:
			if errors.Is(err, jetstream.ErrConnectionClosed) {
				return true, fmt.Errorf("%w: %w", errConnClosed, err)
			}
			stopped = FlushConsumer
			return true, fmt.Errorf("%w: %w", errConsumerLost, err)
		case <-check.C:
			ictx, cancel := context.WithTimeout(ctx, f.requestTimeout())
			info, err := stream.Info(ictx)
			cancel()
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				stopped = FlushStreamReset
				return true, fmt.Errorf("%w: %w", errStreamReset, err)
			}
			if err != nil {
				continue // the consumer's heartbeats watch the connection
			}
			f.seqMu.Lock()
			reset := f.resetBy(info)
			f.seqMu.Unlock()
			if reset != "" {
				stopped = FlushStreamReset
				return true, fmt.Errorf("%w: %s", errStreamReset, reset)
			}
		}
	}
}

func (c *Cache) onMessage(gen uint64, m jetstream.Msg) {
	c.m.notices.Inc()
	// A notice without metadata cannot be placed in the sequence: treat
	// it as a possible gap.
	md, err := m.Metadata()
	if err != nil {
		c.flush(FlushGap)
	} else if next, gap := c.feed.advance(gen, md.Sequence.Stream); gap {
		c.flush(FlushGap)
		c.log.Warn().Uint64("expected", next).Uint64("got", md.Sequence.Stream).Msg("notice stream sequence gap: cache flushed")
	}
	c.HandleNotice(m.Subject(), m.Data())
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
//   - <prefix>.heartbeat: the leading notifier of a partition (payload
//     partition and partitions; absent: 0 of 1) is alive (see
//     NoticeConfig.LeaderTimeout); nothing to drop.
//   - a flush-all from any partition drops everything: the cache is not
//     kept per partition.
//   - anything else under the prefix (an unknown subject, an undecodable
//     token, a user notice whose non-empty payload cannot be decoded):
//     drop everything, since it may have named anyone.
func (c *Cache) HandleNotice(subject string, payload []byte) {
	prefix := events.DefaultNoticePrefix
	if c.feed != nil {
		prefix = c.feed.cfg.SubjectPrefix
	}
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		return // not a notice subject: nothing to do with us
	}
	if rest == "heartbeat" {
		c.heartbeat(payload)
		return
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
		if perr != nil && len(payload) > 0 {
			// The payload may have named a document that changed owner,
			// held in the cache under someone else: only a flush is safe.
			c.flush(FlushUnreadable)
			c.log.Warn().Str("subject", subject).Err(perr).Msg("notice payload unreadable: cache flushed")
			return
		}
		c.mu.Lock()
		c.dropUser(id)
		if perr == nil && n.DocumentID != "" {
			c.dropDocument(n.DocumentID)
		}
		c.m.invUser.Inc() // before unlocking, as in InvalidateUser
		c.mu.Unlock()
	case "doc":
		c.InvalidateDocument(id)
	default:
		c.flush(FlushUnreadable)
		c.log.Warn().Str("subject", subject).Msg("unknown notice subject: cache flushed")
	}
}

package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/retry"
)

// noticeAckTimeout bounds the wait for a notice's acknowledgement.
const noticeAckTimeout = 10 * time.Second

// maxNoticesInFlight is how many user notices may await their
// acknowledgement at once (publisher.window). The publisher enforces it
// itself: the library's own bound (WithPublishAsyncMaxPending) does not
// block the caller, it fails the publish after a short stall.
const maxNoticesInFlight = 256

// asyncPublisher is what user notices are published through: the
// Notifier's own JetStream context (see newNoticeJetStream), or in tests
// one that fails or holds acknowledgements.
type asyncPublisher interface {
	PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// inFlight is a published notice awaiting its acknowledgement, or a
// position only (future nil: a change without notices, or one whose
// notices are all in earlier entries).
type inFlight struct {
	future jetstream.PubAckFuture
	kind   events.NoticeKind
	op     string
	msgID  string
	// pos is set on the last entry of a change: the position after it,
	// reached once this entry and every earlier one are acknowledged.
	pos *checkpoint
	// floor is the notice stream's highest acknowledged sequence when it
	// was sent (streamWatch).
	floor uint64
}

// publisher publishes one term's notices on the notice stream. It is the
// only place a notice is published and a flush-all counted
// (flush_all_total), whatever decided it: the mapping of a change
// (collection gone, invalidated, unattributable) or the term opening its
// feed from now (no checkpoint, unusable, lost or unreadable position).
//
// User notices are published asynchronously (publishAsync) into a FIFO
// window of at most maxInFlight unacknowledged notices; reap hands the term
// the position of the last change whose notices, and all earlier ones,
// are acknowledged, so the checkpoint never passes an unacknowledged
// notice. Flush-alls are published synchronously (publish) after the
// window is empty: see term.handle.
type publisher struct {
	js    jetstream.JetStream
	async asyncPublisher
	// acks counts async notices published and observes their latency
	// when the acknowledgement arrives.
	acks        *ackTracker
	maxInFlight int
	window      []inFlight
	outstanding int // entries of window with a future
	// pubFailed: an async publish failed and none was acknowledged since
	// (logged once per outage).
	pubFailed bool
	// watch sees the stream sequences the term's notices are stored at
	// (noticestream.go).
	watch *streamWatch
	// retry is the backoff between reopens after failed publishes; it
	// starts over once a notice is acknowledged again.
	retry  *backoff.ExponentialBackOff
	stream string // the notice stream (JetStream)
	prefix string // notice subject prefix
	// leaseCtx ends only when the lease is lost (or the term is over); a
	// publish attempt runs under it, so shutdown lets it finish while a
	// lost lease aborts it.
	leaseCtx context.Context
	retryMax time.Duration
	metrics  *notifierMetrics
	health   *notifierHealth
	log      zerolog.Logger
	// fromNow names this term's flush-alls that no change event names:
	// the lease session and revision, and a count of them, so each one's
	// Msg-Id is unique (two gaps are two causes).
	leaseSession string
	revision     uint64
	fromNow      int
}

// publishFromNow publishes a flush-all that no change event names (the
// feed was opened from now). Its Msg-Id is unique per call, so a retry of
// this publish is stored once but a later gap is flushed again.
func (p *publisher) publishFromNow(ctx context.Context, reason events.FlushReason) error {
	p.fromNow++
	sum := sha256.Sum256(fmt.Appendf(nil, "%s|%s|%d|%d", reason, p.leaseSession, p.revision, p.fromNow))
	return p.publish(ctx, plannedNotice{
		Subject: events.FlushAllSubject(p.prefix),
		MsgID:   "fa-" + hex.EncodeToString(sum[:])[:32],
		Notice: events.Notice{
			SchemaVersion: events.NoticeSchemaVersion,
			Kind:          events.NoticeFlushAll,
			Reason:        reason,
		},
	}, nil)
}

// publish publishes one notice and waits for JetStream's acknowledgement,
// retrying with backoff until it is acknowledged or ctx ends (the lease
// was lost or the worker stops). A notice is never skipped.
func (p *publisher) publish(ctx context.Context, n plannedNotice, ct *events.ClusterTime) error {
	bo := retry.NewBackOff(50*time.Millisecond, p.retryMax)
	failed := false
	_, err := retry.Forever(ctx, bo, func() (struct{}, error) {
		n.Notice.PublishedAt = time.Now().UTC()
		data, err := json.Marshal(n.Notice)
		if err != nil {
			return struct{}{}, retry.Stop(fmt.Errorf("encode notice: %w", err))
		}
		msg := &nats.Msg{Subject: n.Subject, Data: data, Header: nats.Header{}}
		pctx, cancel := context.WithTimeout(p.leaseCtx, 10*time.Second)
		floor := p.watch.floor()
		ack, err := p.js.PublishMsg(pctx, msg, jetstream.WithMsgID(n.MsgID), jetstream.WithExpectStream(p.stream))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return struct{}{}, retry.Stop(ctx.Err())
			}
			if p.leaseCtx.Err() != nil {
				return struct{}{}, retry.Stop(p.leaseCtx.Err())
			}
			return struct{}{}, err
		}
		p.metrics.published.WithLabelValues(string(n.Notice.Kind), n.Notice.Operation).Inc()
		if n.Notice.Kind == events.NoticeFlushAll {
			p.metrics.flushes.WithLabelValues(string(n.Notice.Reason)).Inc()
		}
		if ct != nil {
			p.metrics.latency.Observe(max(0, time.Since(ct.Time()).Seconds()))
		}
		if ack.Duplicate {
			p.log.Debug().Str("msg_id", n.MsgID).Msg("notice already stored (de-duplicated)")
		}
		p.watch.stored(ack, floor)
		if failed {
			p.health.feedOK()
			p.log.Info().Msg("publishing notices again")
		}
		return struct{}{}, nil
	}, func(err error, first bool) {
		p.health.feedFailed(err)
		failed = true
		if first {
			p.log.Warn().Err(err).Str("msg_id", n.MsgID).Msg("notice publish failed; retrying with backoff (the change stream waits)")
		}
	})
	return err
}

// newNoticeMsg encodes n, stamped now, as a message to publish with
// n.MsgID. A message is never reused: an async future keeps it.
func newNoticeMsg(n plannedNotice) (*nats.Msg, error) {
	n.Notice.PublishedAt = time.Now().UTC()
	data, err := json.Marshal(n.Notice)
	if err != nil {
		return nil, fmt.Errorf("encode notice: %w", err)
	}
	return &nats.Msg{Subject: n.Subject, Data: data, Header: nats.Header{}}, nil
}

// inFlightCount is how many entries (notices or positions) await
// acknowledgement.
func (p *publisher) inFlightCount() int { return len(p.window) }

// publishAsync publishes a user notice without waiting for its
// acknowledgement; pos (may be nil) is the position reached once it and
// every earlier notice are acknowledged. While the window is full it first
// waits for the oldest acknowledgement, so at most maxInFlight notices are
// outstanding. It returns the newest acknowledged position (nil if none
// moved) and, when a publish failed, an error wrapping errPublishFailed;
// the window is then empty and nothing after the failure is acknowledged
// as far as positions go.
func (p *publisher) publishAsync(n plannedNotice, ct *events.ClusterTime, pos *checkpoint) (*checkpoint, error) {
	var acked *checkpoint
	for p.outstanding >= p.maxInFlight {
		got, err := p.reap(true, true)
		if got != nil {
			acked = got
		}
		if err != nil {
			return acked, err
		}
		if p.outstanding >= p.maxInFlight && p.leaseCtx.Err() != nil {
			return acked, fmt.Errorf("waiting for notice acknowledgements: %w", context.Cause(p.leaseCtx))
		}
	}
	msg, err := newNoticeMsg(n)
	if err != nil {
		// Not a publish failure: a notice that cannot be encoded never
		// will be. It cannot happen for events.Notice.
		return acked, err
	}
	p.acks.track(msg, trackedNotice{kind: n.Notice.Kind, op: n.Notice.Operation, ct: ct})
	floor := p.watch.floor()
	f, err := p.async.PublishMsgAsync(msg, jetstream.WithMsgID(n.MsgID), jetstream.WithExpectStream(p.stream))
	if err != nil {
		// What was published before it may still be acknowledged.
		got, rerr := p.reap(true, false)
		if got != nil {
			acked = got
		}
		if rerr != nil {
			p.forget(msg)
			return acked, rerr
		}
		return acked, p.fail(n.MsgID, err, msg, nil)
	}
	p.window = append(p.window, inFlight{future: f, kind: n.Notice.Kind, op: n.Notice.Operation, msgID: n.MsgID, pos: pos, floor: floor})
	p.outstanding++
	return acked, nil
}

// advance records pos as reached once every entry now in the window is
// acknowledged (a change that published nothing). It returns pos itself
// when nothing is in flight.
func (p *publisher) advance(pos *checkpoint) *checkpoint {
	if len(p.window) == 0 {
		return pos
	}
	p.window = append(p.window, inFlight{pos: pos})
	return nil
}

// reap pops acknowledged entries off the head of the window, in order,
// and returns the newest position they reached (nil: none). With block it
// waits for the head (one entry if one, else all of the window) instead of
// stopping at the first one not yet acknowledged; it gives up waiting when
// the lease is lost (the entries stay unacknowledged: positions do not
// move). A failed acknowledgement ends the window: see fail.
func (p *publisher) reap(block, one bool) (*checkpoint, error) {
	var acked *checkpoint
	waited := false
	for len(p.window) > 0 {
		e := p.window[0]
		if e.future != nil {
			var ack *jetstream.PubAck
			var err error
			select {
			case ack = <-e.future.Ok():
			case err = <-e.future.Err():
			default:
				if !block || (one && waited) {
					return acked, nil
				}
				select {
				case ack = <-e.future.Ok():
				case err = <-e.future.Err():
				case <-p.leaseCtx.Done():
					return acked, nil
				}
			}
			waited = true
			if err != nil {
				return acked, p.fail(e.msgID, err, e.future.Msg(), p.window[1:])
			}
			p.acknowledged(e, ack)
			p.outstanding--
		}
		p.window[0] = inFlight{}
		p.window = p.window[1:]
		if e.pos != nil {
			acked = e.pos
		}
	}
	p.window = nil
	return acked, nil
}

// acknowledged notes an acknowledged notice (ackTracker counted it).
func (p *publisher) acknowledged(e inFlight, ack *jetstream.PubAck) {
	if ack != nil && ack.Duplicate {
		p.log.Debug().Str("msg_id", e.msgID).Msg("notice already stored (de-duplicated)")
	}
	p.watch.stored(ack, e.floor)
	if p.pubFailed {
		p.pubFailed = false
		p.retry.Reset()
		p.health.feedOK()
		p.log.Info().Msg("publishing notices again")
	}
}

// fail handles a failed notice publish (msgID; rest are the entries
// published after it): it stops publishing, waits for the rest to settle
// (each is bounded by noticeAckTimeout or the lease) so they do not linger
// in the library's window, moves no position past the failure, and
// returns an error wrapping errPublishFailed. What the rest stored is
// republished with the same Msg-Id and de-duplicated by the server.
func (p *publisher) fail(msgID string, cause error, failed *nats.Msg, rest []inFlight) error {
	p.forget(failed)
	for _, e := range rest {
		if e.future == nil {
			continue
		}
		select {
		case <-e.future.Ok():
		case <-e.future.Err():
		case <-p.leaseCtx.Done():
		}
		p.forget(e.future.Msg())
	}
	p.window, p.outstanding = nil, 0
	p.health.feedFailed(cause)
	if !p.pubFailed {
		p.pubFailed = true
		p.log.Warn().Err(cause).Str("msg_id", msgID).
			Msg("notice publish failed; republishing from the last acknowledged notice (the change stream reopens there, with backoff)")
	}
	return fmt.Errorf("%w (msg id %s): %w", errPublishFailed, msgID, cause)
}

// forget drops m's latency tracking (it was not acknowledged).
func (p *publisher) forget(m *nats.Msg) {
	if m != nil {
		p.acks.forget(m)
	}
}

// ackTracker counts async notices as published (notices_published_total)
// and observes their commit → acknowledgement latency at the moment the
// acknowledgement arrives (the JetStream context's ack handler), not when
// the term gets to reap it.
type ackTracker struct {
	metrics *notifierMetrics
	mu      sync.Mutex
	msgs    map[*nats.Msg]trackedNotice
}

type trackedNotice struct {
	kind events.NoticeKind
	op   string
	ct   *events.ClusterTime
}

func newAckTracker(m *notifierMetrics) *ackTracker {
	return &ackTracker{metrics: m, msgs: map[*nats.Msg]trackedNotice{}}
}

func (l *ackTracker) track(m *nats.Msg, n trackedNotice) {
	l.mu.Lock()
	l.msgs[m] = n
	l.mu.Unlock()
}

func (l *ackTracker) forget(m *nats.Msg) {
	l.mu.Lock()
	delete(l.msgs, m)
	l.mu.Unlock()
}

// acked is the JetStream context's ack handler.
func (l *ackTracker) acked(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) {
	l.mu.Lock()
	n, ok := l.msgs[m]
	delete(l.msgs, m)
	l.mu.Unlock()
	if !ok {
		return
	}
	l.metrics.published.WithLabelValues(string(n.kind), n.op).Inc()
	if n.ct != nil {
		l.metrics.latency.Observe(max(0, time.Since(n.ct.Time()).Seconds()))
	}
}

// failed is the JetStream context's error handler (timeouts, error
// replies, a lost connection).
func (l *ackTracker) failed(_ jetstream.JetStream, m *nats.Msg, _ error) { l.forget(m) }

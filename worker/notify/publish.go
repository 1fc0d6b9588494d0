package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/retry"
)

// publisher publishes one term's notices on the notice stream and waits
// for each acknowledgement. It is the only place a notice is published and
// a flush-all counted (flush_all_total), whatever decided it: the mapping
// of a change (collection gone, invalidated, unattributable) or the term
// opening its feed from now (no checkpoint, unusable, lost or unreadable
// position).
type publisher struct {
	js     jetstream.JetStream
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
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 50 * time.Millisecond
	bo.MaxInterval = p.retryMax
	failed := false
	_, err := retry.Forever(ctx, bo, func() (struct{}, error) {
		n.Notice.PublishedAt = time.Now().UTC()
		data, err := json.Marshal(n.Notice)
		if err != nil {
			return struct{}{}, retry.Stop(fmt.Errorf("encode notice: %w", err))
		}
		msg := &nats.Msg{Subject: n.Subject, Data: data, Header: nats.Header{}}
		pctx, cancel := context.WithTimeout(p.leaseCtx, 10*time.Second)
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

package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/retry"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// idleCheckpointInterval is how often an idle feed's position (the
// server's post-batch resume token) is checkpointed: often enough to stay
// far inside any oplog window, rarely enough to cost nothing.
const idleCheckpointInterval = 10 * time.Second

// sizeProbeInterval is how often an inconclusive $bsonSize probe (empty
// collection) is repeated.
const sizeProbeInterval = 30 * time.Second

// consume handles events until the feed fails or ctx ends.
func (tm *term) consume(ctx context.Context, cs feedCursor) error {
	// Close feeds this function replaced (after an invalidate); the
	// caller closes the one it opened.
	first := cs
	defer func() {
		if cs != first {
			tm.close(ctx, cs)
		}
	}()
	// Whatever is in flight when the feed ends is waited for (bounded by
	// noticeAckTimeout, or the lease): on the way out the last checkpoint
	// includes it; after a failure the reopen starts after it.
	defer func() { _ = tm.reap(true) }()
	lastPoll := time.Now()
	for {
		if err := tm.reap(false); err != nil {
			return err
		}
		// Each poll has a deadline: the server answers an empty poll
		// after MaxAwaitTime, so one that takes much longer is hung and
		// counts as a failure (the feed is reopened, and a stall ends
		// the term) instead of blocking the leader forever.
		pctx, cancel := context.WithTimeout(ctx, tm.cfg.feedOpTimeout())
		got := cs.TryNext(pctx)
		cancel()
		if got {
			tm.progress()
			next, err := tm.handle(ctx, cs.Event())
			if err != nil {
				return err
			}
			if next != nil {
				if cs != first {
					tm.close(ctx, cs)
				}
				cs = next
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := cs.Err(); err != nil {
			if classifyFeedError(err) == feedPipelineUnsupported {
				return tm.pipelineUnsupported(err)
			}
			return fmt.Errorf("read change stream: %w", err)
		}
		tm.progress()
		if !tm.pub.pubFailed {
			// While notices keep failing to publish the notifier is not
			// healthy, however well the feed reads: only an acknowledged
			// notice ends that (publisher.acknowledged).
			tm.health.feedOK()
		}
		if tok := cs.ResumeToken(); tok != nil && !bytes.Equal(tok, tm.at) {
			tm.at = slices.Clone(tok)
		}
		// Idle: keep the checkpoint fresh. The server's post-batch resume
		// token moves on even without changes, which keeps the position
		// inside the oplog window on a quiet collection.
		// The post-batch token is past every change read, so it only
		// stands for them once all their notices are acknowledged (the
		// window is reaped at the top of the loop).
		if tok := cs.ResumeToken(); tok != nil && tm.pending == nil && tm.pub.inFlightCount() == 0 && !bytes.Equal(tok, tm.savedToken) &&
			time.Since(tm.lastCheckpoint) >= idleCheckpointInterval && !tm.afterFeedEnd {
			tm.pending = &checkpoint{Token: slices.Clone(tok)}
		}
		tm.savePending(ctx, false)
		if !tm.sizeConclusive && time.Since(tm.lastSizeProbe) >= sizeProbeInterval {
			tm.probeSize(ctx)
			if tm.serverSize {
				tm.savePending(ctx, true)
				tm.log.Info().Msg("the server evaluates $bsonSize: reopening with projected events")
				return errReopenNow
			}
		}
		// Servers hold an empty poll up to MaxAwaitTime; one that answers
		// at once must not be polled in a tight loop.
		if wait := tm.cfg.IdlePollInterval - time.Since(lastPoll); wait > 0 && !retry.Sleep(ctx, wait) {
			return ctx.Err()
		}
		lastPoll = time.Now()
	}
}

// handle publishes the notices of one event and advances the pending
// checkpoint. It returns a new feed when the event ended this one.
func (tm *term) handle(ctx context.Context, raw bson.Raw) (feedCursor, error) {
	mapper := noticeMapper{prefix: tm.cfg.SubjectPrefix, userIDField: tm.data.UserIDField,
		oversizeBytes: tm.cfg.OversizeBytes, measureFullDocument: !tm.serverSize, ignoreFields: tm.cfg.IgnoreFields}
	mc := mapper.mapChange(raw)
	if mc.Ignored {
		tm.metrics.ignored.Inc()
	}

	if mc.Invalidate {
		return tm.handleInvalidate(ctx, mc)
	}
	var pos *checkpoint
	if mc.Token != nil {
		pos = &checkpoint{Token: mc.Token, ClusterTime: mc.ClusterTime}
	}
	if mc.Flush != "" {
		// Flush-alls are rare and published synchronously, after every
		// earlier notice is acknowledged: the flush is then counted and
		// logged as published only once it is, its position can be
		// checkpointed at once (a forced write may not pass a notice
		// still in flight), and no retry of an earlier notice can land
		// after it.
		if err := tm.reap(true); err != nil {
			return nil, err
		}
		for _, p := range mc.Notices {
			if err := tm.pub.publish(ctx, p, mc.ClusterTime); err != nil {
				return nil, err
			}
		}
	} else {
		for i, p := range mc.Notices {
			var at *checkpoint
			if i == len(mc.Notices)-1 {
				at = pos // the change's position, once all its notices are acknowledged
			}
			acked, err := tm.pub.publishAsync(p, mc.ClusterTime, at)
			if acked != nil {
				tm.pending = acked
			}
			if err != nil {
				return nil, err
			}
		}
		if len(mc.Notices) == 0 && pos != nil {
			if acked := tm.pub.advance(pos); acked != nil {
				tm.pending = acked
			}
		}
	}
	switch mc.Flush {
	case events.FlushCollectionGone:
		tm.log.Warn().Str("operation", mc.Operation).Msg("collection dropped or renamed: published flush-all; watching for it to return")
		tm.hooks.collectionGone()
	case events.FlushUnattributable:
		if ok, held := tm.limiter.allow("unattributable"); ok {
			tm.log.Warn().Str("operation", mc.Operation).Int("suppressed", held).
				Msg("change event names neither a user nor a document _id: published flush-all")
		}
	}
	tm.afterFeedEnd = mc.Flush == events.FlushCollectionGone
	if mc.Oversize {
		tm.metrics.oversize.Inc()
		if ok, held := tm.limiter.allow("oversize"); ok {
			tm.log.Warn().Str("document_id", mc.DocumentID).Int64("bytes", mc.Size).Int("limit", tm.cfg.OversizeBytes).
				Int("suppressed", held).Msg("custom-data document exceeds the size limit")
		}
	}
	if mc.DuplicateCheckUser != "" {
		tm.hooks.changedUser(mc.DuplicateCheckUser)
	}
	if mc.Token != nil {
		tm.at = mc.Token
	}
	if mc.Flush != "" && pos != nil {
		tm.pending = pos
		tm.savePending(ctx, true)
		return nil, nil
	}
	// Otherwise the pending position moves as acknowledgements arrive and
	// is written every CheckpointInterval (and when the term ends): not
	// after every getMore batch, which under load would cost a KV write
	// every few changes.
	if err := tm.reap(false); err != nil {
		return nil, err
	}
	tm.savePending(ctx, false)
	return nil, nil
}

// reap moves the pending position to the last change whose notices, and
// all earlier ones, are acknowledged. With block it waits for every
// notice in flight; if the lease ends first, it returns the lease's cause.
func (tm *term) reap(block bool) error {
	acked, err := tm.pub.reap(block, false)
	if acked != nil {
		tm.pending = acked
	}
	if err == nil {
		if why := tm.noticeStreamMayBeNew(); why != "" {
			// The reopen checks the stream (checkNoticeStream) and, when it
			// is a new one, starts from now after a flush-all.
			tm.log.Info().Str("stream", tm.cfg.Stream).Str("why", why).Msg("the notice stream may have been recreated: reopening to check")
			return errReopenNow
		}
	}
	if err == nil && block && tm.pub.inFlightCount() > 0 {
		err = fmt.Errorf("waiting for notice acknowledgements: %w", context.Cause(tm.pub.leaseCtx))
	}
	return err
}

// handleInvalidate opens the feed that follows an invalidate, then
// publishes its flush-all (unless the drop/rename just before it already
// did) and checkpoints the invalidate token for startAfter.
func (tm *term) handleInvalidate(ctx context.Context, mc mappedChange) (feedCursor, error) {
	if mc.Token == nil {
		return nil, errors.New("invalidate event without a resume token")
	}
	// Every earlier notice is acknowledged before the invalidate's
	// position (forced below) can be checkpointed.
	if err := tm.reap(true); err != nil {
		return nil, err
	}
	next := &checkpoint{Token: mc.Token, StartAfter: true, ClusterTime: mc.ClusterTime}
	cs, err := tm.open(ctx, next)
	if err != nil {
		// Retried from the last checkpoint, which precedes the invalidate.
		return nil, fmt.Errorf("reopen change stream after invalidate: %w", err)
	}
	if !tm.afterFeedEnd {
		for _, p := range mc.Notices {
			if err := tm.pub.publish(ctx, p, mc.ClusterTime); err != nil {
				tm.close(ctx, cs)
				return nil, err
			}
		}
		tm.log.Warn().Msg("change stream invalidated: published flush-all; watching again")
	}
	tm.afterFeedEnd = false
	tm.at = next.Token
	tm.pending = next
	tm.savePending(ctx, true)
	return cs, nil
}

package notify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/outage"
)

// openFeed opens the change feed at the checkpoint, or from now with
// the flush reason that says why (no checkpoint, an unusable one, a
// position the server lost, refuses or cannot reach in time). An error
// leaves the position's counts updated for the next attempt.
func (tm *term) openFeed(ctx context.Context) (feedCursor, events.FlushReason, error) {
	cp, found, err := tm.startPosition(ctx)
	var flush events.FlushReason
	switch {
	case errors.Is(err, errCheckpointSuperseded):
		flush, found = events.FlushCheckpointSuperseded, false // checkSuperseded logged it
	case errors.Is(err, errNoticeStreamLost):
		flush, found = events.FlushNoticeStreamLost, false // logged where found
	case errors.Is(err, errCheckpointUnusable):
		tm.log.Warn().Err(err).Msg("checkpoint unusable: starting from now after a flush-all")
		flush, found = events.FlushBadCheckpoint, false
	case err != nil:
		return nil, "", err
	}
	if found && tm.distrust != "" {
		if tm.distrust != events.FlushPositionUnreadable { // refused logged that one
			tm.log.Warn().Str("reason", string(tm.distrust)).Msg("the server cannot resume from the checkpoint: starting from now after a flush-all")
		}
		flush, found = tm.distrust, false
	}

	var cs feedCursor
	if found {
		tm.at = cp.Token
		cs, err = tm.open(ctx, &cp)
		if err != nil {
			class := classifyFeedError(err)
			switch class {
			case feedPipelineUnsupported:
				return nil, "", tm.pipelineUnsupported(err)
			case feedHistoryLost, feedTokenInvalid:
				flush = flushReasonForRefusedToken(class)
			case feedTimedOut:
				if n := tm.openTimedOut(cp.Token); n < maxOpenTimeouts {
					return nil, "", fmt.Errorf("resume change stream (timed out %d times at this position; next open may take %s): %w",
						n, tm.openTimeout(tm.cfg.feedOpTimeout()), err)
				}
				flush = events.FlushPositionUnreadable
			default:
				// Transient, or refused: run counts identical refusals
				// at one position (maxPositionRefusals).
				return nil, "", fmt.Errorf("resume change stream: %w", err)
			}
			// The position is lost, invalid or cannot be reached in time.
			// Opening without the token tells a refused token from a
			// refused stream.
			refused := err
			cs, err = tm.open(ctx, nil)
			if err != nil {
				return nil, "", fmt.Errorf("open change stream after the checkpoint was refused (%v): %w", refused, err)
			}
			tm.log.Warn().Str("class", class.String()).Int("code", outage.FirstCode(refused)).Str("reason", string(flush)).
				Int("attempts", max(1, tm.openTimeouts)).
				Msg("the server cannot resume from the checkpoint: starting from now after a flush-all")
		}
	} else {
		if flush == "" {
			flush = events.FlushNoCheckpoint
		}
		if cs, err = tm.open(ctx, nil); err != nil {
			if classifyFeedError(err) == feedPipelineUnsupported {
				return nil, "", tm.pipelineUnsupported(err)
			}
			if tm.distrust == events.FlushPositionUnreadable {
				// The feed fails from now too: the position was not the
				// cause. Back to the checkpoint, counting afresh.
				tm.trustAgain()
				tm.log.Info().Msg("the change stream cannot be opened from now either: resuming from the checkpoint again")
			}
			return nil, "", fmt.Errorf("open change stream: %w", err)
		}
	}
	return cs, flush, nil
}

// pipelineUnsupported switches to worker-side sizing when the server
// rejected the $bsonSize pipeline.
func (tm *term) pipelineUnsupported(err error) error {
	if !tm.serverSize {
		if tm.part.partitioned() {
			return fmt.Errorf("change stream pipeline refused: %w (the partition filter needs $toHashedIndexKey: %w)", err, ErrPartitionsUnsupported)
		}
		return fmt.Errorf("change stream pipeline refused: %w", err)
	}
	tm.serverSize, tm.sizeConclusive = false, true
	tm.localSizeWarned.Store(true)
	tm.log.Warn().Int("code", outage.FirstCode(err)).
		Msg("the server cannot evaluate $bsonSize: reopening with whole documents, sized by the worker")
	return errReopenNow
}

// open opens the change feed. The deadline (which the driver also sends
// as maxTimeMS) turns an open that hangs (a server or path that accepts
// connections but never answers) into a failure; the driver keeps no
// reference to ctx once Watch returns.
func (tm *term) open(ctx context.Context, from *checkpoint) (feedCursor, error) {
	octx, cancel := context.WithTimeout(ctx, tm.openTimeout(tm.cfg.feedOpTimeout()))
	defer cancel()
	pipeline, opts := feedPipeline(tm.data.UserIDField, tm.serverSize, tm.part), feedOptions(tm.cfg, from)
	return tm.feeds.open(octx, pipeline, from, opts)
}

// close closes cs, bounded like a poll (killCursors on a hung connection
// would otherwise wait).
func (tm *term) close(ctx context.Context, cs feedCursor) {
	closeFeed(ctx, cs, tm.cfg.feedOpTimeout())
}

// closeFeed closes cs even when ctx has ended, waiting at most
// timeout.
func closeFeed(ctx context.Context, cs interface{ Close(context.Context) error }, timeout time.Duration) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	_ = cs.Close(cctx)
}

package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"
)

// startPosition is where a (re)opened stream starts: the stored
// checkpoint, or this term's own position when that is newer. The
// term's position only moves past a change once its notices are
// acknowledged (or over a fully read empty batch), so resuming there
// leaves no gap; it spares re-publishing what the store has not caught up
// with, and a reopen does not depend on reading the store. A stored
// checkpoint superseded by another partition count's (checkSuperseded) is
// not resumed: the term's own position is, if it has one; else the error
// (wrapping errCheckpointSuperseded) calls for a start from now.
func (tm *term) startPosition(ctx context.Context) (checkpoint, bool, error) {
	if err := tm.checkNoticeStream(ctx); err != nil {
		return checkpoint{}, false, err
	}
	mem := tm.pending
	if mem == nil {
		mem = tm.saved
	}
	stored, found, err := tm.store.load(ctx)
	if err == nil && found && tm.storedStreamLost(stored) {
		tm.log.Warn().Str("stream", tm.cfg.Stream).Str("checkpoint_stream_created", stored.NoticeStream).
			Str("now_created", tm.noticeStream.id).Uint64("revision", stored.revision).
			Msg("the checkpoint counts notices acknowledged by a notice stream that was recreated since " +
				"(they may be lost): not resuming it")
		if mem == nil {
			return checkpoint{}, false, fmt.Errorf("%w: checkpoint %s (revision %d) written for the stream created %s, now %s",
				errNoticeStreamLost, tm.store.key, stored.revision, stored.NoticeStream, tm.noticeStream.id)
		}
		found = false // the term's own position, acknowledged by the current stream, goes on
	}
	switch {
	case err == nil && found:
		if serr := tm.checkSuperseded(ctx, stored); serr != nil {
			if mem == nil {
				return checkpoint{}, false, serr
			}
			found = false
		}
	case err == nil || errors.Is(err, errCheckpointUnusable):
		tm.supersede.done = true // the term starts from now: nothing to check
	}
	if mem == nil || (err == nil && found && !tm.ownIsNewer(*mem, stored)) {
		return stored, found, err
	}
	if err != nil {
		tm.log.Debug().Err(err).Msg("checkpoint not readable: resuming from this term's own position")
	}
	return *mem, true, nil
}

// ownIsNewer reports whether the term's position mem is past stored.
// When stored is not what this term last wrote (a deposed leader's
// final write can land late), positions are compared by cluster time;
// without one on either side the store wins, as before. Either choice
// is gap-free: every writer stores only acknowledged positions.
func (tm *term) ownIsNewer(mem, stored checkpoint) bool {
	if tm.saved != nil && bytes.Equal(stored.Token, tm.saved.Token) {
		return true
	}
	if mem.ClusterTime == nil || stored.ClusterTime == nil {
		return false
	}
	a, b := *mem.ClusterTime, *stored.ClusterTime
	return a.T > b.T || (a.T == b.T && a.I > b.I)
}

// savePending writes the pending checkpoint when forced or when the last
// write is older than CheckpointInterval. A failed write keeps it pending:
// the checkpoint only lags, which costs duplicates on restart, never gaps.
func (tm *term) savePending(ctx context.Context, force bool) {
	if tm.pending == nil || ctx.Err() != nil || (!force && time.Since(tm.lastCheckpoint) < tm.cfg.CheckpointInterval) {
		return // on the way out run writes it with a fresh context
	}
	cp := *tm.pending
	cp.Instance = tm.cfg.InstanceID
	cp.NoticeStream = tm.noticeStream.id
	cp.NoticeSeq = tm.watch.highest()
	cp.WrittenAt = time.Now().UTC()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := tm.store.save(wctx, cp); err != nil {
		if ctx.Err() != nil {
			return // stopping: run writes it on the way out
		}
		if ok, held := tm.limiter.allow("checkpoint"); ok {
			tm.log.Warn().Err(err).Int("suppressed", held).Msg("checkpoint write failed; will retry")
		}
		return
	}
	tm.pending = nil
	tm.saved = &cp
	tm.savedToken = cp.Token
	tm.lastCheckpoint = cp.WrittenAt
	tm.metrics.checkpointWritten(tm.part, cp.WrittenAt)
}

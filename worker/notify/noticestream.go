package notify

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A position counts notices as delivered once the notice stream
// acknowledged them. If that stream is recreated (deleted, or lost with a
// NATS server restarted on an empty store), those notices are gone, and an
// issuer that was not reading at that moment never sees them. So every
// checkpoint names the stream that acknowledged its notices, by the
// stream's creation time, and a position whose stream is not the current
// one is not resumed: the term starts from now after a notice_stream_lost
// flush-all. Without it, a term that ended after another replica had
// provisioned the wiped buckets again wrote its last checkpoint into the
// new bucket, and the next term resumed it with no flush-all at all.

// noticeStreamCheck is what a term knows of the notice stream.
type noticeStreamCheck struct {
	// id is the notice stream this term's notices went to (streamID), ""
	// until read.
	id string
	// reprovisions is the Notifier's count of re-provisionings when the
	// term last checked the stream.
	reprovisions uint64
	// lastSeq is the stream's last sequence when the term last checked.
	lastSeq uint64
	// unreadableWarned: the stream's info could not be read, said once
	// per term.
	unreadableWarned bool
}

// streamWatch sees, from the sequences the notice stream acknowledges a
// slot's publishes at (notices, flush-alls, heartbeats), that the stream
// was recreated: a recreated stream starts again at 1. Heartbeats go every
// few seconds, so an idle leader notices too. One per slot, shared by its
// terms and its heartbeat goroutine.
//
// Acknowledgements of concurrent publishes (the heartbeat beside pipelined
// notices) are handled in no particular order, so a lower sequence than
// the highest seen proves nothing. What does: a message sent after
// sequence S was acknowledged is stored after S. So each publish takes the
// floor (the highest sequence acknowledged when it was sent), and only an
// acknowledgement at or below its own floor counts as lower. A duplicate's
// acknowledgement carries the first copy's sequence and is skipped.
type streamWatch struct {
	mu    sync.Mutex
	last  uint64
	lower bool
}

// floor is the highest sequence acknowledged so far: take it just before
// a publish and hand it to stored with the publish's acknowledgement.
func (w *streamWatch) floor() uint64 {
	if w == nil {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// stored notes a publish's acknowledgement (nil: none), given the floor
// taken before it was sent. A nil watch (a publisher built without one)
// notes nothing.
func (w *streamWatch) stored(ack *jetstream.PubAck, floor uint64) {
	if w == nil || ack == nil || ack.Duplicate {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if ack.Sequence <= floor {
		w.lower = true
	}
	w.last = max(w.last, ack.Sequence)
}

// sawLower reports, once, that a store came back lower than an earlier
// one, and starts counting again from the stream as it is.
func (w *streamWatch) sawLower() bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.lower {
		return false
	}
	w.lower, w.last = false, 0
	return true
}

// restart measures later stores against the stream as it was just read
// (its last sequence): what was seen before may be another stream's.
func (w *streamWatch) restart(lastSeq uint64) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lower, w.last = false, lastSeq
}

// highest is the highest sequence seen since the last restart (or the
// stream's last sequence then): every notice before it was stored.
func (w *streamWatch) highest() uint64 {
	if w == nil {
		return 0
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// noticeStreamMayBeNew says why the term should check its notice stream
// again ("" when nothing suggests it): a store at a lower sequence, or a
// re-provisioning (by the heartbeats, a failed publish or another slot)
// since the term last checked.
func (tm *term) noticeStreamMayBeNew() string {
	if tm.watch.sawLower() {
		return "a notice was stored at a lower sequence than an earlier one"
	}
	if loadCount(tm.reprovisions) != tm.noticeStream.reprovisions {
		return "the notifier provisioned missing JetStream resources again"
	}
	return ""
}

// streamID names a stream by its creation time. The server keeps it across
// restarts, and a clustered stream has one creation time on every node (it
// is part of the stream's assignment), so it changes only when the stream
// is created anew.
func streamID(created time.Time) string { return created.UTC().Format(time.RFC3339Nano) }

// readNoticeStream returns the notice stream's id and last sequence now.
func (tm *term) readNoticeStream(ctx context.Context) (string, uint64, error) {
	sctx, cancel := context.WithTimeout(ctx, tm.cfg.feedOpTimeout())
	defer cancel()
	s, err := tm.js.Stream(sctx, tm.cfg.Stream)
	if err != nil {
		return "", 0, fmt.Errorf("read notice stream %s: %w", tm.cfg.Stream, err)
	}
	info := s.CachedInfo()
	return streamID(info.Created), info.State.LastSeq, nil
}

// checkNoticeStream reads the notice stream at a (re)open. When the term's
// notices went to another stream than the one there now, the term's own
// position counts notices that may be lost: it is dropped, and the error
// (wrapping errNoticeStreamLost) calls for a start from now. A stream that
// cannot be read leaves everything as it was: the open that follows needs
// NATS only to publish, and the next open checks again.
func (tm *term) checkNoticeStream(ctx context.Context) error {
	tm.noticeStream.reprovisions = loadCount(tm.reprovisions)
	cur, lastSeq, err := tm.readNoticeStream(ctx)
	if err != nil {
		if !tm.noticeStream.unreadableWarned && ctx.Err() == nil {
			tm.log.Warn().Err(err).Msg("notice stream info not readable: cannot tell whether it was recreated " +
				"(the worker's NATS user needs STREAM.INFO on it); checkpoints written now name no stream")
			tm.noticeStream.unreadableWarned = true
		}
		return nil
	}
	// Sequences seen so far are measured against the stream as it is now.
	seen := tm.watch.highest()
	tm.watch.restart(lastSeq)
	prev := tm.noticeStream.id
	tm.noticeStream.id, tm.noticeStream.lastSeq = cur, lastSeq
	if prev == "" || (prev == cur && lastSeq >= seen) {
		return nil
	}
	tm.pending, tm.saved, tm.savedToken = nil, nil, nil
	tm.log.Warn().Str("stream", tm.cfg.Stream).Str("was_created", prev).Str("now_created", cur).
		Uint64("seen_seq", seen).Uint64("last_seq", lastSeq).
		Msg("the notice stream was recreated, or lost messages, while this term published to it: notices it held may be lost; " +
			"starting from now after a flush-all")
	return fmt.Errorf("%w: %s created %s, now %s; sequence %d seen, last now %d", errNoticeStreamLost, tm.cfg.Stream, prev, cur, seen, lastSeq)
}

// storedStreamLost reports whether stored was acknowledged by a notice
// stream other than the current one, or by this one before it lost
// messages (its last sequence is below what the writer saw). Checkpoints that name no stream
// (written before checkpoints did, or when the stream was unreadable) are
// trusted, as they were before.
func (tm *term) storedStreamLost(stored checkpoint) bool {
	if stored.NoticeStream == "" || tm.noticeStream.id == "" {
		return false
	}
	return stored.NoticeStream != tm.noticeStream.id || stored.NoticeSeq > tm.noticeStream.lastSeq
}

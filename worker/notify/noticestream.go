package notify

import (
	"context"
	"fmt"
	"time"
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
}

// streamID names a stream by its creation time. The server keeps it across
// restarts, and a clustered stream has one creation time on every node (it
// is part of the stream's assignment), so it changes only when the stream
// is created anew.
func streamID(created time.Time) string { return created.UTC().Format(time.RFC3339Nano) }

// readNoticeStream returns the notice stream's id now.
func (tm *term) readNoticeStream(ctx context.Context) (string, error) {
	sctx, cancel := context.WithTimeout(ctx, tm.cfg.feedOpTimeout())
	defer cancel()
	s, err := tm.js.Stream(sctx, tm.cfg.Stream)
	if err != nil {
		return "", fmt.Errorf("read notice stream %s: %w", tm.cfg.Stream, err)
	}
	return streamID(s.CachedInfo().Created), nil
}

// checkNoticeStream reads the notice stream at a (re)open. When the term's
// notices went to another stream than the one there now, the term's own
// position counts notices that may be lost: it is dropped, and the error
// (wrapping errNoticeStreamLost) calls for a start from now. A stream that
// cannot be read leaves everything as it was: the open that follows needs
// NATS only to publish, and the next open checks again.
func (tm *term) checkNoticeStream(ctx context.Context) error {
	cur, err := tm.readNoticeStream(ctx)
	if err != nil {
		tm.log.Debug().Err(err).Msg("notice stream not readable: cannot tell whether it was recreated")
		return nil
	}
	prev := tm.noticeStream.id
	tm.noticeStream.id = cur
	if prev == "" || prev == cur {
		return nil
	}
	tm.pending, tm.saved, tm.savedToken = nil, nil, nil
	tm.log.Warn().Str("stream", tm.cfg.Stream).Str("was_created", prev).Str("now_created", cur).
		Msg("the notice stream was recreated while this term published to it: notices it held may be lost; " +
			"starting from now after a flush-all")
	return fmt.Errorf("%w: %s created %s, now %s", errNoticeStreamLost, tm.cfg.Stream, prev, cur)
}

// storedStreamLost reports whether stored was acknowledged by a notice
// stream other than the current one. Checkpoints that name no stream
// (written before checkpoints did, or when the stream was unreadable) are
// trusted, as they were before.
func (tm *term) storedStreamLost(stored checkpoint) bool {
	return stored.NoticeStream != "" && tm.noticeStream.id != "" && stored.NoticeStream != tm.noticeStream.id
}

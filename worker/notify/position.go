package notify

import (
	"bytes"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
)

// maxOpenTimeouts bounds how often in a row opening the feed at one
// position may end in the server's time limit (MaxTimeMSExpired). Each
// retry doubles the open's time limit; past the bound the feed starts
// from now after a flush-all (position_unreadable).
const maxOpenTimeouts = 3

// maxPositionRefusals is how often in a row the server may refuse, with
// the same error, to open or read the feed at one position before the
// position counts as unreadable (e.g. BSONObjectTooLarge for a change
// whose event exceeds 16 MB): the feed then starts from now after a
// flush-all (position_unreadable) instead of reopening there forever.
const maxPositionRefusals = 3

// feedPosition is where the feed is and how the server has treated it
// there: opens that ran out of the server's time limit and identical
// refusals, counted in a row at one position, and the verdict they lead
// to (distrust: the next open starts from now with that flush reason).
// Its rules are here; the term acts on them.
type feedPosition struct {
	// at is the feed's position: where it was opened, then the token of
	// the last event or post-batch resume token read. An error repeated
	// here tells a position the server cannot read from a failing server.
	at []byte
	// distrust: the server said, while reading, that the checkpoint's
	// history is gone (or refused the position maxPositionRefusals
	// times); the next open starts from now with this flush.
	distrust events.FlushReason
	// openTimeouts counts opens at timeoutAt that ran out of the server's
	// time limit in a row.
	openTimeouts int
	timeoutAt    []byte
	// refusals counts identical refusals (refusedCode) at refusedAt in a
	// row.
	refusals    int
	refusedAt   []byte
	refusedCode int
}

// openTimeout is the time limit of the next open: base (a poll's),
// doubled for each open in a row that ran out of the server's time limit
// at the position (up to maxOpenTimeouts-1 doublings).
func (p *feedPosition) openTimeout(base time.Duration) time.Duration {
	return base << min(p.openTimeouts, maxOpenTimeouts-1)
}

// openTimedOut records that opening at pos ran out of the server's time
// limit and returns how often in a row it did at pos.
func (p *feedPosition) openTimedOut(pos []byte) int {
	if !bytes.Equal(pos, p.timeoutAt) {
		p.openTimeouts, p.timeoutAt = 0, pos
	}
	p.openTimeouts++
	return p.openTimeouts
}

// widening reports whether the last failures were opens timing out at
// one position whose time limit is still being widened (bounded by
// maxOpenTimeouts): a server that answers, not a stall.
func (p *feedPosition) widening() bool {
	return p.openTimeouts > 0 && p.openTimeouts < maxOpenTimeouts
}

// refused records a refusal with code at the feed's position. It reports
// true when this refusal made the position unreadable: the same refusal
// maxPositionRefusals times in a row there (the next open then starts
// from now after a flush-all; the caller logs it, once).
func (p *feedPosition) refused(code int) bool {
	if p.at == nil {
		return false // no position to blame: the next open starts from the checkpoint
	}
	if p.refusals == 0 || code != p.refusedCode || !bytes.Equal(p.at, p.refusedAt) {
		p.refusals, p.refusedCode, p.refusedAt = 0, code, p.at
	}
	p.refusals++
	if p.refusals == maxPositionRefusals && p.distrust == "" {
		p.distrust = events.FlushPositionUnreadable
		return true
	}
	return false
}

// trustAgain forgets the verdict that the position is unreadable: the
// feed failed from now too, so the position was not the cause.
func (p *feedPosition) trustAgain() { p.distrust, p.refusals = "", 0 }

// opened records a successful open; flushed says it started from now
// (after a flush-all), which ends the count of refusals too.
func (p *feedPosition) opened(flushed bool) {
	p.distrust = ""
	p.openTimeouts, p.timeoutAt = 0, nil
	if flushed {
		p.refusals = 0
	}
}

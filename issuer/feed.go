package issuer

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// feed is a cache's following of the notice stream: where it is in the
// stream's sequence, and the notifier's heartbeats.
type feed struct {
	js  jetstream.JetStream
	cfg NoticeConfig
	// checkEvery is how often a followed stream's identity is checked
	// (tests shorten it).
	checkEvery time.Duration
	// requestLimit bounds each JetStream request (tests shorten it;
	// default 10s).
	requestLimit time.Duration
	// stillDownEvery is how often a continuing failure to follow is
	// logged again (tests shorten it).
	stillDownEvery time.Duration

	running sync.Mutex // one Run at a time
	seqMu   sync.Mutex
	gen     uint64    // consumer generation: a late delivery of an older consumer is not sequenced
	next    uint64    // stream sequence expected next
	created time.Time // creation time of the stream last followed (zero: none yet)

	beats leaderBeats   // the notifier's heartbeats, per partition (or the follow's start)
	beat  chan struct{} // a heartbeat arrived (capacity 1)
}

func (f *feed) requestTimeout() time.Duration {
	if f.requestLimit > 0 {
		return f.requestLimit
	}
	return 10 * time.Second
}

func (f *feed) checkInterval() time.Duration {
	if f.checkEvery > 0 {
		return f.checkEvery
	}
	return 30 * time.Second
}

// resetBy reports why info shows a different stream from the one last
// followed ("" if it does not): another creation time, or a last sequence
// below one already delivered. Called with seqMu held.
func (f *feed) resetBy(info *jetstream.StreamInfo) string {
	switch {
	case f.created.IsZero():
		return ""
	case !info.Created.Equal(f.created):
		return "creation time changed"
	case info.State.LastSeq+1 < f.next:
		return "last sequence went backwards"
	}
	return ""
}

// advance records that stream sequence seq was delivered by consumer
// generation gen and reports whether sequences were skipped before it. A
// sequence at or below the last one is a redelivery: harmless, the notice
// is applied again. A delivery of an older consumer (one that was
// stopped) is applied but not sequenced.
func (f *feed) advance(gen, seq uint64) (expected uint64, gap bool) {
	f.seqMu.Lock()
	defer f.seqMu.Unlock()
	if gen != f.gen {
		return f.next, false
	}
	expected = f.next
	if seq >= f.next {
		f.next = seq + 1
	}
	return expected, seq > expected
}

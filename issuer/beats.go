package issuer

import (
	"sync"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
)

// leaderBeats tells whether the worker's notifier is heard: every
// partition of its change stream has a heartbeat within the leader
// timeout. A heartbeat names its partition and their count (absent:
// partition 0 of 1, as every worker before partitions sent). Heartbeats
// are kept per count, so during a rolling change of NOTIFIER_PARTITIONS
// the old and the new replicas' heartbeats do not mix: the notifier is
// alive while the partitions of one count are all heard. A count first
// heard at some moment gives its unheard partitions until that moment plus
// the timeout (as the start of following does for the whole collection).
type leaderBeats struct {
	mu      sync.Mutex
	byCount map[int]*beatLayout
}

type beatLayout struct {
	since time.Time   // first heard (or the start of following)
	heard []time.Time // per partition, last heard (zero: not yet)
}

// start forgets every heartbeat and counts now as one of an unpartitioned
// notifier: a leader's first heartbeat is at most its interval away.
func (b *leaderBeats) start(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.byCount = map[int]*beatLayout{1: {since: now, heard: []time.Time{now}}}
}

// heard records a heartbeat of partition part of count at now.
func (b *leaderBeats) heard(part, count int, now time.Time) {
	if count < 1 || count > events.MaxNoticePartitions || part < 0 || part >= count {
		part, count = 0, 1
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.byCount == nil {
		b.byCount = map[int]*beatLayout{}
	}
	l := b.byCount[count]
	if l == nil {
		l = &beatLayout{since: now, heard: make([]time.Time, count)}
		b.byCount[count] = l
	}
	l.heard[part] = now
}

// silence returns how long the notifier has not been fully heard: zero
// while some count has every partition heard within timeout, else the
// shortest time any count's least recent partition has been silent, and
// the partitions of that count that are silent.
func (b *leaderBeats) silence(now time.Time, timeout time.Duration) (silent time.Duration, of int, missing []int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	silent = -1
	for count, l := range b.byCount {
		var worst time.Duration
		var gone []int
		for p, at := range l.heard {
			if at.IsZero() {
				at = l.since
			}
			if d := now.Sub(at); d > timeout {
				gone = append(gone, p)
				worst = max(worst, d)
			}
		}
		if len(gone) == 0 {
			return 0, count, nil
		}
		if silent < 0 || worst < silent {
			silent, of, missing = worst, count, gone
		}
	}
	return max(silent, 0), of, missing
}

package chaos

import (
	"sync"
	"sync/atomic"
	"time"
)

// ledger is what the workload published and JetStream acknowledged, and
// where: the expected end state. An acknowledged event is certain to take
// effect unless a lone server lost its store before the worker consumed it
// (faultClock.applied): only those events, acknowledged by the wiped store
// and not yet passed by an ack floor read there (or whose publish
// straddled the wipe), may be missing at the end. Everything else is held
// to the strict rule, before and after any wipe.
type ledger struct {
	mu sync.Mutex
	// loginAcks: by user, every LOGIN time acknowledged and where (the
	// same time may be acknowledged more than once: a copy, a retry).
	loginAcks map[string]map[time.Time][]ackPos
	hostile   []*hostileEvent

	logins, duplicates atomic.Int64
}

// hostileEvent is one hostile event JetStream acknowledged.
type hostileEvent struct {
	msgID  string // its Nats-Msg-Id, which its dead letter names
	kind   string
	reason string // the Dlq-Reason the worker must give it
	user   string // the user it aims at
	ack    ackPos
}

func newLedger() *ledger {
	return &ledger{loginAcks: map[string]map[time.Time][]ackPos{}}
}

func (l *ledger) login(user string, at time.Time, pos ackPos) {
	l.mu.Lock()
	defer l.mu.Unlock()
	byTime := l.loginAcks[user]
	if byTime == nil {
		byTime = map[time.Time][]ackPos{}
		l.loginAcks[user] = byTime
	}
	byTime[at] = append(byTime[at], pos)
}

func (l *ledger) hostileAcked(ev *hostileEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hostile = append(l.hostile, ev)
}

// hostileByKind counts the hostile events acknowledged, by kind.
func (l *ledger) hostileByKind() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := map[string]int{}
	for _, ev := range l.hostile {
		n[ev.kind]++
	}
	return n
}

func (l *ledger) hostileTotal() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.hostile)
}

// expectedLogin is what a user's lastLogin may be: newest, the newest LOGIN
// certain to have been applied (zero when none is), or any LOGIN newer than
// it whose outcome a wipe made uncertain.
type expectedLogin struct {
	newest time.Time
	maybe  map[time.Time]bool
}

func (e expectedLogin) allows(got time.Time) bool {
	return got.Equal(e.newest) || (got.After(e.newest) && e.maybe[got])
}

// expectedLogins is expectedLogin for every user with an acknowledged
// LOGIN, and how many acknowledged LOGINs a wipe made uncertain.
func (l *ledger) expectedLogins(clock *faultClock, finalEpoch int) (map[string]expectedLogin, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]expectedLogin, len(l.loginAcks))
	uncertain := 0
	for u, byTime := range l.loginAcks {
		var e expectedLogin
		var maybe []time.Time
		for at, acks := range byTime {
			certain := false
			for _, p := range acks {
				if clock.applied(p, finalEpoch) {
					certain = true
					break
				}
			}
			switch {
			case certain && at.After(e.newest):
				e.newest = at
			case !certain:
				maybe = append(maybe, at)
				uncertain++
			}
		}
		for _, at := range maybe {
			if at.After(e.newest) {
				if e.maybe == nil {
					e.maybe = map[time.Time]bool{}
				}
				e.maybe[at] = true
			}
		}
		out[u] = e
	}
	return out, uncertain
}

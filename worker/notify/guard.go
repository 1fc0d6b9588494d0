package notify

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// logLimiter lets one warning per kind through per interval and
// counts what it held back, so a flood of odd events costs one log line
// per interval.
type logLimiter struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]time.Time
	held  map[string]int
}

func newLogLimiter(every time.Duration) *logLimiter {
	return &logLimiter{every: every, last: map[string]time.Time{}, held: map[string]int{}}
}

// allow reports whether a warning of kind may be logged now, and how many
// were suppressed since the last one.
func (l *logLimiter) allow(kind string) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if last, seen := l.last[kind]; seen && now.Sub(last) < l.every {
		l.held[kind]++
		return false, 0
	}
	l.last[kind] = now
	suppressed = l.held[kind]
	l.held[kind] = 0
	return true, suppressed
}

// boundedSet remembers up to max strings; when full it forgets the oldest.
type boundedSet struct {
	max   int
	items map[string]struct{}
	order []string // ring of insertion order
	next  int
}

func newBoundedSet(max int) *boundedSet {
	return &boundedSet{max: max, items: make(map[string]struct{}, max)}
}

// add inserts s and reports whether it was new.
func (b *boundedSet) add(s string) bool {
	if _, ok := b.items[s]; ok {
		return false
	}
	if len(b.order) < b.max {
		b.order = append(b.order, s)
	} else {
		delete(b.items, b.order[b.next])
		b.order[b.next] = s
		b.next = (b.next + 1) % b.max
	}
	b.items[s] = struct{}{}
	return true
}

func (b *boundedSet) len() int { return len(b.items) }

// duplicateUserGuard checks, off the publish path, whether a changed user
// has more than one document. Checks are queued without blocking; when the
// queue is full a check is skipped (the guard is a diagnostic, the notice
// is published either way).
type duplicateUserGuard struct {
	coll    *mongo.Collection
	field   string
	metrics *notifierMetrics
	log     zerolog.Logger
	queue   chan string
	warned  *boundedSet // only touched by run
}

const duplicateGuardQueue = 256

func newDuplicateUserGuard(coll *mongo.Collection, field string, m *notifierMetrics, log zerolog.Logger) *duplicateUserGuard {
	return &duplicateUserGuard{coll: coll, field: field, metrics: m, log: log,
		queue: make(chan string, duplicateGuardQueue), warned: newBoundedSet(duplicateUserMemory)}
}

// enqueue asks for a check of user; it never blocks.
func (g *duplicateUserGuard) enqueue(user string) {
	select {
	case g.queue <- user:
	default:
	}
}

// run performs queued checks until ctx ends.
func (g *duplicateUserGuard) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case user := <-g.queue:
			g.check(ctx, user)
		}
	}
}

func (g *duplicateUserGuard) check(ctx context.Context, user string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := g.coll.CountDocuments(ctx, bson.D{{Key: g.field, Value: user}}, options.Count().SetLimit(2))
	if err != nil {
		g.log.Debug().Err(err).Msg("duplicate-user check failed")
		return
	}
	if n < 2 {
		return
	}
	g.metrics.duplicateUser.Inc()
	if g.warned.add(user) {
		g.log.Warn().Str("user_id", user).Str("field", g.field).
			Msg("a changed user has more than one custom-data document; issuers may read either (warned once per user)")
	}
}

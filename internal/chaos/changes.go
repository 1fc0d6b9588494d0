package chaos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/events"
)

// changeRec is one change committed to the collection.
type changeRec struct {
	op    string
	docID string // "" for a change of the collection (drop, rename)
	ct    events.ClusterTime
}

// changeLog is every change committed to the collection from the moment
// the workload starts, as the harness's own change stream saw it: the
// truth the notices are checked against. It reads documentKey and
// clusterTime only (no updateLookup: on the stand-in each lookup scans the
// collection), in batches of up to changeBatch, polling twice a second.
type changeLog struct {
	mu   sync.Mutex
	recs []changeRec
	// lost: the harness's stream could not resume (history lost, a
	// refusal, no resume token); the changes of the gap are unknown.
	lost error
	// caughtUp is closed and replaced at every poll that found nothing
	// new: the stream had read every change committed before it.
	caughtUp chan struct{}
}

// waitCaughtUp waits until the stream has read every change committed
// before the call (a poll begun after it found nothing new).
func (l *changeLog) waitCaughtUp(ctx context.Context, within time.Duration) error {
	for range 2 { // the first poll that ends may have begun before the call
		l.mu.Lock()
		ch := l.caughtUp
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(within):
			return fmt.Errorf("the harness's change stream did not catch up within %s", within)
		}
	}
	return nil
}

func (l *changeLog) pollEmpty() {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.caughtUp)
	l.caughtUp = make(chan struct{})
}

const (
	changeBatch = 5000
	changePoll  = 500 * time.Millisecond
)

func (l *changeLog) snapshot() ([]changeRec, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.recs), l.lost
}

// recordChanges opens the harness's change stream on the collection and
// follows it, resuming after every outage, until the returned stop is
// called.
func (h *harness) recordChanges(ctx context.Context) (*changeLog, func(), error) {
	cs, err := h.coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetBatchSize(changeBatch))
	if err != nil {
		return nil, nil, fmt.Errorf("the harness's change stream: %w", err)
	}
	log := &changeLog{caughtUp: make(chan struct{})}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		log.follow(rctx, h.coll, cs)
	}()
	return log, func() { cancel(); <-done }, nil
}

func (l *changeLog) follow(ctx context.Context, coll *mongo.Collection, cs *mongo.ChangeStream) {
	defer func() {
		if cs != nil {
			_ = cs.Close(context.WithoutCancel(ctx))
		}
	}()
	wait := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(changePoll):
			return true
		}
	}
	for ctx.Err() == nil {
		if cs.TryNext(ctx) {
			l.add(cs.Current)
			if cs.RemainingBatchLength() == 0 && !wait() {
				return
			}
			continue
		}
		if err := cs.Err(); err != nil && ctx.Err() == nil {
			token := cs.ResumeToken()
			_ = cs.Close(context.WithoutCancel(ctx))
			if cs = l.resume(ctx, coll, token, err); cs == nil {
				return
			}
			continue
		}
		l.pollEmpty()
		if !wait() {
			return
		}
	}
}

// resume reopens the stream after token, retrying while MongoDB is
// unreachable; nil when ctx ended or the stream cannot resume (recorded
// as lost).
func (l *changeLog) resume(ctx context.Context, coll *mongo.Collection, token bson.Raw, cause error) *mongo.ChangeStream {
	if token == nil {
		l.setLost(fmt.Errorf("no resume token after %w", cause))
		return nil
	}
	for ctx.Err() == nil {
		cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetBatchSize(changeBatch).SetResumeAfter(token))
		if err == nil {
			return cs
		}
		var se mongo.ServerError
		if errors.As(err, &se) && !mongo.IsNetworkError(err) && !mongo.IsTimeout(err) {
			// The server answered and refused: it cannot resume there.
			l.setLost(fmt.Errorf("resume after %v: %w", cause, err))
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(changePoll):
		}
	}
	return nil
}

func (l *changeLog) setLost(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost == nil {
		l.lost = err
	}
}

func (l *changeLog) add(ev bson.Raw) {
	rec := changeRec{op: lookupStr(ev, "operationType")}
	if t, i, ok := ev.Lookup("clusterTime").TimestampOK(); ok {
		rec.ct = events.ClusterTime{T: t, I: i}
	}
	if key, ok := ev.Lookup("documentKey").DocumentOK(); ok {
		rec.docID = events.DocumentID(key.Lookup("_id"))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, rec)
}

func lookupStr(doc bson.Raw, key string) string {
	s, _ := doc.Lookup(key).StringValueOK()
	return s
}

// clusterTimeBefore orders cluster times.
func clusterTimeBefore(a, b events.ClusterTime) bool {
	return a.T < b.T || (a.T == b.T && a.I < b.I)
}

// verifyChangesAnnounced: every change committed while the workload ran
// (its auth events, outside writes, the DELETE phase) is covered by a
// notice naming its document at its cluster time or later (an issuer
// drops what it cached of that document after the change), or by a
// flush-all published after it. A change whose event does not name its
// document (an update on the stand-in) must have a notice of its own, at
// its very cluster time. A flush-all counts from the second of the
// change's cluster time (cluster times count seconds): one published up
// to a second before a change may be taken for one after it. It returns
// how many changes it checked and how many only a flush-all covered.
func (h *harness) verifyChangesAnnounced(changes *changeLog, notices *noticeLog) (checked, byFlush int, err error) {
	recs, lost := changes.snapshot()
	if lost != nil {
		return len(recs), 0, fmt.Errorf("the harness's own change stream lost continuity, so some changes are unknown: %w", lost)
	}
	if len(recs) == 0 {
		return 0, 0, errors.New("the harness's change stream saw no change: the workload changed nothing, or the stream read nothing")
	}
	for _, c := range recs {
		if c.ct.T == 0 {
			return len(recs), 0, fmt.Errorf("a %s change of document %q has no cluster time: the notices cannot be held to it", c.op, c.docID)
		}
	}
	var missing []string
	n := 0
	// The last changes' notices may still be on their way.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		missing, n, byFlush = missing[:0], 0, 0
		for _, c := range recs {
			switch notices.covers(c) {
			case coveredByNotice:
			case coveredByFlush:
				byFlush++
			default:
				n++
				if len(missing) < 5 {
					missing = append(missing, fmt.Sprintf("%s of document %q at %d.%d (%s)", c.op, c.docID, c.ct.T, c.ct.I, c.ct.Time().Format(time.RFC3339)))
				}
			}
		}
		if n == 0 || time.Now().After(deadline) {
			break
		}
	}
	if n > 0 {
		sort.Strings(missing)
		return len(recs), byFlush, fmt.Errorf("%d of %d changes announced by no notice naming their document and no later flush-all, e.g. %s",
			n, len(recs), strings.Join(missing, "; "))
	}
	return len(recs), byFlush, nil
}

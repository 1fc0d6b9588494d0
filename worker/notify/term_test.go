package notify

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// TestTermReopensFromTheNewerPosition: after a transient error the
// term resumes from its own last acknowledged position when that is past
// the stored checkpoint, and from the store otherwise.
func TestTermReopensFromTheNewerPosition(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	n, err := New(e.js, e.db, e.cfg, WithData(e.data), WithStreams(e.streams))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	kv, err := e.js.KeyValue(ctx, DefaultNotifierCheckpointKV)
	if err != nil {
		t.Fatal(err)
	}
	key := kvKeyForNamespace(e.data.Database, e.data.Collection)

	token := func(name string) []byte {
		b, err := bson.Marshal(bson.M{"_data": name})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	at := func(name string, sec uint32) *checkpoint {
		cp := &checkpoint{Token: token(name)}
		if sec > 0 {
			cp.ClusterTime = &events.ClusterTime{T: sec, I: 1}
		}
		return cp
	}
	const (
		storeNothing = "nothing"
		storeGarbage = "garbage"
	)
	for _, tc := range []struct {
		name    string
		saved   *checkpoint // written by this term (and stored, unless stored says otherwise)
		pending *checkpoint
		stored  *checkpoint // another writer's; nil: the store holds saved
		special string      // storeNothing, storeGarbage
		want    string
	}{
		{name: "no position of its own: the store", stored: at("other", 10), want: "other"},
		{name: "acknowledged past its own last write", saved: at("mine", 10), pending: at("ahead", 11), want: "ahead"},
		{name: "nothing acknowledged since its write", saved: at("mine", 10), want: "mine"},
		{name: "idle positions without cluster time", saved: at("mine", 0), pending: at("ahead", 0), want: "ahead"},
		{name: "another writer is ahead", pending: at("ahead", 11), stored: at("other", 12), want: "other"},
		{name: "another writer is behind", pending: at("ahead", 11), stored: at("other", 9), want: "ahead"},
		{name: "another writer, order unknown", pending: at("ahead", 0), stored: at("other", 9), want: "other"},
		{name: "store emptied", saved: at("mine", 10), pending: at("ahead", 11), special: storeNothing, want: "ahead"},
		{name: "store unusable", saved: at("mine", 10), special: storeGarbage, want: "mine"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTerm(n.termDeps(n.slots[0]), zerolog.Nop(), "", 1, ctx)
			s.saved, s.pending = tc.saved, tc.pending
			switch {
			case tc.special == storeNothing:
				if err := kv.Purge(ctx, key); err != nil {
					t.Fatal(err)
				}
			case tc.special == storeGarbage:
				if _, err := kv.Put(ctx, key, []byte("garbage")); err != nil {
					t.Fatal(err)
				}
			case tc.stored != nil:
				if err := n.slots[0].checkpoints.save(ctx, *tc.stored); err != nil {
					t.Fatal(err)
				}
			default:
				if err := n.slots[0].checkpoints.save(ctx, *tc.saved); err != nil {
					t.Fatal(err)
				}
			}
			cp, found, err := s.startPosition(context.Background())
			if err != nil || !found {
				t.Fatalf("startPosition = found %v, %v", found, err)
			}
			if !bytes.Equal(cp.Token, token(tc.want)) {
				t.Fatalf("resumes at %s, want %s", bson.Raw(cp.Token), tc.want)
			}
		})
	}
}

// feedCommands records the change-stream aggregates and getMores a
// client sends (event.CommandMonitor).
type feedCommands struct {
	mu         sync.Mutex
	aggregates []bson.Raw
	getMores   []bson.Raw
}

func (c *feedCommands) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		switch e.CommandName {
		case "aggregate":
			first, _ := e.Command.Lookup("pipeline", "0").DocumentOK()
			if _, ok := first.Lookup("$changeStream").DocumentOK(); !ok {
				return
			}
			c.mu.Lock()
			c.aggregates = append(c.aggregates, slices.Clone(e.Command))
			c.mu.Unlock()
		case "getMore":
			c.mu.Lock()
			c.getMores = append(c.getMores, slices.Clone(e.Command))
			c.mu.Unlock()
		}
	}}
}

func (c *feedCommands) snapshot() (aggregates, getMores []bson.Raw) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.aggregates), slices.Clone(c.getMores)
}

// TestNotifierOpensWithAnEmptyFirstBatch: every change-stream aggregate
// (from now and resuming) asks for a first batch of 0, so the server
// answers at once instead of scanning the oplog within the open's time
// limit; the scan continues in getMores, which carry no batch size (the
// server's default). Real MongoDB's scan cost cannot be shown on the
// stand-in, so the test asserts the commands the driver sends.
func TestNotifierOpensWithAnEmptyFirstBatch(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	var cmds feedCommands
	client, err := mongo.Connect(options.Client().ApplyURI(e.mongo.URI).SetMonitor(cmds.monitor()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	db := client.Database(e.db.Name())

	first := e.startOn(db)
	r := e.readNotices()
	r.until("first flush", isFlush(events.FlushNoCheckpoint))
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "before"}); err != nil {
		t.Fatal(err)
	}
	r.until("before", isUser("before", "insert"))
	first.stop(false)

	e.startOn(db) // resumes from the checkpoint
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "after"}); err != nil {
		t.Fatal(err)
	}
	r.until("after", isUser("after", "insert"))

	aggregates, getMores := cmds.snapshot()
	resumed := false
	for _, a := range aggregates {
		size, ok := a.Lookup("cursor", "batchSize").AsInt64OK()
		if !ok || size != 0 {
			t.Errorf("change-stream aggregate with cursor %v, want batchSize 0", a.Lookup("cursor"))
		}
		stage := a.Lookup("pipeline", "0", "$changeStream").Document()
		if stage.Lookup("resumeAfter").Type != 0 || stage.Lookup("startAfter").Type != 0 {
			resumed = true
		}
	}
	if len(aggregates) < 2 || !resumed {
		t.Fatalf("saw %d change-stream aggregates (resumed: %v), want a first open and a resume", len(aggregates), resumed)
	}
	if len(getMores) == 0 {
		t.Fatal("no getMore: the events cannot have come from the change stream")
	}
	for _, g := range getMores {
		if v := g.Lookup("batchSize"); v.Type != 0 {
			t.Fatalf("getMore carries batchSize %v, want none (the server's default)", v)
		}
	}
}

// resumeFaults opens change streams through the driver, except at a resume
// position, where it fails the way real servers do and the stand-in cannot:
// opens fail with openErrs in turn and then with always (nil: they
// succeed); a stream that opened there fails its first read with readErr
// (nil: a real stream).
type resumeFaults struct {
	coll     *mongo.Collection
	openErrs []error
	always   error
	readErr  error

	mu       sync.Mutex
	opens    int
	openedAt []time.Time     // when each open at a position began
	timeouts []time.Duration // time left for each open at a position
}

func (f *resumeFaults) open(ctx context.Context, pipeline mongo.Pipeline, from *checkpoint,
	opts *options.ChangeStreamOptionsBuilder) (feedCursor, error) {
	if from != nil {
		f.mu.Lock()
		f.opens++
		f.openedAt = append(f.openedAt, time.Now())
		if deadline, ok := ctx.Deadline(); ok {
			f.timeouts = append(f.timeouts, time.Until(deadline))
		}
		err := f.always
		if len(f.openErrs) > 0 {
			err, f.openErrs = f.openErrs[0], f.openErrs[1:]
		}
		f.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if f.readErr != nil {
			return &failingFeed{f.readErr}, nil
		}
	}
	return watchFeed{f.coll}.open(ctx, pipeline, from, opts)
}

func (f *resumeFaults) stats() (opens int, timeouts []time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.opens, slices.Clone(f.timeouts)
}

// failingFeed is a change stream whose every read fails with err (a
// pointer, as the term compares streams).
type failingFeed struct{ err error }

func (*failingFeed) TryNext(context.Context) bool { return false }
func (*failingFeed) Event() bson.Raw              { return nil }
func (f *failingFeed) Err() error                 { return f.err }
func (*failingFeed) ResumeToken() bson.Raw        { return nil }
func (*failingFeed) RemainingBatchLength() int    { return 0 }
func (*failingFeed) Close(context.Context) error  { return nil }

// startWithFaults runs a notifier (like e.start, without provisioning)
// that opens its change feeds through f.
func (e *notifierEnv) startWithFaults(f *resumeFaults) *runningNotifier {
	e.t.Helper()
	f.coll = e.coll
	return e.run(e.db, f, false)
}

// checkpointAfter runs a notifier until user's insert is published and
// checkpointed, and stops it.
func (e *notifierEnv) checkpointAfter(user string) *noticeReader {
	e.t.Helper()
	ctx := testsupport.Context(e.t)
	n := e.start()
	r := e.readNotices()
	r.until("first flush", isFlush(events.FlushNoCheckpoint))
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": user}); err != nil {
		e.t.Fatal(err)
	}
	got := r.until(user, isUser(user, "insert"))
	e.waitCheckpoint(got[len(got)-1].ClusterTime)
	n.stop(false)
	return r
}

// TestNotifierRetriesTransientOpenErrors: errors around elections and
// restarts on the resume aggregate (which never carries the
// ResumableChangeStreamError label) are retried from the checkpoint: no
// flush-all, and the change made meanwhile is published. Real servers'
// errors are injected (the stand-in does not hold elections).
func TestNotifierRetriesTransientOpenErrors(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	r := e.checkpointAfter("a")
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "meanwhile"}); err != nil {
		t.Fatal(err)
	}
	// More identical errors at one position than maxPositionRefusals: a
	// transient error never counts as the position being unreadable.
	var errs []error
	for range maxPositionRefusals + 1 {
		errs = append(errs, serverError(134, "ReadConcernMajorityNotAvailableYet"))
	}
	errs = append(errs, serverError(11601, "Interrupted"), serverError(216, "ElectionInProgress"),
		serverError(175, "QueryPlanKilled"), serverError(189, "PrimarySteppedDown"))
	f := &resumeFaults{openErrs: errs}
	e.startWithFaults(f)
	got := r.until("meanwhile", isUser("meanwhile", "insert"))
	assertNoFlush(t, got)
	if opens, _ := f.stats(); opens != len(errs)+1 {
		t.Fatalf("%d opens at the checkpoint, want %d refused and 1 that worked", opens, len(errs))
	}
}

// TestNotifierWidensThenGivesUpOnAnOpenThatTimesOut: a resume that keeps
// running out of the server's time limit (a busy cluster far behind a
// quiet collection) is retried with a doubled limit each time and, past
// maxOpenTimeouts, started from now after a flush-all, instead of
// reopening at the same checkpoint forever. MaxTimeMSExpired is injected:
// the stand-in's oplog scan never takes that long.
func TestNotifierWidensThenGivesUpOnAnOpenThatTimesOut(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	r := e.checkpointAfter("a")
	f := &resumeFaults{always: serverError(50, "MaxTimeMSExpired")}
	n := e.startWithFaults(f)
	got := r.until("flush", isFlush(events.FlushPositionUnreadable))
	if len(got) != 1 {
		t.Fatalf("got %v before the flush-all, want nothing", got[:len(got)-1])
	}
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "b"}); err != nil {
		t.Fatal(err)
	}
	r.until("b", isUser("b", "insert"))

	opens, timeouts := f.stats()
	if opens != maxOpenTimeouts || len(timeouts) != maxOpenTimeouts {
		t.Fatalf("%d opens at the checkpoint (%d with a deadline), want %d", opens, len(timeouts), maxOpenTimeouts)
	}
	for i := 1; i < len(timeouts); i++ {
		// Doubled each time; compared with a wide margin.
		if timeouts[i] < timeouts[i-1]*3/2 {
			t.Fatalf("open time limits %v: not widened", timeouts)
		}
	}
	if v := metricValue(n.metrics.flushes.WithLabelValues(string(events.FlushPositionUnreadable))); v != 1 {
		t.Fatalf("flush metric = %v, want 1", v)
	}
}

// TestNotifierSkipsAPositionTheServerCannotRead: a change the server
// refuses to return every time (BSONObjectTooLarge for an event over
// 16 MB) must not wedge the notifier at that position: after
// maxPositionRefusals identical refusals it starts from now after a
// flush-all, and later changes are published again. The refusal is
// injected: a 16 MB event is out of reach of the stand-in and of a test.
func TestNotifierSkipsAPositionTheServerCannotRead(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	r := e.checkpointAfter("a")
	f := &resumeFaults{readErr: serverError(10334, "BSONObjectTooLarge")}
	n := e.startWithFaults(f)
	got := r.until("flush", isFlush(events.FlushPositionUnreadable))
	if len(got) != 1 {
		t.Fatalf("got %v before the flush-all, want nothing", got[:len(got)-1])
	}
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "b"}); err != nil {
		t.Fatal(err)
	}
	r.until("b", isUser("b", "insert"))
	if opens, _ := f.stats(); opens != maxPositionRefusals {
		t.Fatalf("%d opens at the unreadable position, want %d", opens, maxPositionRefusals)
	}
	if v := metricValue(n.metrics.flushes.WithLabelValues(string(events.FlushPositionUnreadable))); v != 1 {
		t.Fatalf("flush metric = %v, want 1", v)
	}
}

// TestNotifierBacksOffWhenEveryReadFailsAfterAnOpen: the first batch is
// empty (batchSize 0), so an open succeeds even where the first getMore
// fails every time; the reopen backoff must keep growing across such opens
// and start over only after real progress (an event or an answered poll),
// not cycle at its first step until STALL_AFTER. The getMore failure is
// injected (a server shutting down, code 91). The bound is a count over
// a period: sleeps last at least what the backoff asked, so a slow machine
// only lowers the count.
func TestNotifierBacksOffWhenEveryReadFailsAfterAnOpen(t *testing.T) {
	e := newNotifierEnv(t)
	e.checkpointAfter("a")
	f := &resumeFaults{readErr: serverError(91, "ShutdownInProgress")}
	n := e.startWithFaults(f)
	testsupport.Eventually(t, "a failing open at the checkpoint", func() bool { opens, _ := f.stats(); return opens > 0 })
	const period = 4 * time.Second
	time.Sleep(period + time.Second)
	f.mu.Lock()
	openedAt := slices.Clone(f.openedAt)
	f.mu.Unlock()
	within := 0
	for _, at := range openedAt {
		if at.Sub(openedAt[0]) <= period {
			within++
		}
	}
	// Backoff from 100 ms, ×1.5 per attempt, ±50% jitter, capped at
	// RetryMaxInterval (1 s): at most 13 opens fit in 4 s. Reset after
	// every open, it reopens about every 100 ms (some 40 times).
	if within > 15 {
		t.Fatalf("%d opens within %s of the first: the reopen backoff starts over after every open", within, period)
	}
	if !n.IsLeader() {
		t.Fatal("stepped down within 5 s; StallAfter is 30 s")
	}
}

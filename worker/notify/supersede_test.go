package notify

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

func TestSupersededBy(t *testing.T) {
	own := checkpointRef{"app.c", 10}
	for _, tc := range []struct {
		name      string
		others    []checkpointRef
		want      checkpointRef
		supersede bool
	}{
		{name: "no other count", others: nil},
		{name: "other counts all older", others: []checkpointRef{{"app.c.p0of2", 3}, {"app.c.p1of2", 9}}, want: checkpointRef{"app.c.p1of2", 9}},
		{name: "one partition of another count newer", others: []checkpointRef{{"app.c.p0of2", 3}, {"app.c.p1of2", 11}},
			want: checkpointRef{"app.c.p1of2", 11}, supersede: true},
		{name: "the newest of several counts", others: []checkpointRef{{"app.c.p0of2", 12}, {"app.c.p0of4", 40}, {"app.c.p3of4", 20}},
			want: checkpointRef{"app.c.p0of4", 40}, supersede: true},
		// Revisions are one stream's sequence: two keys never share one,
		// and the checkpoint's own key is not another count's.
		{name: "own key listed", others: []checkpointRef{{"app.c", 50}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, superseded := supersededBy(own, tc.others)
			if superseded != tc.supersede || got != tc.want {
				t.Errorf("supersededBy = %v, %v; want %v, %v", got, superseded, tc.want, tc.supersede)
			}
		})
	}
}

// TestOtherCountCheckpoints: every partition of each other count whose
// partition 0 is stored is read, with its revision; the count itself and
// other collections are not.
func TestOtherCountCheckpoints(t *testing.T) {
	_, js := testsupport.StartNATS(t).Connect(t)
	ctx := testsupport.Context(t)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "CP_COUNTS"})
	if err != nil {
		t.Fatal(err)
	}
	base := kvKeyForNamespace("app", "custom_user_data")
	revs := map[string]uint64{}
	for _, key := range []string{base, base + ".p0of2", base + ".p1of2", base + ".p2of4", kvKeyForNamespace("app", "other") + ".p0of3"} {
		rev, err := kv.PutString(ctx, key, "{}")
		if err != nil {
			t.Fatal(err)
		}
		revs[key] = rev
	}
	ref := func(key string) checkpointRef { return checkpointRef{key, revs[key]} }
	for _, tc := range []struct {
		count int
		want  []checkpointRef
	}{
		// Count 4 has no partition 0: it is not found.
		{1, []checkpointRef{ref(base + ".p0of2"), ref(base + ".p1of2")}},
		{2, []checkpointRef{ref(base)}},
		{3, []checkpointRef{ref(base), ref(base + ".p0of2"), ref(base + ".p1of2")}},
	} {
		got, err := otherCountCheckpoints(ctx, kv, base, tc.count)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("count %d: %v, %v; want %v", tc.count, got, err, tc.want)
		}
	}
}

// TestTermSkipsASupersededCheckpoint: a term whose stored checkpoint was
// written before another partition count's starts from now, and keeps
// not resuming it on every reopen of the term (its own position, once it
// has one, is resumed); a checkpoint written after the other count's is
// resumed; once checked, a term does not look again.
func TestTermSkipsASupersededCheckpoint(t *testing.T) {
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
	base := kvKeyForNamespace(e.data.Database, e.data.Collection)
	store := n.slots[0].checkpoints
	at := func(name string) checkpoint {
		b, err := bson.Marshal(bson.M{"_data": name})
		if err != nil {
			t.Fatal(err)
		}
		return checkpoint{Token: b}
	}
	save := func(s *checkpointStore, cp checkpoint) {
		t.Helper()
		if err := s.save(ctx, cp); err != nil {
			t.Fatal(err)
		}
	}
	other := newCheckpointStore(kv, partition{0, 2}.kvKey(base), e.data.Database, e.data.Collection)
	newTermOf := func() *term { return newTerm(n.termDeps(n.slots[0]), zerolog.Nop(), "", 1, ctx) }

	// 1, then 2 ran: the count-1 checkpoint is superseded.
	save(store, at("one"))
	save(other, at("two"))
	tm := newTermOf()
	if _, found, err := tm.startPosition(ctx); found || !errors.Is(err, errCheckpointSuperseded) {
		t.Fatalf("superseded: found %v, %v; want errCheckpointSuperseded", found, err)
	}
	// A reopen before the term has a position of its own: still not it,
	// without another look at the other counts (count 2 writes on).
	save(other, at("two, later"))
	if _, found, err := tm.startPosition(ctx); found || !errors.Is(err, errCheckpointSuperseded) {
		t.Fatalf("reopen: found %v, %v; want errCheckpointSuperseded", found, err)
	}
	// Once the term has a position, that one is resumed.
	mine := at("from now")
	tm.pending = &mine
	if cp, found, err := tm.startPosition(ctx); !found || err != nil || !bytes.Equal(cp.Token, mine.Token) {
		t.Fatalf("with a position of its own: %s, %v, %v", bson.Raw(cp.Token), found, err)
	}

	// The term's own write, though older than count 2's latest, is
	// resumed: checked once, at the start of the term.
	tm.pending = nil
	save(store, mine)
	save(other, at("two, later still"))
	if cp, found, err := tm.startPosition(ctx); !found || err != nil || !bytes.Equal(cp.Token, mine.Token) {
		t.Fatalf("own write: %s, %v, %v", bson.Raw(cp.Token), found, err)
	}

	// A new term finds count 2 wrote last: superseded again.
	if _, _, err := newTermOf().startPosition(ctx); !errors.Is(err, errCheckpointSuperseded) {
		t.Fatalf("new term after count 2 wrote: %v, want errCheckpointSuperseded", err)
	}
	// Written after count 2's: resumed.
	save(store, at("one, latest"))
	if cp, found, err := newTermOf().startPosition(ctx); !found || err != nil || !bytes.Equal(cp.Token, at("one, latest").Token) {
		t.Fatalf("newer than count 2's: %s, %v, %v", bson.Raw(cp.Token), found, err)
	}
}

// lockedBuffer collects log lines from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestNotifierBackToAnEarlierPartitionCount runs NOTIFIER_PARTITIONS=1,
// then 2, then 1 again, one after the other, as an issuer sees it: back at
// 1, the old count-1 checkpoint is superseded by count 2's, so the
// notifier's first notice is a checkpoint_superseded flush-all, and
// neither the changes count 2 announced nor one made while nothing ran
// are replayed; the next restart at 1 resumes its (now newest) checkpoint
// without a flush.
func TestNotifierBackToAnEarlierPartitionCount(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	kv := func() jetstream.KeyValue {
		kv, err := e.js.KeyValue(ctx, DefaultNotifierCheckpointKV)
		if err != nil {
			t.Fatal(err)
		}
		return kv
	}
	insert := func(user string) bson.ObjectID {
		t.Helper()
		res, err := e.coll.InsertOne(ctx, bson.M{"userId": user})
		if err != nil {
			t.Fatal(err)
		}
		return res.InsertedID.(bson.ObjectID)
	}
	base := kvKeyForNamespace(e.data.Database, e.data.Collection)

	// Count 1.
	one := e.start()
	r := e.readNotices()
	r.until("the first start's flush", isFlush(events.FlushNoCheckpoint))
	insert("at-one")
	got := r.until("at-one", isUser("at-one", "insert"))
	e.waitCheckpoint(got[len(got)-1].ClusterTime)
	one.stop(false)
	oneRev := entryRevision(t, kv(), base)

	// Count 2: each partition starts from now; changes go on being
	// announced. Inserted until partition 0 has one, so that its
	// checkpoint is written (the mark of a count that ran).
	two := e.start(func(c *Config) { c.Partitions = 2 })
	for range 2 {
		r.until("a partition's flush", isFlush(events.FlushNoCheckpoint))
	}
	for i := 0; ; i++ {
		user := fmt.Sprintf("at-two-%d", i)
		id := insert(user)
		r.until(user, isUser(user, "insert"))
		if owner(hashedIndexKey(t, e.coll, id), 2) == 0 {
			break
		}
	}
	testsupport.Eventually(t, "count 2's partition-0 checkpoint written", func() bool {
		e, err := kv().Get(ctx, partition{0, 2}.kvKey(base))
		return err == nil && e.Revision() > oneRev
	})
	two.stop(false)
	insert("while-stopped")

	// Count 1 again.
	logs := &lockedBuffer{}
	e.opts = []Option{WithLogger(zerolog.New(io.MultiWriter(logs, zerolog.NewTestWriter(t))))}
	again := e.start()
	e.opts = nil
	if first := r.next(); !isFlush(events.FlushCheckpointSuperseded)(first) || first.Subject != events.FlushAllSubject(events.DefaultNoticePrefix) {
		t.Fatalf("back at count 1, first notice %v on %s; want flush_all(checkpoint_superseded) on the flush-all subject", first, first.Subject)
	}
	insert("live")
	live := r.next()
	if !isUser("live", "insert")(live) {
		t.Fatalf("after the flush: %v, want the live insert (nothing replayed)", live)
	}
	// Duplicates of what count 2 announced would be de-duplicated by
	// the stream, yet acknowledged (and counted, in order, before the
	// live insert's): the notifier published nothing else.
	userInserts := again.metrics.published.WithLabelValues(string(events.NoticeUser), "insert")
	testsupport.Eventually(t, "the live insert's acknowledgement counted", func() bool { return metricValue(userInserts) >= 1 })
	if v := metricValue(userInserts); v != 1 {
		t.Errorf("back at count 1, %v user notices published, want 1 (the live insert)", v)
	}
	if v := metricValue(again.metrics.flushes.WithLabelValues(string(events.FlushCheckpointSuperseded))); v != 1 {
		t.Errorf("checkpoint_superseded flushes counted: %v, want 1", v)
	}
	log := logs.String()
	if !strings.Contains(log, "checkpoint superseded") || !strings.Contains(log, `"checkpoint":"`+base+`"`) ||
		!strings.Contains(log, `"newer_checkpoint":"`+base+".p") || !strings.Contains(log, fmt.Sprintf(`"revision":%d`, oneRev)) {
		t.Errorf("no warning naming both checkpoints and revisions; log:\n%s", log)
	}

	// Its checkpoint is the newest now: a restart at 1 resumes it.
	e.waitCheckpoint(live.ClusterTime)
	again.stop(false)
	insert("after-restart")
	e.start()
	got = r.until("after-restart", isUser("after-restart", "insert"))
	assertNoFlush(t, got)
}

func entryRevision(t *testing.T, kv jetstream.KeyValue, key string) uint64 {
	t.Helper()
	e, err := kv.Get(testsupport.Context(t), key)
	if err != nil {
		t.Fatalf("checkpoint %s: %v", key, err)
	}
	return e.Revision()
}

// TestNotifierRolloutBetweenPartitionCounts: while replicas of two counts
// lead at once (docs/OPERATIONS.md, "Changing NOTIFIER_PARTITIONS", step
// 2), a term that starts meanwhile finds the other layout's later
// checkpoint and flushes once: an extra flush-all, safe, and no loop (the
// flush starts no term, here or in the other layout).
func TestNotifierRolloutBetweenPartitionCounts(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	insert := func(user string) bson.ObjectID {
		t.Helper()
		res, err := e.coll.InsertOne(ctx, bson.M{"userId": user})
		if err != nil {
			t.Fatal(err)
		}
		return res.InsertedID.(bson.ObjectID)
	}
	old := e.start()
	r := e.readNotices()
	r.until("count 1's flush", isFlush(events.FlushNoCheckpoint))
	insert("before")
	got := r.until("before", isUser("before", "insert"))
	e.waitCheckpoint(got[len(got)-1].ClusterTime)

	// The new count starts beside it; both lead.
	next := e.start(func(c *Config) { c.Partitions = 2 })
	for range 2 {
		r.until("a count-2 partition's flush", isFlush(events.FlushNoCheckpoint))
	}
	testsupport.Eventually(t, "both counts lead", func() bool { return old.IsLeader() && len(next.LeadsPartitions()) == 2 })

	// The count-1 replica goes (rolled); count 2 writes on (a change in
	// its partition 0); another count-1 replica takes the count-1 lease
	// over and finds count 2's checkpoint newer than its own.
	old.stop(false)
	for i := 0; ; i++ {
		user := fmt.Sprintf("rolling-%d", i)
		id := insert(user)
		r.until(user, isUser(user, "insert"))
		if owner(hashedIndexKey(t, e.coll, id), 2) == 0 {
			break
		}
	}
	kv, err := e.js.KeyValue(ctx, DefaultNotifierCheckpointKV)
	if err != nil {
		t.Fatal(err)
	}
	base := kvKeyForNamespace(e.data.Database, e.data.Collection)
	oneRev := entryRevision(t, kv, base)
	testsupport.Eventually(t, "count 2's partition-0 checkpoint past count 1's", func() bool {
		e, err := kv.Get(ctx, partition{0, 2}.kvKey(base))
		return err == nil && e.Revision() > oneRev
	})
	taker := e.start()
	r.until("the taker's flush", isFlush(events.FlushCheckpointSuperseded))

	// Both lead on, each change is announced, and nothing flushes again.
	insert("after")
	r.until("after", isUser("after", "insert"))
	r.quiet(time.Second)
	if !taker.IsLeader() || len(next.LeadsPartitions()) != 2 {
		t.Fatalf("count 1 leads %v, count 2 leads %v; want both", taker.LeadsPartitions(), next.LeadsPartitions())
	}
	if v := metricValue(taker.metrics.flushes.WithLabelValues(string(events.FlushCheckpointSuperseded))); v != 1 {
		t.Errorf("the taker flushed %v times for a superseded checkpoint, want 1", v)
	}
	if v := metricValue(next.metrics.flushes.WithLabelValues(string(events.FlushCheckpointSuperseded))); v != 0 {
		t.Errorf("count 2 flushed %v times for a superseded checkpoint, want 0 (its terms did not restart)", v)
	}
}

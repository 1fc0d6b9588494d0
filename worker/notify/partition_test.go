package notify

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

func TestPartitionKeysAndNames(t *testing.T) {
	for _, tc := range []struct {
		part             partition
		name, key, label string
		match            bool
	}{
		// One partition is the notifier as it was: same keys, no filter.
		{partition{0, 1}, "", "app.custom_user_data", "0", false},
		{partition{}, "", "app.custom_user_data", "0", false},
		{partition{0, 4}, "p0of4", "app.custom_user_data.p0of4", "0", true},
		{partition{2, 4}, "p2of4", "app.custom_user_data.p2of4", "2", true},
		{partition{63, 64}, "p63of64", "app.custom_user_data.p63of64", "63", true},
	} {
		if got := tc.part.String(); got != tc.name {
			t.Errorf("%+v.String() = %q, want %q", tc.part, got, tc.name)
		}
		if got := tc.part.kvKey("app.custom_user_data"); got != tc.key {
			t.Errorf("%+v.kvKey = %q, want %q", tc.part, got, tc.key)
		}
		if got := tc.part.label(); got != tc.label {
			t.Errorf("%+v.label = %q, want %q", tc.part, got, tc.label)
		}
		if got := tc.part.matchStage() != nil; got != tc.match {
			t.Errorf("%+v.matchStage present = %v, want %v", tc.part, got, tc.match)
		}
		pipeline := feedPipeline("userId", true, tc.part)
		first := pipeline[0][0].Key
		if want := map[bool]string{true: "$match", false: "$project"}[tc.match]; first != want {
			t.Errorf("%+v: pipeline starts with %s, want %s", tc.part, first, want)
		}
	}
	if got := partitions(3); !slices.Equal(got, []partition{{0, 3}, {1, 3}, {2, 3}}) {
		t.Errorf("partitions(3) = %v", got)
	}
}

// TestNoticeMaxPendingCoversEveryPartition: a replica leading every
// partition runs that many terms, each with up to maxNoticesInFlight
// unacknowledged notices, through one JetStream context; the library's
// bound must stay above their sum, or a busy replica's publishes fail
// (too many stalled messages) instead of waiting for their window.
func TestNoticeMaxPendingCoversEveryPartition(t *testing.T) {
	if got := noticeMaxPending(1); got != 2*maxNoticesInFlight {
		t.Errorf("noticeMaxPending(1) = %d, want %d as before partitions", got, 2*maxNoticesInFlight)
	}
	for _, n := range []int{0, 1, 2, 3, 7, MaxNotifierPartitions} {
		if got, sum := noticeMaxPending(n), max(1, n)*maxNoticesInFlight; got <= sum {
			t.Errorf("noticeMaxPending(%d) = %d, not above the %d the terms may have in flight", n, got, sum)
		}
	}
}

// TestOtherPartitionCheckpoints: a start with a new partition count finds
// the checkpoints of the old one (and says so), a restart with the same
// count finds nothing to warn about; a deleted old key is gone.
func TestOtherPartitionCheckpoints(t *testing.T) {
	_, js := testsupport.StartNATS(t).Connect(t)
	ctx := testsupport.Context(t)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "CP_PARTS"})
	if err != nil {
		t.Fatal(err)
	}
	base := kvKeyForNamespace("app", "custom_user_data")
	for _, key := range []string{base, base + ".p0of4", base + ".p3of4", kvKeyForNamespace("app", "other") + ".p0of2"} {
		if _, err := kv.PutString(ctx, key, "{}"); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		count int
		want  []string
	}{
		{1, nil},                             // a restart at 1: its own checkpoint is there
		{4, nil},                             // a restart at 4
		{2, []string{base, base + ".p0of4"}}, // 1 and 4 ran before; another collection's keys are not ours
	} {
		got, err := otherPartitionCheckpoints(ctx, kv, base, tc.count)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("count %d: %v, %v; want %v", tc.count, got, err, tc.want)
		}
	}
	if err := kv.Delete(ctx, base); err != nil {
		t.Fatal(err)
	}
	if got, err := otherPartitionCheckpoints(ctx, kv, base, 2); err != nil || !slices.Equal(got, []string{base + ".p0of4"}) {
		t.Errorf("after deleting %s: %v, %v", base, got, err)
	}
}

// TestPartitionFlushMsgIDSession: a from-now flush-all's Nats-Msg-Id is
// made from the lease session, as it was before partitions when
// unpartitioned, and with the partition's name when partitioned, so that
// two partitions' flush-alls are never de-duplicated into one.
func TestPartitionFlushMsgIDSession(t *testing.T) {
	for _, tc := range []struct {
		part partition
		want string
	}{
		{partition{}, "session-1"},
		{partition{0, 1}, "session-1"},
		{partition{1, 3}, "session-1|p1of3"},
	} {
		tm := newTerm(termDeps{part: tc.part}, zerolog.Nop(), "session-1", 7, context.Background())
		if got := tm.pub.leaseSession; got != tc.want {
			t.Errorf("%+v: Msg-Id session %q, want %q", tc.part, got, tc.want)
		}
	}
}

func TestPartitionsConfig(t *testing.T) {
	for _, tc := range []struct {
		n       int
		wantErr string
	}{
		{0, ""}, // default 1
		{1, ""},
		{4, ""},
		{64, ""},
		{65, "partitions must be between 1 and 64, got 65"},
		{-1, "partitions must be between 1 and 64, got -1"},
	} {
		cfg := Config{Partitions: tc.n}
		err := cfg.Validate()
		if tc.wantErr == "" && err != nil {
			t.Errorf("Partitions %d: %v", tc.n, err)
		}
		if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("Partitions %d: error %v, want %q", tc.n, err, tc.wantErr)
		}
	}
	var cfg Config
	cfg.SetDefaults()
	if cfg.Partitions != 1 {
		t.Errorf("default Partitions = %d, want 1", cfg.Partitions)
	}
}

func TestHeartbeatPayloads(t *testing.T) {
	// Unpartitioned: byte for byte what issuers have always read.
	if got := string(heartbeatPayload(partition{0, 1})); got != `{"schemaVersion":1,"kind":"heartbeat"}` {
		t.Errorf("unpartitioned heartbeat = %s", got)
	}
	got := heartbeatPayload(partition{2, 4})
	n, err := events.DecodeNotice(got)
	if err != nil {
		t.Fatalf("partitioned heartbeat %s does not decode: %v", got, err)
	}
	if n.Kind != events.NoticeHeartbeat || n.PartitionOf() != 2 || n.PartitionsOf() != 4 {
		t.Errorf("partitioned heartbeat decoded as %+v", n)
	}
}

// hashedIndexKey asks the server for $toHashedIndexKey of the _id of the
// document with that _id in coll.
func hashedIndexKey(t *testing.T, coll *mongo.Collection, id any) int64 {
	t.Helper()
	ctx := testsupport.Context(t)
	cur, err := coll.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$match", Value: bson.D{{Key: "_id", Value: id}}}},
		{{Key: "$project", Value: bson.D{{Key: "h", Value: bson.D{{Key: "$toHashedIndexKey", Value: "$_id"}}}}}},
	})
	if err != nil {
		t.Fatalf("$toHashedIndexKey: %v", err)
	}
	var out []struct {
		H int64 `bson:"h"`
	}
	if err := cur.All(ctx, &out); err != nil || len(out) != 1 {
		t.Fatalf("$toHashedIndexKey of %v: %v, %d results", id, err, len(out))
	}
	return out[0].H
}

func owner(h int64, n int) int {
	m := h % int64(n)
	if m < 0 {
		m = -m
	}
	return int(m)
}

func TestToHashedIndexKeyIsMongoDBs(t *testing.T) {
	m := testsupport.MongoDB(t)
	coll := m.Client(t).Database(testsupport.DatabaseName(t)).Collection("h")
	ctx := testsupport.Context(t)
	if _, err := coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: "string to hash"}}, bson.D{{Key: "_id", Value: int32(42)}}}); err != nil {
		t.Fatal(err)
	}
	// The manual's example, and hasher.cpp's own startup check ({check: 42}).
	for id, want := range map[any]int64{"string to hash": 763543691661428748, int32(42): -944302157085130861} {
		if got := hashedIndexKey(t, coll, id); got != want {
			t.Errorf("$toHashedIndexKey(%v) = %d, want MongoDB's %d", id, got, want)
		}
	}
}

// partitionFeeds records which partition's feed delivered which document
// _ids (the pipeline's first stage names the partition).
type partitionFeeds struct {
	n     int
	inner feedSource
	mu    sync.Mutex
	seen  map[string][]int // document _id (hex) → partitions whose feed delivered a change of it
}

func (p *partitionFeeds) open(ctx context.Context, pipeline mongo.Pipeline, from *checkpoint,
	opts *options.ChangeStreamOptionsBuilder) (feedCursor, error) {
	part := -1
	first, _ := bson.Marshal(pipeline[0])
	for i := range p.n {
		want, _ := bson.Marshal(partition{i, p.n}.matchStage())
		if bytes.Equal(first, want) {
			part = i
		}
	}
	if part < 0 {
		return nil, fmt.Errorf("a feed opened without a partition filter: %v", pipeline[0])
	}
	cur, err := p.inner.open(ctx, pipeline, from, opts)
	if err != nil {
		return nil, err
	}
	return &recordingCursor{feedCursor: cur, part: part, feeds: p}, nil
}

func (p *partitionFeeds) partitionsOf(id string) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := slices.Clone(p.seen[id])
	slices.Sort(out)
	return slices.Compact(out)
}

type recordingCursor struct {
	feedCursor
	part  int
	feeds *partitionFeeds
}

func (c *recordingCursor) TryNext(ctx context.Context) bool {
	if !c.feedCursor.TryNext(ctx) {
		return false
	}
	if id, ok := c.Event().Lookup("documentKey", "_id").ObjectIDOK(); ok {
		c.feeds.mu.Lock()
		c.feeds.seen[id.Hex()] = append(c.feeds.seen[id.Hex()], c.part)
		c.feeds.mu.Unlock()
	}
	return true
}

// TestPartitionedNotifiersShareTheFeed runs two replicas with three
// partitions: every change is announced once, by the partition its _id
// hashes into; a replica that stops hands its partitions to the other,
// which resumes them from their checkpoints without a flush.
func TestPartitionedNotifiersShareTheFeed(t *testing.T) {
	const parts = 3
	e := newNotifierEnv(t)
	e.cfg.Partitions = parts
	e.cfg.LeaseTTL = time.Second
	ctx := testsupport.Context(t)
	feeds := &partitionFeeds{n: parts, inner: watchFeed{e.coll}, seen: map[string][]int{}}
	a := e.run(e.db, feeds, true)
	b := e.run(e.db, feeds, true)
	r := e.readNotices()
	testsupport.Eventually(t, "every partition led", func() bool {
		return len(a.LeadsPartitions())+len(b.LeadsPartitions()) == parts
	})
	// Each partition opened its feed from now after a no_checkpoint
	// flush-all (its own Msg-Id: three stored).
	for range parts {
		r.until("no_checkpoint flush", isFlush(events.FlushNoCheckpoint))
	}
	t.Logf("a leads %v, b leads %v", a.LeadsPartitions(), b.LeadsPartitions())

	insertIntoEveryPartition(t, e, r, feeds, parts, "first")

	// Every partition has a checkpoint now (each one saw changes).
	kv, err := e.js.KeyValue(ctx, DefaultNotifierCheckpointKV)
	if err != nil {
		t.Fatal(err)
	}
	base := kvKeyForNamespace(e.data.Database, e.data.Collection)
	testsupport.Eventually(t, "a checkpoint per partition", func() bool {
		for _, p := range partitions(parts) {
			if _, err := kv.Get(ctx, p.kvKey(base)); err != nil {
				return false
			}
		}
		return true
	})

	// Stop the replica that leads something; the other takes everything
	// over and resumes each partition from its checkpoint: no flush.
	stopped, other := a, b
	if len(a.LeadsPartitions()) == 0 {
		stopped, other = b, a
	}
	stopped.stop(false)
	testsupport.Eventually(t, "the other replica leads every partition", func() bool {
		return len(other.LeadsPartitions()) == parts
	})
	insertIntoEveryPartition(t, e, r, feeds, parts, "second")
	r.quiet(500 * time.Millisecond) // no flush-all, no duplicate
}

// insertIntoEveryPartition adds documents until every one of parts
// partitions owns at least two of them, waits for each one's notice (a
// notice of anything else, or twice, fails the test) and checks that each
// was delivered by the partition its _id hashes into.
func insertIntoEveryPartition(t *testing.T, e *notifierEnv, r *noticeReader, feeds *partitionFeeds, parts int, round string) {
	t.Helper()
	ctx := testsupport.Context(t)
	owners := map[string]int{}
	count := make([]int, parts)
	for i := 0; slices.Min(count) < 2; i++ {
		user := fmt.Sprintf("%s-%d", round, i)
		res, err := e.coll.InsertOne(ctx, bson.M{"userId": user})
		if err != nil {
			t.Fatal(err)
		}
		id := res.InsertedID.(bson.ObjectID)
		p := owner(hashedIndexKey(t, e.coll, id), parts)
		owners[id.Hex()] = p
		count[p]++
	}
	pending := maps(owners)
	for len(pending) > 0 {
		n := r.next()
		if n.Kind != events.NoticeUser || !strings.HasPrefix(n.UserID, round+"-") {
			t.Fatalf("round %s: unexpected notice %v", round, n)
		}
		if _, ok := pending[n.DocumentID]; !ok {
			t.Fatalf("round %s: notice %v announced twice", round, n)
		}
		delete(pending, n.DocumentID)
	}
	for id, p := range owners {
		if got := feeds.partitionsOf(id); !slices.Equal(got, []int{p}) {
			t.Errorf("document %s hashes into partition %d but was delivered by %v", id, p, got)
		}
	}
}

func maps(m map[string]int) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

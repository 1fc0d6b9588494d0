package notify

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

func TestFairShare(t *testing.T) {
	for _, tc := range []struct{ count, replicas, want int }{
		{4, 1, 4},
		{4, 2, 2},
		{4, 3, 2},
		{4, 4, 1},
		{4, 9, 1},
		{3, 2, 2},
		{64, 5, 13},
		{4, 0, 4}, // nobody counted (not even us): no handoff
	} {
		if got := fairShare(tc.count, tc.replicas); got != tc.want {
			t.Errorf("fairShare(%d, %d) = %d, want %d", tc.count, tc.replicas, got, tc.want)
		}
	}
}

// TestSeatsCountHealthyReplicas: each healthy replica holds one seat and
// counts every held seat; an unhealthy one gives its seat up, and a stopped
// one's seat is free at once.
func TestSeatsCountHealthyReplicas(t *testing.T) {
	ctx := testsupport.Context(t)
	ns := testsupport.StartNATS(t)
	_, js := ns.Connect(t)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "seats", TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	a := newSeats(kv, "db.coll", 4, "a", time.Minute)
	b := newSeats(kv, "db.coll", 4, "b", time.Minute)
	c := newSeats(kv, "db.coll", 4, "c", time.Minute)
	refresh := func(st *seats, healthy bool) int {
		t.Helper()
		n, err := st.refresh(ctx, healthy)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := refresh(a, true); got != 1 {
		t.Fatalf("a alone counts %d replicas, want 1", got)
	}
	if got := refresh(b, true); got != 2 {
		t.Fatalf("b counts %d replicas, want 2", got)
	}
	if got := refresh(a, true); got != 2 {
		t.Fatalf("a (renewing) counts %d replicas, want 2", got)
	}
	if got := refresh(c, false); got != 2 {
		t.Fatalf("unhealthy c counts %d replicas (itself excluded), want 2", got)
	}
	if got := refresh(b, false); got != 1 {
		t.Fatalf("b, now unhealthy, counts %d replicas, want 1", got)
	}
	if got := refresh(a, true); got != 1 {
		t.Fatalf("a counts %d replicas after b gave its seat up, want 1", got)
	}
	if got := refresh(c, true); got != 2 {
		t.Fatalf("c, healthy again, counts %d replicas, want 2", got)
	}
	c.release(ctx)
	if got := refresh(a, true); got != 1 {
		t.Fatalf("a counts %d replicas after c stopped, want 1", got)
	}
	if key := a.keys[a.held]; key == nil || a.held != 0 {
		t.Fatalf("a holds seat %d, want 0 (the first it found free)", a.held)
	}
}

// TestPartitionsRebalanceToALateReplica: a replica alone leads every
// partition; a second one that starts later gets its share, handed over
// with a last checkpoint, so the changes made around the handoffs are each
// announced once and no flush-all is published.
func TestPartitionsRebalanceToALateReplica(t *testing.T) {
	const parts = 4
	e := newNotifierEnv(t)
	e.cfg.Partitions = parts
	e.cfg.LeaseTTL = time.Second
	feeds := &partitionFeeds{n: parts, inner: watchFeed{e.coll}, seen: map[string][]int{}}
	a := e.run(e.db, feeds, true)
	r := e.readNotices()
	testsupport.Eventually(t, "the only replica leads every partition", func() bool {
		return len(a.LeadsPartitions()) == parts
	})
	for range parts {
		r.until("no_checkpoint flush", isFlush(events.FlushNoCheckpoint))
	}
	// Every partition gets a checkpoint to hand over.
	insertIntoEveryPartition(t, e, r, feeds, parts, "before")

	b := e.run(e.db, feeds, true)
	testsupport.Eventually(t, "two partitions each", func() bool {
		return len(a.LeadsPartitions()) == parts/2 && len(b.LeadsPartitions()) == parts/2
	})
	t.Logf("a leads %v, b leads %v", a.LeadsPartitions(), b.LeadsPartitions())
	if got := metricValue(a.metrics.stepdowns.WithLabelValues(stepDownRebalance, "3")) +
		metricValue(a.metrics.stepdowns.WithLabelValues(stepDownRebalance, "2")); got != 2 {
		t.Errorf("a counted %v rebalance step-downs of partitions 2 and 3, want 2", got)
	}
	insertIntoEveryPartition(t, e, r, feeds, parts, "after")
	// Balanced: no more handoffs (several rebalance rounds), no flush-all,
	// no repeated notice.
	r.quiet(3 * e.cfg.LeaseTTL)
	if len(a.LeadsPartitions()) != parts/2 || len(b.LeadsPartitions()) != parts/2 {
		t.Errorf("after a while a leads %v and b leads %v, want two each", a.LeadsPartitions(), b.LeadsPartitions())
	}
}

// TestNoHandoffToAReplicaWithoutMongoDB: a replica that reaches NATS but
// not MongoDB takes no seat, so a healthy replica leading every partition
// hands none to it (it would hold the lease, heartbeat, and announce
// nothing until its change stream stalled).
func TestNoHandoffToAReplicaWithoutMongoDB(t *testing.T) {
	const parts = 4
	e := newNotifierEnv(t)
	e.cfg.Partitions = parts
	e.cfg.LeaseTTL = time.Second
	feeds := &partitionFeeds{n: parts, inner: watchFeed{e.coll}, seen: map[string][]int{}}
	a := e.run(e.db, feeds, true)
	testsupport.Eventually(t, "the only replica leads every partition", func() bool {
		return len(a.LeadsPartitions()) == parts
	})
	// Nothing listens on port 1: every operation of b's client fails.
	dead, err := mongo.Connect(options.Client().ApplyURI("mongodb://127.0.0.1:1/?directConnection=true").
		SetServerSelectionTimeout(200 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dead.Disconnect(context.Background()) })
	deadDB := dead.Database(e.db.Name())
	b := e.run(deadDB, &partitionFeeds{n: parts, inner: watchFeed{deadDB.Collection(e.coll.Name())}, seen: map[string][]int{}}, false)
	// Several rebalance rounds (a handoff needs two stable counts and
	// happens at most every 2 TTLs).
	time.Sleep(5 * e.cfg.LeaseTTL)
	if got := a.LeadsPartitions(); len(got) != parts {
		t.Errorf("a leads %v, want every partition (b cannot reach MongoDB; b leads %v)", got, b.LeadsPartitions())
	}
	var handoffs float64
	for i := range parts {
		handoffs += metricValue(a.metrics.stepdowns.WithLabelValues(stepDownRebalance, strconv.Itoa(i)))
	}
	if handoffs != 0 {
		t.Errorf("a handed %v partitions to a replica without MongoDB, want none", handoffs)
	}
}

package notify

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// A request whose reply never comes (lost across a reconnect) must not
// hold Run until its context's deadline, however far: nats.go applies its
// own timeout only to contexts without one. These tests give Run a
// context an hour long and check that it keeps retrying.

// lazyDatabase is a database handle of a client that never connects
// (these tests make Run do no MongoDB operation).
func lazyDatabase(t *testing.T) *mongo.Database {
	t.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	return client.Database("unanswered")
}

// runFor an hour: Run's context has a far deadline.
func runForAnHour(t *testing.T, n *Notifier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(testsupport.Wait):
			t.Error("Run did not return after its context ended")
		}
	})
}

func TestUnansweredBucketLookupsDoNotStallRun(t *testing.T) {
	js, requests := testsupport.UnansweredJetStream(t)
	n, err := New(js, lazyDatabase(t), Config{LeaseTTL: time.Second, RetryMaxInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	n.requestLimit = 100 * time.Millisecond
	runForAnHour(t, n) // unprovisioned: Run looks the buckets up
	testsupport.Eventually(t, "bucket lookups retried", func() bool { return requests.Load() >= 3 })
}

// stuckKV answers no Create, Get, Update or Delete until the caller's
// context ends, like a bucket whose replies are lost.
type stuckKV struct {
	jetstream.KeyValue
	calls atomic.Int64
}

func (k *stuckKV) wait(ctx context.Context) error {
	k.calls.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

func (k *stuckKV) Create(ctx context.Context, _ string, _ []byte, _ ...jetstream.KVCreateOpt) (uint64, error) {
	return 0, k.wait(ctx)
}

func (k *stuckKV) Get(ctx context.Context, _ string) (jetstream.KeyValueEntry, error) {
	return nil, k.wait(ctx)
}

func (k *stuckKV) Update(ctx context.Context, _ string, _ []byte, _ uint64) (uint64, error) {
	return 0, k.wait(ctx)
}

func (k *stuckKV) Delete(ctx context.Context, _ string, _ ...jetstream.KVDeleteOpt) error {
	return k.wait(ctx)
}

// emptyKV holds no key.
type emptyKV struct{ jetstream.KeyValue }

func (emptyKV) Get(context.Context, string) (jetstream.KeyValueEntry, error) {
	return nil, jetstream.ErrKeyNotFound
}

func TestUnansweredLeaseRequestsDoNotStallTheCompetition(t *testing.T) {
	// JetStream requests other than the lease's (looking for the notice
	// stream after a lease failure) fail at once: no responders.
	js, err := jetstream.New(testsupport.PlainNATS(t))
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(js, lazyDatabase(t), Config{LeaseTTL: minNotifierLeaseTTL, RetryMaxInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	n.requestLimit = 100 * time.Millisecond
	lease := &stuckKV{}
	n.bind(emptyKV{}, lease)
	runForAnHour(t, n)
	testsupport.Eventually(t, "lease acquisition retried", func() bool { return lease.calls.Load() >= 3 })
	if _, err, down := n.slots[0].health.lease.Down(time.Now()); !down || err == nil {
		t.Error("lease failures not recorded")
	}
}

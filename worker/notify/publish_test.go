package notify

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// heldFuture is a PubAckFuture the test resolves: with the result of a
// real publish (release) or with an error (failWith).
type heldFuture struct {
	msg  *nats.Msg
	real jetstream.PubAckFuture // nil: nothing was published
	ok   chan *jetstream.PubAck
	err  chan error
}

func newHeldFuture(msg *nats.Msg, real jetstream.PubAckFuture) *heldFuture {
	return &heldFuture{msg: msg, real: real, ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
}

func (f *heldFuture) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *heldFuture) Err() <-chan error            { return f.err }
func (f *heldFuture) Msg() *nats.Msg               { return f.msg }

// release hands the notifier the real publish's outcome.
func (f *heldFuture) release() {
	select {
	case a := <-f.real.Ok():
		f.ok <- a
	case err := <-f.real.Err():
		f.err <- err
	}
}

func (f *heldFuture) failWith(err error) { f.err <- err }

// noticeUser is the user a notice message names ("" for a flush-all).
func noticeUser(t testing.TB, m *nats.Msg) string {
	n, err := events.DecodeNotice(m.Data)
	if err != nil {
		t.Errorf("notice does not decode: %v", err)
		return ""
	}
	return n.UserID
}

// TestNotifierCheckpointNeverPassesAnUnacknowledgedNotice: the notice of
// u10 is never acknowledged while the notices of later changes are, so a
// checkpoint that followed the changes read, or any acknowledgement out
// of order, would pass u10. After a restart every change after the
// checkpoint must be published: u10's notice is not lost.
func TestNotifierCheckpointNeverPassesAnUnacknowledgedNotice(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	const total, failing = 20, "u10"

	var (
		mu        sync.Mutex
		firstU10  *heldFuture
		attempts  int // publishes of u10's notice
		u10Failed bool
	)
	e.opts = []Option{withNoticePublisher(0, func(real asyncPublisher) asyncPublisher {
		return asyncPublisherFunc(func(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
			if noticeUser(t, m) != failing {
				return real.PublishMsgAsync(m, opts...)
			}
			mu.Lock()
			defer mu.Unlock()
			attempts++
			f := newHeldFuture(m, nil) // never published
			if firstU10 == nil {
				firstU10 = f // held until the test fails it
			} else {
				f.failWith(errors.New("injected: no acknowledgement"))
			}
			return f, nil
		})
	})}
	n1 := e.start(func(c *Config) { c.CheckpointInterval = 10 * time.Millisecond })
	// If the test ends early, let n1's stop (which waits for what is in
	// flight) end too; cleanups run last-in first-out.
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if firstU10 != nil && !u10Failed {
			firstU10.failWith(errors.New("test over"))
		}
	})
	r := e.readNotices()
	r.until("flush", isFlush(events.FlushNoCheckpoint))
	for i := range total {
		if _, err := e.coll.InsertOne(ctx, bson.M{"userId": fmt.Sprintf("u%02d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Every later notice is stored and acknowledged while u10's is not.
	got := r.until("u19", isUser("u19", "insert"))
	u09 := slices.IndexFunc(got, isUser("u09", "insert"))
	if u09 < 0 || slices.ContainsFunc(got, isUser(failing, "")) {
		t.Fatalf("before the failure: got %v, want u09 and no u10", got)
	}
	// Let the notifier run its checkpoint writes (every 10 ms) for a few
	// idle polls, then fail u10's publish; it is retried, and fails, until
	// the notifier stops.
	testsupport.Eventually(t, "checkpoint written after u09", func() bool {
		cp := e.storedCheckpoint()
		return cp != nil && !clusterTimeBefore(cp.ClusterTime, got[u09].ClusterTime)
	})
	mu.Lock()
	firstU10.failWith(errors.New("injected: acknowledgement timed out"))
	u10Failed = true
	mu.Unlock()
	testsupport.Eventually(t, "u10 republished", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return attempts >= 2
	})
	n1.stop(false)

	cp := e.storedCheckpoint()
	if cp == nil || clusterTimeBefore(got[u09].ClusterTime, cp.ClusterTime) {
		t.Fatalf("checkpoint at %v passed u09 (%v) although u10's notice was never acknowledged", cp.ClusterTime, got[u09].ClusterTime)
	}

	// A restart publishes everything after the checkpoint: u10 included.
	e.opts = nil
	e.start()
	got = append(got, r.until(failing, isUser(failing, "insert"))...)
	assertNoFlush(t, got[1:])
	for i := range total {
		if u := fmt.Sprintf("u%02d", i); !slices.ContainsFunc(got, isUser(u, "insert")) {
			t.Errorf("no notice for %s: %v", u, got)
		}
	}
}

// TestNotifierBoundsNoticesInFlight: with acknowledgements held back, the
// notifier has at most maxInFlight notices outstanding, and it does
// publish ahead (it reaches the bound) instead of waiting for each.
func TestNotifierBoundsNoticesInFlight(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	const bound, total = 4, 12

	var (
		mu          sync.Mutex
		held        []*heldFuture // issued, not released, oldest first
		issued, top int
		draining    bool // the test is over: hold nothing back
	)
	e.opts = []Option{withNoticePublisher(bound, func(real asyncPublisher) asyncPublisher {
		return asyncPublisherFunc(func(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
			real, err := real.PublishMsgAsync(m, opts...)
			if err != nil {
				return nil, err
			}
			mu.Lock()
			defer mu.Unlock()
			if draining {
				return real, nil
			}
			f := newHeldFuture(m, real)
			held = append(held, f)
			issued++
			top = max(top, len(held))
			return f, nil
		})
	})}
	e.start()
	// Runs before the notifier's stop (cleanups run last-in first-out),
	// which waits for what is in flight.
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		draining = true
		for _, f := range held {
			f.release()
		}
		held = nil
	})
	r := e.readNotices()
	r.until("flush", isFlush(events.FlushNoCheckpoint))
	for i := range total {
		if _, err := e.coll.InsertOne(ctx, bson.M{"userId": fmt.Sprintf("b%02d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Release the oldest acknowledgement each time the window is full.
	for released := 0; released < total; released++ {
		testsupport.Eventually(t, "a full window (or every notice issued)", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(held) >= bound || (issued == total && len(held) > 0)
		})
		mu.Lock()
		f := held[0]
		held = held[1:]
		mu.Unlock()
		f.release()
	}
	got := r.until("b11", isUser("b11", "insert"))
	for i := range total {
		if u := fmt.Sprintf("b%02d", i); !slices.ContainsFunc(got, isUser(u, "insert")) {
			t.Errorf("no notice for %s: %v", u, got)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if top != bound {
		t.Fatalf("at most %d notices awaited acknowledgement at once, want exactly %d (the bound, reached)", top, bound)
	}
}

// asyncPublisherFunc adapts a function to asyncPublisher.
type asyncPublisherFunc func(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)

func (f asyncPublisherFunc) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	return f(m, opts...)
}

// storedCheckpoint reads the checkpoint store (nil: none).
func (e *notifierEnv) storedCheckpoint() *checkpoint {
	e.t.Helper()
	ctx := testsupport.Context(e.t)
	kv, err := e.js.KeyValue(ctx, DefaultNotifierCheckpointKV)
	if err != nil {
		e.t.Fatal(err)
	}
	entry, err := kv.Get(ctx, kvKeyForNamespace(e.data.Database, e.data.Collection))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	cp, err := decodeCheckpoint(entry.Value(), e.data.Database+"."+e.data.Collection)
	if err != nil {
		e.t.Fatal(err)
	}
	return &cp
}

// clusterTimeBefore reports a < b (a nil time is before any other).
func clusterTimeBefore(a, b *events.ClusterTime) bool {
	if a == nil {
		return b != nil
	}
	if b == nil {
		return false
	}
	return a.T < b.T || (a.T == b.T && a.I < b.I)
}

package authsync

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/triggers"
)

// flakyOn registers a trigger on op that fails transiently the first n
// times it runs, then succeeds without writing.
func flakyOn(op events.Operation, n int) func(*authEnv) {
	return func(e *authEnv) {
		var mu sync.Mutex
		calls := 0
		err := e.set.Register("flaky", triggers.On(op), triggers.HandlerFunc(func(events.AuthEvent) ([]triggers.Write, error) {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if calls <= n {
				return nil, errors.New("downstream lookup failed")
			}
			return nil, nil
		}))
		if err != nil {
			e.t.Fatal(err)
		}
	}
}

// fetchBatch pulls exactly want messages from the durable consumer with
// one pull request that waits for them up to authWait. One request, not a
// loop of short ones: a short request that expires while the server
// delivers to it (a loaded machine) loses that delivery until AckWait,
// and the message then comes back out of order.
func (e *authEnv) fetchBatch(c *Consumer, want int) []jetstream.Msg {
	e.t.Helper()
	ctx := testsupport.Context(e.t)
	cons, err := c.currentConsumer(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	batch, err := cons.Fetch(want, jetstream.FetchMaxWait(authWait))
	if err != nil {
		e.t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if len(msgs) != want {
		e.t.Fatalf("got %d messages, want %d (%v)", len(msgs), want, batch.Error())
	}
	return msgs
}

// delivery is a message's stream sequence and delivery count.
func delivery(t *testing.T, m jetstream.Msg) (seq, n uint64) {
	t.Helper()
	meta, err := m.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	return meta.Sequence.Stream, meta.NumDelivered
}

// TestAuthHeldBackEventIsNotRedeliveredBeforeItsBlocker: a DELETE that
// failed for the second time waits the second backoff step; the CREATE of
// the same user held back behind it in that batch must not come back
// earlier (it would create the document, and the late DELETE remove it).
// Before the fix the CREATE was Nak'd with the delay of its own first
// delivery and the user ended without a document. The redeliveries go to
// another replica that starts with empty memory: across replicas the Nak
// delays are the only protection, so the test reads the order in which
// the server redelivers them, then has that replica apply them.
//
// Nothing waits on a margin: each message is fetched once it is due
// (one pull each, so the batch is the DELETE's 2nd delivery then the
// CREATE's 1st, whatever the load), and AckWait is far longer than the
// test, so no delivery comes back by expiry.
func TestAuthHeldBackEventIsNotRedeliveredBeforeItsBlocker(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t), flakyOn(events.OperationDelete, 2), func(e *authEnv) {
		e.cfg.AckWait = 2 * time.Minute
		e.cfg.MaxDeliver = 5
		e.cfg.BackOff = []time.Duration{50 * time.Millisecond, 3 * time.Second}
	})
	c, _ := e.newConsumer()
	t0 := authBaseTime()
	ctx := testsupport.Context(e.t)

	e.publish(e.event(events.OperationDelete, "kim", t0))
	c.processBatch(ctx, e.fetchBatch(c, 1)) // the DELETE fails once: Nak 50ms
	deleteAgain := e.fetchBatch(c, 1)[0]    // its 2nd delivery, once due
	e.publish(e.event(events.OperationCreate, "kim", t0.Add(time.Second)))
	create := e.fetchBatch(c, 1)[0]
	delSeq, n := delivery(t, deleteAgain)
	if n != 2 {
		t.Fatalf("the DELETE came as delivery %d, want 2", n)
	}
	createSeq, _ := delivery(t, create)
	// One batch: the DELETE's 2nd delivery (fails again: Nak 3s) and the
	// CREATE's 1st, held back behind it.
	c.processBatch(ctx, []jetstream.Msg{deleteAgain, create})

	// The server redelivers by due time: the DELETE first, then the
	// CREATE (given no shorter a delay than the DELETE's).
	other, _ := e.newConsumer()
	redelivered := e.fetchBatch(other, 2)
	first, _ := delivery(t, redelivered[0])
	second, _ := delivery(t, redelivered[1])
	if first != delSeq || second != createSeq {
		t.Fatalf("redelivered stream sequences %d, %d; want the DELETE's (%d) before the CREATE's (%d): the held-back CREATE would be applied before the DELETE that held it back",
			first, second, delSeq, createSeq)
	}
	// Another replica, with no memory of what c sent back, applies them.
	other.processBatch(ctx, redelivered)
	e.waitSettled()
	if e.doc("kim") == nil {
		t.Fatal("kim has no document: the held-back CREATE was applied before the DELETE that held it back")
	}
	if n := len(e.deadLetters()); n != 0 {
		t.Fatalf("%d dead letters, want 0", n)
	}
}

// TestAuthLaterEventWaitsForItsUsersEventSentBackEarlier: a CREATE
// published after its user's DELETE failed arrives in another batch than
// the DELETE's redelivery; it must wait for it rather than be applied
// first. Before the fix the CREATE was applied at once and the DELETE,
// retried later, removed the new document.
func TestAuthLaterEventWaitsForItsUsersEventSentBackEarlier(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t), flakyOn(events.OperationDelete, 1), func(e *authEnv) {
		e.cfg.BackOff = []time.Duration{2 * time.Second}
	})
	_, reg := e.start()
	t0 := authBaseTime()
	e.publish(e.event(events.OperationDelete, "lee", t0))
	e.waitFor("the DELETE sent back for redelivery", func() bool {
		return testsupport.Metric(t, reg, "customdata_worker_auth_events_total", map[string]string{"operation": "DELETE", "outcome": "retried"}) == 1
	})
	e.publish(e.event(events.OperationCreate, "lee", t0.Add(time.Second)))
	e.waitSettled()
	if e.doc("lee") == nil {
		t.Fatal("lee has no document: the CREATE was applied before the earlier DELETE")
	}
	if got := testsupport.Metric(t, reg, "customdata_worker_auth_events_total", map[string]string{"operation": "CREATE", "outcome": "applied"}); got != 1 {
		t.Fatalf("applied CREATE events = %v, want 1", got)
	}
}

// TestAuthEventHeldBehindADeadLetteredOneIsApplied: a CREATE held back
// behind its user's DELETE, which keeps failing, burns its deliveries in
// step with it. When the DELETE is dead-lettered on its last delivery the
// CREATE is no longer held back by anything: it must be applied (in that
// same batch, after the DELETE's termination), not dead-lettered for
// deliveries its blocker used up. Before the fix both were dead-lettered
// as max_deliver_exceeded and the user had no document.
func TestAuthEventHeldBehindADeadLetteredOneIsApplied(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t), flakyOn(events.OperationDelete, 1000), func(e *authEnv) {
		e.cfg.MaxDeliver = 3
		e.cfg.BackOff = []time.Duration{50 * time.Millisecond}
	})
	c, reg := e.newConsumer()
	t0 := authBaseTime()
	ctx, cancel := context.WithCancel(testsupport.Context(t))
	defer cancel()

	e.publish(e.event(events.OperationDelete, "noor", t0))
	e.publish(e.event(events.OperationCreate, "noor", t0.Add(time.Second)))
	// Three deliveries of both, in one batch each: the DELETE fails every
	// time and holds the CREATE back.
	for delivery := uint64(1); delivery <= 3; delivery++ {
		msgs := e.fetchBatch(c, 2)
		for _, m := range msgs {
			if meta, _ := m.Metadata(); meta.NumDelivered != delivery {
				t.Fatalf("message %d of the batch is delivery %d, want %d", meta.Sequence.Stream, meta.NumDelivered, delivery)
			}
		}
		c.processBatch(ctx, msgs)
	}
	e.waitSettled()

	dls := e.deadLetters()
	var reasons []string
	for _, dl := range dls {
		reasons = append(reasons, dl.Subject+" "+dl.Header.Get(events.HeaderDLQReason))
	}
	if len(dls) != 1 || dls[0].Header.Get(events.HeaderDLQReason) != events.DeadLetterMaxDeliver ||
		dls[0].Header.Get(events.HeaderDLQOriginalSubject) != events.DefaultAuthPrefix+".delete" {
		t.Fatalf("dead letters %v, want only the DELETE (max_deliver_exceeded)", reasons)
	}
	if e.doc("noor") == nil {
		t.Fatal("noor has no document: the CREATE held back behind the dead-lettered DELETE was not applied")
	}
	if got := testsupport.Metric(t, reg, "customdata_worker_auth_events_total", map[string]string{"operation": "CREATE", "outcome": "applied"}); got != 1 {
		t.Fatalf("applied CREATE events = %v, want 1", got)
	}
}

package authsync

import (
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// TestAuthCoalescesAcrossBatchesDuringABacklog: a backlog of 100 logins of
// one hot user, fetched 10 at a time, costs one write when the coalescing
// window holds them all and one write per batch when the window is a
// batch; either way lastLogin ends at the latest login and every event is
// applied and acked.
func TestAuthCoalescesAcrossBatchesDuringABacklog(t *testing.T) {
	const n, batch = 100, 10
	for _, tc := range []struct {
		name       string
		window     int
		wantWrites float64
	}{
		{"window of one batch", batch, n / batch},
		{"window of the whole backlog", n, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newAuthEnv(t, testsupport.MongoDB(t), func(e *authEnv) {
				e.cfg.BatchSize, e.cfg.CoalesceWindow, e.cfg.MaxAckPending = batch, tc.window, n
			})
			c, reg := e.newConsumer()
			ctx := testsupport.Context(t)
			if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "hot"}); err != nil {
				t.Fatal(err)
			}
			t0 := authBaseTime()
			var latest time.Time
			for i := range n {
				at := t0.Add(time.Duration((i*37)%n) * time.Second) // out of order
				if at.After(latest) {
					latest = at
				}
				e.publish(e.event(events.OperationLogin, "hot", at))
			}
			e.run(c)
			e.waitSettled()
			if got := authTimeField(t, e.doc("hot"), "lastLogin"); !got.Equal(latest) {
				t.Fatalf("lastLogin = %s, want the latest %s", got, latest)
			}
			if got := testsupport.Metric(t, reg, "customdata_worker_auth_write_operations_total", nil); got != tc.wantWrites {
				t.Errorf("write operations = %v, want %v for %d logins of one user", got, tc.wantWrites, n)
			}
			if got := testsupport.Metric(t, reg, "customdata_worker_auth_events_total", map[string]string{"outcome": "applied"}); got != n {
				t.Errorf("applied = %v, want %d", got, n)
			}
			if info := e.consumerInfo(); info.NumAckPending != 0 || info.NumPending != 0 {
				t.Errorf("consumer: %d ack pending, %d pending; want every event acked", info.NumAckPending, info.NumPending)
			}
		})
	}
}

// TestAuthWindowUnderAServerMaxAckPendingBelowIt: a consumer whose
// server-side max_ack_pending is below the window (an operator's consumer
// in verify mode, or one an older replica created) still coalesces and
// applies every event: the backlog fetch stops at what the server lets it
// have, without waiting out a no-wait pull's one-second fallback per
// window (the time is logged, not asserted).
func TestAuthWindowUnderAServerMaxAckPendingBelowIt(t *testing.T) {
	const n, batch, serverMax = 100, 10, 25
	e := newAuthEnv(t, testsupport.MongoDB(t), func(e *authEnv) {
		e.cfg.BatchSize, e.cfg.CoalesceWindow, e.cfg.MaxAckPending = batch, n, n
	})
	c, _ := e.newConsumer()
	cc := c.consumerConfig()
	cc.MaxAckPending = serverMax
	if _, err := e.js.CreateOrUpdateConsumer(testsupport.Context(t), c.cfg.Stream, cc); err != nil {
		t.Fatal(err)
	}
	if _, err := e.coll.InsertOne(testsupport.Context(t), bson.M{"userId": "hot"}); err != nil {
		t.Fatal(err)
	}
	t0 := authBaseTime()
	for i := range n {
		e.publish(e.event(events.OperationLogin, "hot", t0.Add(time.Duration(i)*time.Second)))
	}
	start := time.Now()
	e.run(c)
	e.waitSettled()
	t.Logf("%d events through a server max_ack_pending of %d (window %d) settled in %s", n, serverMax, n, time.Since(start).Round(time.Millisecond))
	if latest := t0.Add((n - 1) * time.Second); !authTimeField(t, e.doc("hot"), "lastLogin").Equal(latest) {
		t.Fatalf("lastLogin = %s, want the latest %s", authTimeField(t, e.doc("hot"), "lastLogin"), latest)
	}
	if dl := e.deadLetters(); len(dl) != 0 {
		t.Fatalf("%d events dead-lettered", len(dl))
	}
}

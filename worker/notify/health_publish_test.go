package notify

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// TestNotifierIsUnhealthyWhilePublishesKeepFailing: every notice publish
// fails (its acknowledgement times out) while the feed reads fine. The
// feed's idle polls must not keep reporting the notifier healthy: after
// UnhealthyAfter, /readyz names it. Before the fix Healthy() stayed nil
// for as long as publishing failed.
func TestNotifierIsUnhealthyWhilePublishesKeepFailing(t *testing.T) {
	e := newNotifierEnv(t)
	ctx := testsupport.Context(t)
	var failing atomic.Bool
	var attempts atomic.Int64
	e.opts = []Option{withNoticePublisher(0, func(real asyncPublisher) asyncPublisher {
		return asyncPublisherFunc(func(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
			if !failing.Load() {
				return real.PublishMsgAsync(m, opts...)
			}
			attempts.Add(1)
			f := newHeldFuture(m, nil)
			time.AfterFunc(300*time.Millisecond, func() { f.failWith(errors.New("injected: ack timeout")) })
			return f, nil
		})
	})}
	n := e.start(func(c *Config) {
		c.UnhealthyAfter = time.Second
		c.RetryMaxInterval = 200 * time.Millisecond
		c.CheckpointInterval = 10 * time.Millisecond
	})
	r := e.readNotices()
	r.until("flush", isFlush(events.FlushNoCheckpoint))
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "h0"}); err != nil {
		t.Fatal(err)
	}
	r.until("h0", isUser("h0", "insert"))
	testsupport.Eventually(t, "checkpoint", func() bool { cp := e.storedCheckpoint(); return cp != nil && cp.ClusterTime != nil })
	failing.Store(true)
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "h1"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if err := n.Healthy(); err != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("h1's publish failed %d times over 15s (UnhealthyAfter 1s) but Healthy() stayed nil", attempts.Load())
}

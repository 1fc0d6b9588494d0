package issuer

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// TestNoHeartbeatMeansReadThrough: while the worker's notifier beats, the
// cache keeps values; when the beats stop (no leader anywhere), it keeps
// nothing and reads MongoDB on every Get, until they resume.
func TestNoHeartbeatMeansReadThrough(t *testing.T) {
	_, js := testsupport.StartNATS(t).Connect(t)
	noticeStream(t, js)
	src := newFake()
	src.set("ada", "d1", bson.E{Key: "plan", Value: "free"})
	c, err := NewCache(src, CacheConfig{}, WithNotices(js, NoticeConfig{LeaderTimeout: 400 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	beating := make(chan bool, 1)
	beating <- true
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // the leader
		on := true
		for ctx.Err() == nil {
			select {
			case on = <-beating:
			case <-time.After(50 * time.Millisecond):
			}
			// Silent, it still sends what it cannot vouch for: a
			// heartbeat no issuer can read is no sign of a leader.
			beat := []byte(`{"schemaVersion":1,"kind":"heartbeat"}`)
			if !on {
				beat = []byte(`{"schemaVersion":1,"kind":`)
			}
			_, _ = js.Publish(ctx, events.HeartbeatSubject(events.DefaultNoticePrefix), beat)
		}
	}()
	runCache(t, c)

	reads := func() int64 { plan(t, c, "ada"); plan(t, c, "ada"); return src.reads.Load() }
	before := reads()
	if after := reads(); after != before {
		t.Fatalf("with heartbeats: %d reads for 2 Gets, want 0 (cached)", after-before)
	}
	beating <- false
	waitFor(t, func() bool { return !c.Following() })
	before = reads()
	if after := reads(); after-before != 2 {
		t.Fatalf("without heartbeats: %d reads for 2 Gets, want 2 (nothing kept)", after-before)
	}
	if n := testutil.ToFloat64(c.m.flushes.WithLabelValues(FlushNoLeader)); n != 1 {
		t.Fatalf("flushes{reason=no_leader} = %v, want 1", n)
	}
	beating <- true
	waitFor(t, c.Following)
	before = reads()
	if after := reads(); after != before {
		t.Fatalf("heartbeats back: %d reads for 2 Gets, want 0", after-before)
	}
}

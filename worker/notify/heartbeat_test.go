package notify

import (
	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// TestLeaderPublishesHeartbeats: while a term runs, the leader publishes
// heartbeats on the notice stream; once it stops leading, they stop.
func TestLeaderPublishesHeartbeats(t *testing.T) {
	e := newNotifierEnv(t)
	n := e.start(func(c *Config) { c.HeartbeatInterval = 100 * time.Millisecond })
	r := e.readNotices()
	testsupport.Eventually(t, "three heartbeats", func() bool { return r.beats.Load() >= 3 })
	n.stop(false)
	time.Sleep(200 * time.Millisecond) // one last heartbeat may be in flight
	after := r.beats.Load()
	time.Sleep(500 * time.Millisecond)
	if got := r.beats.Load(); got != after {
		t.Fatalf("%d heartbeats after the notifier stopped", got-after)
	}
}

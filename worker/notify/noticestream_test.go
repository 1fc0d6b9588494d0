package notify

import (
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// TestNoticeStreamRecreatedUnderTheLeader: the notice stream is recreated
// while a leader publishes to it, either deleted (the leader's next publish
// fails and it provisions the stream again) or deleted and created again
// at once by someone else (the leader's publishes succeed, at lower
// sequences). Notices the old stream held are gone, so an issuer reading
// the new stream must get a notice_stream_lost flush-all, before any
// notice of a change made after the loss was seen.
func TestNoticeStreamRecreatedUnderTheLeader(t *testing.T) {
	for _, tc := range []struct {
		name      string
		recreated bool
		// idle: the leader published nothing but its first flush-all, and
		// its heartbeats provision the stream again before any change.
		idle bool
	}{
		{"deleted, provisioned again by the leader", false, false},
		{"deleted and created again by someone else", true, false},
		{"deleted under an idle leader, provisioned again by its heartbeats", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newNotifierEnv(t)
			e.cfg.HeartbeatInterval = 200 * time.Millisecond
			ctx := testsupport.Context(t)
			e.start()
			r := e.readNotices()
			r.until("no_checkpoint flush", isFlush(events.FlushNoCheckpoint))
			before := 3
			if tc.idle {
				before = 0
			}
			for i := range before { // the old stream's sequences go past the new one's first
				if _, err := e.coll.InsertOne(ctx, bson.M{"userId": fmt.Sprintf("before-%d", i)}); err != nil {
					t.Fatal(err)
				}
				r.until("the notice of before-"+fmt.Sprint(i), isUser(fmt.Sprintf("before-%d", i), "insert"))
			}

			if err := e.js.DeleteStream(ctx, DefaultNoticeStream); err != nil {
				t.Fatal(err)
			}
			if tc.recreated {
				e.provision()
			}
			if tc.idle {
				testsupport.Eventually(t, "the heartbeats provision the notice stream again", func() bool {
					_, err := e.js.Stream(ctx, DefaultNoticeStream)
					return err == nil
				})
			}
			if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "after"}); err != nil {
				t.Fatal(err)
			}
			testsupport.Eventually(t, "the notice stream exists again", func() bool {
				_, err := e.js.Stream(ctx, DefaultNoticeStream)
				return err == nil
			})
			// The flush-all comes first, or after the notice of "after"
			// alone: that notice may reach the new stream before the
			// leader sees the stream was recreated (its publish succeeds
			// there, at a lower sequence). Either way a flush-all covers
			// every notice the old stream lost.
			fresh := e.readNotices()
			for _, n := range fresh.until("a notice_stream_lost flush-all", isFlush(events.FlushNoticeStreamLost)) {
				if !(n.Kind == events.NoticeFlushAll && n.Reason == events.FlushNoticeStreamLost) && !isUser("after", "insert")(n) {
					t.Fatalf("notice %v on the new stream before its flush-all", n)
				}
			}
			if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "later"}); err != nil {
				t.Fatal(err)
			}
			fresh.until("the notice of a later change", isUser("later", "insert"))
		})
	}
}

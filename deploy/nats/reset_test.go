package natsdeploy_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// TestIssuersResetTheirNoticeConsumer: a reader of notices (package
// issuer, the reference issuer, the bridge) follows them with an ordered
// consumer, which nats.go re-creates when its consumer is gone or its
// heartbeats stop (a nats-server restart, a stream leader moving: the
// chaos run's faults) and then deletes the one it left. Each role is
// refused nothing doing so, and gets the notices published after.
func TestIssuersResetTheirNoticeConsumer(t *testing.T) {
	url := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := connect(t, url, workerRole)
	if _, err := w.js.CreateStream(ctx, jetstream.StreamConfig{Name: noticeStream, Subjects: []string{noticePrefix + ".>"}}); err != nil {
		t.Fatal(err)
	}
	ops := connect(t, url, opsRole)
	for _, r := range []role{issuerRole, referenceIssuer, bridgeRole} {
		t.Run(r.user, func(t *testing.T) {
			c := connect(t, url, r)
			cons, err := c.js.OrderedConsumer(ctx, noticeStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{noticePrefix + ".>"},
				DeliverPolicy: jetstream.DeliverNewPolicy})
			if err != nil {
				t.Fatal(err)
			}
			got := make(chan string, 16)
			cc, err := cons.Consume(func(m jetstream.Msg) { got <- m.Subject() })
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Stop()
			first := cons.CachedInfo().Name
			// Its consumer gone, as after a restart on an empty store.
			if err := ops.js.DeleteConsumer(ctx, noticeStream, first); err != nil {
				t.Fatal(err)
			}
			subject := noticePrefix + ".user.after-reset-" + r.user
			testsupport.Eventually(t, r.user+" follows the notices again", func() bool {
				if _, err := w.js.Publish(ctx, subject, []byte("{}")); err != nil {
					return false
				}
				select {
				case s := <-got:
					return s == subject
				case <-time.After(500 * time.Millisecond):
					return false
				}
			})
			// The reset deletes the consumer it replaced (in the
			// background): wait for that request's answer or refusal.
			time.Sleep(time.Second)
			c.noViolations(t, r.user)
		})
	}
	ops.noViolations(t, opsRole.user)
}

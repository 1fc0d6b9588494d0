package bridge

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
)

// losingPublisher loses the ack of its first publish: that attempt waits
// until its context ends. Later ones go to p.
type losingPublisher struct {
	*publisher
	calls atomic.Int64
}

func (p *losingPublisher) Publish(ctx context.Context, ev events.AuthEvent) (*jetstream.PubAck, error) {
	if p.calls.Add(1) == 1 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return p.publisher.Publish(ctx, ev)
}

// A LOGIN whose first ack is lost is published again within
// PublishTimeout instead of that attempt taking all of it: nats.go applies
// no timeout of its own under the queue's deadline.
func TestLoginWhoseAckIsLostIsRetried(t *testing.T) {
	pub := &losingPublisher{publisher: &publisher{}}
	s, err := New(newFakeData(t, nil), Config{}, WithSupabase(verifier(t, secret(t))),
		WithLogins(pub, LoginConfig{Supabase: true, PublishTimeout: time.Minute}))
	if err != nil {
		t.Fatal(err)
	}
	s.logins.attemptLimit = 100 * time.Millisecond
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.logins.publish(context.Background(), events.NewAuthEvent(events.OperationLogin, "user-1", "password"))
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the first attempt still waits for its lost ack")
	}
	if n := len(pub.events()); n != 1 || pub.calls.Load() != 2 {
		t.Fatalf("published %d after %d attempts, want 1 after 2", n, pub.calls.Load())
	}
}

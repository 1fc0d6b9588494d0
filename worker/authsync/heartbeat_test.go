package authsync

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/triggers"
)

// slowPublish is a dead-letter stream that takes delay to acknowledge each
// publish (a slow or distant stream).
type slowPublish struct {
	jetstream.JetStream
	delay time.Duration
}

func (s slowPublish) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	time.Sleep(s.delay)
	return s.JetStream.PublishMsg(ctx, msg, opts...)
}

// TestAuthAppliedEventIsExtendedUntilAcked: an applied event of a batch is
// acked together with the others of its pass, after the pass has settled
// the rest; when the dead letters settled after it take longer than
// AckWait, the working replica keeps extending its deadline, so it is not
// redelivered to another replica (and applied twice) meanwhile.
func TestAuthAppliedEventIsExtendedUntilAcked(t *testing.T) {
	// Every LOGIN sets a field that a unique index already holds: the
	// server refuses those writes for good and their events are
	// dead-lettered in settle, after the CREATE before them was applied.
	cfg := triggers.DefaultConfig()
	cfg.Rules = []triggers.Rule{{
		Name: "team", On: []events.Operation{events.OperationLogin}, Upsert: true,
		Set: map[string]triggers.ValueSource{"team": {From: triggers.SourceConstant, Value: "red"}},
	}}
	const ackWait, publishDelay, deadLetters = 3 * time.Second, 1200 * time.Millisecond, 4
	e := newAuthEnv(t, testsupport.MongoDB(t), authWithTriggers(cfg), func(e *authEnv) {
		e.cfg.AckWait, e.cfg.BatchSize = ackWait, 10
	})
	ctx := testsupport.Context(e.t)
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "holder", "team": "red"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.coll.Indexes().CreateOne(ctx, mongoUniqueIndex("team")); err != nil {
		t.Fatal(err)
	}
	c, _ := e.newConsumer()
	// Each dead letter takes less than AckWait (its own message is not
	// extended while it is published), all of them together much more.
	c.dlq.js = slowPublish{JetStream: c.dlq.js, delay: publishDelay}
	at := authBaseTime()
	e.publish(e.event(events.OperationCreate, "alice", at))
	for i := range deadLetters {
		e.publish(e.event(events.OperationLogin, fmt.Sprintf("user-%d", i), at))
	}
	msgs := e.fetchBatch(c, deadLetters+1)

	// Another replica fetches from the same consumer while the batch is
	// being settled: everything it gets is a redelivery.
	cons, err := e.js.Consumer(ctx, DefaultAuthStream, DefaultAuthConsumer)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var redelivered []uint64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			batch, err := cons.Fetch(10, jetstream.FetchMaxWait(500*time.Millisecond))
			if err != nil {
				continue
			}
			for m := range batch.Messages() {
				meta, _ := m.Metadata()
				redelivered = append(redelivered, meta.Sequence.Stream)
			}
		}
	}()
	c.processBatch(ctx, msgs)
	close(done)
	wg.Wait()

	if len(redelivered) > 0 {
		t.Fatalf("stream seqs %v were redelivered to another replica while their batch was settling (seq 1 is the applied CREATE)", redelivered)
	}
	if got := len(e.deadLetters()); got != deadLetters {
		t.Fatalf("%d dead letters, want %d", got, deadLetters)
	}
	if e.doc("alice") == nil {
		t.Fatal("the CREATE was not applied")
	}
	if info := e.consumerInfo(); info.NumAckPending != 0 || info.NumRedelivered != 0 {
		t.Fatalf("after the batch: %d acks pending, %d redelivered; want 0 and 0", info.NumAckPending, info.NumRedelivered)
	}
}

// progressMsg is a message whose first in-progress ack stalls until
// released, as a heartbeat preempted between its check and its send
// would; it records what is sent for it, in order.
type progressMsg struct {
	fakeMsg
	mu      *sync.Mutex
	sent    *[]string
	first   *sync.Once
	stalled chan struct{} // closed once the first in-progress ack stalls
	release chan struct{}
}

func (m progressMsg) record(s string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	*m.sent = append(*m.sent, s)
}

func (m progressMsg) InProgress() error {
	m.first.Do(func() {
		close(m.stalled)
		<-m.release
	})
	m.record("+WPI")
	return nil
}

func (m progressMsg) NakWithDelay(d time.Duration) error {
	m.record("-NAK " + d.String())
	return nil
}

// TestAuthNoInProgressAfterTheNak: an in-progress ack that reaches the
// server after a Nak with delay resets the redelivery to AckWait, so a
// DELETE sent back for 3 s would come back after the CREATE held back
// behind it. A heartbeat under way when the message is resolved therefore
// goes out before the Nak, and none follows it. Before the fix the Nak
// went out while the heartbeat's in-progress ack was under way.
func TestAuthNoInProgressAfterTheNak(t *testing.T) {
	var mu sync.Mutex
	var sent []string
	m := progressMsg{mu: &mu, sent: &sent, first: &sync.Once{}, stalled: make(chan struct{}), release: make(chan struct{})}
	a := &Consumer{ackWait: 40 * time.Millisecond} // in-progress acks every 10 ms
	it := &authItem{msg: m, meta: &jetstream.MsgMetadata{NumDelivered: 2, Sequence: jetstream.SequencePair{Stream: 1}}, userID: "kim"}
	stop := a.startHeartbeat([]*authItem{it})
	select {
	case <-m.stalled:
	case <-time.After(authWait):
		close(m.release)
		stop()
		t.Fatal("no in-progress ack within the deadline")
	}
	naked := make(chan struct{})
	go func() {
		defer close(naked)
		it.resolve()
		a.sendBack(it, 3*time.Second, &batchStats{})
	}()
	// Give a Nak that does not wait for the stalled in-progress ack the
	// time to go out first (with the fix it waits, and this times out).
	select {
	case <-naked:
	case <-time.After(200 * time.Millisecond):
	}
	close(m.release)
	<-naked
	time.Sleep(50 * time.Millisecond) // further ticks, which must send nothing
	stop()
	mu.Lock()
	defer mu.Unlock()
	if len(sent) == 0 || sent[len(sent)-1] != "-NAK 3s" {
		t.Fatalf("sent %v, want the Nak last: an in-progress ack after it resets its delay to AckWait", sent)
	}
}

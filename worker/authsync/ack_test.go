package authsync

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// TestAuthBatchAcksAreConfirmedTogether: the applied messages of a batch
// are acked with one confirmation (the DoubleAck of the last one). When
// processBatch returns, the server has recorded every ack of the batch,
// not only the confirmed one: nothing is pending, the ack floor is at the
// batch's last message, and nothing is redelivered after AckWait.
func TestAuthBatchAcksAreConfirmedTogether(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t), func(e *authEnv) {
		e.cfg.AckWait, e.cfg.BatchSize = time.Second, 50
	})
	c, reg := e.newConsumer()
	e.seedUsers(20)
	base := authBaseTime()
	const n = 50
	for i := range n {
		e.publish(e.event(events.OperationLogin, fmt.Sprintf("user-%d", i%20), base.Add(time.Duration(i)*time.Second)))
	}
	msgs := e.fetchBatch(c, n)
	ctx, cancel := context.WithCancel(testsupport.Context(e.t))
	defer cancel()
	c.processBatch(ctx, msgs)

	// No polling: the confirmation says the acks were processed.
	info := e.consumerInfo()
	lastSeq, _ := msgs[n-1].Metadata()
	if info.NumAckPending != 0 || info.AckFloor.Stream != lastSeq.Sequence.Stream {
		t.Fatalf("after the batch: %d acks pending, ack floor %d; want 0 and %d",
			info.NumAckPending, info.AckFloor.Stream, lastSeq.Sequence.Stream)
	}
	if got := testsupport.Metric(t, reg, "customdata_worker_auth_events_total", map[string]string{"outcome": "applied"}); got != n {
		t.Fatalf("applied = %v, want %d", got, n)
	}
	// Nothing comes back once AckWait is over.
	cons, err := e.js.Consumer(ctx, DefaultAuthStream, DefaultAuthConsumer)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		meta, _ := m.Metadata()
		t.Errorf("stream seq %d was redelivered (delivery %d) after its batch was acked", meta.Sequence.Stream, meta.NumDelivered)
	}
	if info := e.consumerInfo(); info.NumRedelivered != 0 {
		t.Fatalf("%d messages redelivered, want 0", info.NumRedelivered)
	}
	for i := range 20 {
		user := fmt.Sprintf("user-%d", i)
		want := base.Add(time.Duration(i+40) * time.Second) // the newest login of each user: 40..49 for 0..9, 20..39 for 10..19
		if i >= 10 {
			want = base.Add(time.Duration(i+20) * time.Second)
		}
		if got := authTimeField(t, e.doc(user), "lastLogin"); !got.Equal(want) {
			t.Fatalf("%s lastLogin = %s, want %s", user, got, want)
		}
	}
}

// seedUsers inserts the documents of user-0 … user-(n-1): a LOGIN only
// updates an existing document by default.
func (e *authEnv) seedUsers(n int) {
	e.t.Helper()
	docs := make([]any, n)
	for i := range docs {
		docs[i] = bson.M{"userId": fmt.Sprintf("user-%d", i)}
	}
	ctx, cancel := context.WithCancel(testsupport.Context(e.t))
	defer cancel()
	if _, err := e.coll.InsertMany(ctx, docs); err != nil {
		e.t.Fatal(err)
	}
}

// failingConfirm is a message whose confirming DoubleAck finds the NATS
// connection closed: the worker dies between sending the batch's plain
// acks and receiving the confirmation.
type failingConfirm struct {
	jetstream.Msg
	nc *nats.Conn
}

func (m failingConfirm) DoubleAck(ctx context.Context) error {
	m.nc.Close()
	return m.Msg.DoubleAck(ctx)
}

// TestAuthFailedBatchConfirmationMeansRedeliveryNotLoss: when the
// confirmation of a batch's acks fails, the batch counts as unconfirmed;
// the messages whose acks did not reach the server are redelivered after
// AckWait to another worker, which applies them again (idempotently) and
// acks them. No event is lost and the documents end as if applied once.
func TestAuthFailedBatchConfirmationMeansRedeliveryNotLoss(t *testing.T) {
	n := testsupport.StartNATS(t)
	e := newAuthEnv(t, testsupport.MongoDB(t), func(e *authEnv) {
		e.cfg.AckWait, e.cfg.BatchSize = time.Second, 20
		e.nc, e.js = n.Connect(t)
	})
	e.newConsumer() // provisions

	// The first worker, on its own connection.
	firstNC, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer firstNC.Close()
	firstJS, err := jetstream.New(firstNC)
	if err != nil {
		t.Fatal(err)
	}
	first, err := New(firstJS, e.coll, e.set, e.cfg, WithData(e.data), WithStreams(e.streams), WithLogger(e.log))
	if err != nil {
		t.Fatal(err)
	}
	e.seedUsers(20)
	base := authBaseTime()
	const count = 20
	for i := range count {
		e.publish(e.event(events.OperationLogin, fmt.Sprintf("user-%d", i), base.Add(time.Duration(i)*time.Second)))
	}
	msgs := e.fetchBatch(first, count)
	msgs[count-1] = failingConfirm{Msg: msgs[count-1], nc: firstNC}
	ctx, cancel := context.WithCancel(testsupport.Context(e.t))
	defer cancel()
	first.processBatch(ctx, msgs)
	if !firstNC.IsClosed() {
		t.Fatal("the confirmation was never requested")
	}
	for i := range count {
		if e.doc(fmt.Sprintf("user-%d", i))["lastLogin"] == nil {
			t.Fatalf("user-%d: the first worker did not apply its write", i)
		}
	}

	// At least the confirming message's ack never reached the server: it
	// is redelivered to a second worker, applied again and acked.
	second, reg := e.newConsumer()
	e.run(second)
	e.waitSettled()
	got := testsupport.Metric(t, reg, "customdata_worker_auth_events_total", map[string]string{"outcome": "applied"})
	if got < 1 {
		t.Fatalf("the second worker applied %v redelivered events, want at least the one whose ack was never sent", got)
	}
	t.Logf("%v of %d events were redelivered and applied again", got, count)
	for i := range count {
		user := fmt.Sprintf("user-%d", i)
		if got, want := authTimeField(t, e.doc(user), "lastLogin"), base.Add(time.Duration(i)*time.Second); !got.Equal(want) {
			t.Fatalf("%s lastLogin = %s, want %s", user, got, want)
		}
	}
}

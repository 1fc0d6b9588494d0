package authsync

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/triggers"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

// TestAuthDefaultAckWaitAndProgressInterval: the provisioned consumer
// hands a crashed replica's batch to another within about 10 s, and a
// healthy worker extends its batch well within that, even when the fetch
// took all of BatchWait before the first extension.
func TestAuthDefaultAckWaitAndProgressInterval(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t), func(e *authEnv) { e.cfg.AckWait, e.cfg.BatchWait = 0, 0 })
	c, _ := e.newConsumer()
	ackWait := e.consumerInfo().Config.AckWait
	if ackWait != DefaultAuthAckWait || ackWait > 10*time.Second {
		t.Fatalf("provisioned AckWait = %s, want the default of at most 10s", ackWait)
	}
	interval := c.progressInterval()
	// Three extensions may be lost (a busy machine, a slow NATS round
	// trip) before a healthy batch expires.
	if DefaultAuthBatchWait+4*interval > ackWait {
		t.Fatalf("progress interval %s with batch wait %s: fewer than 4 extensions fit in ack wait %s", interval, DefaultAuthBatchWait, ackWait)
	}
	for _, tc := range []struct{ ackWait, batchWait time.Duration }{
		{time.Second, 900 * time.Millisecond}, {10 * time.Second, 200 * time.Millisecond}, {time.Minute, time.Second},
	} {
		if iv := progressInterval(tc.ackWait, tc.batchWait); tc.batchWait+iv >= tc.ackWait || iv <= 0 {
			t.Errorf("ack wait %s, batch wait %s: interval %s lets the first message expire before its first extension", tc.ackWait, tc.batchWait, iv)
		}
	}
}

// TestAuthCrashedWorkersBatchIsRedeliveredWithinDefaultAckWait: a worker
// whose connection dies abruptly mid-batch (like kill -9) acks nothing; a
// second worker with the default settings gets the batch and applies it.
// The wait is generous polling; it stays below the old 30 s default, which
// this test fails with.
func TestAuthCrashedWorkersBatchIsRedeliveredWithinDefaultAckWait(t *testing.T) {
	n := testsupport.StartNATS(t)
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	e := newAuthEnv(t, testsupport.MongoDB(t), func(e *authEnv) {
		e.cfg.AckWait, e.cfg.BatchWait = 0, 0
		nc, js := n.Connect(t)
		e.nc, e.js = nc, js
		err := e.set.Register("stall-first", triggers.On(events.OperationCreate), triggers.HandlerFunc(func(events.AuthEvent) ([]triggers.Write, error) {
			first := false
			once.Do(func() { first = true })
			if first {
				close(entered)
				<-release
			}
			return nil, nil
		}))
		if err != nil {
			t.Fatal(err)
		}
	})
	e.newConsumer() // provisions

	// The crashing worker: its own connection, closed without a drain.
	crashNC, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	crashJS, err := jetstream.New(crashNC)
	if err != nil {
		t.Fatal(err)
	}
	crashing, err := New(crashJS, e.coll, e.set, e.cfg, WithData(e.data), WithStreams(e.streams), WithLogger(e.log))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	crashDone := make(chan struct{})
	go func() {
		defer close(crashDone)
		_ = crashing.Run(ctx)
	}()
	defer func() {
		close(release)
		cancel()
		<-crashDone
	}()

	e.publish(e.event(events.OperationCreate, "mia", authBaseTime()))
	select {
	case <-entered:
	case <-time.After(authWait):
		t.Fatal("the first worker never started on the batch")
	}
	crashNC.Close()
	crashedAt := time.Now()

	survivor, _ := e.newConsumer()
	e.run(survivor)
	deadline := time.Now().Add(25 * time.Second)
	for e.doc("mia") == nil {
		if time.Now().After(deadline) {
			t.Fatal("the crashed worker's batch was not redelivered to the other worker within 25s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A figure for the record, not an assertion.
	t.Logf("the crashed worker's batch was applied by the other worker %s after the crash", time.Since(crashedAt).Round(100*time.Millisecond))
}

// TestAuthSlowWriteDoesNotExpireAHealthyBatch: a MongoDB write that takes
// longer than AckWait (a slow majority write) must not let another worker
// get the batch while this one still works on it.
func TestAuthSlowWriteDoesNotExpireAHealthyBatch(t *testing.T) {
	e := newAuthEnv(t, testsupport.MongoDB(t), func(e *authEnv) {
		e.cfg.AckWait, e.cfg.BatchWait = time.Second, 50*time.Millisecond
		e.data.WriteTimeout = 10 * time.Second // longer than AckWait is allowed
	})
	c, reg := e.newConsumer()
	c.writer = slowWrites{c.writer, 3 * time.Second} // three ack waits
	e.publish(e.event(events.OperationCreate, "noa", authBaseTime()))
	msgs := e.fetchBatch(c, 1)

	// Another worker pulls from the same consumer during the slow write.
	stolen := make(chan int, 1)
	go func() {
		ctx := testsupport.Context(e.t)
		cons, err := e.js.Consumer(ctx, DefaultAuthStream, DefaultAuthConsumer)
		if err != nil {
			stolen <- -1
			return
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(2500*time.Millisecond))
		if err != nil {
			stolen <- -1
			return
		}
		got := 0
		for m := range batch.Messages() {
			got++
			_ = m.Nak()
		}
		stolen <- got
	}()
	ctx := testsupport.Context(e.t)
	c.processBatch(ctx, msgs)
	if got := <-stolen; got != 0 {
		t.Fatalf("another worker fetched %d messages of a batch in progress (-1: fetch failed)", got)
	}
	if e.doc("noa") == nil {
		t.Fatal("the slow write was not applied")
	}
	if got := testsupport.Metric(t, reg, "customdata_worker_auth_events_total", map[string]string{"outcome": "applied"}); got != 1 {
		t.Fatalf("applied = %v, want 1", got)
	}
	e.waitSettled()
}

// slowWrites applies writes after a delay.
type slowWrites struct {
	Writes
	delay time.Duration
}

func (s slowWrites) Apply(ctx context.Context, writes []triggers.Write) ([]customdata.Fault, []error) {
	time.Sleep(s.delay)
	return s.Writes.Apply(ctx, writes)
}

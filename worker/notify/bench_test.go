package notify

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// BenchmarkCommitToNotice measures, against the real NATS server and the
// test MongoDB, the time from MongoDB acknowledging an insert to a
// JetStream subscriber (an ordered consumer, as an issuer would use)
// receiving its notice, one change at a time; then the throughput of a
// burst of b.N changes inserted at once.
//
//	go test -run '^$' -bench CommitToNotice -benchtime 2000x ./worker/
func BenchmarkCommitToNotice(b *testing.B) {
	b.StopTimer()
	e := newNotifierEnv(b)
	e.cfg.LeaseTTL = DefaultNotifierLeaseTTL
	n := e.start()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var mu sync.Mutex
	arrived := map[string]time.Time{}
	signal := make(chan struct{}, 1)
	cons, err := e.js.OrderedConsumer(ctx, DefaultNoticeStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.DefaultNoticePrefix + ".user.>"},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		b.Fatal(err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		at := time.Now()
		n, err := events.DecodeNotice(msg.Data())
		if err != nil {
			return
		}
		mu.Lock()
		if _, dup := arrived[n.UserID]; !dup {
			arrived[n.UserID] = at
		}
		mu.Unlock()
		select {
		case signal <- struct{}{}:
		default:
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	waitFor := func(user string) time.Time {
		deadline := time.After(noticeWait)
		for {
			mu.Lock()
			at, ok := arrived[user]
			mu.Unlock()
			if ok {
				return at
			}
			select {
			case <-signal:
			case <-deadline:
				b.Fatalf("no notice for %s within %s", user, noticeWait)
			}
		}
	}
	// The stream is open once the first flush-all is out.
	testsupport.Eventually(b, "notifier leads", func() bool {
		return metricValue(n.metrics.flushes.WithLabelValues(string(events.FlushNoCheckpoint))) == 1
	})
	if _, err := e.coll.InsertOne(ctx, bson.M{"userId": "warmup"}); err != nil {
		b.Fatal(err)
	}
	waitFor("warmup")

	latencies := make([]time.Duration, 0, b.N)
	b.StartTimer()
	start := time.Now()
	for i := range b.N {
		user := fmt.Sprintf("seq-%d", i)
		if _, err := e.coll.InsertOne(ctx, bson.M{"userId": user}); err != nil {
			b.Fatal(err)
		}
		acked := time.Now()
		latencies = append(latencies, max(0, waitFor(user).Sub(acked)))
	}
	seqElapsed := time.Since(start)
	b.StopTimer()

	docs := make([]any, b.N)
	for i := range docs {
		docs[i] = bson.M{"userId": fmt.Sprintf("burst-%d", i)}
	}
	burstStart := time.Now()
	if _, err := e.coll.InsertMany(ctx, docs); err != nil {
		b.Fatal(err)
	}
	var last time.Time
	for i := range b.N {
		if at := waitFor(fmt.Sprintf("burst-%d", i)); at.After(last) {
			last = at
		}
	}

	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Microseconds())
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(b.N)/seqElapsed.Seconds(), "seq-notices/s")
	b.ReportMetric(float64(b.N)/last.Sub(burstStart).Seconds(), "burst-notices/s")
}

package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// BenchmarkNotifierOwnCost measures what one change costs the notifier
// itself, with MongoDB taken out: the change stream is a scripted feed of
// b.N update events shaped as real MongoDB emits them with updateLookup
// (fullDocument and updateDescription), so neither the stand-in's nor a
// server's cost is in the figure. NATS is the real server, in this
// process, so the process CPU below holds the notifier, the NATS client
// and the server's share of each publish. The "publish-only" case
// publishes the same notices with a plain client through the same async
// window, so the difference between the two is the notifier's own cost
// (decode, mapping, window, checkpoints). Figures (docs/SCALING.md):
//
//	cpu-µs/change       process CPU (user+system) per change
//	changes/s           gate opened → every notice acknowledged (or, when
//	                    ignored, every change mapped)
//	checkpoint-writes   checkpoint KV writes during the run
//	publishes/change    notices published per change (one JetStream
//	                    publish round trip each, pipelined 256 deep)
//
//	go test -run '^$' -bench NotifierOwnCost -benchtime 100000x ./worker/notify/
func BenchmarkNotifierOwnCost(b *testing.B) {
	b.Run("announced", func(b *testing.B) { benchNotifierCost(b, false) })
	b.Run("ignored", func(b *testing.B) { benchNotifierCost(b, true) })
	b.Run("publish-only", benchPublishOnly)
}

func benchNotifierCost(b *testing.B, loginOnly bool) {
	b.StopTimer()
	e := newNotifierEnv(b)
	e.provision()
	const base = 1700000000
	evs := make([]bson.Raw, b.N)
	for i := range evs {
		evs[i] = scriptedUpdate(b, i, base, loginOnly)
	}
	feed := &gatedFeed{gate: make(chan struct{}), events: evs}
	n := e.run(e.db, feed, false, func(c *Config) {
		c.LeaseTTL = DefaultNotifierLeaseTTL
		if loginOnly {
			c.IgnoreFields = []string{"lastLogin"}
		}
	})
	testsupport.Eventually(b, "notifier leads", func() bool {
		return metricValue(n.metrics.flushes.WithLabelValues(string(events.FlushNoCheckpoint))) == 1
	})
	kv, err := e.js.KeyValue(testsupport.Context(b), DefaultNotifierCheckpointKV)
	if err != nil {
		b.Fatal(err)
	}
	revBefore := checkpointRevision(b, kv, e)

	cpu0 := processCPU(b)
	b.StartTimer()
	start := time.Now()
	close(feed.gate)
	done := func() bool {
		if loginOnly {
			return metricValue(n.metrics.ignored) >= float64(b.N)
		}
		return metricValue(n.metrics.published.WithLabelValues("user", "update")) >= float64(b.N)
	}
	for !done() {
		time.Sleep(5 * time.Millisecond)
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("notifier did not finish %d changes in 5 minutes", b.N)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := processCPU(b) - cpu0
	// The checkpoint trails by up to CheckpointInterval; waiting for it
	// is not part of the change's cost.
	e.waitCheckpoint(lookupClusterTime(evs[len(evs)-1]))

	published := metricValue(n.metrics.published.WithLabelValues("user", "update"))
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/change")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "changes/s")
	b.ReportMetric(float64(checkpointRevision(b, kv, e)-revBefore), "checkpoint-writes")
	b.ReportMetric(published/float64(b.N), "publishes/change")
}

// benchPublishOnly publishes b.N notices of the same size as the
// announced case's, each with its own Msg-Id, keeping at most
// maxNoticesInFlight unacknowledged: the NATS share of a change.
func benchPublishOnly(b *testing.B) {
	b.StopTimer()
	e := newNotifierEnv(b)
	e.provision()
	ctx := testsupport.Context(b)
	nc, _ := e.nats.Connect(b)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(maxNoticesInFlight*2))
	if err != nil {
		b.Fatal(err)
	}
	msgs := make([]*nats.Msg, b.N)
	for i := range msgs {
		data, err := json.Marshal(events.Notice{
			SchemaVersion: events.NoticeSchemaVersion, Kind: events.NoticeUser,
			UserID: fmt.Sprintf("user-%d", i), DocumentID: fmt.Sprintf("doc-%d", i),
			Operation: "update", ChangedFields: []string{"plan"},
			ClusterTime: &events.ClusterTime{T: 1700000000 + uint32(i/1000), I: uint32(i%1000 + 1)},
		})
		if err != nil {
			b.Fatal(err)
		}
		m := nats.NewMsg(events.UserNoticeSubject(events.DefaultNoticePrefix, fmt.Sprintf("user-%d", i)))
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("bench-%d", i))
		msgs[i] = m
	}
	window := make(chan jetstream.PubAckFuture, maxNoticesInFlight)
	var wg sync.WaitGroup
	var ackErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for f := range window {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				ackErr = err
			case <-ctx.Done():
				ackErr = ctx.Err()
			}
		}
	}()
	cpu0 := processCPU(b)
	b.StartTimer()
	start := time.Now()
	for _, m := range msgs {
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			b.Fatal(err)
		}
		window <- f
	}
	close(window)
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if ackErr != nil {
		b.Fatal(ackErr)
	}
	cpu := processCPU(b) - cpu0
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/change")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "changes/s")
}

// scriptedUpdate is the i-th change event of the cost benchmark: user-i's
// document updated (plan, or with loginOnly only lastLogin), as a change
// stream opened with fullDocument: updateLookup delivers it.
func scriptedUpdate(b *testing.B, i int, base uint32, loginOnly bool) bson.Raw {
	user := fmt.Sprintf("user-%d", i)
	docID := user + "-doc"
	updated := bson.D{{Key: "plan", Value: "pro"}}
	if loginOnly {
		updated = bson.D{{Key: "lastLogin", Value: bson.DateTime(int64(base) * 1000)}}
	}
	ev := bson.D{
		{Key: "_id", Value: bson.D{{Key: "_data", Value: fmt.Sprintf("82%016X", i+1)}}},
		{Key: "operationType", Value: "update"},
		{Key: "clusterTime", Value: bson.Timestamp{T: base + uint32(i/1000), I: uint32(i%1000 + 1)}},
		{Key: "ns", Value: bson.D{{Key: "db", Value: "app"}, {Key: "coll", Value: "customdata"}}},
		{Key: "documentKey", Value: bson.D{{Key: "_id", Value: docID}}},
		{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: docID}, {Key: "userId", Value: user}, {Key: "plan", Value: "pro"},
			{Key: "lang", Value: "en"}, {Key: "lastLogin", Value: bson.DateTime(int64(base) * 1000)}}},
		{Key: "updateDescription", Value: bson.D{{Key: "updatedFields", Value: updated},
			{Key: "removedFields", Value: bson.A{}}, {Key: "truncatedArrays", Value: bson.A{}}}},
	}
	raw, err := bson.Marshal(ev)
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

func lookupClusterTime(ev bson.Raw) *events.ClusterTime {
	t, i, _ := ev.Lookup("clusterTime").TimestampOK()
	return &events.ClusterTime{T: t, I: i}
}

// checkpointRevision is the checkpoint key's KV revision (0: none yet).
func checkpointRevision(b *testing.B, kv jetstream.KeyValue, e *notifierEnv) uint64 {
	entry, err := kv.Get(testsupport.Context(b), kvKeyForNamespace(e.data.Database, e.data.Collection))
	if err != nil {
		return 0
	}
	return entry.Revision()
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// gatedFeed is a change stream that yields nothing until gate is closed,
// then its events, then stays idle; reopens yield nothing.
type gatedFeed struct {
	gate   chan struct{}
	mu     sync.Mutex
	events []bson.Raw
	opened bool
}

func (g *gatedFeed) open(context.Context, mongo.Pipeline, *checkpoint, *options.ChangeStreamOptionsBuilder) (feedCursor, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.opened {
		return &scriptedCursor{}, nil
	}
	g.opened = true
	return &gatedCursor{gate: g.gate, scriptedCursor: scriptedCursor{events: g.events}}, nil
}

type gatedCursor struct {
	gate <-chan struct{}
	scriptedCursor
}

func (c *gatedCursor) TryNext(ctx context.Context) bool {
	select {
	case <-c.gate:
		return c.scriptedCursor.TryNext(ctx)
	default:
		return false
	}
}

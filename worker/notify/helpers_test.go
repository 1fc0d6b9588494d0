package notify

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/provision"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

// noticeWait is the generous deadline for effects in integration tests.
const noticeWait = 15 * time.Second

// roundTripNotice checks that n survives the wire format issuers decode.
func roundTripNotice(n events.Notice) error {
	data, err := json.Marshal(n)
	if err != nil {
		return err
	}
	_, err = events.DecodeNotice(data)
	return err
}

// notifierEnv is a NATS server, a MongoDB database and a notifier config
// pointing at both; changes are made with a plain client (h.coll), never
// through the notifier.
type notifierEnv struct {
	t       testing.TB
	nats    *testsupport.NATS
	js      jetstream.JetStream
	mongo   *testsupport.Mongo
	client  *mongo.Client
	db      *mongo.Database
	coll    *mongo.Collection
	cfg     Config
	data    customdata.Config
	streams provision.Streams
	// opts are given to each Notifier's New.
	opts []Option
}

func newNotifierEnv(t testing.TB) *notifierEnv {
	t.Helper()
	m := testsupport.MongoDB(t)
	return newNotifierEnvOn(t, m, m.Client(t))
}

func newNotifierEnvOn(t testing.TB, m *testsupport.Mongo, client *mongo.Client) *notifierEnv {
	t.Helper()
	ns := testsupport.StartNATS(t)
	_, js := ns.Connect(t)
	db := client.Database(testsupport.DatabaseName(t))
	coll := db.Collection("customdata")
	return &notifierEnv{
		t: t, nats: ns, js: js, mongo: m, client: client, db: db, coll: coll,
		cfg: Config{
			LeaseTTL:         2 * time.Second,
			RetryMaxInterval: time.Second,
		},
		data: customdata.Config{Database: db.Name(), Collection: coll.Name()},
	}
}

// runningNotifier is a Notifier whose Run goroutine the test owns. It has
// a NATS connection of its own, as a process would.
type runningNotifier struct {
	*Notifier
	nc     *nats.Conn
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{}
}

// stop cancels Run and waits for it. With crash, its NATS connection is
// closed first, as if the process had died: the lease is not given up and
// no last checkpoint is written.
func (r *runningNotifier) stop(crash bool) {
	if crash {
		r.nc.Close()
	}
	r.cancel()
	<-r.done
}

func (r *runningNotifier) published() float64 {
	var total float64
	for _, kind := range []string{"user", "flush_all"} {
		for _, op := range []string{"", "insert", "update", "replace", "delete", "drop", "rename", "dropDatabase", "invalidate"} {
			total += metricValue(r.metrics.published.WithLabelValues(kind, op))
		}
	}
	return total
}

// start provisions and runs a notifier; it is stopped at cleanup.
func (e *notifierEnv) start(mutate ...func(*Config)) *runningNotifier {
	e.t.Helper()
	return e.startOn(e.db, mutate...)
}

// startOn is start with the notifier reaching MongoDB through db (another
// client's handle on the same database).
func (e *notifierEnv) startOn(db *mongo.Database, mutate ...func(*Config)) *runningNotifier {
	e.t.Helper()
	return e.run(db, nil, true, mutate...)
}

// run runs a notifier on db whose feed opens through feeds (nil: the
// collection's Watch), provisioning first if asked; it is stopped at
// cleanup.
func (e *notifierEnv) run(db *mongo.Database, feeds feedSource, provision bool, mutate ...func(*Config)) *runningNotifier {
	e.t.Helper()
	cfg := e.cfg
	for _, f := range mutate {
		f(&cfg)
	}
	reg := prometheus.NewRegistry()
	log := zerolog.New(zerolog.NewTestWriter(e.t)).Level(zerolog.InfoLevel)
	nc, js := e.nats.Connect(e.t)
	opts := append([]Option{WithData(e.data), WithStreams(e.streams), WithLogger(log), WithRegisterer(reg), withFeeds(feeds)}, e.opts...)
	n, err := New(js, db, cfg, opts...)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	if provision {
		if err := n.Provision(ctx); err != nil {
			cancel()
			e.t.Fatalf("Provision: %v", err)
		}
	}
	r := &runningNotifier{Notifier: n, nc: nc, reg: reg, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := n.Run(ctx); err != nil {
			e.t.Errorf("Run returned %v, want nil", err)
		}
	}()
	e.t.Cleanup(func() { r.stop(false) })
	return r
}

// receivedNotice is a notice as an issuer sees it.
type receivedNotice struct {
	Subject string
	MsgID   string
	events.Notice
}

func (r receivedNotice) String() string {
	if r.Kind == events.NoticeFlushAll {
		return fmt.Sprintf("flush_all(%s, op=%q)", r.Reason, r.Operation)
	}
	return fmt.Sprintf("user(user=%q doc=%q op=%s changed=%v oversize=%v)", r.UserID, r.DocumentID, r.Operation, r.ChangedFields, r.Oversize)
}

// noticeReader reads the notice stream from the beginning with an ordered
// consumer, like an issuer replaying it.
type noticeReader struct {
	t    testing.TB
	ch   chan receivedNotice
	mu   sync.Mutex
	seen []receivedNotice
	// beats counts heartbeats, kept out of ch: they are no notices.
	beats atomic.Int64
}

// readNotices needs the stream to exist (start a notifier first).
func (e *notifierEnv) readNotices() *noticeReader {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cons, err := e.js.OrderedConsumer(ctx, DefaultNoticeStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.DefaultNoticePrefix + ".>"},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		cancel()
		e.t.Fatalf("ordered consumer: %v", err)
	}
	r := &noticeReader{t: e.t, ch: make(chan receivedNotice, 1024)}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		if msg.Subject() == events.HeartbeatSubject(events.DefaultNoticePrefix) {
			r.beats.Add(1)
			return
		}
		n, err := events.DecodeNotice(msg.Data())
		if err != nil {
			e.t.Errorf("notice on %s does not decode: %v", msg.Subject(), err)
			return
		}
		r.ch <- receivedNotice{Subject: msg.Subject(), MsgID: msg.Headers().Get(jetstream.MsgIDHeader), Notice: n}
	})
	if err != nil {
		cancel()
		e.t.Fatalf("consume: %v", err)
	}
	e.t.Cleanup(func() { cc.Stop(); cancel() })
	return r
}

// next returns the next notice or fails the test after noticeWait.
func (r *noticeReader) next() receivedNotice {
	r.t.Helper()
	select {
	case n := <-r.ch:
		r.mu.Lock()
		r.seen = append(r.seen, n)
		r.mu.Unlock()
		return n
	case <-time.After(noticeWait):
		r.t.Fatalf("no notice within %s; seen so far: %v", noticeWait, r.seen)
		return receivedNotice{}
	}
}

// until reads notices until one satisfies ok and returns those read,
// including it.
func (r *noticeReader) until(what string, ok func(receivedNotice) bool) []receivedNotice {
	r.t.Helper()
	deadline := time.After(noticeWait)
	var got []receivedNotice
	for {
		select {
		case n := <-r.ch:
			r.mu.Lock()
			r.seen = append(r.seen, n)
			r.mu.Unlock()
			got = append(got, n)
			if ok(n) {
				return got
			}
		case <-deadline:
			r.t.Fatalf("no notice %s within %s; read: %v", what, noticeWait, got)
			return nil
		}
	}
}

// quiet asserts no notice arrives within d.
func (r *noticeReader) quiet(d time.Duration) {
	r.t.Helper()
	select {
	case n := <-r.ch:
		r.t.Fatalf("unexpected notice %v", n)
	case <-time.After(d):
	}
}

func isFlush(reason events.FlushReason) func(receivedNotice) bool {
	return func(n receivedNotice) bool { return n.Kind == events.NoticeFlushAll && n.Reason == reason }
}

func isUser(user, op string) func(receivedNotice) bool {
	return func(n receivedNotice) bool {
		return n.Kind == events.NoticeUser && n.UserID == user && (op == "" || n.Operation == op)
	}
}

// eventually polls cond until it holds or noticeWait passes.

// provision creates the stream and buckets without running a notifier.
func (e *notifierEnv) provision() {
	e.t.Helper()
	n, err := New(e.js, e.db, e.cfg, WithData(e.data), WithStreams(e.streams))
	if err != nil {
		e.t.Fatal(err)
	}
	if err := n.Provision(testsupport.Context(e.t)); err != nil {
		e.t.Fatal(err)
	}
}

func bsonBase64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// metricValue reads a counter or gauge.
func metricValue(m prometheus.Metric) float64 {
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		return -1
	}
	switch {
	case out.Counter != nil:
		return out.Counter.GetValue()
	case out.Gauge != nil:
		return out.Gauge.GetValue()
	}
	return -1
}

// waitCheckpoint waits until the stored checkpoint is at or past ct.
func (e *notifierEnv) waitCheckpoint(ct *events.ClusterTime) {
	e.t.Helper()
	if ct == nil {
		e.t.Fatal("waitCheckpoint: notice without cluster time")
	}
	ctx := testsupport.Context(e.t)
	kv, err := e.js.KeyValue(ctx, DefaultNotifierCheckpointKV)
	if err != nil {
		e.t.Fatal(err)
	}
	testsupport.Eventually(e.t, "checkpoint written", func() bool {
		entry, err := kv.Get(ctx, kvKeyForNamespace(e.data.Database, e.data.Collection))
		if err != nil {
			return false
		}
		cp, err := decodeCheckpoint(entry.Value(), e.data.Database+"."+e.data.Collection)
		return err == nil && cp.ClusterTime != nil &&
			(cp.ClusterTime.T > ct.T || (cp.ClusterTime.T == ct.T && cp.ClusterTime.I >= ct.I))
	})
}

// serverError is the error driver v2 returns for a command the server
// answered with {ok: 0, code, codeName, errorLabels}, built the way the
// driver builds it: x/mongo/driver turns the reply into a driver.Error
// (which, for MaxTimeMSExpired, wraps context.DeadlineExceeded so that
// errors.Is(err, context.DeadlineExceeded) holds for server-side time
// limits too), and package mongo wraps that in a CommandError (wrapErrors).
// Tests inject it where the stand-in cannot produce the server's answer.
func serverError(code int32, name string, labels ...string) error {
	reply := bson.D{{Key: "ok", Value: 0}, {Key: "errmsg", Value: "injected " + name}, {Key: "code", Value: code}}
	if name != "" {
		reply = append(reply, bson.E{Key: "codeName", Value: name})
	}
	if len(labels) > 0 {
		reply = append(reply, bson.E{Key: "errorLabels", Value: labels})
	}
	raw, err := bson.Marshal(reply)
	if err != nil {
		panic(err)
	}
	err = driver.ExtractErrorFromServerResponse(bsoncore.Document(raw))
	var de driver.Error
	if !errors.As(err, &de) {
		panic(fmt.Sprintf("driver made %T of a server reply, want driver.Error", err))
	}
	return mongo.CommandError{Code: de.Code, Message: de.Message, Labels: de.Labels, Name: de.Name, Wrapped: err, Raw: bson.Raw(de.Raw)}
}

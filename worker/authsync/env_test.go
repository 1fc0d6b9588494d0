package authsync

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/provision"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/triggers"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

// authWait is the deadline for every effect an auth test waits for.
const authWait = 15 * time.Second

// authEnv is one auth-consumer test setup: a private NATS server, a fresh
// database on the given MongoDB, and a publisher.
type authEnv struct {
	t       *testing.T
	mongo   *testsupport.Mongo
	nc      *nats.Conn
	js      jetstream.JetStream
	coll    *mongo.Collection
	cfg     Config
	data    customdata.Config
	streams provision.Streams
	set     *triggers.Set
	pub     *events.Publisher
	log     zerolog.Logger
}

func newAuthEnv(t *testing.T, m *testsupport.Mongo, tweak ...func(*authEnv)) *authEnv {
	t.Helper()
	n := testsupport.StartNATS(t)
	nc, js := n.Connect(t)
	set, err := triggers.NewSet(triggers.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	e := &authEnv{
		t:     t,
		mongo: m,
		nc:    nc,
		js:    js,
		set:   set,
		log:   zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel).With().Timestamp().Logger(),
		cfg: Config{
			AckWait:          10 * time.Second,
			MaxDeliver:       3,
			BackOff:          []time.Duration{50 * time.Millisecond, 100 * time.Millisecond},
			BatchWait:        50 * time.Millisecond,
			RetryMaxInterval: 500 * time.Millisecond,
			UnhealthyAfter:   time.Second,
		},
		data: customdata.Config{
			Database:     testsupport.DatabaseName(t),
			Collection:   "users",
			WriteTimeout: 2 * time.Second,
		},
	}
	for _, f := range tweak {
		f(e)
	}
	e.coll = m.Client(t).Database(e.data.Database).Collection(e.data.Collection)
	prefix := e.cfg.SubjectPrefix
	if prefix == "" {
		prefix = events.DefaultAuthPrefix
	}
	if e.pub, err = events.NewPublisher(e.js, events.WithSubjectPrefix(prefix)); err != nil {
		t.Fatal(err)
	}
	return e
}

func authWithTriggers(cfg triggers.Config) func(*authEnv) {
	return func(e *authEnv) {
		set, err := triggers.NewSet(cfg)
		if err != nil {
			e.t.Fatal(err)
		}
		e.set = set
	}
}

// newConsumer builds, indexes and provisions a consumer with its own
// metrics registry.
func (e *authEnv) newConsumer() (*Consumer, *prometheus.Registry) {
	e.t.Helper()
	reg := prometheus.NewRegistry()
	c, err := New(e.js, e.coll, e.set, e.cfg, WithData(e.data), WithStreams(e.streams), WithLogger(e.log), WithRegisterer(reg))
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), authWait)
	defer cancel()
	if err := customdata.EnsureUserIndex(ctx, e.coll, e.data, e.log); err != nil {
		e.t.Fatalf("customdata.EnsureUserIndex: %v", err)
	}
	if err := c.Provision(ctx); err != nil {
		e.t.Fatalf("Provision: %v", err)
	}
	return c, reg
}

// run runs c until the returned stop is called (or the test ends); stop
// fails the test unless Run returns nil promptly.
func (e *authEnv) run(c *Consumer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				e.t.Errorf("Run returned %v, want nil after cancel", err)
			}
		case <-time.After(60 * time.Second):
			e.t.Errorf("Run did not return within 60s of cancel")
		}
	}
	e.t.Cleanup(stop)
	return stop
}

// start is newConsumer + run.
func (e *authEnv) start() (*Consumer, *prometheus.Registry) {
	c, reg := e.newConsumer()
	e.run(c)
	return c, reg
}

func (e *authEnv) publish(ev events.AuthEvent) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), authWait)
	defer cancel()
	if _, err := e.pub.Publish(ctx, ev); err != nil {
		e.t.Fatalf("publish %s: %v", ev.OperationType, err)
	}
}

func (e *authEnv) publishRaw(subject string, data []byte) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), authWait)
	defer cancel()
	if _, err := e.js.Publish(ctx, subject, data); err != nil {
		e.t.Fatalf("raw publish on %s: %v", subject, err)
	}
}

func (e *authEnv) event(op events.Operation, user string, at time.Time) events.AuthEvent {
	ev := events.NewAuthEvent(op, user, "local-userpass")
	ev.Time = at
	return ev
}

// docs returns the documents of user, in _id order.
func (e *authEnv) docs(user string) []bson.M {
	e.t.Helper()
	ctx := testsupport.Context(e.t)
	cur, err := e.coll.Find(ctx, bson.M{"userId": user})
	if err != nil {
		e.t.Fatalf("find %s: %v", user, err)
	}
	var out []bson.M
	if err := cur.All(ctx, &out); err != nil {
		e.t.Fatalf("find %s: %v", user, err)
	}
	return out
}

func (e *authEnv) doc(user string) bson.M {
	e.t.Helper()
	ds := e.docs(user)
	switch len(ds) {
	case 0:
		return nil
	case 1:
		return ds[0]
	}
	e.t.Fatalf("user %s has %d documents, want at most 1", user, len(ds))
	return nil
}

func (e *authEnv) count() int64 {
	e.t.Helper()
	ctx := testsupport.Context(e.t)
	n, err := e.coll.CountDocuments(ctx, bson.M{})
	if err != nil {
		e.t.Fatalf("count: %v", err)
	}
	return n
}

// waitFor polls cond until it holds or the deadline passes.
// waitFor waits for an effect (testsupport.Eventually).
func (e *authEnv) waitFor(what string, cond func() bool) {
	e.t.Helper()
	testsupport.Eventually(e.t, what, cond)
}

func (e *authEnv) consumerInfo() *jetstream.ConsumerInfo {
	e.t.Helper()
	ctx := testsupport.Context(e.t)
	stream := e.cfg.Stream
	if stream == "" {
		stream = DefaultAuthStream
	}
	durable := e.cfg.Consumer
	if durable == "" {
		durable = DefaultAuthConsumer
	}
	c, err := e.js.Consumer(ctx, stream, durable)
	if err != nil {
		e.t.Fatalf("consumer info: %v", err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		e.t.Fatalf("consumer info: %v", err)
	}
	return info
}

// waitSettled waits until every published event was delivered and
// acknowledged (or terminated).
func (e *authEnv) waitSettled() {
	e.t.Helper()
	e.waitFor("all auth events settled (nothing pending or unacknowledged)", func() bool {
		info := e.consumerInfo()
		return info.NumPending == 0 && info.NumAckPending == 0
	})
}

// deadLetters returns every message of the dead-letter stream.
func (e *authEnv) deadLetters() []*jetstream.RawStreamMsg {
	e.t.Helper()
	ctx := testsupport.Context(e.t)
	name := e.cfg.DeadLetterStream
	if name == "" {
		name = DefaultDeadLetterStream
	}
	s, err := e.js.Stream(ctx, name)
	if err != nil {
		e.t.Fatalf("dead-letter stream: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatalf("dead-letter stream info: %v", err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			e.t.Fatalf("dead letter %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

func authTimeField(t *testing.T, doc bson.M, field string) time.Time {
	t.Helper()
	v, ok := doc[field].(bson.DateTime)
	if !ok {
		t.Fatalf("field %s = %#v, want a date", field, doc[field])
	}
	return v.Time().UTC()
}

// authBaseTime is a past instant with millisecond precision (what BSON keeps).
func authBaseTime() time.Time { return time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond) }

func authHeaderSummary(h nats.Header) string {
	var keys []string
	for k := range h {
		keys = append(keys, k+"="+h.Get(k))
	}
	sort.Strings(keys)
	return strings.Join(keys, " ")
}

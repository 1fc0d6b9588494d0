package issuer

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/embeddednats"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// noticeStream creates the notice stream the way the worker provisions it
// (name and subjects; README "Notice contract").
func noticeStream(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: DefaultNoticeStream, Subjects: []string{events.DefaultNoticePrefix + ".>"}, MaxAge: time.Hour,
	}); err != nil {
		t.Fatal(err)
	}
}

func publish(t *testing.T, js jetstream.JetStream, subject string, n events.Notice) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.SchemaVersion, n.PublishedAt = events.NoticeSchemaVersion, time.Now()
	data, err := jsonMarshal(n)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, subject, data); err != nil {
		t.Fatal(err)
	}
}

func runCache(t *testing.T, c *Cache) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done, finished := make(chan error, 1), make(chan struct{})
	go func() { done <- c.Run(ctx); close(finished) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	waitFor(t, c.Following)
	return done
}

// eventually polls Get until want shows (a notice travels asynchronously).
func eventually(t *testing.T, c *Cache, user, want string) {
	t.Helper()
	waitFor(t, func() bool { return plan(t, c, user) == want })
}

func TestRunFollowsTheNoticeStream(t *testing.T) {
	ns := testsupport.StartNATS(t)
	_, js := ns.Connect(t)
	noticeStream(t, js)
	// A notice from before the cache started is history, not replayed.
	publish(t, js, events.FlushAllSubject(events.DefaultNoticePrefix), events.Notice{Kind: events.NoticeFlushAll, Reason: events.FlushNoCheckpoint})

	src := newFake()
	src.set("ada", "d1", bson.E{Key: "plan", Value: "free"})
	src.set("bob", "d2", bson.E{Key: "plan", Value: "free"})
	c, err := NewCache(src, CacheConfig{}, WithNotices(js, NoticeConfig{}))
	if err != nil {
		t.Fatal(err)
	}
	runCache(t, c)
	plan(t, c, "ada")
	plan(t, c, "bob")
	reads := src.reads.Load()

	src.set("ada", "d1", bson.E{Key: "plan", Value: "pro"})
	src.set("bob", "d2", bson.E{Key: "plan", Value: "pro"})
	publish(t, js, events.UserNoticeSubject(events.DefaultNoticePrefix, "ada"), events.Notice{Kind: events.NoticeUser, UserID: "ada", DocumentID: "d1", Operation: "update"})
	eventually(t, c, "ada", "pro")
	if got := plan(t, c, "bob"); got != "free" {
		t.Fatalf("bob was dropped by ada's notice: %q", got)
	}

	publish(t, js, events.DocumentNoticeSubject(events.DefaultNoticePrefix, "d2"), events.Notice{Kind: events.NoticeUser, DocumentID: "d2", Operation: "delete"})
	eventually(t, c, "bob", "pro")

	src.set("ada", "d1", bson.E{Key: "plan", Value: "team"})
	src.set("bob", "d2", bson.E{Key: "plan", Value: "team"})
	publish(t, js, events.FlushAllSubject(events.DefaultNoticePrefix), events.Notice{Kind: events.NoticeFlushAll, Reason: events.FlushHistoryLost})
	eventually(t, c, "ada", "team")
	eventually(t, c, "bob", "team")
	if got := testutil.ToFloat64(c.m.flushes.WithLabelValues(FlushNotice)); got != 1 {
		t.Fatalf("flush-all notices applied = %v, want 1 (the one before Run is not replayed)", got)
	}
	if src.reads.Load() <= reads {
		t.Fatal("no re-reads after notices")
	}
}

// fakeMsg is a delivered notice with a chosen stream sequence.
type fakeMsg struct {
	jetstream.Msg
	subject string
	seq     uint64
}

func (m fakeMsg) Subject() string { return m.subject }
func (m fakeMsg) Data() []byte    { return nil }
func (m fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: m.seq}}, nil
}

// A skipped stream sequence means notices were lost (aged out or purged
// while the consumer was away): everything is dropped, not just the user
// the next notice names. (A real gap cannot be produced on demand against
// a live consumer, so the delivery is simulated.)
func TestSequenceGapFlushesEverything(t *testing.T) {
	src := newFake()
	src.set("ada", "d1", bson.E{Key: "plan", Value: "free"})
	src.set("bob", "d2", bson.E{Key: "plan", Value: "free"})
	c := following(t, src, CacheConfig{})
	c.feed.next = 7
	plan(t, c, "ada")
	plan(t, c, "bob")
	src.set("ada", "d1", bson.E{Key: "plan", Value: "pro"})
	src.set("bob", "d2", bson.E{Key: "plan", Value: "pro"})

	subject := events.UserNoticeSubject(events.DefaultNoticePrefix, "carol")
	c.onMessage(fakeMsg{subject: subject, seq: 7}) // in sequence: only carol
	if plan(t, c, "ada") != "free" || plan(t, c, "bob") != "free" {
		t.Fatal("an in-sequence notice for carol dropped others")
	}
	c.onMessage(fakeMsg{subject: subject, seq: 9}) // 8 is missing
	if plan(t, c, "ada") != "pro" || plan(t, c, "bob") != "pro" {
		t.Fatal("a sequence gap did not drop everything")
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// While NATS is away the cache keeps nothing (every Get reads MongoDB);
// when it is back the cache flushes, follows again, and notices apply.
func TestReconnectFlushesAndReadsThroughWhileDown(t *testing.T) {
	dir, port := t.TempDir(), freePort(t)
	srv, err := embeddednats.Start(embeddednats.Options{StoreDir: dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	noticeStream(t, js)

	src := newFake()
	src.set("ada", "d1", bson.E{Key: "plan", Value: "free"})
	c, err := NewCache(src, CacheConfig{}, WithNotices(js, NoticeConfig{RetryWait: 200 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	runCache(t, c)
	plan(t, c, "ada")
	plan(t, c, "ada")
	if n := src.reads.Load(); n != 1 {
		t.Fatalf("reads = %d, want 1 (cached)", n)
	}

	srv.Shutdown()
	srv.WaitForShutdown()
	waitFor(t, func() bool { return !c.Following() })
	src.set("ada", "d1", bson.E{Key: "plan", Value: "pro"})
	if got := plan(t, c, "ada"); got != "pro" {
		t.Fatalf("while NATS is down: %q, want a fresh read", got)
	}
	before := src.reads.Load()
	plan(t, c, "ada")
	if src.reads.Load() != before+1 {
		t.Fatal("a value was kept while no notice could arrive")
	}

	if srv, err = embeddednats.Start(embeddednats.Options{StoreDir: dir, Port: port}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, c.Following)
	plan(t, c, "ada")
	src.set("ada", "d1", bson.E{Key: "plan", Value: "team"})
	publish(t, js, events.UserNoticeSubject(events.DefaultNoticePrefix, "ada"), events.Notice{Kind: events.NoticeUser, UserID: "ada"})
	eventually(t, c, "ada", "team")
}

func TestClosedConnectionEndsRunAndReadsThrough(t *testing.T) {
	ns := testsupport.StartNATS(t)
	nc, err := nats.Connect(ns.URL)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	noticeStream(t, js)
	src := newFake()
	src.set("ada", "d1", bson.E{Key: "plan", Value: "free"})
	c, err := NewCache(src, CacheConfig{}, WithNotices(js, NoticeConfig{}))
	if err != nil {
		t.Fatal(err)
	}
	done := runCache(t, c)
	plan(t, c, "ada")
	nc.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNoticesLost) {
			t.Fatalf("Run = %v, want ErrNoticesLost", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after the connection closed")
	}
	if c.Following() {
		t.Fatal("still following")
	}
	src.set("ada", "d1", bson.E{Key: "plan", Value: "pro"})
	if got := plan(t, c, "ada"); got != "pro" {
		t.Fatalf("after the feed was lost: %q, want a fresh read", got)
	}
}

// The server deleting the consumer (an operator, a restart of a
// memory-only consumer) is a consumer the cache cannot trust: everything
// is dropped, the consumer recreates itself, and notices apply again.
func TestDeletedConsumerFlushesAndRecovers(t *testing.T) {
	ns := testsupport.StartNATS(t)
	_, js := ns.Connect(t)
	noticeStream(t, js)
	src := newFake()
	src.set("ada", "d1", bson.E{Key: "plan", Value: "free"})
	c, err := NewCache(src, CacheConfig{}, WithNotices(js, NoticeConfig{}))
	if err != nil {
		t.Fatal(err)
	}
	runCache(t, c)
	plan(t, c, "ada")

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, DefaultNoticeStream)
	if err != nil {
		t.Fatal(err)
	}
	names := stream.ConsumerNames(ctx)
	for name := range names.Name() {
		if err := stream.DeleteConsumer(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return testutil.ToFloat64(c.m.flushes.WithLabelValues(FlushConsumer)) >= 1 })
	src.set("ada", "d1", bson.E{Key: "plan", Value: "pro"})
	if got := plan(t, c, "ada"); got != "pro" {
		t.Fatalf("after the consumer was deleted: %q, want a fresh read", got)
	}
	src.set("ada", "d1", bson.E{Key: "plan", Value: "team"})
	publish(t, js, events.UserNoticeSubject(events.DefaultNoticePrefix, "ada"), events.Notice{Kind: events.NoticeUser, UserID: "ada"})
	eventually(t, c, "ada", "team")
}

package issuer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
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
	c.onMessage(0, fakeMsg{subject: subject, seq: 7}) // in sequence: only carol
	if plan(t, c, "ada") != "free" || plan(t, c, "bob") != "free" {
		t.Fatal("an in-sequence notice for carol dropped others")
	}
	c.onMessage(0, fakeMsg{subject: subject, seq: 9}) // 8 is missing
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
	var logs syncBuffer
	c, err := NewCache(src, CacheConfig{}, WithNotices(js, NoticeConfig{RetryWait: 200 * time.Millisecond}), WithLogger(zerolog.New(&logs)))
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
	// One outage, logged once: the reconnect that ended it is not a new
	// interruption of the follow that began once it was over.
	if lost, back := logs.count("not following invalidation notices"), logs.count("following invalidation notices"); lost != 1 || back != 2 || !c.Following() {
		t.Fatalf("logged %d outages and %d starts, want 1 and 2:\n%s", lost, back, logs.String())
	}
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

// deleteStream removes the notice stream (and with it the cache's consumer).
func deleteStream(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, DefaultNoticeStream); err != nil {
		t.Fatal(err)
	}
}

// recreateStream creates the notice stream again right after it was
// deleted (the server may still be removing the old one's files).
func recreateStream(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	waitFor(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: DefaultNoticeStream, Subjects: []string{events.DefaultNoticePrefix + ".>"}, MaxAge: time.Hour,
		})
		return err == nil
	})
}

// A recreated notice stream numbers its notices from 1 again: a consumer
// resuming after the last sequence it delivered would wait for numbers
// the new stream reaches only much later, and the cache would keep stale
// values while claiming to follow. The cache must notice, and follow the
// new stream from its end.
func TestRecreatedStreamIsFollowedAgain(t *testing.T) {
	ns := testsupport.StartNATS(t)
	_, js := ns.Connect(t)
	noticeStream(t, js)
	src := newFake()
	src.set("ada", "d1", bson.E{Key: "plan", Value: "free"})
	c, err := NewCache(src, CacheConfig{}, WithNotices(js, NoticeConfig{RetryWait: 200 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	runCache(t, c)
	// A few notices, so the old stream's sequence is ahead of the new one's.
	for range 3 {
		publish(t, js, events.UserNoticeSubject(events.DefaultNoticePrefix, "zed"), events.Notice{Kind: events.NoticeUser, UserID: "zed"})
	}
	waitFor(t, func() bool { return testutil.ToFloat64(c.m.notices) == 3 })
	plan(t, c, "ada")

	deleteStream(t, js)
	recreateStream(t, js)
	// Once the cache has noticed, nothing read meanwhile may be kept...
	waitFor(t, func() bool { return testutil.ToFloat64(c.m.flushes.WithLabelValues(FlushConsumer)) >= 1 })
	src.set("ada", "d1", bson.E{Key: "plan", Value: "pro"})
	if got := plan(t, c, "ada"); got != "pro" {
		t.Fatalf("after the stream was recreated: %q, want a fresh read", got)
	}
	// ...and a notice on the new stream applies.
	waitFor(t, c.Following)
	plan(t, c, "ada")
	src.set("ada", "d1", bson.E{Key: "plan", Value: "team"})
	publish(t, js, events.UserNoticeSubject(events.DefaultNoticePrefix, "ada"), events.Notice{Kind: events.NoticeUser, UserID: "ada"})
	eventually(t, c, "ada", "team")
}

// While the notice stream is gone the consumer cannot be recreated, so no
// notice can arrive: the cache must stop keeping values (and say so)
// until it follows the stream again, then log that it is back.
func TestMissingStreamReadsThroughUntilItIsBack(t *testing.T) {
	ns := testsupport.StartNATS(t)
	_, js := ns.Connect(t)
	noticeStream(t, js)
	src := newFake()
	src.set("ada", "d1", bson.E{Key: "plan", Value: "free"})
	var logs syncBuffer
	c, err := NewCache(src, CacheConfig{}, WithNotices(js, NoticeConfig{RetryWait: 200 * time.Millisecond}),
		WithLogger(zerolog.New(&logs)))
	if err != nil {
		t.Fatal(err)
	}
	runCache(t, c)
	plan(t, c, "ada")

	for round := 1; round <= 2; round++ {
		deleteStream(t, js)
		waitFor(t, func() bool { return !c.Following() })
		before := src.reads.Load()
		plan(t, c, "ada")
		plan(t, c, "ada")
		if n := src.reads.Load() - before; n != 2 {
			t.Fatalf("round %d: %d reads for 2 Gets while the stream is gone, want 2 (nothing kept)", round, n)
		}
		recreateStream(t, js)
		waitFor(t, c.Following)
		src.set("ada", "d1", bson.E{Key: "plan", Value: fmt.Sprint("plan", round)})
		plan(t, c, "ada")
		publish(t, js, events.UserNoticeSubject(events.DefaultNoticePrefix, "ada"), events.Notice{Kind: events.NoticeUser, UserID: "ada"})
		eventually(t, c, "ada", fmt.Sprint("plan", round))
		// Each outage is logged when it starts, and the recovery when it ends.
		if lost, back := logs.count("not following invalidation notices"), logs.count("following invalidation notices"); lost != round || back != round+1 {
			t.Fatalf("round %d: logged %d outages and %d starts, want %d and %d", round, lost, back, round, round+1)
		}
	}
}

// A server restarted with an empty store comes back without the stream,
// then the worker recreates it numbering from 1.
func TestServerRestartedEmptyIsFollowedAgain(t *testing.T) {
	port := freePort(t)
	srv, err := embeddednats.Start(embeddednats.Options{StoreDir: t.TempDir(), Port: port})
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
	for range 3 {
		publish(t, js, events.UserNoticeSubject(events.DefaultNoticePrefix, "zed"), events.Notice{Kind: events.NoticeUser, UserID: "zed"})
	}
	waitFor(t, func() bool { return testutil.ToFloat64(c.m.notices) == 3 })

	srv.Shutdown()
	srv.WaitForShutdown()
	if srv, err = embeddednats.Start(embeddednats.Options{StoreDir: t.TempDir(), Port: port}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, nc.IsConnected)
	noticeStream(t, js)
	waitFor(t, c.Following)
	plan(t, c, "ada")
	src.set("ada", "d1", bson.E{Key: "plan", Value: "team"})
	publish(t, js, events.UserNoticeSubject(events.DefaultNoticePrefix, "ada"), events.Notice{Kind: events.NoticeUser, UserID: "ada"})
	eventually(t, c, "ada", "team")
}

// syncBuffer collects log lines from the cache's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// count is the number of log lines whose message is exactly msg.
func (b *syncBuffer) count(msg string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), `"message":"`+msg+`"`)
}

// A stream with another creation time, or a last sequence below one
// already delivered, is not the stream the cache followed.
func TestStreamResetDetection(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	info := func(created time.Time, last uint64) *jetstream.StreamInfo {
		return &jetstream.StreamInfo{Created: created, State: jetstream.StreamState{LastSeq: last}}
	}
	for _, tc := range []struct {
		name    string
		created time.Time // of the stream followed so far
		next    uint64
		info    *jetstream.StreamInfo
		reset   bool
	}{
		{"first follow", time.Time{}, 0, info(t0, 5), false},
		{"same stream, grown", t0, 6, info(t0, 9), false},
		{"same stream, nothing new", t0, 6, info(t0, 5), false},
		{"recreated", t0, 6, info(t0.Add(time.Minute), 9), true},
		{"sequence went backwards", t0, 6, info(t0, 2), true},
	} {
		f := &feed{created: tc.created, next: tc.next}
		if got := f.resetBy(tc.info) != ""; got != tc.reset {
			t.Errorf("%s: reset = %v, want %v", tc.name, got, tc.reset)
		}
	}
}

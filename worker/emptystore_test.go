package worker_test

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/embeddednats"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/worker"
)

// TestRecoversFromANATSServerRestartedWithAnEmptyStore: NATS comes back on
// the same address with every stream, consumer and bucket gone (its store
// directory lost). The worker provisions them again, consumes new events,
// and tells issuers that continuity is lost with a flush-all before it
// announces changes again.
func TestRecoversFromANATSServerRestartedWithAnEmptyStore(t *testing.T) {
	m := testsupport.MongoDB(t)
	port := freeTCPPort(t)
	srv := startNATSOn(t, port)
	w, cfg, logs := newWorker(t, m.URI, func(c *worker.Config) {
		c.NATS.URL = srv.ClientURL()
		c.Notify.LeaseTTL = 3 * time.Second
	})
	// Before Run: the stand-in may fail an insert that races with the
	// worker's index build ("Unknown error: null").
	coll := m.Client(t).Database(cfg.Data.Database).Collection(cfg.Data.Collection)
	for _, user := range []string{"ada", "bob"} { // LOGIN updates; CREATE would insert
		if _, err := coll.InsertOne(testsupport.Context(t), bson.D{{Key: "userId", Value: user}}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	login(t, js, "ada")
	waitForLastLogin(t, coll, "ada")
	waitForLeader(t, w)

	srv.Shutdown()
	srv.WaitForShutdown()
	srv = startNATSOn(t, port) // a new, empty store directory
	testsupport.Eventually(t, "the client reconnected", nc.IsConnected)

	// The worker recreates the notice stream; a flush-all is on it
	// before any user notice, since the checkpoint went with the store.
	testsupport.Eventually(t, "the notice stream exists again", func() bool {
		_, err := js.Stream(testsupport.Context(t), events.DefaultNoticeStream)
		return err == nil
	})
	pub := publisher(t, js)
	testsupport.Eventually(t, "the auth stream takes events again", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := pub.Publish(ctx, loginEvent("bob"))
		return err == nil
	})
	waitForLastLogin(t, coll, "bob")
	// A change before the new term's feed opens is covered by its
	// flush-all, not by a user notice: change ada once the flush is out.
	readNotices(t, js, events.DefaultNoticePrefix, events.FlushAllSubject(events.DefaultNoticePrefix))
	if _, err := coll.UpdateOne(testsupport.Context(t), bson.D{{Key: "userId", Value: "ada"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "plan", Value: "team"}}}}); err != nil {
		t.Fatal(err)
	}
	first := readNotices(t, js, events.DefaultNoticePrefix, events.UserNoticeSubject(events.DefaultNoticePrefix, "ada"))
	if first[0] != events.FlushAllSubject(events.DefaultNoticePrefix) {
		t.Fatalf("notices after the empty restart: %v, want a flush-all first", first)
	}
	for _, msg := range []string{"the auth stream or its consumer is gone", "the notifier's JetStream resources are gone"} {
		if logs.Count(msg) == 0 {
			t.Errorf("no log line %q", msg)
		}
	}
}

// freeTCPPort returns a port nothing listens on right now.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startNATSOn starts an in-process server with an empty store on port.
func startNATSOn(t *testing.T, port int) *server.Server {
	t.Helper()
	srv, err := embeddednats.Start(embeddednats.Options{StoreDir: t.TempDir(), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

func loginEvent(user string) events.AuthEvent {
	return events.AuthEvent{OperationType: events.OperationLogin, Providers: []string{"local-userpass"},
		User: events.User{ID: user}, Time: time.Now()}
}

func publisher(t *testing.T, js jetstream.JetStream) *events.Publisher {
	t.Helper()
	pub, err := events.NewPublisher(js)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func login(t *testing.T, js jetstream.JetStream, user string) {
	t.Helper()
	if _, err := publisher(t, js).Publish(testsupport.Context(t), loginEvent(user)); err != nil {
		t.Fatalf("publish LOGIN %s: %v", user, err)
	}
}

// waitForLastLogin waits until user's document has a lastLogin.
func waitForLastLogin(t *testing.T, coll *mongo.Collection, user string) {
	t.Helper()
	testsupport.Eventually(t, "lastLogin of "+user+" is set", func() bool {
		n, err := coll.CountDocuments(testsupport.Context(t), bson.D{{Key: "userId", Value: user}, {Key: "lastLogin", Value: bson.D{{Key: "$exists", Value: true}}}})
		return err == nil && n == 1
	})
}

func waitForLeader(t *testing.T, w *worker.Worker) {
	t.Helper()
	testsupport.Eventually(t, "the notifier leads", func() bool {
		for _, c := range w.Checks() {
			if c.Check() != nil {
				return false
			}
		}
		return true
	})
}

// readNotices returns the subjects on the notice stream, oldest first,
// once one of them is want.
func readNotices(t *testing.T, js jetstream.JetStream, prefix, want string) []string {
	t.Helper()
	var subjects []string
	testsupport.Eventually(t, "a notice on "+want, func() bool {
		var err error
		subjects, err = noticeSubjects(js, prefix)
		return err == nil && slices.Contains(subjects, want)
	})
	return subjects
}

// TestVerifyModeSaysOnReadyzThatAnEmptyStoreLostItsResources: in verify
// mode the worker creates nothing, so after the same restart /readyz
// names what is gone instead of a bare "no response from stream".
func TestVerifyModeSaysOnReadyzThatAnEmptyStoreLostItsResources(t *testing.T) {
	m := testsupport.MongoDB(t)
	port := freeTCPPort(t)
	srv := startNATSOn(t, port)
	short := func(c *worker.Config) {
		c.NATS.URL = srv.ClientURL()
		c.Notify.LeaseTTL = 3 * time.Second
		c.Notify.UnhealthyAfter = time.Second
		c.Auth.UnhealthyAfter = time.Second
	}
	provisioner, cfg, _ := newWorker(t, m.URI, short)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- provisioner.Run(ctx) }()
	waitForLeader(t, provisioner)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("provisioning run: %v", err)
	}

	w, _, _ := newWorker(t, m.URI, func(c *worker.Config) {
		short(c)
		c.Data = cfg.Data
		c.Streams.Mode = worker.ProvisionVerify
	})
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitForLeader(t, w)
	srv.Shutdown()
	srv.WaitForShutdown()
	srv = startNATSOn(t, port)

	want := map[string]string{"notifier": "PROVISION=verify creates nothing", "auth-consumer": "stream not found"}
	testsupport.Eventually(t, "/readyz names the missing resources", func() bool {
		for _, c := range w.Checks() {
			if s, ok := want[c.Name]; ok {
				if err := c.Check(); err == nil || !strings.Contains(err.Error(), s) {
					return false
				}
			}
		}
		return true
	})
	if _, err := jetstreamOf(t, srv.ClientURL()).Stream(testsupport.Context(t), events.DefaultNoticeStream); err == nil {
		t.Fatal("verify mode created the notice stream")
	}
}

func jetstreamOf(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

package worker_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/triggers"
	"github.com/customdata-worker/customdata-worker/worker"
	"github.com/customdata-worker/customdata-worker/worker/authsync"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

// Integration tests of the whole worker, black-box through worker.New:
// what an embedding program (or cmd/customdata-worker) sees.

// newWorker builds a worker on a fresh database of m and a NATS server of
// its own, with the packages' defaults and the built-in triggers, after
// tweak; its logs go to the returned buffer.
func newWorker(t *testing.T, mongoURI string, tweak func(*worker.Config)) (*worker.Worker, worker.Config, *testsupport.Logs) {
	t.Helper()
	set, err := triggers.NewSet(triggers.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := worker.Config{
		MongoURI: mongoURI,
		NATS:     worker.NATSConfig{URL: testsupport.StartNATS(t).URL, Name: "worker-test"},
		Data:     customdata.Config{Database: testsupport.DatabaseName(t), Collection: "custom_user_data"},
		Notices:  true,
		Triggers: set,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	logs := &testsupport.Logs{}
	w, err := worker.New(cfg, worker.WithLogger(zerolog.New(logs)))
	if err != nil {
		t.Fatalf("worker.New: %v", err)
	}
	return w, cfg, logs
}

// TestRunRefusesToStartOnDuplicateUsers: an error retrying cannot fix ends
// startup at once with the reason, instead of retrying forever.
func TestRunRefusesToStartOnDuplicateUsers(t *testing.T) {
	m := testsupport.MongoDB(t)
	w, cfg, _ := newWorker(t, m.URI, nil)
	ctx := testsupport.Context(t)
	coll := m.Client(t).Database(cfg.Data.Database).Collection(cfg.Data.Collection)
	for range 2 {
		if _, err := coll.InsertOne(ctx, map[string]any{"userId": "twin"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := runFailing(t, w); !errors.Is(err, customdata.ErrDuplicateUsers) || !strings.Contains(err.Error(), "twin") {
		t.Fatalf("Run = %v, want ErrDuplicateUsers naming the duplicated id", err)
	}
}

// runFailing runs w, which must stop by itself with an error: it fails
// the test if Run was still retrying after testsupport.Wait.
func runFailing(t *testing.T, w *worker.Worker) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testsupport.Wait)
	defer cancel()
	err := w.Run(ctx)
	if ctx.Err() != nil {
		t.Fatalf("Run retried until the deadline instead of failing at once (%v)", err)
	}
	return err
}

// TestRunVerifyModeFailsWhenNothingIsProvisioned: in verify mode the
// worker creates nothing and says what is missing.
func TestRunVerifyModeFailsWhenNothingIsProvisioned(t *testing.T) {
	w, _, _ := newWorker(t, testsupport.MongoDB(t).URI, func(c *worker.Config) { c.Streams.Mode = worker.ProvisionVerify })
	if err := runFailing(t, w); !errors.Is(err, authsync.ErrNotProvisioned) || !strings.Contains(err.Error(), "AUTH_EVENTS") {
		t.Fatalf("Run = %v, want ErrNotProvisioned naming the stream", err)
	}
}

// TestNewRefusesAnUnusableConnectionString: a connection string that
// cannot be parsed is a configuration error, reported by New without the
// string's password.
func TestNewRefusesAnUnusableConnectionString(t *testing.T) {
	set, err := triggers.NewSet(triggers.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []worker.Config{
		{MongoURI: "mongodb://app:pa/ss@127.0.0.1:1/", NATS: worker.NATSConfig{URL: "nats://127.0.0.1:1"}},
		{MongoURI: "mongodb://127.0.0.1:1/", NATS: worker.NATSConfig{URL: "nats://app:pa/ss@127.0.0.1:1"}},
	} {
		cfg.Data = customdata.Config{Database: "d", Collection: "c"}
		cfg.Triggers = set
		_, err := worker.New(cfg)
		if err == nil || strings.Contains(err.Error(), "pa/ss") {
			t.Errorf("New(%s, %s) = %v, want an error without the password", cfg.MongoURI, cfg.NATS.URL, err)
		}
	}
}

// TestNewRefusesTriggersOfAnotherUserIDField: triggers checked against one
// user-id field must not run on a collection keyed by another (they could
// write the worker's key field); an embedder gets the error from New, as
// the command does for its trigger file.
func TestNewRefusesTriggersOfAnotherUserIDField(t *testing.T) {
	set, err := triggers.NewSet(triggers.Config{UserIDField: "uid"})
	if err != nil {
		t.Fatal(err)
	}
	base := worker.Config{MongoURI: "mongodb://127.0.0.1:1/", NATS: worker.NATSConfig{URL: "nats://127.0.0.1:1"}, Triggers: set}
	for _, tc := range []struct {
		field string
		ok    bool
	}{{"", false}, {"userId", false}, {"uid", true}} {
		cfg := base
		cfg.Data.UserIDField = tc.field
		_, err := worker.New(cfg)
		if (err == nil) != tc.ok || (err != nil && !strings.Contains(err.Error(), `"uid"`)) {
			t.Errorf("New with user-id field %q and triggers for \"uid\" = %v, want ok=%v", tc.field, err, tc.ok)
		}
	}
}

// TestReadyzNamesTheIndexBuildStartupWaitsFor: while createIndexes does not
// return (withheld by a proxy, as a real server waiting for its commit
// quorum would), startup retries bounded attempts, logs what it waits for,
// and /readyz answers 503 naming the index; once the server answers, the
// worker starts and becomes ready.
func TestReadyzNamesTheIndexBuildStartupWaitsFor(t *testing.T) {
	proxy := testsupport.StartMongoProxy(t, testsupport.MongoDB(t))
	proxy.Hold("createIndexes")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	w, _, logs := newWorker(t, proxy.URI, func(c *worker.Config) {
		c.HTTPAddr = addr
		c.Notices = false
		c.Data.IndexTimeout = time.Second
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(testsupport.Wait)
		for !cond() {
			if time.Now().After(deadline) {
				code, body := readyz()
				t.Fatalf("timed out waiting for %s; /readyz %d %s\nlogs:\n%s", what, code, body, logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitUntil("/readyz to name the index build and its commit quorum", func() bool {
		code, body := readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "userId_unique") &&
			strings.Contains(body, "commit quorum")
	})
	waitUntil("the log to say what startup waits for", func() bool {
		return strings.Contains(logs.String(), "commit quorum") && strings.Contains(logs.String(), "retrying")
	})
	proxy.Hold("")
	waitUntil("/readyz 200 once the index is confirmed", func() bool {
		code, _ := readyz()
		return code == http.StatusOK
	})
	// Checks says the same as /readyz.
	for _, c := range w.Checks() {
		if err := c.Check(); err != nil {
			t.Errorf("check %s: %v", c.Name, err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
}

// TestRunReturnsNilWhenStoppedDuringStartup: stopping a worker that is
// still waiting for a dependency is a clean stop, not an error, as it is
// once the flows run.
func TestRunReturnsNilWhenStoppedDuringStartup(t *testing.T) {
	// Nothing listens on a port taken and released at once: MongoDB is down.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	uri := "mongodb://" + l.Addr().String() + "/?directConnection=true"
	_ = l.Close()
	w, _, logs := newWorker(t, uri, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	testsupport.Eventually(t, "the MongoDB connection is retried", func() bool {
		return logs.Count(`"step":"connect to MongoDB"`) > 0
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after a stop during startup = %v, want nil", err)
		}
	case <-time.After(testsupport.Wait):
		t.Fatal("Run did not return after its context ended")
	}
}

// TestReadyzNamesTheUnreachableServerOnce: while MongoDB cannot be
// reached, /readyz names the step and the connection string (redacted),
// once.
func TestReadyzNamesTheUnreachableServerOnce(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	w, _, _ := newWorker(t, "mongodb://app:secretpw@"+addr+"/?directConnection=true", nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	var startup string
	testsupport.Eventually(t, "/readyz's startup check reports the failed attempt", func() bool {
		for _, c := range w.Checks() {
			if c.Name == "startup" {
				if err := c.Check(); err != nil {
					startup = err.Error()
				}
			}
		}
		return strings.Contains(startup, "does not answer")
	})
	// (The driver's own error lists the topology's addresses besides.)
	if n := strings.Count(startup, "mongodb://"); n != 1 || strings.Contains(startup, "secretpw") || !strings.Contains(startup, "connect to MongoDB") {
		t.Fatalf("startup check = %q, want the step and the server once, without the password", startup)
	}
}

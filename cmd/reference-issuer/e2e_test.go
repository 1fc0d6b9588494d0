package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// The end-to-end tests run the whole loop for real: NATS in process, the
// MongoDB stand-in (or MONGODB_URI), the worker as its own process built
// from cmd/customdata-worker and configured by its environment (its public
// contract, so these tests do not depend on worker internals), and this
// issuer in process.

func TestMain(m *testing.M) { os.Exit(testsupport.RunRemovingBuilds(m)) }

type stack struct {
	app   running
	api   *apiClient
	coll  *mongo.Collection
	js    jetstream.JetStream
	field string
}

func startStack(t testing.TB) *stack {
	t.Helper()
	bin := testsupport.WorkerBinary(t)
	ns := testsupport.StartNATS(t)
	m := testsupport.MongoDB(t)
	client := m.Client(t)
	db := testsupport.DatabaseName(t)
	t.Cleanup(func() { _ = client.Database(db).Drop(context.Background()) })

	// Signed events end to end: the worker accepts only LOGINs signed by
	// the issuer's key (an unsigned one would be dead-lettered and no
	// lastLogin would ever show).
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	signer, _ := kp.PublicKey()
	seedFile := filepath.Join(t.TempDir(), "issuer.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &testsupport.Logs{}
	w, err := startWorker(bin, map[string]string{
		"CUSTOMDATA_NATS_URL": ns.URL, "CUSTOMDATA_MONGODB_URI": m.URI, "CUSTOMDATA_MONGODB_DATABASE": db,
		"CUSTOMDATA_HTTP_ADDR": "", "CUSTOMDATA_LOG_LEVEL": "warn", "CUSTOMDATA_BATCH_WAIT": "20ms",
		"CUSTOMDATA_TRUSTED_SIGNERS": signer + ":LOGIN",
	}, logs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.stop(); err != nil {
			t.Errorf("worker: %v", err)
		}
		if t.Failed() {
			t.Logf("worker logs:\n%s", logs.String())
		}
	})

	var cfg Config
	if err := envconfig.Process("ISSUER_E2E_NOT_SET", &cfg); err != nil { // the defaults
		t.Fatal(err)
	}
	cfg.NATSURL, cfg.MongoURI, cfg.Database, cfg.HTTPAddr = ns.URL, m.URI, db, "127.0.0.1:0"
	cfg.DevEphemeralKey = true // one issuer for the test's life
	cfg.EventSigningSeed = seedFile
	cfg.CacheTTL = 0 // freshness comes from notices only
	cfg.LogLevel = "error"
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan running, 1), make(chan error, 1)
	go func() { done <- runIssuer(ctx, cfg, newLogger(cfg, testWriter{t}), ready) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("issuer: %v", err)
		}
	})
	s := &stack{coll: client.Database(db).Collection(cfg.Collection), field: cfg.UserIDField}
	select {
	case s.app = <-ready:
	case err := <-done:
		t.Fatalf("issuer did not start: %v", err)
	}
	s.js = s.app.JS
	if s.api, err = newAPIClient(context.Background(), s.app.URL, cfg.TokenIssuer, cfg.TokenAudience); err != nil {
		t.Fatal(err)
	}

	// Ready when a change made now reaches the cache as a notice: the
	// worker watches the collection and the issuer follows the stream.
	// First wait for the worker's unique index (README: "<field>_unique"):
	// the stand-in can fail an insert that races the collection's creation
	// by createIndexes with "Unknown error: null" (see README, Stand-in
	// differences).
	waitUntil(t, 90*time.Second, "the worker's user-id index", func() bool {
		specs, err := s.coll.Indexes().ListSpecifications(context.Background())
		for _, sp := range specs {
			if sp.Name == s.field+"_unique" {
				return true
			}
		}
		_ = err // not there yet: the collection may not exist
		return false
	})
	probe := "probe-" + events.NewEventID()[:8]
	s.insert(t, probe, "v1")
	waitUntil(t, 90*time.Second, "the worker's notices reach the issuer", func() bool {
		if !s.app.Cache.Following() {
			return false
		}
		d, err := s.app.Cache.Get(context.Background(), probe)
		if err != nil || !d.Found() {
			return false
		}
		if d.Lookup("plan").StringValue() == "v1" {
			_, _ = s.coll.UpdateOne(context.Background(), bson.D{{Key: s.field, Value: probe}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "plan", Value: "v2"}}}})
			return false
		}
		return true
	})
	return s
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func (s *stack) insert(t testing.TB, user, plan string) bson.ObjectID {
	t.Helper()
	res, err := s.coll.InsertOne(context.Background(), bson.D{{Key: s.field, Value: user}, {Key: "plan", Value: plan}})
	if err != nil {
		t.Fatal(err)
	}
	return res.InsertedID.(bson.ObjectID)
}

// refreshUntil refreshes (no force: the cache answers) until ok holds.
func (s *stack) refreshUntil(t *testing.T, token, what string, ok func(tokenClaims) bool) tokenClaims {
	t.Helper()
	var last tokenClaims
	var err error
	waitUntil(t, 15*time.Second, what, func() bool {
		_, last, err = s.api.refresh(context.Background(), token, false)
		return err == nil && ok(last)
	})
	return last
}

// cached refreshes until one is answered from the cache: notices of
// earlier changes may still be on their way and drop the entry once more.
func (s *stack) cached(t *testing.T, token, what string) tokenClaims {
	t.Helper()
	var c tokenClaims
	waitUntil(t, 15*time.Second, what+" is served from the cache", func() bool {
		h := s.metric(t, "customdata_issuer_cache_hits_total")
		var err error
		_, c, err = s.api.refresh(context.Background(), token, false)
		return err == nil && s.metric(t, "customdata_issuer_cache_hits_total") > h
	})
	return c
}

// metric sums name's samples whose labels include the name/value pairs.
func (s *stack) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	return testsupport.Metric(t, s.app.Registry, name, want)
}

func waitUntil(t testing.TB, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCustomDataReachesTokensEndToEnd is the loop an app sees, with the
// cache on and no TTL: every change shows at the next refresh only because
// a notice dropped the cached value.
func TestCustomDataReachesTokensEndToEnd(t *testing.T) {
	s := startStack(t)
	ctx := context.Background()

	// Following notices with MongoDB and NATS up: the container's
	// healthcheck passes.
	t.Setenv("ISSUER_HTTP_ADDR", strings.TrimPrefix(s.app.URL, "http://"))
	var hc strings.Builder
	waitUntil(t, 30*time.Second, "healthcheck exits 0", func() bool {
		hc.Reset()
		return run([]string{"healthcheck"}, &hc, &hc) == 0
	})
	if want := "healthy: " + s.app.URL + "/readyz answered 200 OK\n"; hc.String() != want {
		t.Errorf("healthcheck: %q, want %q", hc.String(), want)
	}
	suffix := events.NewEventID()[:6]
	ada, bob := "ada+"+suffix+"@example.com", "bob+"+suffix+"@example.com"

	// Login → token A with the document as it is.
	docID := s.insert(t, ada, "free")
	loginStart := time.Now().Add(-time.Second)
	tokA, a, err := s.api.login(ctx, ada, "local-userpass")
	if err != nil {
		t.Fatal(err)
	}
	if a.Subject != ada || a.field("plan") != "free" {
		t.Fatalf("token A: sub %q custom_data %s", a.Subject, a.Raw)
	}

	// The worker sets lastLogin; its notice drops the cache; a refresh
	// (not forced) carries it.
	b := s.refreshUntil(t, tokA, "a refresh shows the worker's lastLogin", func(c tokenClaims) bool { return c.field("lastLogin") != "" })
	lastLogin, err := time.Parse(time.RFC3339Nano, b.field("lastLogin"))
	if err != nil || lastLogin.Before(loginStart) || lastLogin.After(time.Now().Add(time.Second)) {
		t.Fatalf("token B lastLogin %q (%v), want the login's time", b.field("lastLogin"), err)
	}
	// The value gets cached: a refresh is a hit, with the same data (else
	// this test would prove nothing about invalidation).
	if c := s.cached(t, tokA, "ada's data"); c.field("lastLogin") != b.field("lastLogin") {
		t.Fatalf("cached refresh: %s", c.Raw)
	}

	// An outside write (not through the worker): the next refresh shows it,
	// with no TTL configured.
	// (On a loaded machine the notice consumer may miss its heartbeats and
	// the cache flush everything meanwhile: a flush is an invalidation too.)
	dropped := func() float64 {
		return s.metric(t, "customdata_issuer_invalidations_total") + s.metric(t, "customdata_issuer_flushes_total")
	}
	before := dropped()
	if _, err := s.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: docID}}, bson.D{{Key: "$set", Value: bson.D{{Key: "plan", Value: "pro"}}}}); err != nil {
		t.Fatal(err)
	}
	s.refreshUntil(t, tokA, "a refresh shows the outside write", func(c tokenClaims) bool { return c.field("plan") == "pro" })
	// A read already in flight when the write committed may bring the new
	// value first; the notice must follow all the same.
	waitUntil(t, 15*time.Second, "the notice of the outside write invalidates the cache", func() bool { return dropped() > before })

	// The owner changes (ada → bob): ada's next refresh no longer shows it.
	// (On a server without pre-images, the stand-in among them, the notice
	// names only bob and the document; the cache drops ada's entry because
	// it holds that document.)
	s.cached(t, tokA, "ada's data before the owner change")
	if _, err := s.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: docID}}, bson.D{{Key: "$set", Value: bson.D{{Key: s.field, Value: bob}}}}); err != nil {
		t.Fatal(err)
	}
	s.refreshUntil(t, tokA, "ada's refresh no longer shows the document she lost", func(c tokenClaims) bool { return c.CustomData == nil })
	tokBob, bc, err := s.api.login(ctx, bob, "local-userpass")
	if err != nil || bc.field("plan") != "pro" {
		t.Fatalf("bob's token after the owner change: %v %s", err, bc.Raw)
	}

	// The document is deleted: bob's next refresh carries no custom data.
	// (Without pre-images the delete notice names only the document _id.)
	s.refreshUntil(t, tokBob, "bob's lastLogin", func(c tokenClaims) bool { return c.field("lastLogin") != "" })
	s.cached(t, tokBob, "bob's data before the delete")
	if _, err := s.coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: docID}}); err != nil {
		t.Fatal(err)
	}
	s.refreshUntil(t, tokBob, "bob's refresh after the delete carries no custom data", func(c tokenClaims) bool { return c.CustomData == nil })
}

// TestFlushAllRereadsEveryUser: a flush-all notice (the worker publishes one
// when continuity is lost; here it is published the same way, since
// provoking a real loss would mean reaching into the worker's state) makes
// every cached user's next refresh read MongoDB again.
func TestFlushAllRereadsEveryUser(t *testing.T) {
	s := startStack(t)
	ctx := context.Background()
	suffix := events.NewEventID()[:6]
	users := []string{"carol+" + suffix, "dave+" + suffix, "erin+" + suffix}
	tokens := map[string]string{}
	// Each user's document changes twice (the insert, the LOGIN's
	// lastLogin); wait for both notices so none trails into the count.
	notices := s.metric(t, "customdata_issuer_notices_total")
	for _, u := range users {
		s.insert(t, u, "free")
		tok, _, err := s.api.login(ctx, u, "local-userpass")
		if err != nil {
			t.Fatal(err)
		}
		tokens[u] = tok
		// Let the LOGIN's own write and notice settle first.
		s.refreshUntil(t, tok, u+"'s lastLogin", func(c tokenClaims) bool { return c.field("lastLogin") != "" })
	}
	waitUntil(t, 15*time.Second, "the users' notices", func() bool {
		return s.metric(t, "customdata_issuer_notices_total") >= notices+2*float64(len(users))
	})
	for _, u := range users { // cache them
		if _, _, err := s.api.refresh(ctx, tokens[u], false); err != nil {
			t.Fatal(err)
		}
	}
	misses := s.metric(t, "customdata_issuer_cache_misses_total")
	for _, u := range users {
		if _, _, err := s.api.refresh(ctx, tokens[u], false); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.metric(t, "customdata_issuer_cache_misses_total"); got != misses {
		t.Fatalf("users were not all cached before the flush: %v misses, want %v", got, misses)
	}

	flushes := s.metric(t, "customdata_issuer_flushes_total", "reason", "notice")
	data := fmt.Appendf(nil, `{"schemaVersion":1,"kind":"flush_all","reason":"history_lost","publishedAt":%q}`, time.Now().UTC().Format(time.RFC3339Nano))
	if _, err := s.js.Publish(ctx, events.FlushAllSubject(events.DefaultNoticePrefix), data); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 15*time.Second, "the flush-all notice is applied", func() bool {
		return s.metric(t, "customdata_issuer_flushes_total", "reason", "notice") > flushes
	})
	for _, u := range users {
		if _, c, err := s.api.refresh(ctx, tokens[u], false); err != nil || c.field("plan") != "free" {
			t.Fatalf("%s after flush: %v %s", u, err, c.Raw)
		}
	}
	if got := s.metric(t, "customdata_issuer_cache_misses_total"); got != misses+float64(len(users)) {
		t.Fatalf("after the flush-all: %v misses, want %v (every user re-read once)", got, misses+float64(len(users)))
	}
}

// BenchmarkCommitToRefresh measures staleness as an app sees it: from a
// MongoDB write being acknowledged to the first POST /refresh whose token
// reflects it (worker change stream → notice → issuer cache drop → read →
// signed token). Figures, not assertions: make bench prints them.
func BenchmarkCommitToRefresh(b *testing.B) {
	s := startStack(b)
	ctx := context.Background()
	user := "bench+" + events.NewEventID()[:6]
	s.insert(b, user, "0")
	tok, _, err := s.api.login(ctx, user, "local-userpass")
	if err != nil {
		b.Fatal(err)
	}
	// Let the LOGIN's write settle so it does not race the first update.
	waitUntil(b, 15*time.Second, "lastLogin", func() bool {
		_, c, err := s.api.refresh(ctx, tok, false)
		return err == nil && c.field("lastLogin") != ""
	})
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		want := fmt.Sprint(i + 1)
		if _, err := s.coll.UpdateOne(ctx, bson.D{{Key: s.field, Value: user}}, bson.D{{Key: "$set", Value: bson.D{{Key: "plan", Value: want}}}}); err != nil {
			b.Fatal(err)
		}
		committed := time.Now()
		for {
			_, c, err := s.api.refresh(ctx, tok, false)
			if err != nil {
				b.Fatal(err)
			}
			if c.field("plan") == want {
				break
			}
			if time.Since(committed) > 15*time.Second {
				b.Fatalf("update %d never reached a refresh", i+1)
			}
		}
		lat = append(lat, time.Since(committed))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// Package natsdeploy_test runs a real nats-server on deploy/nats/nats.conf
// and shows that each role can do its job with the project's own code,
// and is refused the rest.
package natsdeploy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/bridge/apikey"
	"github.com/customdata-worker/customdata-worker/internal/bridge/ingest"
	"github.com/customdata-worker/customdata-worker/internal/dlq"
	"github.com/customdata-worker/customdata-worker/internal/noticetail"
	"github.com/customdata-worker/customdata-worker/internal/opcheck"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/issuer"
	"github.com/customdata-worker/customdata-worker/triggers"
	"github.com/customdata-worker/customdata-worker/worker"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
)

// startWorker runs the real worker (PROVISION=create, notices on) as the
// customdata-worker user until the test ends, and waits until it is ready.
func startWorker(t *testing.T, url string, m *testsupport.Mongo) (worker.Config, *testsupport.Logs) {
	t.Helper()
	set, err := triggers.NewSet(triggers.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg := worker.Config{
		MongoURI: m.URI,
		NATS: worker.NATSConfig{URL: url, Name: "natsdeploy-worker", User: workerRole.user, Password: workerRole.password(),
			InboxPrefix: workerRole.inboxPrefix()},
		Data:     customdata.Config{Database: testsupport.DatabaseName(t), Collection: events.DefaultCollection},
		Notices:  true,
		Triggers: set,
	}
	logs := &testsupport.Logs{}
	w, err := worker.New(cfg, worker.WithLogger(zerolog.New(logs)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v\n%s", err, logs)
		}
	})
	testsupport.Eventually(t, "worker ready", func() bool {
		for _, c := range w.Checks() {
			if c.Check() != nil {
				return false
			}
		}
		return true
	})
	return cfg, logs
}

// followNotices runs an issuer cache on c's connection, following the
// notices, until the test ends.
func followNotices(t *testing.T, c *conn, m *testsupport.Mongo, db string) (*issuer.Cache, prometheus.Gatherer) {
	t.Helper()
	src, err := issuer.NewSource(m.Client(t), issuer.SourceConfig{Database: db})
	if err != nil {
		t.Fatal(err)
	}
	cache, err := issuer.NewCache(src, issuer.CacheConfig{}, issuer.WithNotices(c.js, issuer.NoticeConfig{}))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(cache.Collectors()...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cache.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("issuer cache: %v", err)
		}
	})
	testsupport.Eventually(t, "issuer following notices", cache.Following)
	return cache, reg
}

// found: what the issuer's cache answers for user.
func found(t *testing.T, cache *issuer.Cache, user string) bool {
	t.Helper()
	d, err := cache.Get(testsupport.Context(t), user)
	if err != nil {
		t.Fatalf("issuer Get(%s): %v", user, err)
	}
	return d.Found()
}

// TestEachRoleDoesItsJob: the auth service publishes, the worker consumes,
// writes, dead-letters and notifies, the issuers follow the notices, the
// reference issuer and the bridge publish too (the bridge every operation
// and dead letters, through its ingest endpoints), and the operator's
// check, dlq and tail work, each as its own user and without one refusal.
func TestEachRoleDoesItsJob(t *testing.T) {
	url := startServer(t)
	m := testsupport.MongoDB(t)
	wcfg, workerLogs := startWorker(t, url, m)
	ctx := testsupport.Context(t)

	auth := connect(t, url, authService)
	iss := connect(t, url, issuerRole)
	ref := connect(t, url, referenceIssuer)
	ops := connect(t, url, opsRole)
	br := connect(t, url, bridgeRole)
	cache, reg := followNotices(t, iss, m, wcfg.Data.Database)
	refCache, _ := followNotices(t, ref, m, wcfg.Data.Database)
	bridgeCache, _ := followNotices(t, br, m, wcfg.Data.Database)

	// A miss is kept (the cache follows notices): only the worker's notice
	// can make the user appear.
	const user = "ada"
	if found(t, cache, user) || found(t, refCache, user) {
		t.Fatal("user found before signing up")
	}
	pub, err := events.NewPublisher(auth.js)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, events.NewAuthEvent(events.OperationCreate, user, "local-userpass")); err != nil {
		t.Fatalf("auth service publishing CREATE: %v", err)
	}
	testsupport.Eventually(t, "issuers see the new user through a notice", func() bool {
		return found(t, cache, user) && found(t, refCache, user) && found(t, bridgeCache, user)
	})
	// The reference issuer publishes the LOGIN of its POST /login (the
	// only event it publishes, and the only one it may).
	refPub, err := events.NewPublisher(ref.js)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := refPub.Publish(ctx, events.NewAuthEvent(events.OperationLogin, user, "local-userpass")); err != nil {
		t.Fatalf("reference issuer publishing LOGIN: %v", err)
	}
	testsupport.Eventually(t, "the issuer receives a notice", func() bool {
		return testsupport.Metric(t, reg, "customdata_issuer_notices_total", nil) >= 1
	})

	// The bridge publishes a DELETE (as for a Clerk user.deleted).
	brPub, err := events.NewPublisher(br.js)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := brPub.Publish(ctx, events.NewAuthEvent(events.OperationDelete, user, "clerk")); err != nil {
		t.Fatalf("bridge publishing DELETE: %v", err)
	}
	testsupport.Eventually(t, "issuers see the user deleted", func() bool {
		return !found(t, cache, user) && !found(t, refCache, user)
	})

	// An event the worker cannot decode is dead-lettered; the operator
	// lists it, shows it, redrives it (the worker dead-letters it again)
	// and purges it.
	if _, err := auth.js.Publish(ctx, events.AuthSubject(authPrefix, events.OperationLogin), []byte("not json")); err != nil {
		t.Fatalf("auth service publishing: %v", err)
	}
	q, err := dlq.New(ops.js, dlqStream, dlqPrefix)
	if err != nil {
		t.Fatal(err)
	}
	first := waitDeadLetter(t, q, 0)
	if _, err := q.Get(ctx, first); err != nil {
		t.Errorf("dlq show as operator: %v", err)
	}
	bySeq := func(seq uint64) dlq.Filter { return dlq.Filter{Sequences: []uint64{seq}} }
	if err := q.Redrive(ctx, bySeq(first), false, outcomeOK(t, "redrive")); err != nil {
		t.Errorf("dlq redrive as operator: %v", err)
	}
	again := waitDeadLetter(t, q, first)
	if err := q.Purge(ctx, bySeq(again), false, outcomeOK(t, "purge")); err != nil {
		t.Errorf("dlq purge as operator: %v", err)
	}
	if left, err := q.List(ctx, dlq.Filter{}, 0); err != nil || len(left) != 0 {
		t.Errorf("after purge: %d dead letters, %v; want none", len(left), err)
	}

	// The bridge's ingest endpoints, as its user: an Auth0 log stream's
	// signup, login and deletion of grace are published and applied, and
	// a login without user_id is dead-lettered (the operator purges it).
	bridgeIngest(t, br, `[`+auth0Log("9001", "ss", "grace")+`,`+auth0Log("9002", "s", "grace")+`,`+auth0Log("9003", "s", "")+`]`, `{"published":2,"duplicates":0,"dead_lettered":1,"ignored":0}`)
	testsupport.Eventually(t, "the bridge's CREATE reaches the issuer", func() bool { return found(t, cache, "grace") })
	bridgeIngest(t, br, `[`+auth0Log("9004", "sdu", "grace")+`]`, `{"published":1,"duplicates":0,"dead_lettered":0,"ignored":0}`)
	testsupport.Eventually(t, "the bridge's DELETE reaches the issuer", func() bool { return !found(t, cache, "grace") })
	dead := waitDeadLetter(t, q, 0)
	if e, err := q.Get(ctx, dead); err != nil || e.Reason != "missing_field" || e.Headers.Get(events.HeaderDLQSource) != "auth0" {
		t.Errorf("the bridge's dead letter: %+v, %v", e, err)
	}
	if err := q.Purge(ctx, bySeq(dead), false, outcomeOK(t, "purge")); err != nil {
		t.Errorf("dlq purge as operator: %v", err)
	}

	// tail: the notices of the last hour (CREATE and DELETE of ada).
	var tailed []noticetail.Line
	err = noticetail.Follow(ctx, ops.js, noticetail.Options{Stream: noticeStream, Prefix: noticePrefix, Since: time.Hour, Limit: 2, UserID: user},
		func(l noticetail.Line) error { tailed = append(tailed, l); return nil })
	if err != nil || len(tailed) != 2 {
		t.Errorf("tail as operator: %d notices, %v; want 2", len(tailed), err)
	}

	// check, as `customdata-worker check` runs it with the operator's user.
	ccfg := wcfg
	ccfg.NATS.User, ccfg.NATS.Password, ccfg.NATS.InboxPrefix = opsRole.user, opsRole.password(), opsRole.inboxPrefix()
	rep := opcheck.Run(ctx, opcheck.Config{Worker: ccfg, Timeout: 5 * time.Second})
	if !rep.OK {
		var b strings.Builder
		_ = rep.WriteText(&b)
		t.Errorf("check as operator failed:\n%s", b.String())
	}

	for who, c := range map[string]*conn{"auth service": auth, "issuer": iss, "reference issuer": ref, "operator": ops, "bridge": br} {
		c.noViolations(t, who)
	}
	if n := workerLogs.Count("ermissions"); n > 0 {
		t.Errorf("the worker was refused something (%d log lines):\n%s", n, workerLogs)
	}
}

// waitDeadLetter waits until the dead-letter stream holds exactly one
// dead letter, not the one of sequence not, and returns its sequence.
func waitDeadLetter(t *testing.T, q *dlq.Queue, not uint64) uint64 {
	t.Helper()
	var seq uint64
	testsupport.Eventually(t, "operator sees the dead letter", func() bool {
		dead, err := q.List(testsupport.Context(t), dlq.Filter{}, 0)
		if err != nil {
			t.Fatalf("dlq list as operator: %v", err)
		}
		if len(dead) != 1 || dead[0].Sequence == not {
			return false
		}
		seq = dead[0].Sequence
		return true
	})
	return seq
}

// outcomeOK fails the test for a dead letter the operator's verb could
// not handle.
func outcomeOK(t *testing.T, verb string) func(dlq.Outcome) {
	return func(o dlq.Outcome) {
		if !o.Done || o.Err != nil {
			t.Errorf("dlq %s as operator: dead letter %d not done: %v", verb, o.Entry.Sequence, o.Err)
		}
	}
}

// bridgeIngest posts body to the bridge's Auth0 endpoint, served on the
// bridge's connection as cmd/customdata-bridge serves it, and checks the
// answer.
func bridgeIngest(t *testing.T, br *conn, body, want string) {
	t.Helper()
	pub, err := events.NewPublisher(br.js)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := apikey.NewSet([]string{"Bearer stream-token"})
	if err != nil {
		t.Fatal(err)
	}
	in, err := ingest.New(pub, br.js, ingest.Config{}, ingest.WithAuth0(tokens))
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/ingest/auth0", strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer stream-token")
	w := httptest.NewRecorder()
	in.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusOK || w.Body.String() != want {
		t.Fatalf("bridge ingest: %d %s, want 200 %s", w.Code, w.Body, want)
	}
}

// auth0Log is a log stream element of type typ for user (none when "").
func auth0Log(id, typ, user string) string {
	logID := "9002026" + strings.Repeat("0", 40) + id
	return `{"log_id":"` + logID + `","data":{"type":"` + typ + `","user_id":"` + user + `","strategy":"auth0","date":"` +
		time.Now().UTC().Format(time.RFC3339Nano) + `","log_id":"` + logID + `"}}`
}

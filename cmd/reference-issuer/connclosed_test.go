package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/customdata-worker/customdata-worker/internal/natsconn"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// startIssuer runs the issuer on the defaults, a dev key, a free port,
// MongoDB and the NATS server at natsURL (after tweak), until the test
// ends; done receives runIssuer's result.
func startIssuer(t *testing.T, natsURL string, tweak func(*Config)) (app running, done <-chan error, logs *testsupport.Logs) {
	t.Helper()
	var cfg Config
	if err := envconfig.Process("ISSUER_CONNCLOSED_TEST_NOT_SET", &cfg); err != nil { // the defaults
		t.Fatal(err)
	}
	cfg.NATSURL, cfg.HTTPAddr, cfg.DevEphemeralKey = natsURL, "127.0.0.1:0", true
	cfg.MongoURI, cfg.Database = testsupport.MongoDB(t).URI, testsupport.DatabaseName(t)
	if tweak != nil {
		tweak(&cfg)
	}
	logs = &testsupport.Logs{}
	ctx, cancel := context.WithCancel(context.Background())
	ready, result := make(chan running, 1), make(chan error, 1)
	go func() { result <- runIssuer(ctx, cfg, newLogger(cfg, logs), ready) }()
	t.Cleanup(cancel)
	select {
	case app = <-ready:
	case err := <-result:
		t.Fatalf("issuer did not start: %v", err)
	case <-time.After(testsupport.Wait):
		t.Fatal("issuer did not start")
	}
	return app, result, logs
}

// The password is changed on the server (and the configuration reloaded)
// while the issuer runs: nats.go then stops reconnecting, so the issuer
// must not stay up unready for good. It stops with the refusal named and
// neither password shown (an orchestrator restarts it; the restart fails
// fast while the credentials stay refused).
func TestRunStopsWhenNATSRefusesTheCredentialsLater(t *testing.T) {
	const before, after = "F1rstPassw0rd-9", "Sec0ndPassw0rd-9"
	n := testsupport.StartNATSWithPassword(t, "issuer", before)
	_, done, logs := startIssuer(t, n.URL, func(c *Config) { c.NATSUser, c.NATSPassword = "issuer", before })
	n.SetPassword(t, after)
	var err error
	select {
	case err = <-done:
	case <-time.After(testsupport.Wait):
		t.Fatalf("the issuer still runs after NATS closed its connection:\n%s", logs)
	}
	switch msg := strings.ToLower(err.Error()); {
	case !errors.Is(err, natsconn.ErrClosed):
		t.Fatalf("runIssuer = %v, want the connection closed for good", err)
	case !strings.Contains(msg, "nats refused the credentials: nats: authorization violation"):
		t.Fatalf("runIssuer = %v does not name the refusal", err)
	case strings.Contains(err.Error()+logs.String(), before) || strings.Contains(err.Error()+logs.String(), after):
		t.Fatalf("a password is shown: %v\n%s", err, logs)
	}
}

// Finding 5 of review 16: with no notifier leading (here: no worker at
// all, so no notice stream) the cache reads through, which is correct:
// the issuer stays ready while MongoDB answers, and /readyz says it
// does not follow in a warning line.
func TestReadyWithoutNoticesWhileMongoDBAnswers(t *testing.T) {
	app, _, _ := startIssuer(t, testsupport.StartNATS(t).URL, nil)
	if app.Cache == nil || app.Cache.Following() {
		t.Fatal("want a cache that does not follow notices")
	}
	resp, err := http.Get(app.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if body := string(b); resp.StatusCode != http.StatusOK || !strings.HasPrefix(body, "ok\n") || !strings.Contains(body, notFollowingWarning) {
		t.Fatalf("/readyz = %d %q, want 200 ok with the not-following warning", resp.StatusCode, body)
	}
}

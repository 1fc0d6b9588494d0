package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// What an operator sees when starting the issuer on a dev key with
// MongoDB unreachable: loud warnings that /login trusts any id and that
// the key is a dev one, and a /readyz that says MongoDB is the problem —
// with the password of the URI in neither.
func TestStartupWarningsAndReadiness(t *testing.T) {
	const password = "S3cretPassw0rd"
	ns := testsupport.StartNATS(t)
	var cfg Config
	if err := envconfig.Process("ISSUER_STARTUP_TEST_NOT_SET", &cfg); err != nil { // the defaults
		t.Fatal(err)
	}
	cfg.NATSURL, cfg.HTTPAddr, cfg.DevEphemeralKey = ns.URL, "127.0.0.1:0", true
	cfg.MongoURI = "mongodb://app:" + password + "@127.0.0.1:1/?serverSelectionTimeoutMS=300&connectTimeoutMS=300"
	logs := &testsupport.Logs{}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan running, 1), make(chan error, 1)
	go func() { done <- runIssuer(ctx, cfg, newLogger(cfg, logs), ready) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("issuer: %v", err)
		}
	}()
	var app running
	select {
	case app = <-ready:
	case err := <-done:
		t.Fatalf("issuer did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("issuer did not start within 30s")
	}

	resp, err := http.Get(app.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "MongoDB does not answer: ") ||
		!strings.Contains(body, "ISSUER_DEV_EPHEMERAL_KEY=true") {
		t.Fatalf("/readyz: %d %q, want 503 naming mongodb and the dev key", resp.StatusCode, body)
	}
	// The container's healthcheck says the same, in one line.
	t.Setenv("ISSUER_HTTP_ADDR", strings.TrimPrefix(app.URL, "http://"))
	var hc strings.Builder
	code := run([]string{"healthcheck"}, &hc, &hc)
	if want := "unhealthy: " + app.URL + "/readyz answered 503 Service Unavailable: not ready: "; code != 1 ||
		!strings.HasPrefix(hc.String(), want) || !strings.Contains(hc.String(), "MongoDB does not answer: ") ||
		strings.Count(hc.String(), "\n") != 1 || strings.Contains(hc.String(), password) {
		t.Errorf("healthcheck: exit %d %q, want 1 and one line starting %q, naming mongodb, without the password", code, hc.String(), want)
	}

	log := logs.String()
	for _, want := range []string{
		"POST /login issues a token for ANY user id it is given", "listening on loopback only",
		"DEVELOPMENT ONLY: no ISSUER_SIGNING_KEY_FILE",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("startup log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log+body, password) {
		t.Errorf("the MongoDB password is shown:\n%s\n%s", log, body)
	}
}

// Started from its environment without a signing key file, the issuer
// stops at once and says how to fix it.
func TestRunRefusesWithoutSigningKey(t *testing.T) {
	t.Setenv("ISSUER_SIGNING_KEY_FILE", "")
	t.Setenv("ISSUER_DEV_EPHEMERAL_KEY", "false")
	var stdout, stderr strings.Builder
	if code := run([]string{"run"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "ISSUER_SIGNING_KEY_FILE is not set") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/kelseyhightower/envconfig"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// With NATS not answering at start, the ops endpoints already serve:
// /livez says the process lives (a liveness probe must not restart it in
// a loop through the outage) and /readyz says what startup waits for.
func TestOpsEndpointsAnswerWhileNATSDoesNot(t *testing.T) {
	var cfg Config
	if err := envconfig.Process("CUSTOMDATA_BRIDGE_STARTUP_NOT_SET", &cfg); err != nil { // the defaults
		t.Fatal(err)
	}
	cfg.NATSURL = "nats://" + freeAddr(t) // nothing listens
	cfg.HTTPAddr, cfg.OpsAddr = "127.0.0.1:0", freeAddr(t)
	cfg.APITokens = []string{"tok"}
	cfg.LogLevel = "error"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runBridge(ctx, cfg, newLogger(cfg, testWriter{t}), nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bridge: %v", err)
		}
	}()
	get := func(path string) (int, string) {
		res, err := http.Get("http://" + cfg.OpsAddr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	testsupport.Eventually(t, "/livez answers", func() bool { code, _ := get("/livez"); return code == http.StatusOK })
	code, body := get("/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "connect to NATS") {
		t.Fatalf("/readyz = %d %s, want 503 naming the NATS connection startup waits for", code, body)
	}
}

// A blank key list stops the start at once, exit 2, with the setting
// named and no secret, before any connection: with NATS not answering,
// the bridge would otherwise retry it forever and never say why.
func TestBlankSecretStopsTheStartBeforeConnecting(t *testing.T) {
	t.Setenv(envPrefix+"_NATS_URL", "nats://"+freeAddr(t)) // nothing listens
	t.Setenv(envPrefix+"_HTTP_ADDR", "127.0.0.1:0")
	t.Setenv(envPrefix+"_OPS_ADDR", "")
	t.Setenv(envPrefix+"_AUTH0_AUTHORIZATION", " , ")
	var out, errOut bytes.Buffer
	if code := run([]string{"run"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "CUSTOMDATA_BRIDGE_AUTH0_AUTHORIZATION: every value is blank") {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if strings.Contains(errOut.String(), "NATS") {
		t.Fatalf("the start got as far as NATS: %s", errOut.String())
	}
}

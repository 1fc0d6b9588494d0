package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/customdata-worker/customdata-worker/internal/natsconn"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// The password is changed on the server (and the configuration reloaded)
// while the bridge runs: nats.go then stops reconnecting, so the bridge
// stops with the refusal named and neither password shown, instead of
// serving on without notices or publishing for good.
func TestRunStopsWhenNATSRefusesTheCredentialsLater(t *testing.T) {
	const before, after = "F1rstPassw0rd-9", "Sec0ndPassw0rd-9"
	n := testsupport.StartNATSWithPassword(t, "bridge", before)
	var cfg Config
	if err := envconfig.Process("CUSTOMDATA_BRIDGE_CONNCLOSED_NOT_SET", &cfg); err != nil { // the defaults
		t.Fatal(err)
	}
	cfg.NATSURL, cfg.NATSUser, cfg.NATSPassword = n.URL, "bridge", before
	cfg.MongoURI, cfg.Database = testsupport.MongoDB(t).URI, testsupport.DatabaseName(t)
	cfg.HTTPAddr, cfg.OpsAddr = "127.0.0.1:0", ""
	cfg.APITokens = []string{"tok-for-the-generic-endpoint"}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	logs := &testsupport.Logs{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready, done := make(chan running, 1), make(chan error, 1)
	go func() { done <- runBridge(ctx, cfg, newLogger(cfg, logs), ready) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("bridge did not start: %v", err)
	}
	n.SetPassword(t, after)
	var err error
	select {
	case err = <-done:
	case <-time.After(testsupport.Wait):
		t.Fatalf("the bridge still runs after NATS closed its connection:\n%s", logs)
	}
	switch msg := strings.ToLower(err.Error()); {
	case !errors.Is(err, natsconn.ErrClosed):
		t.Fatalf("runBridge = %v, want the connection closed for good", err)
	case !strings.Contains(msg, "nats refused the credentials: nats: authorization violation"):
		t.Fatalf("runBridge = %v does not name the refusal", err)
	case strings.Contains(err.Error()+logs.String(), before) || strings.Contains(err.Error()+logs.String(), after):
		t.Fatalf("a password is shown: %v\n%s", err, logs)
	}
}

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/customdata-worker/customdata-worker/internal/natsconn"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// Every ISSUER_NATS_* setting reaches the NATS connection, in its own
// field: the same settings as the worker's CUSTOMDATA_NATS_*.
func TestNATSSettingsReachTheConnection(t *testing.T) {
	for k, v := range map[string]string{
		"ISSUER_NATS_URL": "nats://n1:4222,nats://n2:4222", "ISSUER_NATS_USER": "app", "ISSUER_NATS_PASSWORD": "pw",
		"ISSUER_NATS_TOKEN": "tok", "ISSUER_NATS_NKEY_SEED_FILE": "/s/user.nk", "ISSUER_NATS_CREDS_FILE": "/s/app.creds",
		"ISSUER_NATS_TLS_CA": "/s/ca.pem", "ISSUER_NATS_TLS_CERT": "/s/cert.pem", "ISSUER_NATS_TLS_KEY": "/s/key.pem",
	} {
		t.Setenv(k, v)
	}
	var cfg Config
	if err := envconfig.Process(envPrefix, &cfg); err != nil { // not validated: the set is ambiguous on purpose
		t.Fatal(err)
	}
	want := natsconn.Config{URL: "nats://n1:4222,nats://n2:4222", Name: appName, User: "app", Password: "pw", Token: "tok",
		NKeySeedFile: "/s/user.nk", CredsFile: "/s/app.creds", TLSCAFile: "/s/ca.pem", TLSCertFile: "/s/cert.pem", TLSKeyFile: "/s/key.pem"}
	if got := cfg.natsConfig(); got != want {
		t.Fatalf("NATS settings\n got %+v\nwant %+v", got, want)
	}
}

// Started against a password-protected NATS with the wrong password, the
// issuer stops (it does not retry a refusal forever) and says why,
// without the password.
func TestRunStopsWhenNATSRefusesTheCredentials(t *testing.T) {
	const password = "Wr0ngPassw0rd-9"
	s, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, Username: "issuer", Password: "right-one"})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	t.Setenv("ISSUER_NATS_URL", s.ClientURL())
	t.Setenv("ISSUER_NATS_USER", "issuer")
	t.Setenv("ISSUER_NATS_PASSWORD", password)
	code, stderr := runBounded(t, "run")
	if code != 1 || !strings.Contains(stderr, "Authorization Violation") || !strings.Contains(stderr, "reference issuer stopped with an error") {
		t.Fatalf("exit %d, stderr:\n%s\nwant 1 and the refusal", code, stderr)
	}
	if strings.Contains(stderr, password) {
		t.Fatalf("the password is shown:\n%s", stderr)
	}
}

// Defect 8: neither a NATS URL that cannot be parsed nor a MongoDB
// connection string the driver refuses shows its password.
func TestRunHidesPasswordsOfUnusableURLs(t *testing.T) {
	t.Run("NATS URL", func(t *testing.T) {
		t.Setenv("ISSUER_NATS_URL", "nats://app:pa ss9-secret@[bad:4222")
		code, stderr := runBounded(t, "run")
		if code != 2 || !strings.Contains(stderr, "NATS URL #1 cannot be parsed") || strings.Contains(stderr, "ss9") {
			t.Fatalf("exit %d, stderr:\n%s\nwant 2, the URL named by position, no password", code, stderr)
		}
	})
	t.Run("MongoDB URI", func(t *testing.T) {
		t.Setenv("ISSUER_NATS_URL", testsupport.StartNATS(t).URL)
		// The driver quotes the bad escape, a piece of the password.
		t.Setenv("ISSUER_MONGODB_URI", "mongodb://app:s3cr%zt9@127.0.0.1:1/")
		code, stderr := runBounded(t, "run")
		if code != 1 || !strings.Contains(stderr, "MongoDB client for") || strings.Contains(stderr, "%zt") || strings.Contains(stderr, "s3cr") {
			t.Fatalf("exit %d, stderr:\n%s\nwant 1, the MongoDB error, no password", code, stderr)
		}
	})
}

// runBounded runs the issuer's command line on a dev key and a free port
// and returns its exit code and stderr; a run that does not end is a
// failure (a refusal retried forever would never end).
func runBounded(t *testing.T, args ...string) (int, string) {
	t.Helper()
	t.Setenv("ISSUER_DEV_EPHEMERAL_KEY", "true")
	t.Setenv("ISSUER_HTTP_ADDR", "127.0.0.1:0")
	var stdout, stderr testsupport.Logs
	done := make(chan int, 1)
	go func() { done <- run(args, &stdout, &stderr) }()
	select {
	case code := <-done:
		return code, stderr.String()
	case <-time.After(2 * time.Minute):
		t.Fatalf("still running:\n%s", stderr.String())
		return 0, ""
	}
}

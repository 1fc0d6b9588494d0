package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

func TestEnvListsEverySettingWithDefaults(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"env"}, &out, &errOut); code != 0 {
		t.Fatalf("env exited %d: %s", code, errOut.String())
	}
	for _, want := range []string{
		"CUSTOMDATA_NATS_URL", "nats://127.0.0.1:4222",
		"CUSTOMDATA_MONGODB_URI", "CUSTOMDATA_USER_ID_FIELD", "userId",
		"CUSTOMDATA_WRITE_CONCERN", "majority", "CUSTOMDATA_NATS_CREDS_FILE",
		"CUSTOMDATA_TRIGGERS_FILE", "CUSTOMDATA_LEASE_TTL", "CUSTOMDATA_HTTP_ADDR",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("env output lacks %q", want)
		}
	}
}

func TestCheckRejectsBadConfiguration(t *testing.T) {
	tests := []struct {
		name, key, value, wantErr string
	}{
		{"log format", "CUSTOMDATA_LOG_FORMAT", "xml", "LOG_FORMAT"},
		{"provision", "CUSTOMDATA_PROVISION", "maybe", "PROVISION"},
		{"two NATS auth methods", "CUSTOMDATA_NATS_TOKEN", "t", "only one"},
		{"missing trigger file", "CUSTOMDATA_TRIGGERS_FILE", "/nonexistent/triggers.yaml", "triggers"},
		{"not a duration", "CUSTOMDATA_BATCH_WAIT", "soon", "BATCH_WAIT"},
		{"unescaped slash in the MongoDB password", "CUSTOMDATA_MONGODB_URI", "mongodb://user:pa/ss@h1:27017/?replicaSet=rs0", "MongoDB connection string"},
		{"MongoDB port not a number", "CUSTOMDATA_MONGODB_URI", "mongodb://user:secretpw@h1:notaport/", "MongoDB connection string"},
		{"NATS port not a number", "CUSTOMDATA_NATS_URL", "nats://h1:4222,nats://user:secretpw@h2:notaport", "NATS URL"},
		{"NATS password with a slash", "CUSTOMDATA_NATS_URL", "nats://user:pa/ss@h1:4222", "NATS URL"},
		{"NATS password without a user", "CUSTOMDATA_NATS_PASSWORD", "secretpw", "a password needs a user"},
		{"missing NATS creds file", "CUSTOMDATA_NATS_CREDS_FILE", "/nonexistent/app.creds", "NATS creds file /nonexistent/app.creds"},
		{"missing NATS CA file", "CUSTOMDATA_NATS_TLS_CA", "/nonexistent/ca.pem", "NATS TLS CA file /nonexistent/ca.pem"},
		// NATS refuses these at run time ("invalid stream name"): check must too.
		{"slash in the notice stream", "CUSTOMDATA_NOTICE_STREAM", "A/B", "stream name"},
		{"backslash in the notice stream", "CUSTOMDATA_NOTICE_STREAM", `A\B`, "stream name"},
		{"slash in the auth stream", "CUSTOMDATA_AUTH_STREAM", "A/B", "stream name"},
		{"backslash in the dead-letter stream", "CUSTOMDATA_DLQ_STREAM", `A\B`, "stream name"},
		{"slash in the consumer", "CUSTOMDATA_AUTH_CONSUMER", "a/b", "consumer name"},
		// Checked even with notices off, before anything connects.
		{"user-id field among the ignored fields", "CUSTOMDATA_NOTICE_IGNORE_FIELDS", "lastLogin,userId", "user-id field"},
		{"too many notifier partitions", "CUSTOMDATA_NOTIFIER_PARTITIONS", "65", "partitions must be between 1 and 64, got 65"},
		{"negative notifier partitions", "CUSTOMDATA_NOTIFIER_PARTITIONS", "-2", "partitions must be between 1 and 64, got -2"},
	}
	unparsable := map[string]bool{"log format": true, "provision": true, "not a duration": true}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(tt.key, tt.value)
			if tt.key == "CUSTOMDATA_NATS_TOKEN" {
				t.Setenv("CUSTOMDATA_NATS_USER", "alice")
			}
			var out, errOut bytes.Buffer
			code := run([]string{"check", "--offline"}, &out, &errOut)
			// An environment that cannot be read at all is refused by every
			// verb as a usage error (2, on stderr) before check runs.
			if unparsable[tt.name] {
				if code != 2 || !strings.Contains(errOut.String(), tt.wantErr) {
					t.Fatalf("check = %d (%q), want 2 naming %s", code, errOut.String(), tt.wantErr)
				}
				return
			}
			if code != 1 {
				t.Fatalf("check exited %d, want 1 (stdout %q)", code, out.String())
			}
			if !strings.HasPrefix(out.String(), "✗ configuration: ") || !strings.Contains(out.String(), tt.wantErr) ||
				!strings.Contains(out.String(), "check failed: the worker would not run") {
				t.Errorf("check printed %q, want a ✗ configuration line mentioning %q and the verdict", out.String(), tt.wantErr)
			}
			for _, secret := range []string{"pa/ss", "secretpw"} {
				if strings.Contains(out.String()+errOut.String(), secret) {
					t.Errorf("check output %q shows the password", out.String())
				}
			}
		})
	}
}

// A trigger file checked against another user-id field than the worker's
// is refused by check (and run).
func TestCheckRejectsATriggerFileForAnotherUserIDField(t *testing.T) {
	file := filepath.Join(t.TempDir(), "triggers.yaml")
	if err := os.WriteFile(file, []byte("userIdField: uid\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CUSTOMDATA_TRIGGERS_FILE", file)
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "--offline"}, &out, &errOut); code != 1 || !strings.Contains(out.String(), `userIdField "uid"`) {
		t.Fatalf("check = %d (%q), want 1 naming the trigger file's userIdField", code, out.String())
	}
	t.Setenv("CUSTOMDATA_USER_ID_FIELD", "uid")
	if code := run([]string{"check", "--offline"}, &out, &errOut); code != 0 {
		t.Fatalf("check with USER_ID_FIELD=uid = %d (%q), want 0", code, errOut.String())
	}
}

// Every auth-consumer setting the env table lists must reach the consumer.
func TestAuthSettingsReachTheConsumer(t *testing.T) {
	t.Setenv("CUSTOMDATA_AUTH_STREAM_MAX_BYTES", "1048576")
	t.Setenv("CUSTOMDATA_DLQ_MAX_AGE", "720h")
	t.Setenv("CUSTOMDATA_REDELIVERY_BACKOFF", "2s,1m")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	ac := cfg.workerConfig(nil).Auth
	if ac.MaxBytes != 1<<20 || ac.DeadLetterMaxAge != 720*time.Hour ||
		!slices.Equal(ac.BackOff, []time.Duration{2 * time.Second, time.Minute}) {
		t.Fatalf("auth config got max bytes %d, dead-letter max age %s, backoff %v", ac.MaxBytes, ac.DeadLetterMaxAge, ac.BackOff)
	}
}

func TestCheckAcceptsDefaultsAndExampleTriggers(t *testing.T) {
	t.Setenv("CUSTOMDATA_TRIGGERS_FILE", "../../deploy/triggers.example.yaml")
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "--offline"}, &out, &errOut); code != 0 {
		t.Fatalf("check exited %d: %s", code, errOut.String())
	}
}

func TestUnknownCommandIsAUsageError(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"frobnicate"}, &out, &errOut); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.Contains(errOut.String(), "Usage") {
		t.Errorf("no usage on stderr: %q", errOut.String())
	}
}

// TestDemoRunsEndToEnd is the README's `make demo`: the real worker on
// embedded NATS and the test MongoDB, driven like an auth service and an
// issuer would. It fails if any step's effect does not happen.
func TestDemoRunsEndToEnd(t *testing.T) {
	m := testsupport.MongoDB(t)
	t.Setenv("CUSTOMDATA_MONGODB_URI", m.URI)
	t.Setenv("CUSTOMDATA_MONGODB_DATABASE", testsupport.DatabaseName(t))
	t.Setenv("CUSTOMDATA_HTTP_ADDR", "127.0.0.1:0")
	t.Setenv("CUSTOMDATA_NATS_EMBEDDED_DIR", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	logs := &testsupport.Logs{}
	if err := runDemo(ctx, cfg, &out, logs); err != nil {
		t.Fatalf("demo failed: %v\nstdout:\n%s\nlogs:\n%s", err, out.String(), logs.String())
	}
	for _, want := range []string{"document created", "lastLogin = ", "document removed", `"reason":"no_checkpoint"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "no notice arrived") {
		t.Errorf("a demo step got no notice:\n%s", out.String())
	}
}

// TestRunRefusesAnUnusableConnectionString: a connection string that
// cannot be parsed is a configuration error, not an outage: run stops at
// once with the reason instead of retrying forever, and never prints the
// string.
func TestRunRefusesAnUnusableConnectionString(t *testing.T) {
	for _, tc := range []struct{ key, value string }{
		{"CUSTOMDATA_MONGODB_URI", "mongodb://user:pa/ss@127.0.0.1:1/?replicaSet=rs0"},
		{"CUSTOMDATA_NATS_URL", "nats://user:pa/ss@127.0.0.1:4222"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			t.Setenv("CUSTOMDATA_HTTP_ADDR", "")
			t.Setenv(tc.key, tc.value)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cfg, err := loadConfig()
			if err != nil {
				t.Fatal(err)
			}
			logs := &testsupport.Logs{}
			err = runWorker(ctx, cfg, newLogger(cfg, logs))
			if ctx.Err() != nil {
				t.Fatalf("runWorker retried until the deadline instead of failing at once (%v)", err)
			}
			if err == nil || strings.Contains(err.Error(), "pa/ss") || strings.Contains(logs.String(), "pa/ss") {
				t.Fatalf("runWorker = %v, want an error that does not show the password; logs:\n%s", err, logs.String())
			}
		})
	}
}

// TestRunRestoresTheUserIndexWhenTheCollectionComesBack: the collection is
// dropped while the worker runs and recreated by an insert (as an app or a
// restore would). Dropping a collection drops its indexes (MongoDB and the
// stand-in alike), so without a guard two documents for one user would both
// be accepted until a restart. The worker must report not-ready while the
// unique index is missing and restore it within seconds of the collection
// coming back.
func TestRunRestoresTheUserIndexWhenTheCollectionComesBack(t *testing.T) {
	m := testsupport.MongoDB(t)
	n := testsupport.StartNATS(t)
	db := testsupport.DatabaseName(t)
	addr := freeAddr(t)
	t.Setenv("CUSTOMDATA_MONGODB_URI", m.URI)
	t.Setenv("CUSTOMDATA_MONGODB_DATABASE", db)
	t.Setenv("CUSTOMDATA_NATS_URL", n.URL)
	t.Setenv("CUSTOMDATA_HTTP_ADDR", addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	logs := &testsupport.Logs{}
	done := make(chan error, 1)
	go func() { done <- runWorker(ctx, cfg, newLogger(cfg, logs)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runWorker = %v, want a clean stop\nlogs:\n%s", err, logs.String())
		}
	}()

	coll := m.Client(t).Database(db).Collection("custom_user_data")
	waitReady(t, addr, true, "")
	if !refusesSecondDocument(t, ctx, coll, "before-drop") {
		t.Fatal("the unique user index is not in place after startup")
	}

	if err := coll.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(t, addr, false, "collection")

	// Recreated by an insert: no index, until the worker restores it.
	if _, err := coll.InsertOne(ctx, map[string]any{"userId": "first-after-drop"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for attempt := 0; !refusesSecondDocument(t, ctx, coll, fmt.Sprintf("after-drop-%d", attempt)); attempt++ {
		if time.Now().After(deadline) {
			t.Fatalf("two documents for one user are still accepted 30s after the collection came back\nlogs:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitReady(t, addr, true, "")
}

// refusesSecondDocument inserts two documents for user and reports whether
// the second was refused as a duplicate; accepted ones are removed again.
func refusesSecondDocument(t *testing.T, ctx context.Context, coll *mongo.Collection, user string) bool {
	t.Helper()
	if _, err := coll.InsertOne(ctx, map[string]any{"userId": user}); err != nil {
		t.Fatalf("first document for %s: %v", user, err)
	}
	_, err := coll.InsertOne(ctx, map[string]any{"userId": user})
	if err == nil {
		if _, err := coll.DeleteMany(ctx, map[string]any{"userId": user}); err != nil {
			t.Fatal(err)
		}
		return false
	}
	if !mongo.IsDuplicateKeyError(err) {
		t.Fatalf("second document for %s: %v, want a duplicate-key refusal", user, err)
	}
	return true
}

// waitReady polls /readyz until it answers 200 (ready) or 503 naming the
// failing component.
func waitReady(t *testing.T, addr string, ready bool, component string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			var body struct {
				Ready   bool              `json:"ready"`
				Failing map[string]string `json:"failing"`
			}
			derr := json.NewDecoder(resp.Body).Decode(&body)
			_ = resp.Body.Close()
			last = fmt.Sprintf("%d %+v", resp.StatusCode, body)
			if derr == nil && ready && resp.StatusCode == http.StatusOK && body.Ready {
				return
			}
			if derr == nil && !ready && resp.StatusCode == http.StatusServiceUnavailable && body.Failing[component] != "" {
				return
			}
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("/readyz never reported ready=%v (component %q) within 30s; last: %s", ready, component, last)
}

// freeAddr returns a loopback address with a port free at the time.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// TestStartupLogsCarryNoPassword: the startup line and the connect retry
// print the connection strings and the driver's error; a password (here
// with an escaped '/') must not reach them. A connection string that
// cannot be parsed ends startup: TestRunRefusesAnUnusableConnectionString.
func TestStartupLogsCarryNoPassword(t *testing.T) {
	n := testsupport.StartNATS(t)
	t.Setenv("CUSTOMDATA_MONGODB_URI", "mongodb://app:pa%2Fss9w@127.0.0.1:1,127.0.0.1:2/?replicaSet=rs0")
	t.Setenv("CUSTOMDATA_NATS_URL", n.URL+",nats://app:nats9w@127.0.0.1:1")
	t.Setenv("CUSTOMDATA_HTTP_ADDR", "")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	logs := &testsupport.Logs{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runWorker(ctx, cfg, newLogger(cfg, logs)) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "connect to MongoDB") {
		if time.Now().After(deadline) {
			t.Fatalf("no connect failure logged:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	for _, secret := range []string{"ss9w", "ts9w"} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("logs carry a password fragment %q:\n%s", secret, logs.String())
		}
	}
}

// check --offline prints the same report as check, JSON with --json.
func TestCheckOfflinePrintsTheReport(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "--offline"}, &out, &errOut); code != 0 {
		t.Fatalf("check --offline = %d: %s", code, errOut.String())
	}
	want := "✓ configuration: valid; triggers [lastLogin createOnSignup deleteOnUserDelete]\ncheck passed: the configuration is valid (no server contacted)\n"
	if out.String() != want {
		t.Fatalf("check --offline printed %q, want %q", out.String(), want)
	}
	out.Reset()
	t.Setenv("CUSTOMDATA_NOTICE_STREAM", "A/B")
	if code := run([]string{"check", "--offline", "--json"}, &out, &errOut); code != 1 {
		t.Fatalf("check --offline --json = %d, want 1", code)
	}
	var rep struct {
		OK     bool `json:"ok"`
		Checks []struct {
			Name, Status, Detail string
		} `json:"checks"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("check --offline --json printed %q: %v", out.String(), err)
	}
	if rep.OK || len(rep.Checks) != 1 || rep.Checks[0].Name != "configuration" || rep.Checks[0].Status != "fail" {
		t.Fatalf("report %+v, want one failed configuration check", rep)
	}
}

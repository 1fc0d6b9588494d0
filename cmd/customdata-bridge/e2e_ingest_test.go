package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nkeys"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/dlq"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

const (
	e2eClerk  = "whsec_ZTJlLWNsZXJrLXNpZ25pbmctc2VjcmV0LTI0Yg=="
	e2eAuth0  = "Bearer e2e-auth0-stream-token"
	e2eKratos = "e2e-kratos-key"
)

// TestIngestEndToEnd: a bridge with only ingest endpoints (no MongoDB
// configured at all) turns Clerk, Kratos and Auth0 webhooks into signed
// auth events that the worker, run as its own process and trusting only
// the bridge's key, applies: CREATE makes the document, LOGIN sets
// lastLogin at the event's time, DELETE removes it; a webhook that maps
// to no event waits in the dead-letter stream for an operator.
func TestIngestEndToEnd(t *testing.T) {
	ns := testsupport.StartNATS(t)
	m := testsupport.MongoDB(t)
	client := m.Client(t)
	db := testsupport.DatabaseName(t)
	t.Cleanup(func() { _ = client.Database(db).Drop(context.Background()) })
	coll := client.Database(db).Collection(events.DefaultCollection)

	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	signer, _ := kp.PublicKey()
	seedFile := filepath.Join(t.TempDir(), "bridge.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	testsupport.StartWorker(t, map[string]string{
		"CUSTOMDATA_NATS_URL": ns.URL, "CUSTOMDATA_MONGODB_URI": m.URI, "CUSTOMDATA_MONGODB_DATABASE": db,
		"CUSTOMDATA_HTTP_ADDR": "", "CUSTOMDATA_LOG_LEVEL": "warn", "CUSTOMDATA_BATCH_WAIT": "20ms",
		"CUSTOMDATA_TRUSTED_SIGNERS": signer + ":LOGIN:CREATE:DELETE",
	})

	var cfg Config
	if err := envconfig.Process("CUSTOMDATA_BRIDGE_E2E_NOT_SET", &cfg); err != nil { // the defaults
		t.Fatal(err)
	}
	cfg.NATSURL, cfg.MongoURI = ns.URL, ""
	cfg.HTTPAddr, cfg.OpsAddr = "127.0.0.1:0", freeAddr(t)
	cfg.ClerkSecrets, cfg.Auth0Authorization, cfg.KratosAPIKeys = e2eClerk, []string{e2eAuth0}, []string{e2eKratos}
	cfg.EventSigningSeed, cfg.LogLevel = seedFile, "warn"
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan running, 1), make(chan error, 1)
	go func() { done <- runBridge(ctx, cfg, newLogger(cfg, testWriter{t}), ready) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("bridge: %v", err)
		}
	})
	var app running
	select {
	case app = <-ready:
	case err := <-done:
		t.Fatalf("bridge did not start: %v", err)
	}
	doc := func(user string) bson.M {
		var d bson.M
		if err := coll.FindOne(context.Background(), bson.D{{Key: "userId", Value: user}}).Decode(&d); err != nil {
			return nil
		}
		return d
	}
	post := func(path string, body []byte, header http.Header) int {
		req, _ := http.NewRequest(http.MethodPost, app.URL+path, bytes.NewReader(body))
		req.Header = header
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("POST %s: %d %s", path, res.StatusCode, b)
		}
		return res.StatusCode
	}
	clerk := func(body []byte) {
		id := "msg_" + events.NewEventID()
		// The worker provisions the streams as it starts: until then the
		// bridge answers 503, and Svix would retry.
		testsupport.Eventually(t, "Clerk delivery stored", func() bool {
			return post("/ingest/clerk", body, svixHeaders(t, id, body)) == http.StatusOK
		})
	}
	fixture := func(name string) []byte {
		b, err := os.ReadFile("../../internal/bridge/ingest/testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// Clerk: sign-up, sign-in, deletion.
	const clerkUser = "user_29w83sxmDNGwOuEthce5gg56FcC"
	clerk(fixture("clerk/user-created.json"))
	testsupport.Eventually(t, "Clerk's user.created made the document", func() bool { return doc(clerkUser) != nil })
	clerk(bytes.Replace(fixture("clerk/session-created.json"), []byte(`"user_id": "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S"`), []byte(`"user_id": "`+clerkUser+`"`), 1))
	testsupport.Eventually(t, "Clerk's session.created set lastLogin", func() bool {
		at, ok := doc(clerkUser)["lastLogin"].(bson.DateTime)
		return ok && at.Time().Equal(time.Unix(1716883200, 0))
	})
	clerk(bytes.Replace(fixture("clerk/user-deleted.json"), []byte(`"user_2g7np7Hrk0SN6kj5EDMLDaKNL0S"`), []byte(`"`+clerkUser+`"`), 1))
	testsupport.Eventually(t, "Clerk's user.deleted removed the document", func() bool { return doc(clerkUser) == nil })

	// Kratos: the bodies deploy/kratos/customdata.jsonnet renders
	// (internal/bridge/ingest TestKratosTemplateAgainstDocumentedContexts).
	kratosHeader := http.Header{"Authorization": {"Bearer " + e2eKratos}}
	const identity = "3a5293f1-f4d6-49f4-b34f-6da62c360604"
	post("/ingest/kratos/registration", []byte(`{"flow_id":"cec1c06e-48eb-4f9d-abf1-2e287371f4eb","identity_id":"`+identity+`","method":null,"time":"0001-01-01T00:00:00Z"}`), kratosHeader)
	testsupport.Eventually(t, "Kratos's registration made the document", func() bool { return doc(identity) != nil })
	post("/ingest/kratos/login", []byte(`{"flow_id":"5c0e9e2a-2f3d-4b8a-9a51-1d2f3c4b5a69","identity_id":"`+identity+`","method":"password","time":"2023-02-01T08:00:04.512Z"}`), kratosHeader)
	testsupport.Eventually(t, "Kratos's login set lastLogin", func() bool {
		at, ok := doc(identity)["lastLogin"].(bson.DateTime)
		return ok && at.Time().Equal(time.Date(2023, 2, 1, 8, 0, 4, 512e6, time.UTC))
	})

	// Auth0: the batch's signup (its other events are another user's
	// login, a failed login and the signed-up user's deletion).
	var batch []json.RawMessage
	if err := json.Unmarshal(fixture("auth0/log-stream-batch.json"), &batch); err != nil {
		t.Fatal(err)
	}
	signup, _ := json.Marshal(batch[:1])
	post("/ingest/auth0", signup, http.Header{"Authorization": {e2eAuth0}})
	testsupport.Eventually(t, "Auth0's ss made the document", func() bool { return doc("auth0|6182002f34f4dd006b05b5c7") != nil })

	// A Clerk event the bridge does not map: dead-lettered, for `dlq list`.
	clerk(bytes.Replace(fixture("clerk/user-created.json"), []byte(`"user.created"`), []byte(`"user.updated"`), 1))
	_, js := ns.Connect(t)
	q, err := dlq.New(js, events.DefaultDeadLetterStream, events.DefaultDeadLetterPrefix)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := q.List(context.Background(), dlq.Filter{}, 0)
	if err != nil || len(entries) != 1 || entries[0].Reason != "unknown_operation" || entries[0].Headers.Get(events.HeaderDLQSource) != "clerk" {
		t.Fatalf("dead letters: %+v, %v (the worker dead-lettered one of the bridge's events?)", entries, err)
	}

	// Ready with NATS alone: no MongoDB is configured.
	res, err := http.Get("http://" + cfg.OpsAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(b), `"ready":true`) || strings.Contains(string(b), "mongodb") {
		t.Fatalf("/readyz: %d %s", res.StatusCode, b)
	}
	for source, want := range map[string]float64{"clerk": 3, "kratos": 2, "auth0": 1} {
		if n := testsupport.Metric(t, app.Registry, "customdata_bridge_ingest_events_total", map[string]string{"source": source, "outcome": "published"}); n != want {
			t.Errorf("%s events published: %v, want %v", source, n, want)
		}
	}
}

// svixHeaders signs body as Svix does, with e2eClerk.
func svixHeaders(t *testing.T, id string, body []byte) http.Header {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(e2eClerk, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	return http.Header{"Svix-Id": {id}, "Svix-Timestamp": {ts}, "Svix-Signature": {"v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))}}
}

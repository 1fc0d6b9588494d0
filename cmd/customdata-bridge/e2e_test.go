package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nkeys"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// The end-to-end test runs the loop for real: NATS in process, the MongoDB
// stand-in (or MONGODB_URI), the worker as its own process built from
// cmd/customdata-worker and configured by its environment (its public
// contract), and this bridge in process, called over HTTP the way Supabase
// Auth and Hydra call it.

func TestMain(m *testing.M) { os.Exit(testsupport.RunRemovingBuilds(m)) }

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

const (
	e2eSecret = "v1,whsec_ZTJlLXN1cGFiYXNlLWhvb2stc2VjcmV0LTMyLWJ5dGVz"
	e2eHydra  = "e2e-hydra-key"
	e2eToken  = "e2e-api-token"
)

type stack struct {
	app  running
	ops  string
	coll *mongo.Collection
}

func startStack(t *testing.T) *stack {
	t.Helper()
	ns := testsupport.StartNATS(t)
	m := testsupport.MongoDB(t)
	client := m.Client(t)
	db := testsupport.DatabaseName(t)
	t.Cleanup(func() { _ = client.Database(db).Drop(context.Background()) })

	// The worker accepts only LOGINs signed by the bridge's key.
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
		"CUSTOMDATA_TRUSTED_SIGNERS": signer + ":LOGIN",
	})

	var cfg Config
	if err := envconfig.Process("CUSTOMDATA_BRIDGE_E2E_NOT_SET", &cfg); err != nil { // the defaults
		t.Fatal(err)
	}
	cfg.NATSURL, cfg.MongoURI, cfg.Database = ns.URL, m.URI, db
	cfg.HTTPAddr, cfg.OpsAddr = "127.0.0.1:0", freeAddr(t)
	cfg.SupabaseSecrets, cfg.SupabasePublishLogin, cfg.EventSigningSeed = e2eSecret, true, seedFile
	cfg.HydraAPIKeys, cfg.APITokens = []string{e2eHydra}, []string{e2eToken}
	cfg.LogLevel = "warn"
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
	s := &stack{coll: client.Database(db).Collection(cfg.Collection), ops: "http://" + cfg.OpsAddr}
	select {
	case s.app = <-ready:
	case err := <-done:
		t.Fatalf("bridge did not start: %v", err)
	}
	// Ready when the worker's unique index exists (an insert racing the
	// collection's creation can fail on the stand-in, README "Stand-in
	// differences") and a change made now reaches the cache as a notice.
	testsupport.Eventually(t, "the worker's user-id index", func() bool {
		specs, _ := s.coll.Indexes().ListSpecifications(context.Background())
		for _, sp := range specs {
			if sp.Name == cfg.UserIDField+"_unique" {
				return true
			}
		}
		return false
	})
	probe := "probe-" + events.NewEventID()[:8]
	s.insert(t, probe, "v1")
	testsupport.Eventually(t, "the worker's notices reach the bridge's cache", func() bool {
		d, err := s.app.Cache.Get(context.Background(), probe)
		if err != nil || !d.Found() || !s.app.Cache.Following() {
			return false
		}
		if d.Lookup("plan").StringValue() == "v1" {
			_, _ = s.coll.UpdateOne(context.Background(), bson.D{{Key: "userId", Value: probe}}, bson.D{{Key: "$set", Value: bson.D{{Key: "plan", Value: "v2"}}}})
			return false
		}
		return true
	})
	return s
}

func (s *stack) insert(t *testing.T, user, plan string) {
	t.Helper()
	if _, err := s.coll.InsertOne(context.Background(), bson.D{{Key: "userId", Value: user}, {Key: "plan", Value: plan}}); err != nil {
		t.Fatal(err)
	}
}

// supabase calls the hook as Supabase Auth does, with a request shaped as
// https://supabase.com/docs/guides/auth/auth-hooks/custom-access-token-hook
// documents it, and returns the answered custom_data.
func (s *stack) supabase(t *testing.T, user, method string) map[string]any {
	t.Helper()
	now := time.Now().Unix()
	body, _ := json.Marshal(map[string]any{
		"user_id": user,
		"claims": map[string]any{"aud": "authenticated", "exp": now + 3600, "iat": now, "sub": user, "email": "", "phone": "",
			"app_metadata": map[string]any{}, "user_metadata": map[string]any{}, "role": "authenticated", "aal": "aal1",
			"amr": []any{map[string]any{"method": method, "timestamp": now}}, "session_id": "4b938a09-5372-4177-a314-cfa292099ea2", "is_anonymous": false},
		"authentication_method": method,
	})
	wh, _ := standardwebhooks.NewWebhook(strings.TrimPrefix(e2eSecret, "v1,"))
	id := "msg_" + events.NewEventID()
	sig, _ := wh.Sign(id, time.Unix(now, 0), body)
	req, _ := http.NewRequest(http.MethodPost, s.app.URL+"/hooks/supabase/custom-access-token", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now, 10))
	req.Header.Set("webhook-signature", sig)
	var out struct {
		Claims map[string]any `json:"claims"`
	}
	s.call(t, req, &out)
	if out.Claims["sub"] != user || out.Claims["role"] != "authenticated" {
		t.Fatalf("claims not kept: %v", out.Claims)
	}
	cd, _ := out.Claims["custom_data"].(map[string]any)
	return cd
}

func (s *stack) call(t *testing.T, req *http.Request, out any) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: status %d: %s", req.Method, req.URL.Path, res.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("%s: %v: %s", req.URL.Path, err, b)
	}
}

func (s *stack) metric(t *testing.T, name string) float64 {
	return testsupport.Metric(t, s.app.Registry, name, nil)
}

// TestHooksServeFreshCustomDataEndToEnd: a Supabase sign-in's LOGIN reaches
// the worker (lastLogin), the answer is cached, and a MongoDB update shows
// in the next answers — Supabase, Hydra and the generic read alike — once
// its notice arrives, and never the old value after the new one.
func TestHooksServeFreshCustomDataEndToEnd(t *testing.T) {
	s := startStack(t)
	user := "8ccaa7af-" + events.NewEventID()[:8]
	s.insert(t, user, "free")

	if cd := s.supabase(t, user, "password"); cd["plan"] != "free" {
		t.Fatalf("sign-in answer: %v", cd)
	}
	// The sign-in published a LOGIN; the worker set lastLogin; its notice
	// dropped the cache; a refresh shows it.
	testsupport.Eventually(t, "the sign-in's lastLogin shows in a refresh", func() bool {
		return s.supabase(t, user, "token_refresh")["lastLogin"] != nil
	})
	// The answer is now cached (else this test would prove nothing about
	// notices).
	testsupport.Eventually(t, "a refresh answered from the cache", func() bool {
		h := s.metric(t, "customdata_issuer_cache_hits_total")
		cd := s.supabase(t, user, "token_refresh")
		return cd["plan"] == "free" && s.metric(t, "customdata_issuer_cache_hits_total") > h
	})

	if _, err := s.coll.UpdateOne(context.Background(), bson.D{{Key: "userId", Value: user}}, bson.D{{Key: "$set", Value: bson.D{{Key: "plan", Value: "pro"}}}}); err != nil {
		t.Fatal(err)
	}
	testsupport.Eventually(t, "the update shows in a refresh", func() bool {
		switch p := s.supabase(t, user, "token_refresh")["plan"]; p {
		case "pro":
			return true
		case "free":
			return false
		default:
			t.Fatalf("plan %v", p)
			return false
		}
	})
	for i := range 20 {
		if p := s.supabase(t, user, "token_refresh")["plan"]; p != "pro" {
			t.Fatalf("answer %d after the new value: plan %v", i, p)
		}
	}

	// Hydra's token hook (https://www.ory.sh/docs/hydra/guides/claims-at-refresh)
	// for the same user, on a refresh grant.
	hydra, _ := json.Marshal(map[string]any{
		"session": map[string]any{"id_token": map[string]any{"id_token_claims": map[string]any{"sub": user, "ext": map[string]any{}}, "subject": user},
			"extra": map[string]any{"tenant": "acme"}, "client_id": "app-client"},
		"request": map[string]any{"client_id": "app-client", "granted_scopes": []string{"offline", "openid"}, "granted_audience": []string{},
			"grant_types": []string{"refresh_token"}, "payload": map[string]any{}},
	})
	req, _ := http.NewRequest(http.MethodPost, s.app.URL+"/hooks/hydra/token", bytes.NewReader(hydra))
	req.Header.Set("Content-Type", "application/json; charset=UTF-8")
	req.Header.Set("Authorization", "Bearer "+e2eHydra)
	var h struct {
		Session struct {
			AccessToken map[string]any `json:"access_token"`
		} `json:"session"`
	}
	s.call(t, req, &h)
	if cd, _ := h.Session.AccessToken["custom_data"].(map[string]any); cd["plan"] != "pro" || h.Session.AccessToken["tenant"] != "acme" {
		t.Fatalf("Hydra answer: %v", h.Session.AccessToken)
	}

	req, _ = http.NewRequest(http.MethodGet, s.app.URL+"/v1/users/"+user+"/custom-data", nil)
	req.Header.Set("Authorization", "Bearer "+e2eToken)
	var g struct {
		CustomData map[string]any `json:"custom_data"`
		Oversize   bool           `json:"oversize"`
	}
	s.call(t, req, &g)
	if g.CustomData["plan"] != "pro" || g.Oversize {
		t.Fatalf("generic answer: %+v", g)
	}

	// Readiness: NATS, the notice feed and MongoDB.
	res, err := http.Get(s.ops + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(b), `"ready":true`) {
		t.Fatalf("/readyz: %d %s", res.StatusCode, b)
	}
	if testsupport.Metric(t, s.app.Registry, "customdata_bridge_logins_total", map[string]string{"outcome": "published"}) < 1 {
		t.Fatal("no LOGIN counted")
	}
}

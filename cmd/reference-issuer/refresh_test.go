package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/internal/natsconn"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// clock is a settable time for tokens and the limiter.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// postRefresh calls /refresh with token and returns the status and body.
func postRefresh(t *testing.T, base, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/refresh", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A chain of refreshes ends at the session's end: each token carries
// session_exp from the login, none outlives it, and the refresh after it is
// refused with a reason a client can act on.
func TestRefreshRefusedAfterSessionCap(t *testing.T) {
	tok := devTokens(t, "ref", 15*time.Minute)
	tok.session = time.Hour
	clk := &clock{t: time.Date(2026, 1, 2, 9, 0, 0, 0, time.UTC)}
	tok.now = clk.now
	data := staticData{"ada": {{Key: "plan", Value: "pro"}}}
	srv := newTestServer(t, &server{data: data, tok: tok})
	api := &apiClient{base: srv.URL, http: http.DefaultClient, iss: "ref", aud: "app", clock: clk.now}
	if err := api.fetchKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	d, _ := data.Get(context.Background(), "ada")
	current, _, err := tok.issue("ada", "p", d, tok.newSession()) // the login at 09:00
	if err != nil {
		t.Fatal(err)
	}
	sessionEnd := clk.t.Add(time.Hour)

	// Every 10 minutes, as an app refreshing before expiry would.
	for i := 1; ; i++ {
		clk.t = clk.t.Add(10 * time.Minute)
		if !clk.t.Before(sessionEnd) {
			break
		}
		status, body := postRefresh(t, srv.URL, current)
		if status != http.StatusOK {
			t.Fatalf("refresh %d at %s, in the session: %d %s", i, clk.t.Format(time.Kitchen), status, body)
		}
		var tr tokenResponse
		_ = json.Unmarshal([]byte(body), &tr)
		current = tr.AccessToken
		raw, _ := tok.verify(current)
		if !raw.Session.Expiry.Equal(sessionEnd) {
			t.Fatalf("refresh %d: session_exp %s, want the login's %s", i, raw.Session.Expiry, sessionEnd)
		}
		c, err := api.verify(context.Background(), current)
		if err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
		if c.Expiry.After(sessionEnd) {
			t.Fatalf("refresh %d: exp %s after the session's end %s", i, c.Expiry, sessionEnd)
		}
	}
	// The last token (09:50) expired with the session at 10:00, not at
	// 10:05 (checked above). Just before the end it renews; at the end not.
	clk.t = sessionEnd.Add(-time.Second)
	if status, body := postRefresh(t, srv.URL, current); status != http.StatusOK {
		t.Fatalf("refresh a second before the end: %d %s", status, body)
	}
	clk.t = sessionEnd
	status, body := postRefresh(t, srv.URL, current)
	if status != http.StatusUnauthorized || !strings.Contains(body, "session ended: log in again") {
		t.Fatalf("refresh at the session's end: %d %s, want 401 \"session ended: log in again\"", status, body)
	}
	// Well past it (the token long expired too), the same clear reason.
	clk.t = sessionEnd.Add(24 * time.Hour)
	if status, body := postRefresh(t, srv.URL, current); status != http.StatusUnauthorized || !strings.Contains(body, "session ended") {
		t.Fatalf("refresh a day after the end: %d %s", status, body)
	}
}

// With ISSUER_REFRESH_REQUIRES_DOCUMENT, a user whose document is gone (the
// worker deletes it on the user's DELETE) cannot renew; without it, the
// refresh succeeds and the token carries no custom data.
func TestRefreshOfDeletedUser(t *testing.T) {
	for _, needsDoc := range []bool{true, false} {
		tok := devTokens(t, "ref", time.Minute)
		data := staticData{"ada": {{Key: "plan", Value: "pro"}}}
		srv := newTestServer(t, &server{data: data, tok: tok, refreshNeedsDoc: needsDoc})
		d, _ := data.Get(context.Background(), "ada")
		token, _, err := tok.issue("ada", "p", d, tok.newSession())
		if err != nil {
			t.Fatal(err)
		}
		if status, body := postRefresh(t, srv.URL, token); status != http.StatusOK {
			t.Fatalf("needsDoc=%v, user present: %d %s", needsDoc, status, body)
		}
		delete(data, "ada") // the worker applied the user's DELETE
		status, body := postRefresh(t, srv.URL, token)
		switch {
		case needsDoc && (status != http.StatusUnauthorized || !strings.Contains(body, "user no longer exists")):
			t.Fatalf("deleted user refreshed: %d %s, want 401 \"user no longer exists\"", status, body)
		case !needsDoc && (status != http.StatusOK || strings.Contains(body, "user no longer exists")):
			t.Fatalf("needsDoc=false, deleted user: %d %s, want a token without custom data", status, body)
		}
	}
}

// /readyz shows why it is not ready without the secrets the drivers'
// errors quote, and says loudly when the signing key is a dev one.
func TestReadyzRedactsAndWarnsOfEphemeralKey(t *testing.T) {
	const password = "S3cretPassw0rd"
	cfg := Config{MongoURI: "mongodb://app:" + password + "@db1:27017,db2:27017/?replicaSet=rs0",
		Env: natsconn.Env{NATSURL: "nats://nuser:natsPa55word@nats:4222", NATSToken: "tokenValue123"}}
	failure := errors.Join(
		errors.New("mongodb: server selection error: "+cfg.MongoURI+" unreachable"),
		errors.New(`nats: parse "nats://nuser:natsPa55word@bad host:4222": invalid character " " in host name`),
		errors.New("nats: authorization violation for token tokenValue123"))
	tok := devTokens(t, "ref", time.Minute)
	srv := newTestServer(t, &server{tok: tok, data: staticData{}, secrets: readinessSecrets(cfg),
		ready: func(context.Context) error { return failure }})
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := string(b)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "mongodb: server selection error") {
		t.Fatalf("/readyz: %d %q", resp.StatusCode, body)
	}
	for _, secret := range []string{password, "natsPa55word", "tokenValue123"} {
		if strings.Contains(body, secret) {
			t.Errorf("/readyz shows the secret %q: %s", secret, body)
		}
	}
	if !strings.Contains(body, "xxxxx") || !strings.Contains(body, "db1:27017") {
		t.Errorf("/readyz lost what is not secret: %s", body)
	}
	if !strings.Contains(body, "ISSUER_DEV_EPHEMERAL_KEY=true") {
		t.Errorf("/readyz does not warn of the dev signing key: %s", body)
	}
}

// The JWK set a stock client fetches: kid, alg, use on every key, and a
// Cache-Control that lets clients cache it for a bounded time.
func TestJWKSEndpoint(t *testing.T) {
	tok := devTokens(t, "ref", time.Minute)
	srv := newTestServer(t, &server{tok: tok, data: staticData{"ada": bson.D{}}})
	resp, err := http.Get(srv.URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=300" {
		t.Errorf("Cache-Control %q", cc)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS: %v %v", set, err)
	}
	k := set.Keys[0]
	if k["kid"] != tok.kid() || k["alg"] != "ES256" || k["use"] != "sig" || k["kty"] != "EC" || k["crv"] != "P-256" || k["d"] != nil {
		t.Fatalf("JWK %v", k)
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/issuer"
)

// staticData serves one fixed document per user, or none.
type staticData map[string]bson.D

func (s staticData) Get(_ context.Context, userID string) (issuer.Data, error) {
	doc, ok := s[userID]
	if !ok {
		return issuer.Data{}, nil
	}
	raw, _ := bson.Marshal(doc)
	return issuer.DataFromRaw(raw)
}

func TestTokensVerifyOnlyTheirOwnFreshTokens(t *testing.T) {
	tok, generated, err := newTokens("", "ref", time.Minute)
	if err != nil || !generated {
		t.Fatalf("newTokens: %v generated=%v", err, generated)
	}
	other, _, _ := newTokens("", "ref", time.Minute)
	otherIss, _, _ := newTokens("", "someone-else", time.Minute)
	d, _ := staticData{"ada": {{Key: "plan", Value: "pro"}}}.Get(context.Background(), "ada")
	good, _, err := tok.issue("ada", "local-userpass", d)
	if err != nil {
		t.Fatal(err)
	}
	if sub, prov, err := tok.verify(good); err != nil || sub != "ada" || prov != "local-userpass" {
		t.Fatalf("verify own token: %q %q %v", sub, prov, err)
	}
	expired := *tok
	expired.now = func() time.Time { return time.Now().Add(-2 * time.Minute) }
	old, _, _ := expired.issue("ada", "local-userpass", d)
	foreign, _, _ := other.issue("ada", "local-userpass", d)
	wrongIss, _, _ := otherIss.issue("ada", "local-userpass", d)
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + strings.TrimRight(parts[1], "A") + "B." + parts[2]
	for name, raw := range map[string]string{"expired": old, "other key": foreign, "tampered": tampered, "garbage": "x.y.z", "empty": ""} {
		if _, _, err := tok.verify(raw); !errors.Is(err, errBadToken) {
			t.Errorf("%s token accepted: %v", name, err)
		}
	}
	// Same key, other issuer: iss is checked.
	otherIss.signer, otherIss.public = tok.signer, tok.public
	wrongIss, _, _ = otherIss.issue("ada", "", d)
	if _, _, err := tok.verify(wrongIss); !errors.Is(err, errBadToken) {
		t.Errorf("token of another issuer accepted: %v", err)
	}
}

// The HTTP API as a client sees it, with the token checked through the
// published JWK set by a stock library (apiClient uses go-jose).
func TestAPI(t *testing.T) {
	ns := testsupport.StartNATS(t)
	_, js := ns.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "AUTH_EVENTS", Subjects: events.AuthSubjects(events.DefaultAuthPrefix)}); err != nil {
		t.Fatal(err)
	}
	pub, _ := events.NewPublisher(js)
	tok, _, _ := newTokens("", "ref", time.Minute)
	data := staticData{"ada": {{Key: "userId", Value: "ada"}, {Key: "plan", Value: "pro"}}}
	s := &server{pub: pub, data: data, tok: tok, log: zerolog.Nop(), ready: func(context.Context) error { return nil },
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "i"}, []string{"endpoint"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "f"}, []string{"endpoint", "reason"})}
	srv := httptest.NewServer(s.routes(prometheus.NewRegistry()))
	defer srv.Close()
	api, err := newAPIClient(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}

	tokA, a, err := api.login(ctx, "ada", "local-userpass")
	if err != nil || a.field("plan") != "pro" || a.Subject != "ada" {
		t.Fatalf("login: %v %+v", err, a)
	}
	info, err := js.Stream(ctx, "AUTH_EVENTS")
	if err != nil || info.CachedInfo().State.Msgs != 1 {
		t.Fatalf("LOGIN events stored: %v, err %v; want 1", info.CachedInfo().State.Msgs, err)
	}
	msg, err := info.GetMsg(ctx, 1)
	if err != nil || msg.Subject != "auth.events.login" {
		t.Fatalf("stored event: %v %v", msg, err)
	}
	if _, b, err := api.refresh(ctx, tokA, false); err != nil || b.field("plan") != "pro" {
		t.Fatalf("refresh: %v %+v", err, b)
	}
	if _, c, err := api.login(ctx, "nobody", "local-userpass"); err != nil || c.CustomData != nil {
		t.Fatalf("user without a document: %v, custom_data %s", err, c.Raw)
	}

	for _, tc := range []struct {
		name, path, auth, body string
		status                 int
		reason                 string
	}{
		{"refresh without token", "/refresh", "", "", http.StatusUnauthorized, ""},
		{"refresh with a bad token", "/refresh", "Bearer x.y.z", "", http.StatusUnauthorized, ""},
		{"login with unknown field", "/login", "", `{"userId":"ada","provider":"p","admin":true}`, http.StatusBadRequest, ""},
		{"login with blank user", "/login", "", `{"userId":" ","provider":"local-userpass"}`, http.StatusBadRequest, "invalid_user_id"},
		{"login without provider", "/login", "", `{"userId":"ada"}`, http.StatusBadRequest, "invalid_provider"},
		{"login with data after the object", "/login", "", `{"userId":"ada","provider":"local-userpass"} {"userId":"eve"}`, http.StatusBadRequest, "body must be"},
		{"refresh with a lower-case scheme", "/refresh", "bearer " + tokA, "", http.StatusOK, ""},
		{"refresh with another scheme", "/refresh", "Basic " + tokA, "", http.StatusUnauthorized, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+tc.path, strings.NewReader(tc.body))
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body map[string]string
			_ = json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tc.status || !strings.Contains(body["error"], tc.reason) {
				t.Fatalf("%d %v, want %d mentioning %q", resp.StatusCode, body, tc.status, tc.reason)
			}
		})
	}
}

func TestConfigDefaultsAndValidation(t *testing.T) {
	t.Setenv("ISSUER_CACHE_TTL", "0")
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.Database != "app" || c.Collection != "custom_user_data" || c.UserIDField != "userId" || c.OversizeBytes != 16384 ||
		c.NoticeStream != "CUSTOMDATA_NOTICES" || c.NoticeSubjectPrefix != events.DefaultNoticePrefix || c.AuthSubjectPrefix != events.DefaultAuthPrefix {
		t.Fatalf("defaults differ from the worker's: %+v", c)
	}
	t.Setenv("ISSUER_NOTICES_ENABLED", "false")
	if _, err := loadConfig(); err == nil {
		t.Fatal("a cache with neither notices nor TTL was accepted")
	}
	t.Setenv("ISSUER_CACHE_TTL", "30s")
	if _, err := loadConfig(); err != nil {
		t.Fatalf("TTL-only cache: %v", err)
	}
}

// counting serves one document and counts forced re-reads.
type counting struct {
	staticData
	refreshes int
}

func (c *counting) Refresh(ctx context.Context, userID string) (issuer.Data, error) {
	c.refreshes++ // requests are sequential in the test
	return c.Get(ctx, userID)
}

// expires_in follows the issuer's clock (the one that stamps exp), and
// ?force=true is limited per user: past the burst, the cache answers.
func TestRefreshExpiryAndForceLimit(t *testing.T) {
	tok, _, _ := newTokens("", "ref", time.Minute)
	fixed := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	tok.now = func() time.Time { return fixed }
	data := &counting{staticData: staticData{"ada": {{Key: "plan", Value: "pro"}}}}
	force := newForceLimiter(time.Second, 3, 10)
	force.now = tok.now
	s := &server{data: data, tok: tok, log: zerolog.Nop(), ready: func(context.Context) error { return nil }, force: force,
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "i"}, []string{"endpoint"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "f"}, []string{"endpoint", "reason"})}
	srv := httptest.NewServer(s.routes(prometheus.NewRegistry()))
	defer srv.Close()
	d, _ := data.Get(context.Background(), "ada")
	token, _, err := tok.issue("ada", "local-userpass", d)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/refresh?force=true", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body tokenResponse
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("refresh %d: %d %v", i, resp.StatusCode, err)
		}
		if body.ExpiresIn != 60 {
			t.Fatalf("expires_in = %d, want 60 (the token TTL, on the issuer's clock)", body.ExpiresIn)
		}
	}
	if data.refreshes != 3 {
		t.Fatalf("forced re-reads = %d for 10 forced refreshes, want the burst of 3", data.refreshes)
	}
}

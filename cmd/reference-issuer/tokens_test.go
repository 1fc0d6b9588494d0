package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
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

// devTokens are tokens with a key generated for the test.
func devTokens(t testing.TB, iss string, ttl time.Duration) *tokens {
	t.Helper()
	tok, err := newTokens(tokenConfig{keyConfig: keyConfig{AllowEphemeral: true}, Issuer: iss, Audience: "app", TTL: ttl, SessionMaxAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// newTestServer serves s's routes; s gets no-op metrics and readiness.
func newTestServer(t testing.TB, s *server) *httptest.Server {
	t.Helper()
	if s.ready == nil {
		s.ready = func(context.Context) error { return nil }
	}
	s.log = zerolog.Nop()
	s.issued = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "i"}, []string{"endpoint"})
	s.failed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "f"}, []string{"endpoint", "reason"})
	srv := httptest.NewServer(s.routes(prometheus.NewRegistry()))
	t.Cleanup(srv.Close)
	return srv
}

func TestTokensVerifyOnlyTheirOwnFreshTokens(t *testing.T) {
	tok := devTokens(t, "ref", time.Minute)
	if !tok.keys.ephemeral || tok.kid() == "" {
		t.Fatalf("dev key: ephemeral=%v kid=%q", tok.keys.ephemeral, tok.kid())
	}
	other := devTokens(t, "ref", time.Minute)
	d, _ := staticData{"ada": {{Key: "plan", Value: "pro"}}}.Get(context.Background(), "ada")
	good, _, err := tok.issue("ada", "local-userpass", d, tok.newSession())
	if err != nil {
		t.Fatal(err)
	}
	if v, err := tok.verify(good); err != nil || v.UserID != "ada" || v.Provider != "local-userpass" {
		t.Fatalf("verify own token: %+v %v", v, err)
	}
	expired := *tok
	expired.now = func() time.Time { return time.Now().Add(-2 * time.Minute) }
	old, _, _ := expired.issue("ada", "local-userpass", d, expired.newSession())
	foreign, _, _ := other.issue("ada", "local-userpass", d, other.newSession())
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + strings.TrimRight(parts[1], "A") + "B." + parts[2]

	// Same key, other claims or headers: each is checked.
	sameKey := func(mod func(*tokens)) string {
		c := *tok
		mod(&c)
		raw, _, err := c.issue("ada", "", d, c.newSession())
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	signerWith := func(opts *jose.SignerOptions) jose.Signer {
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: tok.keys.signing}, opts)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	noKid := func(c *tokens) {
		var err error
		c.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: tok.keys.signing.Key}, (&jose.SignerOptions{}).WithType(tokenType))
		if err != nil {
			t.Fatal(err)
		}
	}
	noSession, err := jwt.Signed(tok.signer).Claims(jwt.Claims{Issuer: "ref", Subject: "ada", Audience: jwt.Audience{"app"},
		Expiry: jwt.NewNumericDate(time.Now().Add(time.Minute))}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string]string{
		"expired": old, "other key": foreign, "tampered": tampered, "garbage": "x.y.z", "empty": "",
		"other issuer":   sameKey(func(c *tokens) { c.iss = "someone-else" }),
		"other audience": sameKey(func(c *tokens) { c.aud = "another-app" }),
		"typ JWT":        sameKey(func(c *tokens) { c.signer = signerWith((&jose.SignerOptions{}).WithType("JWT")) }),
		"no typ":         sameKey(func(c *tokens) { c.signer = signerWith(&jose.SignerOptions{}) }),
		"no kid":         sameKey(noKid),
		"no session_exp": noSession,
	} {
		if _, err := tok.verify(raw); !errors.Is(err, errBadToken) {
			t.Errorf("%s token accepted: %v", name, err)
		}
	}
	// RFC 9068 §4: the media type form of typ is accepted too.
	full := sameKey(func(c *tokens) { c.signer = signerWith((&jose.SignerOptions{}).WithType("application/at+jwt")) })
	if _, err := tok.verify(full); err != nil {
		t.Errorf("typ application/at+jwt refused: %v", err)
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
	tok := devTokens(t, "ref", time.Minute)
	data := staticData{"ada": {{Key: "userId", Value: "ada"}, {Key: "plan", Value: "pro"}}}
	srv := newTestServer(t, &server{pub: pub, data: data, tok: tok})
	api, err := newAPIClient(ctx, srv.URL, "ref", "app")
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
	// The header as any JOSE library reads it, and the claims a resource
	// server checks: a client expecting another audience refuses it.
	header, _ := base64.RawURLEncoding.DecodeString(strings.Split(tokA, ".")[0])
	var h map[string]any
	if err := json.Unmarshal(header, &h); err != nil || h["typ"] != "at+jwt" || h["kid"] != tok.kid() || h["alg"] != "ES256" {
		t.Fatalf("token header %s (%v), want typ at+jwt, kid %s, alg ES256", header, err, tok.kid())
	}
	if a.KeyID != tok.kid() || !a.Expiry.After(time.Now()) || a.SessionExpiry.Before(a.Expiry) {
		t.Fatalf("claims seen by the client: %+v", a)
	}
	elsewhere := &apiClient{base: srv.URL, http: http.DefaultClient, keys: api.keys, iss: "ref", aud: "another-app"}
	if _, err := elsewhere.verify(ctx, tokA); !errors.Is(err, jwt.ErrInvalidAudience) {
		t.Fatalf("a client of another audience: %v, want %v", err, jwt.ErrInvalidAudience)
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
	// No key file and no dev setting: refused, naming both ways out.
	if _, err := loadConfig(); err == nil || !strings.Contains(err.Error(), "ISSUER_SIGNING_KEY_FILE") ||
		!strings.Contains(err.Error(), "ISSUER_DEV_EPHEMERAL_KEY=true") {
		t.Fatalf("start without a signing key file: %v", err)
	}
	if _, err := newTokens(tokenConfig{Issuer: "ref", Audience: "app", TTL: time.Minute, SessionMaxAge: time.Hour}); !errors.Is(err, errNoSigningKey) {
		t.Fatalf("tokens without a key file: %v", err)
	}
	t.Setenv("ISSUER_DEV_EPHEMERAL_KEY", "true")
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "127.0.0.1:8090" || c.TokenAudience == "" || c.SessionMaxAge != 12*time.Hour || c.RefreshNeedsDoc {
		t.Fatalf("security defaults: addr %q aud %q session %s refresh needs doc %v", c.HTTPAddr, c.TokenAudience, c.SessionMaxAge, c.RefreshNeedsDoc)
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
	if c.LeaderTimeout != issuer.DefaultLeaderTimeout {
		t.Fatalf("LEADER_TIMEOUT default %s, want the issuer package's %s", c.LeaderTimeout, issuer.DefaultLeaderTimeout)
	}
	t.Setenv("ISSUER_LEADER_TIMEOUT", "9s")
	if _, err := loadConfig(); err == nil || !strings.Contains(err.Error(), "ISSUER_LEADER_TIMEOUT must be at least 10s") {
		t.Fatalf("a leader timeout of one heartbeat: %v", err)
	}
	t.Setenv("ISSUER_LEADER_TIMEOUT", "30s")
	t.Setenv("ISSUER_SESSION_MAX_AGE", "1m")
	if _, err := loadConfig(); err == nil || !strings.Contains(err.Error(), "ISSUER_SESSION_MAX_AGE") {
		t.Fatalf("a session shorter than a token: %v", err)
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
	tok := devTokens(t, "ref", time.Minute)
	fixed := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	tok.now = func() time.Time { return fixed }
	data := &counting{staticData: staticData{"ada": {{Key: "plan", Value: "pro"}}}}
	force := newForceLimiter(time.Second, 3, 10)
	force.now = tok.now
	srv := newTestServer(t, &server{data: data, tok: tok, force: force})
	d, _ := data.Get(context.Background(), "ada")
	token, _, err := tok.issue("ada", "local-userpass", d, tok.newSession())
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

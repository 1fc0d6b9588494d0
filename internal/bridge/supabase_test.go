package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

const supabaseUser = "8ccaa7af-909f-44e7-84cb-67cdccb56be6"

// supabaseAnswer decodes a 200 answer: {"claims": {...}}.
func supabaseAnswer(t *testing.T, w interface {
	Result() *http.Response
}, body []byte) map[string]any {
	t.Helper()
	res := w.Result()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q: %s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	m := object(t, body)
	if len(m) != 1 {
		t.Fatalf("answer has keys besides claims: %s", body)
	}
	c, ok := m["claims"].(map[string]any)
	if !ok {
		t.Fatalf("no claims object: %s", body)
	}
	return c
}

// The documented input (https://supabase.com/docs/guides/auth/auth-hooks/custom-access-token-hook,
// "Inputs", JSON tab) is answered with every claim it carried, unchanged,
// plus the user's document under custom_data.
func TestSupabaseKeepsEveryClaimAndAddsCustomData(t *testing.T) {
	for _, name := range []string{"supabase/custom-access-token.json", "supabase/custom-access-token-as-sent.json"} {
		t.Run(name, func(t *testing.T) {
			sec := secret(t)
			data := newFakeData(t, map[string]string{supabaseUser: `{"_id":{"$oid":"621b2886c971ec914881d99a"},"userId":"` + supabaseUser +
				`","plan":"pro","since":{"$date":"2026-01-02T03:04:05Z"}}`})
			s, err := New(data, Config{}, WithSupabase(verifier(t, sec)))
			if err != nil {
				t.Fatal(err)
			}
			in := fixture(t, name)
			w := serve(s, supabaseCall(t, in, time.Now(), sec))
			claims := supabaseAnswer(t, w, w.Body.Bytes())

			sent := object(t, in)["claims"].(map[string]any)
			for k, v := range sent {
				if !reflect.DeepEqual(claims[k], v) {
					t.Errorf("claim %s: sent %v, answered %v", k, v, claims[k])
				}
			}
			if len(claims) != len(sent)+1 {
				t.Errorf("answered %d claims, want the %d sent plus custom_data: %s", len(claims), len(sent), w.Body)
			}
			cd, _ := claims["custom_data"].(map[string]any)
			if cd["plan"] != "pro" || cd["userId"] != supabaseUser || !reflect.DeepEqual(cd["since"], map[string]any{"$date": "2026-01-02T03:04:05Z"}) {
				t.Errorf("custom_data %v, want the document as relaxed Extended JSON", claims["custom_data"])
			}
			// Integers stay integers (exp, iat are checked by Supabase Auth's schema).
			if !bytes.Contains(w.Body.Bytes(), []byte(`"exp":`+sent["exp"].(json.Number).String()+`,`)) {
				t.Errorf("exp not passed through as the integer it was: %s", w.Body)
			}
		})
	}
}

func TestSupabaseSignatures(t *testing.T) {
	current, previous, other := secret(t), secret(t), secret(t)
	in := fixture(t, "supabase/custom-access-token.json")
	now := time.Now()
	cases := []struct {
		name     string
		receiver []string
		sender   []string
		at       time.Time
		body     []byte
		status   int
	}{
		{name: "good", receiver: []string{current}, sender: []string{current}, at: now, status: 200},
		{name: "wrong secret", receiver: []string{current}, sender: []string{other}, at: now, status: 401},
		{name: "rotated: old secret still listed", receiver: []string{current, previous}, sender: []string{previous}, at: now, status: 200},
		{name: "rotated: sender signs with both", receiver: []string{current}, sender: []string{current, previous}, at: now, status: 200},
		{name: "stale timestamp", receiver: []string{current}, sender: []string{current}, at: now.Add(-6 * time.Minute), status: 401},
		{name: "tampered body", receiver: []string{current}, sender: []string{current}, at: now,
			body: bytes.Replace(in, []byte(`"role": "authenticated"`), []byte(`"role": "service_role"`), 1), status: 401},
		{name: "unsigned", receiver: []string{current}, at: now, status: 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(newFakeData(t, nil), Config{}, WithSupabase(verifier(t, tc.receiver...)))
			if err != nil {
				t.Fatal(err)
			}
			r := supabaseCall(t, in, tc.at, tc.sender...)
			if tc.body != nil { // signed over in, carrying another body
				r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(tc.body)), int64(len(tc.body))
			}
			w := serve(s, r)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.status == 401 {
				wantError(t, w.Body.Bytes(), 401)
				if got := metric(t, s, "customdata_bridge_hook_calls_total", map[string]string{"hook": "supabase", "outcome": "unauthorized"}); got != 1 {
					t.Errorf("unauthorized calls counted: %v", got)
				}
			}
		})
	}
}

// wantError checks the documented error object of an auth hook
// (https://supabase.com/docs/guides/auth/auth-hooks, "Error handling").
func wantError(t *testing.T, body []byte, code int) {
	t.Helper()
	var e struct {
		Error *struct {
			HTTPCode int    `json:"http_code"`
			Message  string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.HTTPCode != code || e.Error.Message == "" {
		t.Fatalf("body %s is not {\"error\":{\"http_code\":%d,\"message\":…}}", body, code)
	}
}

func TestSupabaseWithoutDocumentKeepsTheClaimsAlone(t *testing.T) {
	sec := secret(t)
	s, err := New(newFakeData(t, nil), Config{ClaimName: "profile"}, WithSupabase(verifier(t, sec)))
	if err != nil {
		t.Fatal(err)
	}
	// A claim of the configured name that came in is not passed on: only
	// the bridge says what the user's data is.
	in := bytes.Replace(fixture(t, "supabase/custom-access-token.json"), []byte(`"aud": "authenticated",`), []byte(`"aud": "authenticated", "profile": {"plan": "stale"},`), 1)
	w := serve(s, supabaseCall(t, in, time.Now(), sec))
	claims := supabaseAnswer(t, w, w.Body.Bytes())
	if _, ok := claims["profile"]; ok || len(claims) != len(object(t, in)["claims"].(map[string]any))-1 {
		t.Fatalf("claims %v: want the sent ones without profile", claims)
	}
	if metric(t, s, "customdata_bridge_hook_calls_total", map[string]string{"hook": "supabase", "outcome": "no_document"}) != 1 {
		t.Error("no_document not counted")
	}
}

// When MongoDB cannot answer, the hook answers the documented error with
// a non-2xx status in bounded time, so Supabase Auth refuses the token
// instead of issuing one without fresh data.
func TestSupabaseRefusesWhenDataUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name string
		data *fakeData
	}{
		{"read fails", &fakeData{err: errDown}},
		{"read hangs", &fakeData{block: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sec := secret(t)
			s, err := New(tc.data, Config{Timeout: 50 * time.Millisecond}, WithSupabase(verifier(t, sec)))
			if err != nil {
				t.Fatal(err)
			}
			w := serve(s, supabaseCall(t, fixture(t, "supabase/custom-access-token.json"), time.Now(), sec))
			if w.Code != http.StatusServiceUnavailable || w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Retry-After") != "" {
				t.Fatalf("status %d, headers %v: %s", w.Code, w.Header(), w.Body)
			}
			wantError(t, w.Body.Bytes(), 503)
			if strings.Contains(w.Body.String(), "topology") {
				t.Errorf("the driver's error reached the caller: %s", w.Body)
			}
		})
	}
}

func TestSupabaseBadRequests(t *testing.T) {
	sec := secret(t)
	s, err := New(newFakeData(t, nil), Config{MaxBody: 4096}, WithSupabase(verifier(t, sec)))
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"not JSON":      `{"user_id":`,
		"no user_id":    `{"claims":{},"authentication_method":"password"}`,
		"claims null":   `{"user_id":"u","claims":null,"authentication_method":"password"}`,
		"claims string": `{"user_id":"u","claims":"x","authentication_method":"password"}`,
	} {
		t.Run(name, func(t *testing.T) {
			w := serve(s, supabaseCall(t, []byte(body), time.Now(), sec))
			if w.Code != http.StatusBadRequest {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			wantError(t, w.Body.Bytes(), 400)
		})
	}
	w := serve(s, supabaseCall(t, bytes.Repeat([]byte(" "), 5000), time.Now(), sec))
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: status %d", w.Code)
	}
}

// A sign-in (any authentication_method but token_refresh) publishes one
// LOGIN; a refresh publishes none; a retried call (Supabase Auth sends the
// same claims again) publishes the same event id, which JetStream stores
// once.
func TestSupabaseLoginPublishesLOGIN(t *testing.T) {
	sec := secret(t)
	pub := &publisher{}
	s, err := New(newFakeData(t, nil), Config{}, WithSupabase(verifier(t, sec)), WithLogins(pub, LoginConfig{Supabase: true}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// iat of the docs' fixture is 2024: make it now, as a real call's is.
	now := time.Now().Truncate(time.Second)
	login := bytes.ReplaceAll(fixture(t, "supabase/custom-access-token.json"), []byte("1715686621"), []byte(jsonInt(now.Unix())))
	for range 2 {
		if w := serve(s, supabaseCall(t, login, time.Now(), sec)); w.Code != 200 {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	if w := serve(s, supabaseCall(t, fixture(t, "supabase/custom-access-token-as-sent.json"), time.Now(), sec)); w.Code != 200 {
		t.Fatalf("refresh: status %d: %s", w.Code, w.Body)
	}
	testsupport.Eventually(t, "two LOGINs published", func() bool { return len(pub.events()) == 2 })
	evs := pub.events()
	ev := evs[0]
	if ev.OperationType != "LOGIN" || ev.User.ID != supabaseUser || len(ev.Providers) != 1 || ev.Providers[0] != "supabase-anonymous" ||
		!ev.Time.Equal(now) || !strings.HasPrefix(ev.ID, "supabase:") {
		t.Fatalf("LOGIN %+v", ev)
	}
	if evs[1].ID != ev.ID {
		t.Fatalf("the retried call's LOGIN has id %s, the first %s", evs[1].ID, ev.ID)
	}
	if got := metric(t, s, "customdata_bridge_logins_total", map[string]string{"outcome": "published"}); got != 2 {
		t.Fatalf("published LOGINs counted: %v", got)
	}

	// A method Supabase Auth has no name for arrives empty (or missing):
	// still a sign-in, answered with the data, its LOGIN supabase-unknown.
	for i, body := range []string{
		`{"user_id":"` + supabaseUser + `","claims":{"iat":` + jsonInt(now.Unix()) + `,"session_id":"s-empty"},"authentication_method":""}`,
		`{"user_id":"` + supabaseUser + `","claims":{"iat":` + jsonInt(now.Unix()) + `,"session_id":"s-missing"}}`,
	} {
		if w := serve(s, supabaseCall(t, []byte(body), time.Now(), sec)); w.Code != 200 {
			t.Fatalf("no method (%d): status %d: %s", i, w.Code, w.Body)
		}
	}
	testsupport.Eventually(t, "LOGINs of the unnamed methods published", func() bool { return len(pub.events()) == 4 })
	for _, ev := range pub.events()[2:] {
		if len(ev.Providers) != 1 || ev.Providers[0] != "supabase-unknown" {
			t.Fatalf("LOGIN of an unnamed method: providers %v", ev.Providers)
		}
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestSupabaseProvider(t *testing.T) {
	for method, want := range map[string]string{
		"password":                          "supabase-password",
		"sso/saml":                          "supabase-sso-saml",
		"email/signup":                      "supabase-email-signup",
		"oauth_provider/authorization_code": "supabase-oauth-provider-authorization-code",
		"OTP":                               "supabase-otp",
		"":                                  "supabase-unknown",
		strings.Repeat("a", 80):             "supabase-" + strings.Repeat("a", 55),
	} {
		if got := SupabaseProvider(method); got != want {
			t.Errorf("SupabaseProvider(%q) = %q, want %q", method, got, want)
		}
	}
}

// An outage is logged when it starts and when it ends, not per call; a
// forged call is not logged above debug level; no claim, document or
// secret reaches the log.
func TestOutageIsLoggedOnce(t *testing.T) {
	sec := secret(t)
	data := newFakeData(t, map[string]string{supabaseUser: `{"userId":"` + supabaseUser + `","plan":"pro-secret-plan"}`})
	logs := &testsupport.Logs{}
	s, err := New(data, Config{}, WithSupabase(verifier(t, sec)), WithLogger(zerolog.New(logs).Level(zerolog.InfoLevel)))
	if err != nil {
		t.Fatal(err)
	}
	in := fixture(t, "supabase/custom-access-token.json")
	data.mu.Lock()
	data.err = errDown
	data.mu.Unlock()
	for range 3 {
		if w := serve(s, supabaseCall(t, in, time.Now(), sec)); w.Code != 503 {
			t.Fatalf("status %d", w.Code)
		}
		serve(s, supabaseCall(t, in, time.Now(), secret(t))) // forged
	}
	data.mu.Lock()
	data.err = nil
	data.mu.Unlock()
	for range 2 {
		if w := serve(s, supabaseCall(t, in, time.Now(), sec)); w.Code != 200 {
			t.Fatalf("status %d", w.Code)
		}
	}
	if logs.Count("custom data unavailable") != 1 || logs.Count("readable again: hooks answer with it") != 1 || logs.Count("\n") != 2 {
		t.Fatalf("want one line when the outage starts and one when it ends:\n%s", logs)
	}
	for _, secretText := range []string{"pro-secret-plan", "authenticated", strings.TrimPrefix(sec, "v1,whsec_")} {
		if logs.Count(secretText) > 0 {
			t.Fatalf("the log shows %q:\n%s", secretText, logs)
		}
	}
}

// Supabase Auth reads at most 200 KiB of a hook's answer and refuses the
// sign-in past it: a document that would make the answer larger is left
// out and flagged, so the user still gets a token.
func TestSupabaseLeavesOutDataTooLargeForItsAnswer(t *testing.T) {
	sec := secret(t)
	big := strings.Repeat("x", 300<<10)
	data := newFakeData(t, map[string]string{supabaseUser: `{"userId":"` + supabaseUser + `","notes":"` + big + `"}`})
	s, err := New(data, Config{}, WithSupabase(verifier(t, sec)))
	if err != nil {
		t.Fatal(err)
	}
	w := serve(s, supabaseCall(t, fixture(t, "supabase/custom-access-token.json"), time.Now(), sec))
	if w.Body.Len() > supabaseMaxAnswer {
		t.Fatalf("answer is %d bytes, over Supabase's %d", w.Body.Len(), supabaseMaxAnswer)
	}
	claims := supabaseAnswer(t, w, w.Body.Bytes())
	if _, ok := claims["custom_data"]; ok || claims["custom_data_oversize"] != true {
		t.Fatalf("custom_data present or not flagged oversize: %.200s", w.Body)
	}
	if got := metric(t, s, "customdata_bridge_hook_calls_total", map[string]string{"hook": "supabase", "outcome": "oversize"}); got != 1 {
		t.Errorf("oversize calls = %v, want 1", got)
	}
}

// Claims pass through as they came: no HTML escaping of <, > and &.
func TestSupabaseKeepsClaimBytes(t *testing.T) {
	sec := secret(t)
	s, err := New(newFakeData(t, nil), Config{}, WithSupabase(verifier(t, sec)))
	if err != nil {
		t.Fatal(err)
	}
	in := []byte(`{"user_id":"` + supabaseUser + `","claims":{"sub":"` + supabaseUser + `","note":"a<b & c>d"},"authentication_method":"password"}`)
	w := serve(s, supabaseCall(t, in, time.Now(), sec))
	if !bytes.Contains(w.Body.Bytes(), []byte(`"note":"a<b & c>d"`)) {
		t.Fatalf("claim changed on the way: %s", w.Body)
	}
}

// A hook timeout longer than what is left of the server's write timeout
// (which runs from the request's headers) must still reach the identity
// server as the documented failure, not as a closed connection.
func TestHookFailureAnsweredPastServerWriteTimeout(t *testing.T) {
	sec := secret(t)
	s, err := New(&fakeData{block: true}, Config{Timeout: 600 * time.Millisecond},
		WithSupabase(verifier(t, sec)), WithHydra(HydraAuth{Keys: []string{hydraKey}}, false))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.Config.WriteTimeout = 100 * time.Millisecond
	srv.Start()
	defer srv.Close()
	for name, call := range map[string]*http.Request{
		"supabase": supabaseCall(t, fixture(t, "supabase/custom-access-token.json"), time.Now(), sec),
		"hydra":    hydraCall(t, fixture(t, "hydra/token-hook.json"), "Authorization", "Bearer "+hydraKey),
	} {
		req, err := http.NewRequest(call.Method, srv.URL+call.URL.Path, call.Body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = call.Header
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("%s: no answer: %v", name, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s: status %d: %s", name, res.StatusCode, b)
		}
	}
}

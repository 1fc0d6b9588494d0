package bridge

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"
)

const hydraKey = "hydra-token-hook-key"

func hydraCall(t testing.TB, body []byte, header, value string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/hooks/hydra/token", bytes.NewReader(body))
	// As Hydra sends it (oauth2/token_hook.go in ory/hydra).
	r.Header.Set("Content-Type", "application/json; charset=UTF-8")
	if header != "" {
		r.Header.Set(header, value)
	}
	return r
}

type hydraAnswer struct {
	Session struct {
		AccessToken map[string]any `json:"access_token"`
		IDToken     map[string]any `json:"id_token"`
	} `json:"session"`
}

func decodeHydra(t *testing.T, w *httptest.ResponseRecorder) hydraAnswer {
	t.Helper()
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, Content-Type %q: %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	var a hydraAnswer
	dec := json.NewDecoder(w.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("answer is not {\"session\":{\"access_token\":…,\"id_token\":…}}: %v", err)
	}
	return a
}

func hydraServer(t *testing.T, data *fakeData, idToken bool) *Server {
	t.Helper()
	s, err := New(data, Config{}, WithHydra(HydraAuth{Keys: []string{hydraKey}}, idToken))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The documented request (https://www.ory.sh/docs/hydra/guides/claims-at-refresh,
// "Webhook payload") is answered in the documented shape ("Responding to
// the webhook"), the custom data of the session's subject in the access
// token's claims, and in the ID token's when configured.
func TestHydraAddsCustomDataToTheSession(t *testing.T) {
	data := newFakeData(t, map[string]string{"foo": `{"_id":{"$oid":"621b2886c971ec914881d99a"},"userId":"foo","plan":"pro"}`})
	for _, idToken := range []bool{false, true} {
		s := hydraServer(t, data, idToken)
		a := decodeHydra(t, serve(s, hydraCall(t, fixture(t, "hydra/token-hook.json"), "Authorization", "Bearer "+hydraKey)))
		cd, _ := a.Session.AccessToken["custom_data"].(map[string]any)
		if cd["plan"] != "pro" || len(a.Session.AccessToken) != 1 {
			t.Fatalf("access_token claims %v", a.Session.AccessToken)
		}
		if _, ok := a.Session.IDToken["custom_data"]; ok != idToken || a.Session.IDToken == nil {
			t.Fatalf("id_token claims %v (custom data in the ID token configured: %v)", a.Session.IDToken, idToken)
		}
	}
}

// Hydra replaces the session's extra claims with the answer's, so every
// claim the session had comes back; a custom_data an earlier call left in
// the stored session is replaced, and dropped when the document is gone.
func TestHydraKeepsTheSessionClaims(t *testing.T) {
	in := bytes.Replace(fixture(t, "hydra/token-hook.json"), []byte(`"extra": {},`),
		[]byte(`"extra": {"tenant": "acme", "level": 3, "custom_data": {"plan": "old"}},`), 1)
	in = bytes.Replace(in, []byte(`"ext": {}`), []byte(`"ext": {"nickname": "ada"}`), 1)
	s := hydraServer(t, newFakeData(t, map[string]string{"foo": `{"userId":"foo","plan":"new"}`}), true)
	a := decodeHydra(t, serve(s, hydraCall(t, in, "Authorization", "Bearer "+hydraKey)))
	want := map[string]any{"tenant": "acme", "level": 3.0, "custom_data": map[string]any{"userId": "foo", "plan": "new"}}
	if !reflect.DeepEqual(a.Session.AccessToken, want) {
		t.Fatalf("access_token %v, want %v", a.Session.AccessToken, want)
	}
	if a.Session.IDToken["nickname"] != "ada" || a.Session.IDToken["custom_data"] == nil {
		t.Fatalf("id_token %v", a.Session.IDToken)
	}

	gone := hydraServer(t, newFakeData(t, nil), true)
	a = decodeHydra(t, serve(gone, hydraCall(t, in, "Authorization", "Bearer "+hydraKey)))
	if !reflect.DeepEqual(a.Session.AccessToken, map[string]any{"tenant": "acme", "level": 3.0}) || !reflect.DeepEqual(a.Session.IDToken, map[string]any{"nickname": "ada"}) {
		t.Fatalf("without a document: %+v", a.Session)
	}
}

func TestHydraAuth(t *testing.T) {
	in := fixture(t, "hydra/token-hook.json")
	data := newFakeData(t, nil)
	cases := []struct {
		name          string
		auth          HydraAuth
		header, value string
		status        int
	}{
		{"bearer", HydraAuth{Keys: []string{hydraKey}}, "Authorization", "Bearer " + hydraKey, 200},
		{"bearer, scheme in lower case", HydraAuth{Keys: []string{hydraKey}}, "Authorization", "bearer " + hydraKey, 200},
		{"bearer, wrong key", HydraAuth{Keys: []string{hydraKey}}, "Authorization", "Bearer nope", 401},
		{"bearer, key without the scheme", HydraAuth{Keys: []string{hydraKey}}, "Authorization", hydraKey, 401},
		{"no header", HydraAuth{Keys: []string{hydraKey}}, "", "", 401},
		{"API key header", HydraAuth{Header: "X-API-Key", Keys: []string{hydraKey}}, "X-API-Key", hydraKey, 200},
		{"API key header, wrong key", HydraAuth{Header: "X-API-Key", Keys: []string{hydraKey}}, "X-API-Key", hydraKey + "x", 401},
		{"API key in the wrong header", HydraAuth{Header: "X-API-Key", Keys: []string{hydraKey}}, "Authorization", "Bearer " + hydraKey, 401},
		{"rotation: previous key", HydraAuth{Keys: []string{"new-key", hydraKey}}, "Authorization", "Bearer " + hydraKey, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(data, Config{}, WithHydra(tc.auth, false))
			if err != nil {
				t.Fatal(err)
			}
			if w := serve(s, hydraCall(t, in, tc.header, tc.value)); w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
		})
	}
	if _, err := New(data, Config{}, WithHydra(HydraAuth{}, false)); err == nil {
		t.Fatal("a token hook without a key was accepted")
	}
}

// Client credentials: Hydra makes the client the subject; there is no
// user, and the answer is 204 (no change), as documented.
func TestHydraClientCredentialsIsNoChange(t *testing.T) {
	in := bytes.Replace(fixture(t, "hydra/token-hook.json"), []byte(`["authorization_code"]`), []byte(`["client_credentials"]`), 1)
	data := newFakeData(t, nil)
	s := hydraServer(t, data, false)
	if w := serve(s, hydraCall(t, in, "Authorization", "Bearer "+hydraKey)); w.Code != http.StatusNoContent || w.Body.Len() != 0 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if data.reads != 0 {
		t.Fatalf("custom data read for a client: %d reads", data.reads)
	}
}

// Refresh is a grant like the others: the hook answers it (Hydra calls the
// token hook for every grant).
func TestHydraRefreshGrant(t *testing.T) {
	in := bytes.Replace(fixture(t, "hydra/token-hook.json"), []byte(`["authorization_code"]`), []byte(`["refresh_token"]`), 1)
	s := hydraServer(t, newFakeData(t, map[string]string{"foo": `{"userId":"foo","plan":"pro"}`}), false)
	if a := decodeHydra(t, serve(s, hydraCall(t, in, "Authorization", "Bearer "+hydraKey))); a.Session.AccessToken["custom_data"] == nil {
		t.Fatalf("refresh: %+v", a)
	}
}

func TestHydraFailures(t *testing.T) {
	in := fixture(t, "hydra/token-hook.json")
	down, err := New(&fakeData{block: true}, Config{Timeout: 50 * time.Millisecond}, WithHydra(HydraAuth{Keys: []string{hydraKey}}, false))
	if err != nil {
		t.Fatal(err)
	}
	// Any status but 200, 204 and 403 fails the token request
	// ("Responding to the webhook").
	if w := serve(down, hydraCall(t, in, "Authorization", "Bearer "+hydraKey)); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("data unavailable: status %d", w.Code)
	}
	s := hydraServer(t, newFakeData(t, nil), false)
	for name, body := range map[string]string{"not JSON": `{`, "no session": `{"request":{}}`, "no request": `{"session":{}}`} {
		if w := serve(s, hydraCall(t, []byte(body), "Authorization", "Bearer "+hydraKey)); w.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d", name, w.Code)
		}
	}
}

package bridge

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"testing"
)

func genericCall(user, token string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v1/users/"+url.PathEscape(user)+"/custom-data", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

func TestGenericEndpoint(t *testing.T) {
	data := newFakeData(t, map[string]string{
		"ada@example.com": `{"_id":{"$oid":"621b2886c971ec914881d99a"},"userId":"ada@example.com","plan":"pro","since":{"$date":"2026-01-02T03:04:05Z"},"n":{"$numberLong":"7"}}`,
		"a/b ü":           `{"userId":"a/b ü","plan":"free"}`,
	})
	s, err := New(data, Config{}, WithGeneric([]string{"new-token", "old-token"}))
	if err != nil {
		t.Fatal(err)
	}
	w := serve(s, genericCall("ada@example.com", "old-token"))
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	got := object(t, w.Body.Bytes())
	want := map[string]any{
		"custom_data": map[string]any{"_id": map[string]any{"$oid": "621b2886c971ec914881d99a"}, "userId": "ada@example.com", "plan": "pro",
			"since": map[string]any{"$date": "2026-01-02T03:04:05Z"}, "n": jsonNumber("7")},
		"oversize": false,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	// A user id with a slash, a space and non-ASCII, escaped in the path.
	if w := serve(s, genericCall("a/b ü", "new-token")); w.Code != 200 || object(t, w.Body.Bytes())["custom_data"].(map[string]any)["plan"] != "free" {
		t.Fatalf("escaped id: status %d: %s", w.Code, w.Body)
	}

	for _, tc := range []struct {
		name, user, token string
		status            int
	}{
		{"no document", "bob@example.com", "new-token", 404},
		{"no token", "ada@example.com", "", 401},
		{"wrong token", "ada@example.com", "new-tokeN", 401},
		{"blank id", " ", "new-token", 400},
	} {
		w := serve(s, genericCall(tc.user, tc.token))
		if w.Code != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.name, w.Code, tc.status, w.Body)
		}
		if tc.status == 401 && w.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: no WWW-Authenticate", tc.name)
		}
	}
	// Not configured endpoints are not there.
	if w := serve(s, hydraCall(t, fixture(t, "hydra/token-hook.json"), "", "")); w.Code != http.StatusNotFound {
		t.Errorf("Hydra hook not configured: status %d", w.Code)
	}
}

func TestNewRefuses(t *testing.T) {
	data := newFakeData(t, nil)
	if _, err := New(data, Config{}); err != ErrNoEndpoints {
		t.Errorf("no endpoint: %v", err)
	}
	for _, name := range []string{"role", "sub", "ext", "app_metadata"} {
		if _, err := New(data, Config{ClaimName: name}, WithGeneric([]string{"t"})); err == nil {
			t.Errorf("claim name %q accepted", name)
		}
	}
	if _, err := New(data, Config{}, WithGeneric([]string{" "})); err == nil {
		t.Error("a blank token accepted")
	}
	if _, err := New(data, Config{}, WithGeneric([]string{"t"}), WithLogins(&publisher{}, LoginConfig{Supabase: true})); err == nil {
		t.Error("LOGINs without the Supabase hook accepted")
	}
}

package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-jsonnet"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/bridge/apikey"
)

const kratosKey = "kratos-key-0123456789"

// renderKratos renders the shipped template as Kratos renders a
// web_hook's body (ory/kratos request/builder.go: the ctx JSON-encoded
// without HTML escaping, given as the top-level argument ctx,
// EvaluateAnonymousSnippet): the ctx is the fixture's.
func renderKratos(t *testing.T, ctxFixture string) []byte {
	t.Helper()
	tpl, err := os.ReadFile("../../../deploy/kratos/customdata.jsonnet")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Ctx json.RawMessage `json:"ctx"`
	}
	if err := json.Unmarshal(fixture(t, ctxFixture), &doc); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc.Ctx); err != nil {
		t.Fatal(err)
	}
	vm := jsonnet.MakeVM()
	vm.TLACode("ctx", buf.String())
	out, err := vm.EvaluateAnonymousSnippet("file:///etc/config/kratos/customdata.jsonnet", string(tpl))
	if err != nil {
		t.Fatalf("the template does not render: %v", err)
	}
	return []byte(out)
}

// kratosRequest is a web_hook call with auth type api_key in the
// Authorization header (value "Bearer <key>").
func kratosRequest(route string, body []byte, key string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, route, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if key != "" {
		r.Header.Set("Authorization", "Bearer "+key)
	}
	return r
}

func kratosServer(t *testing.T, e *env, now time.Time) *Server {
	t.Helper()
	return e.server(now, WithKratos(kratosAuth(t)))
}

// kratosAuth accepts kratosKey as Bearer <key> in Authorization.
func kratosAuth(t *testing.T) KratosAuth {
	t.Helper()
	k, err := apikey.NewHeaderKey("", []string{kratosKey})
	if err != nil {
		t.Fatal(err)
	}
	return KratosAuth{APIKey: &k}
}

// The shipped Jsonnet template, rendered against the ctx Kratos gives a
// web_hook (the registration example of
// https://www.ory.sh/docs/guides/integrate-with-ory-cloud-through-webhooks,
// and a login ctx shaped as ory/kratos selfservice/hook/web_hook.go builds
// it, with the session of https://www.ory.sh/docs/kratos/session-management/overview),
// makes the bodies the endpoints map: registration → CREATE, login →
// LOGIN, ids from the flow ids, the method as the provider, the
// session's authenticated_at as the login's time. The documented
// registration ctx has no method and an identity created_at of Go's zero
// time: provider kratos, the time of arrival.
func TestKratosTemplateAgainstDocumentedContexts(t *testing.T) {
	now := time.Date(2026, 5, 12, 9, 30, 0, 0, time.UTC)
	e := newEnv(t, streams{auth: true, deadLetters: true})
	s := kratosServer(t, e, now)

	reg := renderKratos(t, "kratos/registration-ctx.json")
	wantReg := `{"flow_id":"cec1c06e-48eb-4f9d-abf1-2e287371f4eb","identity_id":"3a5293f1-f4d6-49f4-b34f-6da62c360604","method":null,"time":"0001-01-01T00:00:00Z"}`
	if compact(t, reg) != wantReg {
		t.Fatalf("registration body\n%s\nwant\n%s", compact(t, reg), wantReg)
	}
	login := renderKratos(t, "kratos/login-ctx.json")
	wantLogin := `{"flow_id":"5c0e9e2a-2f3d-4b8a-9a51-1d2f3c4b5a69","identity_id":"3a5293f1-f4d6-49f4-b34f-6da62c360604","method":"password","time":"2023-02-01T08:00:04.512Z"}`
	if compact(t, login) != wantLogin {
		t.Fatalf("login body\n%s\nwant\n%s", compact(t, login), wantLogin)
	}

	answered(t, serve(s, kratosRequest("/ingest/kratos/registration", reg, kratosKey)), answer{Published: 1})
	answered(t, serve(s, kratosRequest("/ingest/kratos/login", login, kratosKey)), answer{Published: 1})
	// Kratos calls again with the same body (a retry): stored once.
	answered(t, serve(s, kratosRequest("/ingest/kratos/login", login, kratosKey)), answer{Duplicates: 1})

	got := e.events()
	if len(got) != 2 {
		t.Fatalf("%d events stored, want 2", len(got))
	}
	want := []struct {
		id, provider string
		op           events.Operation
		at           time.Time
	}{
		{"kratos:registration:cec1c06e-48eb-4f9d-abf1-2e287371f4eb", "kratos", events.OperationCreate, now},
		{"kratos:login:5c0e9e2a-2f3d-4b8a-9a51-1d2f3c4b5a69", "kratos-password", events.OperationLogin, time.Date(2023, 2, 1, 8, 0, 4, 512e6, time.UTC)},
	}
	for i, w := range want {
		ev := got[i]
		if ev.ID != w.id || ev.OperationType != w.op || ev.User.ID != "3a5293f1-f4d6-49f4-b34f-6da62c360604" ||
			len(ev.Providers) != 1 || ev.Providers[0] != w.provider || !ev.Time.Equal(w.at) {
			t.Errorf("event %d = %+v, want %+v", i, ev, w)
		}
	}
}

// Each of Kratos's auth types: api_key in the Authorization header or in
// a header of its own, basic_auth. A call without them, or with wrong
// ones, gets 401 and publishes nothing (the body is not even read).
func TestKratosAuth(t *testing.T) {
	now := time.Now()
	body := []byte(`{"identity_id":"3a5293f1-f4d6-49f4-b34f-6da62c360604","flow_id":"5c0e9e2a-2f3d-4b8a-9a51-1d2f3c4b5a69","method":"password"}`)
	bearer, err := apikey.NewHeaderKey("Authorization", []string{kratosKey})
	if err != nil {
		t.Fatal(err)
	}
	own, err := apikey.NewHeaderKey("X-Kratos-Key", []string{kratosKey})
	if err != nil {
		t.Fatal(err)
	}
	basic, err := apikey.NewBasic([]string{"kratos:" + kratosKey})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		auth KratosAuth
		set  func(*http.Request)
		want int
	}{
		{"api_key as bearer", KratosAuth{APIKey: &bearer}, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+kratosKey) }, 200},
		{"api_key as bearer, wrong key", KratosAuth{APIKey: &bearer}, func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }, 401},
		{"api_key in its own header", KratosAuth{APIKey: &own}, func(r *http.Request) { r.Header.Set("X-Kratos-Key", kratosKey) }, 200},
		{"api_key in its own header, sent as bearer", KratosAuth{APIKey: &own}, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+kratosKey) }, 401},
		{"basic_auth", KratosAuth{Basic: &basic}, func(r *http.Request) { r.SetBasicAuth("kratos", kratosKey) }, 200},
		{"basic_auth, wrong password", KratosAuth{Basic: &basic}, func(r *http.Request) { r.SetBasicAuth("kratos", "nope") }, 401},
		{"switching from api_key to basic_auth: either", KratosAuth{APIKey: &bearer, Basic: &basic}, func(r *http.Request) { r.SetBasicAuth("kratos", kratosKey) }, 200},
		{"nothing", KratosAuth{APIKey: &bearer}, func(*http.Request) {}, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, streams{auth: true, deadLetters: true})
			s := e.server(now, WithKratos(tc.auth))
			r := kratosRequest("/ingest/kratos/login", body, "")
			tc.set(r)
			w := serve(s, r)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.want, w.Body)
			}
			if n := len(e.events()); (tc.want == 200) != (n == 1) || (tc.want == 401 && !strings.Contains(w.Body.String(), "web hook authentication required")) {
				t.Fatalf("%d events stored: %s", n, w.Body)
			}
		})
	}
}

// A body the endpoint cannot map (a template that leaves out the
// identity, a body that is not JSON) is dead-lettered; one without a flow
// id gets an id derived from the operation, the identity and the body,
// the same when Kratos sends it again.
func TestKratosBodies(t *testing.T) {
	now := time.Now()
	e := newEnv(t, streams{auth: true, deadLetters: true})
	s := kratosServer(t, e, now)

	answered(t, serve(s, kratosRequest("/ingest/kratos/registration", []byte(`{"flow_id":"f1","method":"password"}`), kratosKey)), answer{DeadLettered: 1})
	answered(t, serve(s, kratosRequest("/ingest/kratos/login", []byte(`identity_id=3a5293f1`), kratosKey)), answer{DeadLettered: 1})
	dead := e.stored(events.DefaultDeadLetterStream)
	if len(dead) != 2 || dead[0].Subject != "auth.deadletter.missing_field" || dead[1].Subject != "auth.deadletter.malformed_json" ||
		dead[0].Header.Get(events.HeaderDLQOriginalMsgID) != "f1" || dead[0].Header.Get(events.HeaderDLQSource) != "kratos" ||
		!strings.Contains(dead[0].Header.Get(events.HeaderDLQError), "identity_id of a registration web hook is missing") {
		t.Fatalf("dead letters: %+v", dead)
	}

	noFlow := []byte(`{"identity_id":"3a5293f1-f4d6-49f4-b34f-6da62c360604","method":"oidc"}`)
	answered(t, serve(s, kratosRequest("/ingest/kratos/login", noFlow, kratosKey)), answer{Published: 1})
	answered(t, serve(s, kratosRequest("/ingest/kratos/login", noFlow, kratosKey)), answer{Duplicates: 1})
	// The same body after registration is another event.
	answered(t, serve(s, kratosRequest("/ingest/kratos/registration", noFlow, kratosKey)), answer{Published: 1})
	got := e.events()
	if len(got) != 2 || !strings.HasPrefix(got[0].ID, "kratos:login:") || !strings.HasPrefix(got[1].ID, "kratos:registration:") ||
		got[0].Providers[0] != "kratos-oidc" || !got[0].Time.Equal(now) {
		t.Fatalf("events %+v", got)
	}
}

func compact(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// blockingPublisher stores nothing: it waits until the request's
// publishing time is up, as a publish does while JetStream does not
// answer.
type blockingPublisher struct{}

func (blockingPublisher) Publish(ctx context.Context, _ events.AuthEvent) (*jetstream.PubAck, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// Past Config.Timeout the sender gets the documented 503, even when that
// is longer than the HTTP server's WriteTimeout (the bridge's is 15 s,
// and the body's arrival counts in it): the write deadline is moved past
// the publishing, so the answer is not lost to a closed connection.
func TestTimeoutAnswered503PastServerWriteTimeout(t *testing.T) {
	e := newEnv(t, streams{auth: true, deadLetters: true})
	s, err := New(blockingPublisher{}, e.js, Config{Timeout: 600 * time.Millisecond}, WithKratos(kratosAuth(t)))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.Config.WriteTimeout = 100 * time.Millisecond
	srv.Start()
	defer srv.Close()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/ingest/kratos/login",
		strings.NewReader(`{"identity_id":"3a5293f1-f4d6-49f4-b34f-6da62c360604","flow_id":"f-timeout"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+kratosKey)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "event not stored") {
		t.Fatalf("status %d: %s", res.StatusCode, b)
	}
}

package ingest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/bridge/apikey"
	"github.com/customdata-worker/customdata-worker/internal/bridge/webhook"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// The streams the worker provisions (worker/authsync), made here as it
// makes them for what the bridge relies on: the auth stream on
// auth.events.> with a duplicate window, the dead-letter stream on
// auth.deadletter.>.
const (
	authStream = "AUTH_EVENTS"
	window     = 2 * time.Minute
)

// env is an in-process NATS server with JetStream and the streams the
// bridge publishes to (unless a test leaves one out).
type env struct {
	t  *testing.T
	js jetstream.JetStream
}

type streams struct{ auth, deadLetters bool }

func newEnv(t *testing.T, s streams) *env {
	t.Helper()
	_, js := testsupport.StartNATS(t).Connect(t)
	e := &env{t: t, js: js}
	if s.auth {
		e.createStream(authStream, events.DefaultAuthPrefix+".>")
	}
	if s.deadLetters {
		e.createStream(events.DefaultDeadLetterStream, events.DefaultDeadLetterPrefix+".>")
	}
	return e
}

func (e *env) createStream(name, subject string) {
	e.t.Helper()
	if _, err := e.js.CreateStream(testsupport.Context(e.t), jetstream.StreamConfig{Name: name, Subjects: []string{subject}, Duplicates: window}); err != nil {
		e.t.Fatal(err)
	}
}

// stored returns every message of stream, in order.
func (e *env) stored(stream string) []*jetstream.RawStreamMsg {
	e.t.Helper()
	ctx := testsupport.Context(e.t)
	s, err := e.js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// events decodes every stored auth event with the worker's decoder,
// checking that each was published on its operation's subject with its
// id as Nats-Msg-Id.
func (e *env) events() []events.AuthEvent {
	e.t.Helper()
	var out []events.AuthEvent
	for _, m := range e.stored(authStream) {
		ev, err := events.Decode(m.Data)
		if err != nil {
			e.t.Fatalf("stored event the worker would refuse: %v\n%s", err, m.Data)
		}
		if m.Subject != events.AuthSubject(events.DefaultAuthPrefix, ev.OperationType) {
			e.t.Fatalf("event %s published on %s", ev.ID, m.Subject)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != ev.ID {
			e.t.Fatalf("event %s published with Nats-Msg-Id %q", ev.ID, got)
		}
		out = append(out, ev)
	}
	return out
}

// server builds the ingest server on e's JetStream, with the clock at
// now, configured by opts.
func (e *env) server(now time.Time, opts ...Option) *Server {
	e.t.Helper()
	pub, err := events.NewPublisher(e.js)
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := New(pub, e.js, Config{Timeout: 2 * time.Second}, append(opts, withClock(func() time.Time { return now }))...)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// clerkSecret is a signing secret in the form Clerk shows it (whsec_ and
// standard base64).
func clerkSecret(t testing.TB) string {
	t.Helper()
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return "whsec_" + base64.StdEncoding.EncodeToString(b)
}

func clerkVerifier(t testing.TB, now time.Time, secrets ...string) Option {
	t.Helper()
	v, err := webhook.NewVerifier(secrets, webhook.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	return WithClerk(v)
}

// svixSign signs as Svix documents it
// (https://docs.svix.com/receiving/verifying-payloads/how-manual): the
// base64 HMAC-SHA256, keyed with the base64-decoded part of the secret
// after whsec_, of "<svix-id>.<svix-timestamp>.<body>", sent as
// "v1,<signature>", space-delimited when there are several.
func svixSign(t testing.TB, secrets []string, id string, at time.Time, body []byte) string {
	t.Helper()
	var sigs []string
	for _, s := range secrets {
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
		if err != nil {
			t.Fatal(err)
		}
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id + "." + strconv.FormatInt(at.Unix(), 10) + "."))
		mac.Write(body)
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return strings.Join(sigs, " ")
}

// clerkRequest is a delivery as Svix makes it: POST, application/json,
// svix-id, svix-timestamp and svix-signature.
func clerkRequest(t testing.TB, body []byte, id string, at time.Time, secrets ...string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/ingest/clerk", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("svix-id", id)
	r.Header.Set("svix-timestamp", strconv.FormatInt(at.Unix(), 10))
	r.Header.Set("svix-signature", svixSign(t, secrets, id, at, body))
	return r
}

func serve(s *Server, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	return w
}

// answered checks a 200 answer's counts.
func answered(t *testing.T, w *httptest.ResponseRecorder, want answer) {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", w.Code, w.Body)
	}
	var got answer
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatalf("answer %s: %v", w.Body, err)
	}
	if got != want {
		t.Fatalf("answer %+v, want %+v", got, want)
	}
}

func metric(t *testing.T, s *Server, name string, labels map[string]string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collectors()...)
	return testsupport.Metric(t, reg, name, labels)
}

func auth0Tokens(t testing.TB, values ...string) Option {
	t.Helper()
	set, err := apikey.NewSet(values)
	if err != nil {
		t.Fatal(err)
	}
	return WithAuth0(set)
}

// failingPublisher fails every publish as NATS does when no server
// answers.
type failingPublisher struct{}

func (failingPublisher) Publish(context.Context, events.AuthEvent) (*jetstream.PubAck, error) {
	return nil, errors.New("nats: timeout")
}

func jsonNumber(s string) json.Number { return json.Number(s) }

func nopCloser(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

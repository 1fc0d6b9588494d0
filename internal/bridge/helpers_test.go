package bridge

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/bridge/webhook"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/issuer"
)

// fakeData is an issuer.Getter over documents given as relaxed Extended
// JSON; err fails every read; block makes reads wait for their context.
type fakeData struct {
	mu    sync.Mutex
	docs  map[string]issuer.Data
	err   error
	block bool
	reads int
}

func newFakeData(t testing.TB, docs map[string]string) *fakeData {
	t.Helper()
	f := &fakeData{docs: map[string]issuer.Data{}}
	for user, js := range docs {
		d, err := issuer.DataFromRaw(testsupport.ExtJSON(t, js))
		if err != nil {
			t.Fatal(err)
		}
		f.docs[user] = d
	}
	return f
}

func (f *fakeData) Get(ctx context.Context, user string) (issuer.Data, error) {
	f.mu.Lock()
	f.reads++
	d, err, block := f.docs[user], f.err, f.block
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return issuer.Data{}, ctx.Err()
	}
	return d, err
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func secret(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "v1,whsec_" + base64.StdEncoding.EncodeToString(b)
}

func verifier(t testing.TB, secrets ...string) *webhook.Verifier {
	t.Helper()
	v, err := webhook.NewVerifier(secrets)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// supabaseCall is a hook call as Supabase Auth makes it (supabase/auth
// internal/hooks/hookhttp: POST, application/json, the three Standard
// Webhooks headers, one signature per secret joined with ", ").
func supabaseCall(t testing.TB, body []byte, at time.Time, secrets ...string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/hooks/supabase/custom-access-token", bytes.NewReader(body))
	id := "msg_" + events.NewEventID()
	var sigs []string
	for _, s := range secrets {
		wh, err := standardwebhooks.NewWebhook(strings.TrimPrefix(s, "v1,"))
		if err != nil {
			t.Fatal(err)
		}
		sig, _ := wh.Sign(id, at, body)
		sigs = append(sigs, sig)
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("webhook-id", id)
	r.Header.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
	r.Header.Set("webhook-signature", strings.Join(sigs, ", "))
	r.Header.Set("Accept-Encoding", "identity")
	return r
}

func serve(s *Server, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	return w
}

// object decodes a JSON object into generic values (for comparisons).
func object(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, b)
	}
	return m
}

func metric(t *testing.T, s *Server, name string, labels map[string]string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collectors()...)
	return testsupport.Metric(t, reg, name, labels)
}

// publisher records the LOGINs it is given, or fails them with err.
type publisher struct {
	mu  sync.Mutex
	evs []events.AuthEvent
	err error
}

func (p *publisher) Publish(_ context.Context, ev events.AuthEvent) (*jetstream.PubAck, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return nil, p.err
	}
	if err := (events.Decoder{}).Validate(ev); err != nil {
		return nil, err
	}
	p.evs = append(p.evs, ev)
	return &jetstream.PubAck{}, nil
}

func (p *publisher) events() []events.AuthEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]events.AuthEvent(nil), p.evs...)
}

var errDown = errors.New("server selection error: context deadline exceeded, current topology: { Type: Unknown }")

func extJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := bson.MarshalExtJSON(v, false, false)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func jsonNumber(s string) json.Number { return json.Number(s) }

type bodyReader struct {
	b []byte
	i int
}

func (r *bodyReader) Read(p []byte) (int, error) {
	if r.i >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.i:])
	r.i += n
	return n, nil
}

func (r *bodyReader) Close() error { return nil }

func nopBody(b []byte) io.ReadCloser { return &bodyReader{b: b} }

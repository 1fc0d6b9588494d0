package ingest

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/dlq"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// Clerk's payloads as its pages show them, each signed as Svix signs
// (svix-* headers), become the documented events:
//   - user.created: the example of https://clerk.com/docs/guides/development/webhooks/overview
//     ("Payload structure"; clerk/clerk-docs docs/guides/development/webhooks/overview.mdx),
//     whose timestamp is in milliseconds;
//   - user.deleted and session.created: the examples of Clerk's webhook
//     OpenAPI (clerk/openapi-specs webhooks/2025-04-15.yml, the schema of
//     the Dashboard's Event Catalog), whose timestamps are in seconds. A
//     session's user is data.user_id, not its id (sess_…).
func TestClerkDocumentedPayloads(t *testing.T) {
	now := time.Date(2026, 5, 12, 9, 30, 0, 0, time.UTC)
	secret := clerkSecret(t)
	e := newEnv(t, streams{auth: true, deadLetters: true})
	s := e.server(now, clerkVerifier(t, now, secret))
	cases := []struct {
		fixture, svixID string
		op              events.Operation
		user            string
		at              time.Time
	}{
		{"clerk/user-created.json", "msg_29w83sxmDNGwOuEthce5gg56FcC", events.OperationCreate, "user_29w83sxmDNGwOuEthce5gg56FcC", time.UnixMilli(1654012591835)},
		{"clerk/user-deleted.json", "msg_2g7np7Hrk0SN6kj5EDMLDaKNL0S", events.OperationDelete, "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S", time.Unix(1716883200, 0)},
		{"clerk/session-created.json", "msg_2g7np7Hrk0SN6kj5EDMLDaKNL0T", events.OperationLogin, "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S", time.Unix(1716883200, 0)},
	}
	for _, tc := range cases {
		w := serve(s, clerkRequest(t, fixture(t, tc.fixture), tc.svixID, now, secret))
		answered(t, w, answer{Published: 1})
	}
	got := e.events()
	if len(got) != len(cases) {
		t.Fatalf("%d events stored, want %d", len(got), len(cases))
	}
	for i, tc := range cases {
		ev := got[i]
		if ev.ID != "clerk:"+tc.svixID || ev.OperationType != tc.op || ev.User.ID != tc.user ||
			len(ev.Providers) != 1 || ev.Providers[0] != ProviderClerk || !ev.Time.Equal(tc.at) {
			t.Errorf("%s: event %+v", tc.fixture, ev)
		}
	}
	if n := metric(t, s, "customdata_bridge_ingest_events_total", map[string]string{"source": "clerk", "outcome": "published"}); n != 3 {
		t.Errorf("published counted %v times, want 3", n)
	}
}

// Svix sends a message again with the same svix-id (a retry after a
// failed attempt, or a replay from Clerk's dashboard): stored once, and
// answered 200 as a duplicate.
func TestClerkRetriedDeliveryIsStoredOnce(t *testing.T) {
	now := time.Now()
	secret := clerkSecret(t)
	e := newEnv(t, streams{auth: true, deadLetters: true})
	s := e.server(now, clerkVerifier(t, now, secret))
	body := fixture(t, "clerk/session-created.json")
	answered(t, serve(s, clerkRequest(t, body, "msg_retried", now.Add(-time.Minute), secret)), answer{Published: 1})
	answered(t, serve(s, clerkRequest(t, body, "msg_retried", now, secret)), answer{Duplicates: 1})
	if got := e.events(); len(got) != 1 {
		t.Fatalf("%d events stored, want 1", len(got))
	}
}

// A delivery that does not verify gets 401 and publishes nothing,
// whatever is wrong with it; one signed with the new secret or the old
// one during a rotation verifies, under svix-* or webhook-* headers.
func TestClerkSignatures(t *testing.T) {
	now := time.Now()
	current, previous, other := clerkSecret(t), clerkSecret(t), clerkSecret(t)
	body := fixture(t, "clerk/user-created.json")
	cases := []struct {
		name string
		req  func() *http.Request
		want int
	}{
		{"good", func() *http.Request { return clerkRequest(t, body, "msg_a", now, current) }, 200},
		{"rotation: Svix signs with both secrets", func() *http.Request { return clerkRequest(t, body, "msg_b", now, other, previous) }, 200},
		{"webhook-* header names", func() *http.Request {
			r := clerkRequest(t, body, "msg_c", now, current)
			for _, h := range []string{"id", "timestamp", "signature"} {
				r.Header.Set("webhook-"+h, r.Header.Get("svix-"+h))
				r.Header.Del("svix-" + h)
			}
			return r
		}, 200},
		{"wrong secret", func() *http.Request { return clerkRequest(t, body, "msg_d", now, other) }, 401},
		{"tampered body", func() *http.Request {
			r := clerkRequest(t, body, "msg_e", now, current)
			r.Body = nopCloser(bytes.Replace(body, []byte("user.created"), []byte("user.deleted"), 1))
			return r
		}, 401},
		{"tampered id", func() *http.Request {
			r := clerkRequest(t, body, "msg_f", now, current)
			r.Header.Set("svix-id", "msg_other")
			return r
		}, 401},
		{"expired timestamp", func() *http.Request { return clerkRequest(t, body, "msg_g", now.Add(-6*time.Minute), current) }, 401},
		{"timestamp ahead", func() *http.Request { return clerkRequest(t, body, "msg_h", now.Add(6*time.Minute), current) }, 401},
		{"unsigned", func() *http.Request {
			r := clerkRequest(t, body, "msg_i", now, current)
			r.Header.Del("svix-signature")
			return r
		}, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, streams{auth: true, deadLetters: true})
			s := e.server(now, clerkVerifier(t, now, current, previous))
			w := serve(s, tc.req())
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.want, w.Body)
			}
			n := len(e.events())
			if tc.want == 401 && (n != 0 || len(e.stored(events.DefaultDeadLetterStream)) != 0 || !strings.Contains(w.Body.String(), "webhook signature not verified")) {
				t.Fatalf("a refused delivery stored %d events: %s", n, w.Body)
			}
			if tc.want == 200 && n != 1 {
				t.Fatalf("%d events stored, want 1", n)
			}
		})
	}
}

// A verified delivery that maps to no event is dead-lettered with its
// reason, as the worker's dead letters are (the dlq verbs read it), and
// answered 200: an event type the bridge does not map, a session without
// user_id, a body that is not a Clerk event, a user id the worker
// refuses. Sent again, it is stored once. It cannot be redriven (it is
// Clerk's body, not an event).
func TestClerkUnmappableIsDeadLettered(t *testing.T) {
	now := time.Now()
	secret := clerkSecret(t)
	e := newEnv(t, streams{auth: true, deadLetters: true})
	s := e.server(now, clerkVerifier(t, now, secret))
	updated := bytes.Replace(fixture(t, "clerk/user-created.json"), []byte(`"user.created"`), []byte(`"user.updated"`), 1)
	noUser := bytes.Replace(fixture(t, "clerk/session-created.json"), []byte(`"user_id": "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S",`), nil, 1)
	badID := bytes.Replace(fixture(t, "clerk/user-deleted.json"), []byte(`"id": "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S"`), []byte(`"id": "user\u0007bell"`), 1)
	cases := []struct {
		body   []byte
		id     string
		reason events.Reason
		error  string
	}{
		{updated, "msg_updated", events.ReasonUnknownOperation, `clerk webhook: unknown_operation: event type "user.updated" is not one the bridge maps`},
		{noUser, "msg_nouser", events.ReasonMissingField, `clerk webhook: missing_field: data.user_id of an event of type "session.created" is missing`},
		{[]byte(`{"type": "user.created", "data": "user_1"}`), "msg_notjson", events.ReasonMalformedJSON, "clerk webhook: malformed_json: the body is not a Clerk event"},
		{badID, "msg_badid", events.ReasonInvalidUserID, "clerk webhook: invalid auth event: invalid_user_id"},
	}
	for _, tc := range cases {
		answered(t, serve(s, clerkRequest(t, tc.body, tc.id, now, secret)), answer{DeadLettered: 1})
	}
	// The first again, as Svix retries it: one dead letter.
	answered(t, serve(s, clerkRequest(t, cases[0].body, cases[0].id, now, secret)), answer{DeadLettered: 1})
	if n := len(e.events()); n != 0 {
		t.Fatalf("%d events published from bodies that do not map", n)
	}

	q, err := dlq.New(e.js, events.DefaultDeadLetterStream, events.DefaultDeadLetterPrefix)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testsupport.Context(t)
	entries, err := q.List(ctx, dlq.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(cases) {
		t.Fatalf("%d dead letters, want %d (a retry stored once): %+v", len(entries), len(cases), entries)
	}
	for i, tc := range cases {
		d := entries[i]
		if d.Subject != events.DefaultDeadLetterPrefix+"."+string(tc.reason) || d.Reason != string(tc.reason) ||
			!strings.HasPrefix(d.Error, tc.error) || d.OriginalMsgID != tc.id || d.OriginalSubject != "" ||
			d.Headers.Get(events.HeaderDLQSource) != "clerk" || !bytes.Equal(d.Data, tc.body) {
			t.Errorf("dead letter %d = %+v\n%s", i, d, d.Data)
		}
	}
	var outs []dlq.Outcome
	if err := q.Redrive(ctx, dlq.Filter{All: true}, false, func(o dlq.Outcome) { outs = append(outs, o) }); err != nil {
		t.Fatal(err)
	}
	for _, o := range outs {
		if !errors.Is(o.Err, dlq.ErrNoOriginalSubject) {
			t.Errorf("redrive of Clerk's body: %+v", o)
		}
	}
}

// When the dead letter cannot be written either (no dead-letter stream),
// the body is answered 400 with its reason, so that Svix keeps it and
// shows the failure: never dropped. When events cannot be stored (no auth
// stream, NATS down), 503: Svix sends it again, and once the stream is
// back it is stored.
func TestClerkNothingDroppedWhenJetStreamFails(t *testing.T) {
	now := time.Now()
	secret := clerkSecret(t)
	e := newEnv(t, streams{})
	s := e.server(now, clerkVerifier(t, now, secret))

	updated := bytes.Replace(fixture(t, "clerk/user-created.json"), []byte(`"user.created"`), []byte(`"user.updated"`), 1)
	w := serve(s, clerkRequest(t, updated, "msg_1", now, secret))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), `"reason":"unknown_operation"`) {
		t.Fatalf("unmappable body without a dead-letter stream: %d %s", w.Code, w.Body)
	}
	body := fixture(t, "clerk/user-created.json")
	w = serve(s, clerkRequest(t, body, "msg_2", now, secret))
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("event without an auth stream: %d %s, want 503", w.Code, w.Body)
	}
	e.createStream(authStream, events.DefaultAuthPrefix+".>")
	answered(t, serve(s, clerkRequest(t, body, "msg_2", now, secret)), answer{Published: 1})

	down := newEnv(t, streams{auth: true, deadLetters: true})
	s, err := New(failingPublisher{}, down.js, Config{}, clerkVerifier(t, now, secret))
	if err != nil {
		t.Fatal(err)
	}
	if w := serve(s, clerkRequest(t, body, "msg_3", now, secret)); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("publisher failing: %d %s", w.Code, w.Body)
	}
	for outcome, want := range map[string]float64{"unavailable": 1, "ok": 0} {
		if n := metric(t, s, "customdata_bridge_ingest_requests_total", map[string]string{"source": "clerk", "outcome": outcome}); n != want {
			t.Errorf("requests{outcome=%s} = %v, want %v", outcome, n, want)
		}
	}
}

func TestClerkTime(t *testing.T) {
	delivered := time.Unix(1_800_000_000, 0)
	for ts, want := range map[string]time.Time{
		"1654012591835": time.UnixMilli(1654012591835),
		"1716883200":    time.Unix(1716883200, 0),
		"":              delivered,
		"0":             delivered,
		"1.5e9":         delivered,
	} {
		if got := clerkTime(jsonNumber(ts), delivered); !got.Equal(want) {
			t.Errorf("timestamp %q: %v, want %v", ts, got, want)
		}
	}
}

// What the server logs names sources, reasons and ids: never a body's
// content (user data) or a secret, not even at debug level.
func TestLogsHoldNoBodyOrSecret(t *testing.T) {
	now := time.Now()
	secret := clerkSecret(t)
	e := newEnv(t, streams{auth: true})
	var logs testsupport.Logs
	s := e.server(now, clerkVerifier(t, now, secret), WithLogger(zerolog.New(&logs).Level(zerolog.DebugLevel)))
	body := fixture(t, "clerk/user-created.json")
	updated := bytes.Replace(body, []byte(`"user.created"`), []byte(`"user.updated"`), 1)
	serve(s, clerkRequest(t, updated, "msg_1", now, secret))      // not dead-lettered: no stream
	serve(s, clerkRequest(t, body, "msg_2", now, clerkSecret(t))) // not verified
	serve(s, clerkRequest(t, body, "msg_3", now, secret))         // published
	for _, leak := range []string{"example@example.org", "user_29w83sxmDNGwOuEthce5gg56FcC", strings.TrimPrefix(secret, "whsec_")} {
		if strings.Contains(logs.String(), leak) {
			t.Errorf("the log holds %q:\n%s", leak, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "could not be dead-lettered") || !strings.Contains(logs.String(), "not authenticated") {
		t.Errorf("the log does not say what happened:\n%s", logs.String())
	}
}

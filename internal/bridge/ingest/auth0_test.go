package ingest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
)

// The Authorization Token of the log stream, as entered in Auth0: Auth0
// sends it as the whole Authorization header value
// (https://auth0.com/docs/customize/log-streams/custom-log-streams,
// "Authorization Token").
const auth0Token = "Bearer auth0-stream-0123456789"

func auth0Request(body []byte, authorization string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/ingest/auth0", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	return r
}

// A log stream's batch in each content format the custom webhook offers
// (JSON array, JSON lines, one object per request; the array is
// auth0/log-stream-batch.json, whose log events follow the Tenant Log
// Catalog, https://auth0.com/docs/tenant-logs): ss → CREATE, s → LOGIN,
// sdu → DELETE (https://auth0.com/docs/deploy-monitor/logs/log-event-type-codes),
// ids from the log_ids, providers from the strategies, times from the
// dates; the failed login (fp) is counted and ignored. Auth0 sends the
// batch again (a retry): every event a duplicate.
func TestAuth0LogStream(t *testing.T) {
	now := time.Date(2026, 5, 12, 9, 35, 0, 0, time.UTC)
	array := fixture(t, "auth0/log-stream-batch.json")
	var elems []json.RawMessage
	if err := json.Unmarshal(array, &elems); err != nil {
		t.Fatal(err)
	}
	var lines bytes.Buffer
	for _, e := range elems {
		_ = json.Compact(&lines, e)
		lines.WriteByte('\n')
	}
	want := []struct {
		id, user, provider string
		op                 events.Operation
		at                 string
	}{
		{"auth0:90020260512093100410293000000000000001223372036854775801", "auth0|6182002f34f4dd006b05b5c7", "auth0-auth0", events.OperationCreate, "2026-05-12T09:30:59.402Z"},
		{"auth0:90020260512093105230481000000000000001223372036854775802", "google-oauth2|106914261263908302085", "auth0-google-oauth2", events.OperationLogin, "2026-05-12T09:31:04.117Z"},
		{"auth0:90020260512093200812345000000000000001223372036854775804", "auth0|6182002f34f4dd006b05b5c7", "auth0-auth0", events.OperationDelete, "2026-05-12T09:32:00.812Z"},
	}
	for name, bodies := range map[string][][]byte{
		"JSON array": {array},
		"JSON lines": {lines.Bytes()},
		"one object": {elems[0], elems[1], elems[2], elems[3]},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, streams{auth: true, deadLetters: true})
			s := e.server(now, auth0Tokens(t, auth0Token))
			var total answer
			for _, b := range bodies {
				var a answer
				w := serve(s, auth0Request(b, auth0Token))
				if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &a) != nil {
					t.Fatalf("status %d: %s", w.Code, w.Body)
				}
				total.Published += a.Published
				total.Ignored += a.Ignored
			}
			if total != (answer{Published: 3, Ignored: 1}) {
				t.Fatalf("answers add up to %+v", total)
			}
			got := e.events()
			if len(got) != len(want) {
				t.Fatalf("%d events stored, want %d", len(got), len(want))
			}
			for i, w := range want {
				ev := got[i]
				at, _ := time.Parse(time.RFC3339Nano, w.at)
				if ev.ID != w.id || ev.User.ID != w.user || ev.OperationType != w.op || len(ev.Providers) != 1 ||
					ev.Providers[0] != w.provider || !ev.Time.Equal(at) {
					t.Errorf("event %d = %+v, want %+v", i, ev, w)
				}
			}
			if name == "JSON array" {
				answered(t, serve(s, auth0Request(array, auth0Token)), answer{Duplicates: 3, Ignored: 1})
				if n := metric(t, s, "customdata_bridge_ingest_events_total", map[string]string{"source": "auth0", "outcome": "ignored"}); n != 2 {
					t.Errorf("ignored counted %v times, want 2", n)
				}
			}
		})
	}
}

// Auth0 sends the Authorization Token exactly as configured: any other
// value, a missing header, or the token twice gets 401, and nothing is
// published.
func TestAuth0Authorization(t *testing.T) {
	now := time.Now()
	body := fixture(t, "auth0/log-stream-batch.json")
	for name, set := range map[string]func(*http.Request){
		"wrong token":           func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") },
		"token without scheme":  func(r *http.Request) { r.Header.Set("Authorization", strings.TrimPrefix(auth0Token, "Bearer ")) },
		"no header":             func(r *http.Request) { r.Header.Del("Authorization") },
		"token twice":           func(r *http.Request) { r.Header.Add("Authorization", auth0Token) },
		"token in another case": func(r *http.Request) { r.Header.Set("Authorization", strings.ToUpper(auth0Token)) },
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, streams{auth: true, deadLetters: true})
			s := e.server(now, auth0Tokens(t, auth0Token))
			r := auth0Request(body, auth0Token)
			set(r)
			w := serve(s, r)
			if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "authorization token required") {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if n := len(e.events()); n != 0 {
				t.Fatalf("%d events published", n)
			}
		})
	}
	e := newEnv(t, streams{auth: true, deadLetters: true})
	s := e.server(now, auth0Tokens(t, "Bearer new-token", auth0Token))
	answered(t, serve(s, auth0Request(body, auth0Token)), answer{Published: 3, Ignored: 1})
}

// In a batch, a log event of a mapped type that cannot be mapped (no
// user_id, no log_id) is dead-lettered on its own, naming its element,
// the rest published; a body that is not JSON is one dead letter.
func TestAuth0Unmappable(t *testing.T) {
	now := time.Now()
	e := newEnv(t, streams{auth: true, deadLetters: true})
	s := e.server(now, auth0Tokens(t, auth0Token))
	batch := `[
	 {"log_id":"90020260512100000000000000000000000000000000000000000001","data":{"date":"2026-05-12T10:00:00.000Z","type":"s","strategy":"auth0","log_id":"90020260512100000000000000000000000000000000000000000001"}},
	 {"data":{"date":"2026-05-12T10:00:01.000Z","type":"ss","user_id":"auth0|abc","strategy":"auth0"}},
	 {"log_id":"90020260512100000000000000000000000000000000000000000003","data":{"date":"2026-05-12T10:00:02.000Z","type":"s","user_id":"auth0|abc","strategy":"auth0","log_id":"90020260512100000000000000000000000000000000000000000003"}},
	 42
	]`
	answered(t, serve(s, auth0Request([]byte(batch), auth0Token)), answer{Published: 1, DeadLettered: 3})
	answered(t, serve(s, auth0Request([]byte(`{"log_id":`), auth0Token)), answer{DeadLettered: 1})
	dead := e.stored(events.DefaultDeadLetterStream)
	reasons := []string{}
	for _, d := range dead {
		reasons = append(reasons, d.Header.Get(events.HeaderDLQReason)+" "+d.Header.Get(events.HeaderDLQOriginalMsgID))
	}
	wantReasons := []string{
		"missing_field 90020260512100000000000000000000000000000000000000000001",
		"missing_field ",
		"malformed_json ",
		"malformed_json ",
	}
	if strings.Join(reasons, "|") != strings.Join(wantReasons, "|") {
		t.Fatalf("dead letters %q, want %q", reasons, wantReasons)
	}
	if got := dead[0].Header.Get(events.HeaderDLQError); got != `auth0 webhook, element 1: missing_field: user_id of a log event of type "s" (Success Login) is missing` || string(dead[2].Data) != "42" {
		t.Fatalf("first dead letter: %s; third body %s", got, dead[2].Data)
	}
	if got := dead[2].Header.Get(events.HeaderDLQError); !strings.HasPrefix(got, "auth0 webhook, element 4: malformed_json: ") {
		t.Fatalf("third dead letter: %s", got)
	}
	if got := e.events(); len(got) != 1 || got[0].User.ID != "auth0|abc" {
		t.Fatalf("events %+v", got)
	}
}

// In a JSON lines body, a line that is not JSON is dead-lettered on its
// own, with its line number and the reason, and the other lines are
// published: one broken line does not take the batch with it. Every
// dead letter of a batch names its line (JSON lines) or element (JSON
// array).
func TestAuth0JSONLinesBrokenLine(t *testing.T) {
	now := time.Now()
	e := newEnv(t, streams{auth: true, deadLetters: true})
	s := e.server(now, auth0Tokens(t, auth0Token))
	body := strings.Join([]string{
		`{"log_id":"90020260512110000000000000000000000000000000000000000001","data":{"date":"2026-05-12T11:00:00.000Z","type":"ss","user_id":"auth0|line1","strategy":"auth0"}}`,
		`{"log_id":"90020260512110000000000000000000000000000000000000000002","data":{"date":"2026-05-12T11:00:01.000Z","type":"s","user_id":`,
		``,
		`{"log_id":"90020260512110000000000000000000000000000000000000000004","data":{"date":"2026-05-12T11:00:02.000Z","type":"s","strategy":"auth0"}}`,
		`{"log_id":"90020260512110000000000000000000000000000000000000000005","data":{"date":"2026-05-12T11:00:03.000Z","type":"s","user_id":"auth0|line5","strategy":"auth0"}}`,
		``,
	}, "\n")
	answered(t, serve(s, auth0Request([]byte(body), auth0Token)), answer{Published: 2, DeadLettered: 2})
	got := e.events()
	if len(got) != 2 || got[0].User.ID != "auth0|line1" || got[1].User.ID != "auth0|line5" {
		t.Fatalf("events %+v", got)
	}
	dead := e.stored(events.DefaultDeadLetterStream)
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dead))
	}
	lines := strings.Split(body, "\n")
	for i, want := range []struct{ subject, error, body string }{
		{"auth.deadletter.malformed_json", "auth0 webhook, line 2: malformed_json: the line is not valid JSON (it ends early)", lines[1]},
		{"auth.deadletter.missing_field", `auth0 webhook, line 4: missing_field: user_id of a log event of type "s" (Success Login) is missing`, lines[3]},
	} {
		if d := dead[i]; d.Subject != want.subject || d.Header.Get(events.HeaderDLQError) != want.error || string(d.Data) != want.body {
			t.Errorf("dead letter %d: %s %q\n%s\nwant %s %q\n%s", i, d.Subject, d.Header.Get(events.HeaderDLQError), d.Data, want.subject, want.error, want.body)
		}
	}
	// Sent again (Auth0 retries): the events are duplicates, the dead
	// letters stored once.
	answered(t, serve(s, auth0Request([]byte(body), auth0Token)), answer{Duplicates: 2, DeadLettered: 2})
	if n := len(e.stored(events.DefaultDeadLetterStream)); n != 2 {
		t.Fatalf("%d dead letters after the retry, want 2", n)
	}
	// JSON lines that are all JSON name their lines too.
	valid := lines[0] + "\n\n" + strings.Replace(lines[3], "0004", "0006", 2) + "\n"
	answered(t, serve(s, auth0Request([]byte(valid), auth0Token)), answer{Duplicates: 1, DeadLettered: 1})
	dead = e.stored(events.DefaultDeadLetterStream)
	if got := dead[len(dead)-1].Header.Get(events.HeaderDLQError); !strings.HasPrefix(got, "auth0 webhook, line 3: missing_field: ") {
		t.Fatalf("dead letter of valid JSON lines: %s", got)
	}
}

// An Auth0 batch over the 1 MiB limit is answered 413, and the operator
// sees it: a warning naming the source and the sizes (never the token or
// the body), and customdata_bridge_ingest_requests_total{source="auth0",
// outcome="too_large"}.
func TestAuth0BatchTooLargeIsLoggedAndCounted(t *testing.T) {
	e := newEnv(t, streams{auth: true, deadLetters: true})
	var logs testsupport.Logs
	s := e.server(time.Now(), auth0Tokens(t, auth0Token), WithLogger(zerolog.New(&logs)))
	body := []byte(`[{"log_id":"l1","data":{"type":"s","user_id":"auth0|secret-user","description":"` + strings.Repeat("x", DefaultMaxBody) + `"}}]`)
	w := serve(s, auth0Request(body, auth0Token))
	if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), "request body too large") {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if n := metric(t, s, "customdata_bridge_ingest_requests_total", map[string]string{"source": "auth0", "outcome": "too_large"}); n != 1 {
		t.Errorf("too_large counted %v times, want 1", n)
	}
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if strings.Contains(l, "413") {
			_ = json.Unmarshal([]byte(l), &line)
		}
	}
	if line["level"] != "warn" || line["source"] != "auth0" || line["limit_bytes"] != float64(DefaultMaxBody) || line["content_length"] != float64(len(body)) {
		t.Fatalf("no warning with the source and the sizes:\n%s", logs.String())
	}
	for _, leak := range []string{"auth0-stream-0123456789", "secret-user", "xxxx"} {
		if strings.Contains(logs.String(), leak) {
			t.Errorf("the log holds %q", leak)
		}
	}
}

package ingest

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
)

// A dead letter's Dlq-Error reads as the worker's do ("invalid auth
// event: <reason>: <detail>"): where the body came from, then its reason,
// then what was wrong. A type the sender sent is quoted as the worker
// quotes a field name (%q), a long one cut outside the quotes, so that
// the cut is never taken for part of it; one the bridge refuses after
// mapping carries the worker's own rejection text.
func TestDeadLetterErrorNamesSourceAndReason(t *testing.T) {
	now := time.Now()
	secret := clerkSecret(t)
	e := newEnv(t, streams{auth: true, deadLetters: true})
	s := e.server(now, clerkVerifier(t, now, secret), WithKratos(kratosAuth(t)), auth0Tokens(t, auth0Token))
	clerkType := func(typ string) []byte {
		return bytes.Replace(fixture(t, "clerk/user-created.json"), []byte(`"user.created"`), []byte(`"`+typ+`"`), 1)
	}
	long := strings.Repeat("x", 70) + "é"
	noUser := bytes.Replace(fixture(t, "clerk/session-created.json"), []byte(`"user_id": "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S",`), nil, 1)
	badID := bytes.Replace(fixture(t, "clerk/user-deleted.json"), []byte(`"id": "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S"`), []byte(`"id": "user\u0007bell"`), 1)
	cases := []struct {
		name string
		r    *http.Request
		want string
	}{
		{"Clerk type not mapped", clerkRequest(t, clerkType("user.updated"), "msg_1", now, secret),
			`clerk webhook: unknown_operation: event type "user.updated" is not one the bridge maps (user.created, user.deleted, session.created): subscribe the endpoint to those only`},
		{"Clerk type past 64 bytes", clerkRequest(t, clerkType(long), "msg_2", now, secret),
			`clerk webhook: unknown_operation: event type "` + strings.Repeat("x", 64) + `"… (72 bytes) is not one the bridge maps (user.created, user.deleted, session.created): subscribe the endpoint to those only`},
		{"Clerk session without user", clerkRequest(t, noUser, "msg_3", now, secret),
			`clerk webhook: missing_field: data.user_id of an event of type "session.created" is missing`},
		{"Clerk user id the worker refuses", clerkRequest(t, badID, "msg_4", now, secret),
			`clerk webhook: invalid auth event: invalid_user_id: `},
		{"Kratos without identity", kratosRequest("/ingest/kratos/registration", []byte(`{"flow_id":"f1"}`), kratosKey),
			`kratos webhook: missing_field: identity_id of a registration web hook is missing (ctx.identity.id in the template)`},
		{"Auth0 login without user", auth0Request([]byte(`{"log_id":"l1","data":{"type":"s","date":"2026-05-12T10:00:00.000Z"}}`), auth0Token),
			`auth0 webhook: missing_field: user_id of a log event of type "s" (Success Login) is missing`},
		{"Auth0 signup without log_id", auth0Request([]byte(`{"data":{"type":"ss","user_id":"auth0|abc"}}`), auth0Token),
			`auth0 webhook: missing_field: log_id of a log event of type "ss" (Success Signup) is missing (it makes Auth0's retries idempotent)`},
		{"Auth0 body not JSON", auth0Request([]byte(`{"log_id":`), auth0Token),
			`auth0 webhook: malformed_json: the body is not a JSON array, JSON lines or a JSON object of log events`},
	}
	for _, tc := range cases {
		answered(t, serve(s, tc.r), answer{DeadLettered: 1})
	}
	dead := e.stored(events.DefaultDeadLetterStream)
	if len(dead) != len(cases) {
		t.Fatalf("%d dead letters, want %d", len(dead), len(cases))
	}
	for i, tc := range cases {
		got := dead[i].Header.Get(events.HeaderDLQError)
		if ok := got == tc.want || strings.HasSuffix(tc.want, ": ") && strings.HasPrefix(got, tc.want); !ok {
			t.Errorf("%s: Dlq-Error\n %s\nwant\n %s", tc.name, got, tc.want)
		}
	}
}

// One request with 20,000 log events that cannot be mapped does not
// make 20,000 dead letters: the first 100 get one each, and the rest
// share one too_many_unmappable dead letter that holds them, one per
// line, and says how many there are and why. Nothing is dropped: the
// answer and the metric count every element, and the log events that
// map are published. Sent again (Auth0 retries), nothing is stored twice.
func TestAuth0DeadLettersPerRequestAreCapped(t *testing.T) {
	const n = 20000
	now := time.Now()
	e := newEnv(t, streams{auth: true, deadLetters: true})
	s := e.server(now, auth0Tokens(t, auth0Token))
	var elems []string
	for i := range n {
		el := fmt.Sprintf(`{"log_id":"l%d","data":{"type":"s"}}`, i) // no user_id
		if i%1000 == 999 {
			el = "42"
		}
		elems = append(elems, el)
	}
	elems = append(elems, `{"log_id":"good","data":{"type":"ss","user_id":"auth0|good","date":"2026-05-12T10:00:00.000Z"}}`)
	body := []byte("[" + strings.Join(elems, ",") + "]")
	if len(body) > DefaultMaxBody {
		t.Fatalf("the batch is %d bytes, over the body limit", len(body))
	}
	answered(t, serve(s, auth0Request(body, auth0Token)), answer{Published: 1, DeadLettered: n})
	dead := e.stored(events.DefaultDeadLetterStream)
	if len(dead) != DefaultMaxDeadLetters+1 {
		t.Fatalf("%d dead letters, want %d", len(dead), DefaultMaxDeadLetters+1)
	}
	for i, d := range dead[:DefaultMaxDeadLetters] {
		if string(d.Data) != elems[i] {
			t.Fatalf("dead letter %d holds %s, want element %d", i, d.Data, i+1)
		}
	}
	sum := dead[DefaultMaxDeadLetters]
	wantErr := "auth0 webhook: too_many_unmappable: 19900 more elements of the request cannot be mapped past the 100 dead-lettered one by one: " +
		"they are this dead letter's body, one per line, from element 101 on (missing_field: 19880, malformed_json: 20)"
	if sum.Subject != "auth.deadletter.too_many_unmappable" || sum.Header.Get(events.HeaderDLQReason) != events.DeadLetterTooManyUnmappable ||
		sum.Header.Get(events.HeaderDLQError) != wantErr || sum.Header.Get(events.HeaderDLQSource) != "auth0" || sum.Header.Get(events.HeaderDLQTruncated) != "" {
		t.Fatalf("summary dead letter %s %v", sum.Subject, sum.Header)
	}
	if got, want := string(sum.Data), strings.Join(elems[DefaultMaxDeadLetters:n], "\n")+"\n"; got != want {
		t.Fatalf("summary dead letter's body: %d bytes, want the %d elements past the cap (%d bytes)", len(got), n-DefaultMaxDeadLetters, len(want))
	}
	if got := e.events(); len(got) != 1 || got[0].User.ID != "auth0|good" {
		t.Fatalf("events %+v", got)
	}
	if m := metric(t, s, "customdata_bridge_ingest_events_total", map[string]string{"source": "auth0", "outcome": "dead_lettered"}); m != n {
		t.Fatalf("dead_lettered counted %v, want %d", m, n)
	}
	answered(t, serve(s, auth0Request(body, auth0Token)), answer{Duplicates: 1, DeadLettered: n})
	if got := len(e.stored(events.DefaultDeadLetterStream)); got != DefaultMaxDeadLetters+1 {
		t.Fatalf("%d dead letters after Auth0's retry, want %d", got, DefaultMaxDeadLetters+1)
	}
}

// The elements past the cap fill as many dead letters as NATS's max
// payload needs, every one of them kept whole, each line in one part.
func TestOverflowFitsMaxPayload(t *testing.T) {
	o := newOverflow(headroom + 110)
	var want strings.Builder
	for i := range 10 {
		el := fmt.Sprintf(`{ "log_id": "l%d", "data": {"type":"s"} }`, i)
		o.add(item{reason: events.ReasonMissingField, body: []byte(el), where: fmt.Sprintf("element %d", 101+i)})
		fmt.Fprintf(&want, `{"log_id":"l%d","data":{"type":"s"}}`+"\n", i)
	}
	o.add(item{reason: events.ReasonMalformedJSON, body: []byte(`{"broken":`), where: "element 111"})
	want.WriteString("{\"broken\":\n")
	items := o.items(100)
	var got strings.Builder
	total := 0
	for i, it := range items {
		if len(it.body) > 110 || it.reason != events.DeadLetterTooManyUnmappable {
			t.Errorf("part %d: %d bytes, reason %s", i+1, len(it.body), it.reason)
		}
		got.Write(it.body)
		total += it.n
	}
	if got.String() != want.String() || total != 11 || len(items) != 4 {
		t.Fatalf("%d parts, %d elements:\n%s\nwant\n%s", len(items), total, got.String(), want.String())
	}
	if d := items[0].errorText("auth0"); d != "auth0 webhook: too_many_unmappable: 3 more elements of the request cannot be mapped past the 100 dead-lettered one by one: "+
		"they are this dead letter's body, one per line, from element 101 on (missing_field: 3) (part 1 of 4)" {
		t.Errorf("first part: %s", d)
	}
	if d := items[3].errorText("auth0"); !strings.HasSuffix(d, "from element 110 on (missing_field: 1, malformed_json: 1) (part 4 of 4)") {
		t.Errorf("last part: %s", d)
	}
}

package ingest

import (
	"bytes"
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

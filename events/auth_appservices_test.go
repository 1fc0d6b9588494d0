package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// appServicesEvent is an authentication event exactly as App Services
// documents it (the authentication-trigger event: operationType,
// providers, user, time; the user object: id, type, data, custom_data,
// identities[] {id, provider_type, data}), as a function forwarding it
// with JSON.stringify writes it: no schemaVersion, no id, the time as an
// ISO string with milliseconds.
var appServicesEvent = strings.NewReplacer("CUSTOM_DATA", appServicesCustomData, "IDENTITY_DATA", appServicesIdentityData).Replace(`{
  "operationType": "CREATE",
  "providers": ["local-userpass"],
  "user": {
    "id": "5f8e5a6c1c9d440000a1b2c3",
    "type": "normal",
    "data": {"email": "ada@example.com", "name": "Ada Lovelace"},
    "custom_data": CUSTOM_DATA,
    "identities": [
      {"id": "6f1c0d3e9a7b4c21b3f0e8d2", "provider_type": "local-userpass",
       "data": IDENTITY_DATA}
    ]
  },
  "time": "2024-05-01T12:00:00.000Z"
}`)

const (
	// appServicesCustomData is the user's custom-data document as App
	// Services attaches it.
	appServicesCustomData = `{"_id": "5f8e5a6c1c9d440000a1b2c9", "userId": "5f8e5a6c1c9d440000a1b2c3",
                    "plan": "secret-plan", "favorites": [{"color": "blue"}], "score": 42}`
	appServicesIdentityData = `{"email": "ada@example.com", "secret-identity-data": "kept-out"}`
)

// appServicesWith returns appServicesEvent with old replaced by new once.
func appServicesWith(t *testing.T, old, new string) []byte {
	t.Helper()
	if !strings.Contains(appServicesEvent, old) {
		t.Fatalf("%q not in the App Services event", old)
	}
	return []byte(strings.Replace(appServicesEvent, old, new, 1))
}

func TestDecodeAppServicesEvent(t *testing.T) {
	want := AuthEvent{
		SchemaVersion: 1, ID: "msg-1", OperationType: OperationCreate, Providers: []string{"local-userpass"},
		User: User{ID: "5f8e5a6c1c9d440000a1b2c3", Type: "normal",
			Identities: []Identity{{ID: "6f1c0d3e9a7b4c21b3f0e8d2", ProviderType: "local-userpass"}},
			Data:       map[string]any{"email": "ada@example.com", "name": "Ada Lovelace"}},
		Time: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC),
	}
	with := func(f func(*AuthEvent)) AuthEvent {
		ev := want
		f(&ev)
		return ev
	}
	tests := []struct {
		name string
		in   []byte
		want AuthEvent
	}{
		{"as documented", []byte(appServicesEvent), want},
		{"server user", appServicesWith(t, `"type": "normal"`, `"type": "server"`), with(func(e *AuthEvent) { e.User.Type = "server" })},
		{"system user", appServicesWith(t, `"type": "normal"`, `"type": "system"`), with(func(e *AuthEvent) { e.User.Type = "system" })},
		{"empty custom data", appServicesWith(t, appServicesCustomData, `{}`), want},
		{"null custom data", appServicesWith(t, appServicesCustomData, `null`), want},
		{"no custom data", appServicesWith(t, `"custom_data": `+appServicesCustomData+`,`, ``), want},
		{"null identity data", appServicesWith(t, appServicesIdentityData, `null`), want},
		{"no identity data", appServicesWith(t, `,
       "data": `+appServicesIdentityData, ``), want},
		{"DELETE naming every linked provider", appServicesWith(t, `"operationType": "CREATE",
  "providers": ["local-userpass"]`, `"operationType": "DELETE",
  "providers": ["local-userpass", "oauth2-google", "anon-user"]`),
			with(func(e *AuthEvent) {
				e.OperationType = OperationDelete
				e.Providers = []string{"local-userpass", "oauth2-google", "anon-user"}
			})},
		{"with schemaVersion and id", appServicesWith(t, `{`, `{"schemaVersion": 1, "id": "evt-7",`), with(func(e *AuthEvent) { e.ID = "evt-7" })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := testDecoder().DecodeWithFallbackID(tt.in, "msg-1")
			if err != nil {
				t.Fatalf("App Services event rejected: %v", err)
			}
			if !eventsEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
			// custom_data and identity data are dropped: nothing of them
			// can reach a trigger or be re-published.
			enc, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{"custom_data", "secret-plan", "favorites", "kept-out", "secret-identity-data"} {
				if strings.Contains(string(enc), s) {
					t.Errorf("decoded event keeps %q: %s", s, enc)
				}
			}
		})
	}
}

// Every rule still holds inside the parts that are accepted and dropped.
func TestDecodeAppServicesRulesStillApply(t *testing.T) {
	deep := nest(MaxDepth, `{"a":`, `}`)
	tests := []struct {
		name string
		in   []byte
		want Reason
	}{
		{"$ key in custom_data", appServicesWith(t, `"plan"`, `"$set"`), ReasonForbiddenKey},
		{"dotted key in custom_data", appServicesWith(t, `"plan"`, `"profile.admin"`), ReasonForbiddenKey},
		{"$ key deep in custom_data", appServicesWith(t, `{"color": "blue"}`, `{"color": {"$gt": ""}}`), ReasonForbiddenKey},
		{"$ key in identity data", appServicesWith(t, `"secret-identity-data"`, `"$where"`), ReasonForbiddenKey},
		{"NUL in identity data key", appServicesWith(t, `"secret-identity-data"`, `"a\u0000b"`), ReasonForbiddenKey},
		{"custom_data too deep", appServicesWith(t, `"score": 42`, `"score": `+deep), ReasonTooDeep},
		{"identity data too deep", appServicesWith(t, `"secret-identity-data": "kept-out"`, `"d": `+deep), ReasonTooDeep},
		{"custom_data not an object", appServicesWith(t, appServicesCustomData, `"x"`), ReasonMalformedJSON},
		{"identity data not an object", appServicesWith(t, appServicesIdentityData, `[]`), ReasonMalformedJSON},
		{"customData spelling", appServicesWith(t, `"custom_data"`, `"customData"`), ReasonUnknownField},
		{"Custom_data spelling", appServicesWith(t, `"custom_data"`, `"Custom_data"`), ReasonUnknownField},
		{"identity Data spelling", appServicesWith(t, `"data": `+appServicesIdentityData, `"Data": `+appServicesIdentityData), ReasonUnknownField},
		{"providerType spelling", appServicesWith(t, `"provider_type"`, `"providerType"`), ReasonUnknownField},
		{"repeated custom_data", appServicesWith(t, `"custom_data": `, `"custom_data": {}, "custom_data": `), ReasonMalformedJSON},
		{"repeated key in custom_data", appServicesWith(t, `"score": 42`, `"score": 42, "score": 43`), ReasonMalformedJSON},
		{"time as a number (not JSON.stringify)", appServicesWith(t, `"2024-05-01T12:00:00.000Z"`, `1714564800000`), ReasonMalformedJSON},
		{"time as extended JSON", appServicesWith(t, `"2024-05-01T12:00:00.000Z"`, `{"$date": "2024-05-01T12:00:00.000Z"}`), ReasonMalformedJSON},
	}
	// Further problems a rejection lists beside its reason.
	also := map[string][]Reason{"time as extended JSON": {ReasonForbiddenKey}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := testDecoder().DecodeWithFallbackID(tt.in, "msg-1")
			if err == nil {
				t.Fatalf("accepted: %+v", ev)
			}
			var re *RejectError
			if !errors.As(err, &re) {
				t.Fatalf("not a RejectError: %v", err)
			}
			// The primary reason is the Dlq-Reason a user sees.
			if re.Reason != tt.want {
				t.Fatalf("reason %q (problems %v), want %q", re.Reason, re.Problems, tt.want)
			}
			for _, want := range also[tt.name] {
				if !slices.ContainsFunc(re.Problems, func(p Problem) bool { return p.Reason == want }) {
					t.Errorf("problems %v do not include %q", re.Problems, want)
				}
			}
			for _, s := range []string{"secret-plan", "kept-out", "ada@example.com"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error echoes a value: %v", err)
				}
			}
		})
	}
}

func TestDecodeFallbackID(t *testing.T) {
	tests := []struct {
		name     string
		in       []byte
		fallback string
		wantID   string
		want     Reason
	}{
		{"no id, Msg-Id", eventWith(t, map[string]any{"id": nil}), "msg-1", "msg-1", ""},
		{"no id, derived", eventWith(t, map[string]any{"id": nil}), StreamEventID("AUTH_EVENTS", 42), "AUTH_EVENTS:42", ""},
		{"null id", eventWith(t, map[string]any{"id": raw("null")}), "msg-1", "msg-1", ""},
		{"empty id", eventWith(t, map[string]any{"id": ""}), "msg-1", "msg-1", ""},
		{"the event's id wins", []byte(validEvent), "msg-1", "evt-1", ""},
		{"no id, no fallback", eventWith(t, map[string]any{"id": nil}), "", "", ReasonMissingField},
		{"no id, fallback breaks the rule", eventWith(t, map[string]any{"id": nil}), "login/1", "", ReasonInvalidEventID},
		{"no id, fallback too long", eventWith(t, map[string]any{"id": nil}), strings.Repeat("m", MaxEventIDBytes+1), "", ReasonInvalidEventID},
		{"id of the wrong type is not replaced", eventWith(t, map[string]any{"id": 7}), "msg-1", "", ReasonMalformedJSON},
		{"bad id is not replaced", eventWith(t, map[string]any{"id": "a b"}), "msg-1", "", ReasonInvalidEventID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := testDecoder().DecodeWithFallbackID(tt.in, tt.fallback)
			if got := ReasonOf(err); got != tt.want {
				t.Fatalf("reason = %q, want %q (%v)", got, tt.want, err)
			}
			if err == nil && ev.ID != tt.wantID {
				t.Fatalf("id = %q, want %q", ev.ID, tt.wantID)
			}
			if err != nil && strings.Contains(err.Error(), tt.fallback) && tt.fallback != "" {
				t.Errorf("error echoes the message id: %v", err)
			}
		})
	}
}

func TestStreamEventID(t *testing.T) {
	tests := []struct {
		stream string
		seq    uint64
		want   string
	}{
		{"AUTH_EVENTS", 1, "AUTH_EVENTS:1"},
		{"AUTH_EVENTS", 18446744073709551615, "AUTH_EVENTS:18446744073709551615"},
		{"auth-events_v2", 0, "auth-events_v2:0"},
		// JetStream stream names may hold what the id rule refuses.
		{"_private", 7, "sprivate:7"},
		{"-x", 7, "sx:7"},
		{"événements", 7, "s_v__nements:7"}, // each byte of a multi-byte letter becomes one '_'; the first an 's'
		{"a$b@c#d", 7, "a_b_c_d:7"},
		{"", 7, "s:7"},
	}
	for _, tt := range tests {
		got := StreamEventID(tt.stream, tt.seq)
		if got != tt.want {
			t.Errorf("StreamEventID(%q, %d) = %q, want %q", tt.stream, tt.seq, got, tt.want)
		}
		if !ValidEventID(got) {
			t.Errorf("StreamEventID(%q, %d) = %q breaks the event-id rule", tt.stream, tt.seq, got)
		}
	}
	long := StreamEventID(strings.Repeat("S", 300), 18446744073709551615)
	if !ValidEventID(long) || !strings.HasSuffix(long, ":18446744073709551615") {
		t.Errorf("long stream name: %q", long)
	}
	if StreamEventID("AUTH_EVENTS", 9) != StreamEventID("AUTH_EVENTS", 9) || StreamEventID("A", 1) == StreamEventID("A", 2) {
		t.Error("derived ids are not a function of the stream position")
	}
}

// A rejection lists every problem of the event, the most important first,
// so a producer fixes them in one round.
func TestDecodeListsEveryProblem(t *testing.T) {
	type want struct {
		reason Reason
		detail string // a part of the detail
	}
	tests := []struct {
		name string
		in   []byte
		want []want
	}{
		{"field problems", eventWith(t, map[string]any{
			"schemaVersion": 2, "operationType": "LOGOUT", "providers": []string{"ok", "Bad"},
			"user.id": "", "time": "yesterday", "id": "a b",
		}), []want{
			{ReasonUnsupportedVersion, "schemaVersion 2"},
			// then in the order of the fields
			{ReasonInvalidEventID, "id must match"},
			{ReasonUnknownOperation, "operationType"},
			{ReasonInvalidProvider, "providers[1]"},
			{ReasonInvalidTime, "time is not RFC 3339"},
			{ReasonMissingField, "user.id is required"},
		}},
		{"shape problems before field problems", eventWith(t, map[string]any{
			"extra": 1, "user.Email": "x", "user.data": raw(`{"$a":1,"b":{"c.d":2}}`),
			"operationType": nil, "time": raw(`12`),
		}), []want{
			{ReasonMalformedJSON, "time has the wrong type"},
			{ReasonForbiddenKey, "user.data: a key starts with '$'"},
			{ReasonUnknownField, `"extra"`},
			{ReasonUnknownField, `"user.Email"`},
			{ReasonForbiddenKey, "user.data: a key contains '.'"},
			{ReasonMissingField, "operationType is required"},
		}},
		{"a syntax error ends the reading", []byte(`{"extra":1,"user":{"$x":2},"id":"x" "y"}`), []want{
			{ReasonMalformedJSON, "not valid JSON"},
			{ReasonUnknownField, `"extra"`},
			{ReasonForbiddenKey, "user: a key starts with '$'"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := testDecoder().Decode(tt.in)
			var re *RejectError
			if !errors.As(err, &re) {
				t.Fatalf("not a RejectError: %v", err)
			}
			// Object members come in any order from json.Marshal (sorted
			// keys); compare as sets after the primary.
			if re.Reason != tt.want[0].reason || !strings.Contains(re.Detail, tt.want[0].detail) {
				t.Errorf("primary = %s: %s, want %s: …%s…", re.Reason, re.Detail, tt.want[0].reason, tt.want[0].detail)
			}
			if len(re.Problems) != len(tt.want) {
				t.Fatalf("%d problems, want %d: %v", len(re.Problems), len(tt.want), re.Problems)
			}
			if re.Problems[0].Reason != re.Reason || re.Problems[0].Detail != re.Detail {
				t.Errorf("Problems[0] is not the primary: %v", re.Problems)
			}
			msg := err.Error()
			for _, w := range tt.want {
				found := false
				for _, p := range re.Problems {
					found = found || (p.Reason == w.reason && strings.Contains(p.Detail, w.detail))
				}
				if !found {
					t.Errorf("no problem %s: …%s… in %v", w.reason, w.detail, re.Problems)
				}
				if !strings.Contains(msg, string(w.reason)+": ") || !strings.Contains(msg, w.detail) {
					t.Errorf("error message lacks %s: …%s…: %s", w.reason, w.detail, msg)
				}
			}
		})
	}
}

func TestRejectionListIsBounded(t *testing.T) {
	changes := map[string]any{}
	for i := range MaxProblems + 14 {
		changes[fmt.Sprintf("extra%02d", i)] = i
	}
	_, err := testDecoder().Decode(eventWith(t, changes))
	var re *RejectError
	if !errors.As(err, &re) {
		t.Fatalf("not a RejectError: %v", err)
	}
	if len(re.Problems) != MaxProblems || re.Omitted != 14 {
		t.Fatalf("%d problems listed, %d omitted; want %d and 14", len(re.Problems), re.Omitted, MaxProblems)
	}
	if !strings.HasSuffix(err.Error(), "; and 14 more") {
		t.Errorf("message does not count the rest: %s", err)
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	ev := NewAuthEvent("UPDATE", "u\x00", "Bad")
	ev.Time = time.Time{}
	err := Decoder{}.Validate(ev)
	var re *RejectError
	if !errors.As(err, &re) {
		t.Fatalf("not a RejectError: %v", err)
	}
	got := map[Reason]bool{}
	for _, p := range re.Problems {
		got[p.Reason] = true
	}
	for _, r := range []Reason{ReasonUnknownOperation, ReasonInvalidProvider, ReasonInvalidUserID, ReasonMissingField} {
		if !got[r] {
			t.Errorf("missing %s in %v", r, re.Problems)
		}
	}
	if re.Reason != ReasonMissingField {
		t.Errorf("primary = %s, want missing_field (the most important)", re.Reason)
	}
}

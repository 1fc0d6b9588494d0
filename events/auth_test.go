package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// testNow is the decoder's clock in these tests; event times lie before it.
var testNow = time.Date(2024, 5, 1, 13, 0, 0, 0, time.UTC)

func testDecoder() Decoder { return Decoder{Now: func() time.Time { return testNow }} }

const validEvent = `{"schemaVersion":1,"id":"evt-1","operationType":"LOGIN","providers":["local-userpass"],` +
	`"user":{"id":"u1","type":"normal","identities":[{"id":"i1","provider_type":"local-userpass"}],` +
	`"data":{"email":"a@example.com","tags":["x",{"k":1}]}},"time":"2024-05-01T12:00:00Z"}`

// eventWith returns validEvent with top-level (or user-level, for keys
// "user.x") fields replaced; a nil value removes the field.
func eventWith(t testing.TB, changes map[string]any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(validEvent), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range changes {
		target, key := m, k
		if rest, ok := strings.CutPrefix(k, "user."); ok {
			target, key = m["user"].(map[string]any), rest
		}
		if v == nil {
			delete(target, key)
		} else {
			target[key] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// raw is a JSON literal for eventWith, e.g. raw("null").
type raw string

func (r raw) MarshalJSON() ([]byte, error) { return []byte(r), nil }

// nest returns JSON with depth nested objects: {"a":{"a":...1...}}.
func nest(depth int, open, close string) string {
	return strings.Repeat(open, depth) + "1" + strings.Repeat(close, depth)
}

// withSize pads user.data so that the encoded event is exactly n bytes.
func withSize(t testing.TB, n int) []byte {
	t.Helper()
	b := eventWith(t, map[string]any{"user.data": map[string]any{"pad": ""}})
	pad := n - len(b)
	if pad < 0 {
		t.Fatalf("base event already %d bytes", len(b))
	}
	return eventWith(t, map[string]any{"user.data": map[string]any{"pad": strings.Repeat("x", pad)}})
}

// rejectCase is an event the decoder refuses, with its reason.
type rejectCase struct {
	name string
	in   []byte
	want Reason
}

// rejectCases are the events TestDecodeRejects refuses (and the schema
// test compares with events/schema).
func rejectCases(t testing.TB) []rejectCase {
	base := strings.TrimSuffix(validEvent, "}")
	providers := make([]string, MaxProviders+1)
	for i := range providers {
		providers[i] = fmt.Sprintf("p%d", i)
	}
	return []rejectCase{
		// Not JSON, or not one object.
		{"malformed", []byte(`{"schemaVersion":1,`), ReasonMalformedJSON},
		{"not json", []byte(`hello`), ReasonMalformedJSON},
		{"trailing comma", []byte(`{"schemaVersion":1,}`), ReasonMalformedJSON},
		{"single quotes", []byte(`{'schemaVersion':1}`), ReasonMalformedJSON},
		{"empty", nil, ReasonMalformedJSON},
		{"whitespace only", []byte(" \n\t"), ReasonMalformedJSON},
		{"array", []byte(`[` + validEvent + `]`), ReasonMalformedJSON},
		{"string", []byte(`"event"`), ReasonMalformedJSON},
		{"number", []byte(`1`), ReasonMalformedJSON},
		{"null", []byte(`null`), ReasonMalformedJSON},
		{"trailing object", []byte(validEvent + `{}`), ReasonMalformedJSON},
		{"trailing event", []byte(validEvent + "\n" + validEvent), ReasonMalformedJSON},
		{"trailing garbage", []byte(validEvent + ` x`), ReasonMalformedJSON},
		{"trailing bracket", []byte(validEvent + `]`), ReasonMalformedJSON},
		{"raw non-UTF-8 byte", []byte(strings.Replace(validEvent, `"u1"`, "\"u\xff1\"", 1)), ReasonMalformedJSON},
		{"wrong type schemaVersion", eventWith(t, map[string]any{"schemaVersion": "1"}), ReasonMalformedJSON},
		{"fractional schemaVersion", eventWith(t, map[string]any{"schemaVersion": 1.5}), ReasonMalformedJSON},
		{"wrong type providers", eventWith(t, map[string]any{"providers": "local-userpass"}), ReasonMalformedJSON},
		{"wrong type user", eventWith(t, map[string]any{"user": "u1"}), ReasonMalformedJSON},
		{"wrong type user id", eventWith(t, map[string]any{"user.id": 42}), ReasonMalformedJSON},
		{"wrong type time", eventWith(t, map[string]any{"time": 1714564800}), ReasonMalformedJSON},
		{"duplicate top-level key", []byte(base + `,"id":"evt-2"}`), ReasonMalformedJSON},
		{"duplicate user", []byte(base + `,"user":{"id":"u2"}}`), ReasonMalformedJSON},
		{"duplicate key in user.data", eventWith(t, map[string]any{"user.data": raw(`{"a":1,"a":2}`)}), ReasonMalformedJSON},

		// Size and depth.
		{"oversize", withSize(t, MaxEventBytes+1), ReasonTooLarge},
		{"far oversize", []byte(`{"x":"` + strings.Repeat("x", 10*MaxEventBytes) + `"}`), ReasonTooLarge},
		{"too deep objects", eventWith(t, map[string]any{"user.data": raw(nest(MaxDepth-1, `{"a":`, `}`))}), ReasonTooDeep},
		{"too deep arrays", eventWith(t, map[string]any{"user.data": raw(`{"a":` + nest(MaxDepth-2, `[`, `]`) + `}`)}), ReasonTooDeep},
		{"very deep", []byte(nest(100000, `[`, `]`)), ReasonTooLarge},
		{"deep but small", eventWith(t, map[string]any{"user.data": raw(`{"a":` + nest(1000, `[`, `]`) + `}`)}), ReasonTooDeep},

		// Unknown and misspelled fields.
		{"unknown top-level field", eventWith(t, map[string]any{"extra": 1}), ReasonUnknownField},
		{"unknown user field", eventWith(t, map[string]any{"user.email": "a@example.com"}), ReasonUnknownField},
		{"unknown identity field", eventWith(t, map[string]any{"user.identities": raw(`[{"id":"i1","secret":"x"}]`)}), ReasonUnknownField},
		{"field in other case", []byte(base + `,"ID":"evt-2"}`), ReasonUnknownField},
		{"user in other case", []byte(strings.Replace(validEvent, `"user"`, `"User"`, 1)), ReasonUnknownField},
		{"user id in other case", eventWith(t, map[string]any{"user.id": nil, "user.Id": "u1"}), ReasonUnknownField},

		// Keys MongoDB would interpret, at any depth.
		{"$ top-level key", eventWith(t, map[string]any{"$set": raw(`{"admin":true}`)}), ReasonForbiddenKey},
		{"dotted top-level key", eventWith(t, map[string]any{"user.id.x": 1}), ReasonForbiddenKey},
		{"$ key in user", eventWith(t, map[string]any{"user.$where": "1"}), ReasonForbiddenKey},
		{"$ key in user.data", eventWith(t, map[string]any{"user.data": raw(`{"$gt":""}`)}), ReasonForbiddenKey},
		{"dotted key in user.data", eventWith(t, map[string]any{"user.data": raw(`{"profile.admin":true}`)}), ReasonForbiddenKey},
		{"$ key deep in user.data", eventWith(t, map[string]any{"user.data": raw(`{"a":{"b":{"$inc":1}}}`)}), ReasonForbiddenKey},
		{"$ key in array in user.data", eventWith(t, map[string]any{"user.data": raw(`{"a":[1,"x",{"$x":1}]}`)}), ReasonForbiddenKey},
		{"dotted key in nested arrays", eventWith(t, map[string]any{"user.data": raw(`{"a":[[{"ok":1}],[{"x.y":1}]]}`)}), ReasonForbiddenKey},
		{"$ key in identity", eventWith(t, map[string]any{"user.identities": raw(`[{"$id":"i1"}]`)}), ReasonForbiddenKey},
		{"escaped $ key", eventWith(t, map[string]any{"user.data": raw(`{"\u0024set":1}`)}), ReasonForbiddenKey},
		{"escaped dot key", eventWith(t, map[string]any{"user.data": raw(`{"a\u002eb":1}`)}), ReasonForbiddenKey},
		{"NUL in key", eventWith(t, map[string]any{"user.data": raw(`{"a\u0000b":1}`)}), ReasonForbiddenKey},
		{"control char in key", eventWith(t, map[string]any{"user.data": raw(`{"a\nb":1}`)}), ReasonForbiddenKey},
		{"forbidden key after long value", eventWith(t, map[string]any{"user.data": raw(`{"a":"$x.y","b":{"c":[{}]},"$d":1}`)}), ReasonForbiddenKey},

		// Schema version.
		{"unsupported schema version", eventWith(t, map[string]any{"schemaVersion": 2}), ReasonUnsupportedVersion},
		{"negative schema version", eventWith(t, map[string]any{"schemaVersion": -1}), ReasonUnsupportedVersion},
		{"zero schema version", eventWith(t, map[string]any{"schemaVersion": 0}), ReasonUnsupportedVersion},

		// Event id.
		{"missing event id", eventWith(t, map[string]any{"id": nil}), ReasonMissingField},
		{"empty event id", eventWith(t, map[string]any{"id": ""}), ReasonMissingField},
		{"event id with space", eventWith(t, map[string]any{"id": "evt 1"}), ReasonInvalidEventID},
		{"event id with slash", eventWith(t, map[string]any{"id": "evt/1"}), ReasonInvalidEventID},
		{"event id starting with dash", eventWith(t, map[string]any{"id": "-evt"}), ReasonInvalidEventID},
		{"non-ASCII event id", eventWith(t, map[string]any{"id": "évt"}), ReasonInvalidEventID},
		{"event id with newline", eventWith(t, map[string]any{"id": "evt\n1"}), ReasonInvalidEventID},
		{"long event id", eventWith(t, map[string]any{"id": strings.Repeat("e", MaxEventIDBytes+1)}), ReasonInvalidEventID},

		// Operation.
		{"missing operation", eventWith(t, map[string]any{"operationType": nil}), ReasonMissingField},
		{"empty operation", eventWith(t, map[string]any{"operationType": ""}), ReasonMissingField},
		{"unknown operation", eventWith(t, map[string]any{"operationType": "LOGOUT"}), ReasonUnknownOperation},
		{"lowercase operation", eventWith(t, map[string]any{"operationType": "login"}), ReasonUnknownOperation},

		// Providers.
		{"missing providers", eventWith(t, map[string]any{"providers": nil}), ReasonMissingField},
		{"null providers", eventWith(t, map[string]any{"providers": raw(`null`)}), ReasonMissingField},
		{"empty providers", eventWith(t, map[string]any{"providers": []string{}}), ReasonMissingField},
		{"uppercase provider", eventWith(t, map[string]any{"providers": []string{"Google"}}), ReasonInvalidProvider},
		{"empty provider", eventWith(t, map[string]any{"providers": []string{"local-userpass", ""}}), ReasonInvalidProvider},
		{"provider with dot", eventWith(t, map[string]any{"providers": []string{"oauth2.google"}}), ReasonInvalidProvider},
		{"provider with wildcard", eventWith(t, map[string]any{"providers": []string{"*"}}), ReasonInvalidProvider},
		{"provider starting with dash", eventWith(t, map[string]any{"providers": []string{"-x"}}), ReasonInvalidProvider},
		{"long provider", eventWith(t, map[string]any{"providers": []string{strings.Repeat("p", 65)}}), ReasonInvalidProvider},
		{"too many providers", eventWith(t, map[string]any{"providers": providers}), ReasonInvalidProvider},

		// User type: App Services documents normal, server and system.
		{"unknown user type", eventWith(t, map[string]any{"user.type": "admin"}), ReasonInvalidUserType},
		{"user type in another case", eventWith(t, map[string]any{"user.type": "Normal"}), ReasonInvalidUserType},
		{"empty user type", eventWith(t, map[string]any{"user.type": ""}), ReasonInvalidUserType},

		// User id.
		{"missing user", eventWith(t, map[string]any{"user": nil}), ReasonMissingField},
		{"missing user id", eventWith(t, map[string]any{"user.id": nil}), ReasonMissingField},
		{"empty user id", eventWith(t, map[string]any{"user.id": ""}), ReasonMissingField},
		{"blank user id", eventWith(t, map[string]any{"user.id": " \t "}), ReasonInvalidUserID},
		{"unicode-blank user id", eventWith(t, map[string]any{"user.id": "\u00a0\u2003"}), ReasonInvalidUserID},
		{"NUL in user id", eventWith(t, map[string]any{"user.id": "u\x001"}), ReasonInvalidUserID},
		{"newline in user id", eventWith(t, map[string]any{"user.id": "u1\n"}), ReasonInvalidUserID},
		{"DEL in user id", eventWith(t, map[string]any{"user.id": "u\x7f1"}), ReasonInvalidUserID},
		{"C1 control in user id", eventWith(t, map[string]any{"user.id": "u\u00851"}), ReasonInvalidUserID},
		{"zero-width space in user id", eventWith(t, map[string]any{"user.id": "u\u200b1"}), ReasonInvalidUserID},
		{"bidi override in user id", eventWith(t, map[string]any{"user.id": "u\u202e1"}), ReasonInvalidUserID},
		{"lone surrogate in user id", eventWith(t, map[string]any{"user.id": raw(`"u\ud8001"`)}), ReasonInvalidUserID},
		{"replacement char in user id", eventWith(t, map[string]any{"user.id": "u\ufffd1"}), ReasonInvalidUserID},
		{"too long user id", eventWith(t, map[string]any{"user.id": strings.Repeat("u", MaxUserIDBytes+1)}), ReasonInvalidUserID},
		{"too long multibyte user id", eventWith(t, map[string]any{"user.id": strings.Repeat("é", MaxUserIDBytes/2+1)}), ReasonInvalidUserID},

		// Time.
		{"missing time", eventWith(t, map[string]any{"time": nil}), ReasonMissingField},
		{"null time", eventWith(t, map[string]any{"time": raw(`null`)}), ReasonMissingField},
		{"time not RFC 3339", eventWith(t, map[string]any{"time": "yesterday"}), ReasonInvalidTime},
		{"date only", eventWith(t, map[string]any{"time": "2024-05-01"}), ReasonInvalidTime},
		{"time without zone", eventWith(t, map[string]any{"time": "2024-05-01T12:00:00"}), ReasonInvalidTime},
		{"time with space", eventWith(t, map[string]any{"time": "2024-05-01 12:00:00Z"}), ReasonInvalidTime},
		{"empty time", eventWith(t, map[string]any{"time": ""}), ReasonInvalidTime},
		{"time before 2000", eventWith(t, map[string]any{"time": "1999-12-31T23:59:59Z"}), ReasonInvalidTime},
		{"far-future time", eventWith(t, map[string]any{"time": "2100-01-01T00:00:00Z"}), ReasonInvalidTime},
		{"time just beyond the skew", eventWith(t, map[string]any{"time": testNow.Add(DefaultMaxClockSkew + time.Second).Format(time.RFC3339)}), ReasonInvalidTime},
		{"year 10000", eventWith(t, map[string]any{"time": "10000-01-01T00:00:00Z"}), ReasonInvalidTime},
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, tt := range rejectCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := testDecoder().Decode(tt.in)
			if err == nil {
				t.Fatalf("accepted: %+v", ev)
			}
			if got := ReasonOf(err); got != tt.want {
				t.Fatalf("reason = %q, want %q (error: %v)", got, tt.want, err)
			}
			if !errors.Is(err, ErrInvalidEvent) {
				t.Errorf("error does not match ErrInvalidEvent: %v", err)
			}
			if !reflect.DeepEqual(ev, AuthEvent{}) {
				t.Errorf("a rejected decode returned a partial event: %+v", ev)
			}
		})
	}
}

// Rejections never echo values, which may be secrets or personal data.
func TestRejectDetailHasNoValues(t *testing.T) {
	const secret = "s3cr3t-value"
	for _, in := range [][]byte{
		eventWith(t, map[string]any{"user.id": secret + "\x01"}),
		eventWith(t, map[string]any{"user.id": strings.Repeat(secret, 30)}),
		eventWith(t, map[string]any{"id": secret + " x"}),
		eventWith(t, map[string]any{"providers": []string{secret + "X"}}),
		eventWith(t, map[string]any{"time": secret}),
		eventWith(t, map[string]any{"operationType": secret}),
		eventWith(t, map[string]any{"user.data": map[string]any{"a": secret, "$b": 1}}),
	} {
		_, err := testDecoder().Decode(in)
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("error %v echoes a value", err)
		}
	}
}

// acceptCase is an event the decoder takes, and what it decodes to.
type acceptCase struct {
	name string
	in   []byte
	want AuthEvent
}

// acceptCases are the events TestDecodeAccepts takes (and the schema
// test compares with events/schema).
func acceptCases(t testing.TB) []acceptCase {
	base := AuthEvent{
		SchemaVersion: 1, ID: "evt-1", OperationType: OperationLogin, Providers: []string{"local-userpass"},
		User: User{ID: "u1", Type: "normal", Identities: []Identity{{ID: "i1", ProviderType: "local-userpass"}},
			Data: map[string]any{"email": "a@example.com", "tags": []any{"x", map[string]any{"k": 1.0}}}},
		Time: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC),
	}
	with := func(f func(*AuthEvent)) AuthEvent {
		ev := base
		ev.User.Data = map[string]any{"email": "a@example.com", "tags": []any{"x", map[string]any{"k": 1.0}}}
		f(&ev)
		return ev
	}
	providers := make([]string, MaxProviders)
	for i := range providers {
		providers[i] = fmt.Sprintf("p%d", i)
	}
	return []acceptCase{
		{"reference event", []byte(validEvent), base},
		{"no schema version means 1", eventWith(t, map[string]any{"schemaVersion": nil}), base},
		{"null schema version means 1", eventWith(t, map[string]any{"schemaVersion": raw("null")}), base},
		{"pretty-printed with trailing newline", []byte(strings.ReplaceAll(validEvent, ",", ",\n  ") + "\n"), base},
		{"CREATE", eventWith(t, map[string]any{"operationType": "CREATE"}), with(func(e *AuthEvent) { e.OperationType = OperationCreate })},
		{"DELETE", eventWith(t, map[string]any{"operationType": "DELETE"}), with(func(e *AuthEvent) { e.OperationType = OperationDelete })},
		{"minimal user", eventWith(t, map[string]any{"user": map[string]any{"id": "u1"}}), with(func(e *AuthEvent) { e.User = User{ID: "u1"} })},
		{"user id with dots", eventWith(t, map[string]any{"user.id": "a.b.c"}), with(func(e *AuthEvent) { e.User.ID = "a.b.c" })},
		{"user id star", eventWith(t, map[string]any{"user.id": "*"}), with(func(e *AuthEvent) { e.User.ID = "*" })},
		{"user id gt", eventWith(t, map[string]any{"user.id": ">"}), with(func(e *AuthEvent) { e.User.ID = ">" })},
		{"user id with spaces", eventWith(t, map[string]any{"user.id": " a b "}), with(func(e *AuthEvent) { e.User.ID = " a b " })},
		{"non-ASCII user id", eventWith(t, map[string]any{"user.id": "ユーザー😀é"}), with(func(e *AuthEvent) { e.User.ID = "ユーザー😀é" })},
		{"user id like an operator", eventWith(t, map[string]any{"user.id": "$gt"}), with(func(e *AuthEvent) { e.User.ID = "$gt" })},
		{"email user id", eventWith(t, map[string]any{"user.id": "a+b@example.com"}), with(func(e *AuthEvent) { e.User.ID = "a+b@example.com" })},
		{"longest user id", eventWith(t, map[string]any{"user.id": strings.Repeat("u", MaxUserIDBytes)}),
			with(func(e *AuthEvent) { e.User.ID = strings.Repeat("u", MaxUserIDBytes) })},
		{"event id with . : _", eventWith(t, map[string]any{"id": "svc.auth:2024_05-01.1"}), with(func(e *AuthEvent) { e.ID = "svc.auth:2024_05-01.1" })},
		{"longest event id", eventWith(t, map[string]any{"id": strings.Repeat("e", MaxEventIDBytes)}),
			with(func(e *AuthEvent) { e.ID = strings.Repeat("e", MaxEventIDBytes) })},
		{"most providers", eventWith(t, map[string]any{"providers": providers}), with(func(e *AuthEvent) { e.Providers = providers })},
		{"time with offset and fraction", eventWith(t, map[string]any{"time": "2024-05-01T14:00:00.123456789+02:00"}),
			with(func(e *AuthEvent) {
				e.Time = time.Date(2024, 5, 1, 14, 0, 0, 123456789, time.FixedZone("", 2*3600))
			})},
		{"time within the skew", eventWith(t, map[string]any{"time": "2024-05-01T13:04:00Z"}),
			with(func(e *AuthEvent) { e.Time = time.Date(2024, 5, 1, 13, 4, 0, 0, time.UTC) })},
		{"values may contain $ and dots", eventWith(t, map[string]any{"user.data": map[string]any{"q": "$set.x"}}),
			with(func(e *AuthEvent) { e.User.Data = map[string]any{"q": "$set.x"} })},
		{"deepest nesting", eventWith(t, map[string]any{"user.data": raw(nest(MaxDepth-2, `{"a":`, `}`))}),
			with(func(e *AuthEvent) {
				var d map[string]any
				if err := json.Unmarshal([]byte(nest(MaxDepth-2, `{"a":`, `}`)), &d); err != nil {
					t.Fatal(err)
				}
				e.User.Data = d
			})},
	}
}

func TestDecodeAccepts(t *testing.T) {
	for _, tt := range acceptCases(t) {
		t.Run(tt.name, func(t *testing.T) {
			got, err := testDecoder().Decode(tt.in)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !eventsEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	t.Run("exactly the size limit", func(t *testing.T) {
		in := withSize(t, MaxEventBytes)
		if len(in) != MaxEventBytes {
			t.Fatalf("test input is %d bytes", len(in))
		}
		if _, err := testDecoder().Decode(in); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDecoderClockSkew(t *testing.T) {
	in := eventWith(t, map[string]any{"time": testNow.Add(30 * time.Minute).Format(time.RFC3339)})
	if _, err := testDecoder().Decode(in); ReasonOf(err) != ReasonInvalidTime {
		t.Fatalf("default skew: %v", err)
	}
	d := testDecoder()
	d.MaxClockSkew = time.Hour
	if _, err := d.Decode(in); err != nil {
		t.Fatalf("1h skew: %v", err)
	}
	// The zero Decoder uses the real clock.
	now := NewAuthEvent(OperationLogin, "u1", "local-userpass")
	b, err := json.Marshal(now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(b); err != nil {
		t.Fatalf("Decode(now): %v", err)
	}
}

func TestValidate(t *testing.T) {
	ev := NewAuthEvent(OperationCreate, "ü.*>", "local-userpass")
	if !ValidEventID(ev.ID) || len(ev.ID) != 32 {
		t.Errorf("NewEventID = %q", ev.ID)
	}
	if other := NewEventID(); other == ev.ID {
		t.Error("NewEventID repeats")
	}
	d := Decoder{}
	if err := d.Validate(ev); err != nil {
		t.Fatalf("Validate(NewAuthEvent): %v", err)
	}
	unversioned := ev
	unversioned.SchemaVersion = 0 // not given: 1
	if err := d.Validate(unversioned); err != nil {
		t.Fatalf("Validate without SchemaVersion: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*AuthEvent)
		want   Reason
	}{
		{"no providers", func(e *AuthEvent) { e.Providers = nil }, ReasonMissingField},
		{"non-UTF-8 user id", func(e *AuthEvent) { e.User.ID = "u\xff" }, ReasonInvalidUserID},
		{"zero time", func(e *AuthEvent) { e.Time = time.Time{} }, ReasonMissingField},
		{"future time", func(e *AuthEvent) { e.Time = time.Now().Add(time.Hour) }, ReasonInvalidTime},
		{"unknown operation", func(e *AuthEvent) { e.OperationType = "UPDATE" }, ReasonUnknownOperation},
		{"schema version", func(e *AuthEvent) { e.SchemaVersion = 2 }, ReasonUnsupportedVersion},
		{"no id", func(e *AuthEvent) { e.ID = "" }, ReasonMissingField},
		{"unknown user type", func(e *AuthEvent) { e.User.Type = "robot" }, ReasonInvalidUserType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := ev
			tt.mutate(&e)
			if got := ReasonOf(d.Validate(e)); got != tt.want {
				t.Fatalf("reason = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestValidateUserID(t *testing.T) {
	for _, id := range []string{"u", "a.b", "*", ">", "a b", "é", strings.Repeat("x", MaxUserIDBytes)} {
		if err := ValidateUserID(id); err != nil {
			t.Errorf("ValidateUserID(%q): %v", id, err)
		}
	}
	for id, want := range map[string]Reason{
		"":                                    ReasonMissingField,
		" ":                                   ReasonInvalidUserID,
		"a\tb":                                ReasonInvalidUserID,
		"a\xffb":                              ReasonInvalidUserID,
		"\ufeffa":                             ReasonInvalidUserID,
		strings.Repeat("x", MaxUserIDBytes+1): ReasonInvalidUserID,
	} {
		if got := ReasonOf(ValidateUserID(id)); got != want {
			t.Errorf("ValidateUserID(%q) reason = %q, want %q", id, got, want)
		}
	}
}

func TestReasonOf(t *testing.T) {
	err := &RejectError{Reason: ReasonTooDeep, Detail: "x"}
	wrapped := fmt.Errorf("consume: %w", err)
	if ReasonOf(wrapped) != ReasonTooDeep || !errors.Is(wrapped, ErrInvalidEvent) {
		t.Errorf("wrapped rejection lost: %v", wrapped)
	}
	if ReasonOf(nil) != "" || ReasonOf(errors.New("other")) != "" || errors.Is(errors.New("other"), ErrInvalidEvent) {
		t.Error("non-rejections look like rejections")
	}
	if got := err.Error(); got != "invalid auth event: too_deep: x" {
		t.Errorf("Error() = %q", got)
	}
}

func TestOperationValid(t *testing.T) {
	for _, op := range Operations() {
		if !op.Valid() {
			t.Errorf("%s not valid", op)
		}
	}
	for _, op := range []Operation{"", "login", "UPDATE"} {
		if op.Valid() {
			t.Errorf("%q valid", op)
		}
	}
}

// eventsEqual compares events as the wire sees them: times by instant and
// offset, and nil the same as empty for optional lists and maps (they are
// omitted when empty).
func eventsEqual(a, b AuthEvent) bool {
	if !a.Time.Equal(b.Time) {
		return false
	}
	_, ao := a.Time.Zone()
	_, bo := b.Time.Zone()
	if ao != bo {
		return false
	}
	a.Time, b.Time = time.Time{}, time.Time{}
	for _, e := range []*AuthEvent{&a, &b} {
		if len(e.User.Identities) == 0 {
			e.User.Identities = nil
		}
		if len(e.User.Data) == 0 {
			e.User.Data = nil
		}
	}
	return reflect.DeepEqual(a, b)
}

// The hand-written matchers accept exactly what the documented patterns
// accept: every string of up to three characters over an alphabet of every
// class the patterns distinguish, and edge lengths.
func TestPatternsMatchTheirRegexps(t *testing.T) {
	providerRE := regexp.MustCompile(ProviderPattern)
	eventIDRE := regexp.MustCompile(EventIDPattern)
	alphabet := []string{"a", "z", "A", "Z", "0", "9", "-", ".", "_", ":", " ", "\n", "/", "é", "\x00", "\xff", "`", "{", "@", "["}
	inputs := []string{""}
	for _, a := range alphabet {
		inputs = append(inputs, a)
		for _, b := range alphabet {
			inputs = append(inputs, a+b)
			for _, c := range alphabet {
				inputs = append(inputs, a+b+c)
			}
		}
	}
	for _, n := range []int{63, 64, 65, MaxEventIDBytes - 1, MaxEventIDBytes, MaxEventIDBytes + 1} {
		inputs = append(inputs, strings.Repeat("a", n), "a"+strings.Repeat("-", n-1), strings.Repeat("A", n))
	}
	for _, s := range inputs {
		if got, want := ValidProvider(s), providerRE.MatchString(s); got != want {
			t.Errorf("ValidProvider(%q) = %v, pattern says %v", s, got, want)
		}
		if got, want := ValidEventID(s), len(s) <= MaxEventIDBytes && eventIDRE.MatchString(s); got != want {
			t.Errorf("ValidEventID(%q) = %v, pattern says %v", s, got, want)
		}
	}
}

// Decoders share pooled parsers: decodes running at once, and one after
// another, never see anything of each other's events.
func TestDecodeConcurrentAndReused(t *testing.T) {
	inputs := make([][]byte, 8)
	for i := range inputs {
		providers := []string{"local-userpass"}
		for j := 0; j < i; j++ {
			providers = append(providers, fmt.Sprintf("p%d", j))
		}
		inputs[i] = eventWith(t, map[string]any{"id": fmt.Sprintf("evt-%d", i), "user.id": fmt.Sprintf("user-%d", i),
			"providers": providers, "user.identities": raw(`[` + strings.Repeat(`{"id":"x","provider_type":"y"},`, i) + `null]`)})
		if i%2 == 1 {
			inputs[i] = append(inputs[i][:len(inputs[i]):len(inputs[i])], ' ', 'x') // rejected
		}
	}
	check := func(i int) error {
		ev, err := testDecoder().Decode(inputs[i])
		if i%2 == 1 {
			if err == nil {
				return fmt.Errorf("input %d accepted", i)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("input %d: %v", i, err)
		}
		if ev.ID != fmt.Sprintf("evt-%d", i) || ev.User.ID != fmt.Sprintf("user-%d", i) || len(ev.Providers) != i+1 || len(ev.User.Identities) != i+1 {
			return fmt.Errorf("input %d decoded as %+v", i, ev)
		}
		return nil
	}
	errs := make(chan error, 8*200)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 200 {
				if err := check((w + n) % len(inputs)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

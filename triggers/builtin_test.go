package triggers

import (
	"slices"
	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
)

func mustSet(t *testing.T, cfg Config) *Set {
	t.Helper()
	s, err := NewSet(cfg)
	if err != nil {
		t.Fatalf("NewSet: %v", err)
	}
	return s
}

func mustParse(t *testing.T, doc string) Config {
	t.Helper()
	cfg, err := ParseConfig([]byte(doc))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	return cfg
}

func TestNewSetNames(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"defaults", "", []string{NameLastLogin, NameCreateOnSignup, NameDeleteOnUserDelete}},
		{"all built-ins off", `
lastLogin: {enabled: false}
createOnSignup: {enabled: false}
deleteOnUserDelete: {mode: "off"}
`, nil},
		{"explicit true", `
lastLogin: {enabled: true}
createOnSignup: {enabled: true}
deleteOnUserDelete: {mode: delete}
`, []string{NameLastLogin, NameCreateOnSignup, NameDeleteOnUserDelete}},
		{"null enabled means default", "lastLogin: {enabled: null}\ncreateOnSignup: {enabled: false}\n",
			[]string{NameLastLogin, NameDeleteOnUserDelete}},
		{"rules after built-ins", `
lastLogin: {enabled: false}
rules:
  - {name: b, on: [LOGIN], set: {x: {from: userId}}}
  - {name: a, on: [LOGIN], set: {y: {from: userId}}}
`, []string{NameCreateOnSignup, NameDeleteOnUserDelete, "rule:b", "rule:a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSet(t, mustParse(t, tt.doc))
			if got := s.Names(); !slices.Equal(got, tt.want) {
				t.Errorf("Names = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestZeroConfigIsDefault(t *testing.T) {
	s := mustSet(t, Config{})
	if got, want := s.Names(), []string{NameLastLogin, NameCreateOnSignup, NameDeleteOnUserDelete}; !slices.Equal(got, want) {
		t.Fatalf("Names = %v, want %v", got, want)
	}
	off := false
	s = mustSet(t, Config{LastLogin: LastLoginConfig{Enabled: &off}, DeleteOnUserDelete: DeleteOnUserDeleteConfig{Mode: DeleteModeOff}})
	if got, want := s.Names(), []string{NameCreateOnSignup}; !slices.Equal(got, want) {
		t.Fatalf("Names = %v, want %v", got, want)
	}
}

func TestBuiltins(t *testing.T) {
	local := testTime.In(time.FixedZone("CEST", 2*3600)) // must be written as UTC
	tests := []struct {
		name string
		doc  string
		ev   events.AuthEvent
		want []Write
	}{
		{
			name: "lastLogin default",
			ev:   withTime(event(events.OperationLogin, "u1"), local),
			want: []Write{{UserID: "u1", Max: map[string]any{"lastLogin": testTime}}},
		},
		{
			name: "lastLogin custom field and upsert",
			doc:  "lastLogin: {field: seenAt, upsert: true}",
			ev:   event(events.OperationLogin, "u1"),
			want: []Write{{UserID: "u1", Upsert: true, Max: map[string]any{"seenAt": testTime}}},
		},
		{
			name: "lastLogin provider filter matches",
			doc:  "lastLogin: {providers: [oauth2-google]}",
			ev:   event(events.OperationLogin, "u1", "local-userpass", "oauth2-google"),
			want: []Write{{UserID: "u1", Max: map[string]any{"lastLogin": testTime}}},
		},
		{
			name: "lastLogin provider filter excludes",
			doc:  "lastLogin: {providers: [oauth2-google]}",
			ev:   event(events.OperationLogin, "u1", "local-userpass"),
		},
		{
			name: "lastLogin disabled",
			doc:  "lastLogin: {enabled: false}",
			ev:   event(events.OperationLogin, "u1"),
		},
		{
			name: "createOnSignup default",
			ev:   event(events.OperationCreate, "u1"),
			want: []Write{{UserID: "u1", Upsert: true, SetOnInsert: map[string]any{"createdAt": testTime}}},
		},
		{
			name: "createOnSignup with defaults",
			doc: `
createOnSignup:
  createdAtField: since
  defaults: {plan: free, credits: 10, ratio: 0.5, verified: false, tier: null}
`,
			ev: event(events.OperationCreate, "u1"),
			want: []Write{{UserID: "u1", Upsert: true, SetOnInsert: map[string]any{
				"since": testTime, "plan": "free", "credits": int64(10), "ratio": 0.5, "verified": false, "tier": nil,
			}}},
		},
		{
			name: "createOnSignup provider filter excludes",
			doc:  "createOnSignup: {providers: [custom-token]}",
			ev:   event(events.OperationCreate, "u1", "local-userpass"),
		},
		{
			name: "createOnSignup disabled",
			doc:  "createOnSignup: {enabled: false}",
			ev:   event(events.OperationCreate, "u1"),
		},
		{
			name: "deleteOnUserDelete default",
			ev:   event(events.OperationDelete, "u1"),
			want: []Write{{UserID: "u1", Delete: true}},
		},
		{
			name: "deleteOnUserDelete provider filter matches",
			doc:  "deleteOnUserDelete: {providers: [local-userpass]}",
			ev:   event(events.OperationDelete, "u1"),
			want: []Write{{UserID: "u1", Delete: true}},
		},
		{
			name: "deleteOnUserDelete provider filter excludes",
			doc:  "deleteOnUserDelete: {providers: [oauth2-apple]}",
			ev:   event(events.OperationDelete, "u1"),
		},
		{
			name: "deleteOnUserDelete off",
			doc:  "deleteOnUserDelete: {mode: \"off\"}",
			ev:   event(events.OperationDelete, "u1"),
		},
		{
			name: "user id with dots, wildcards and spaces is written as is",
			ev:   event(events.OperationDelete, "a.b *>é"),
			want: []Write{{UserID: "a.b *>é", Delete: true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSet(t, mustParse(t, tt.doc))
			got, err := s.Decide(tt.ev)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			assertWrites(t, got, tt.want)
		})
	}
}

func withTime(ev events.AuthEvent, t time.Time) events.AuthEvent {
	ev.Time = t
	return ev
}

func TestBuiltinDefaultsNotShared(t *testing.T) {
	s := mustSet(t, mustParse(t, "createOnSignup: {defaults: {plan: free}}"))
	first, err := s.Decide(event(events.OperationCreate, "u1"))
	if err != nil {
		t.Fatal(err)
	}
	first[0].SetOnInsert["plan"] = "changed by a caller"
	second, err := s.Decide(event(events.OperationCreate, "u2"))
	if err != nil {
		t.Fatal(err)
	}
	if got := second[0].SetOnInsert["plan"]; got != "free" {
		t.Fatalf("defaults leaked between events: plan = %v", got)
	}
}

func TestRuleValueSources(t *testing.T) {
	ev := event(events.OperationLogin, "user.1", "anon-user", "oauth2-google", "local-userpass")
	ev.ID = "evt:42"
	tests := []struct {
		name string
		rule string
		ev   events.AuthEvent
		want []Write
	}{
		{
			name: "eventTime",
			rule: "{name: r, on: [LOGIN], set: {at: {from: eventTime}}}",
			want: []Write{{UserID: "user.1", Set: map[string]any{"at": testTime}}},
		},
		{
			name: "provider without filter is the first provider",
			rule: "{name: r, on: [LOGIN], set: {p: {from: provider}}}",
			want: []Write{{UserID: "user.1", Set: map[string]any{"p": "anon-user"}}},
		},
		{
			name: "provider with filter is the first matching provider",
			rule: "{name: r, on: [LOGIN], providers: [local-userpass, oauth2-google], set: {p: {from: provider}}}",
			want: []Write{{UserID: "user.1", Set: map[string]any{"p": "oauth2-google"}}},
		},
		{
			name: "userId",
			rule: "{name: r, on: [LOGIN], set: {uid: {from: userId}}}",
			want: []Write{{UserID: "user.1", Set: map[string]any{"uid": "user.1"}}},
		},
		{
			name: "eventId",
			rule: "{name: r, on: [LOGIN], set: {last: {from: eventId}}}",
			want: []Write{{UserID: "user.1", Set: map[string]any{"last": "evt:42"}}},
		},
		{
			name: "constants of every kind",
			rule: `{name: r, on: [LOGIN], set: {s: {from: constant, value: "x"}, i: {from: constant, value: 7},
				f: {from: constant, value: 2.5}, b: {from: constant, value: true}, n: {from: constant, value: null},
				q: {from: constant, value: "2024-01-01"}, dollar: {from: constant, value: "$set"}}}`,
			want: []Write{{UserID: "user.1", Set: map[string]any{
				"s": "x", "i": int64(7), "f": 2.5, "b": true, "n": nil, "q": "2024-01-01", "dollar": "$set",
			}}},
		},
		{
			name: "all operators with upsert",
			rule: `{name: r, on: [LOGIN, CREATE], upsert: true, set: {a: {from: userId}}, max: {seen: {from: eventTime}},
				setOnInsert: {first: {from: eventTime}}}`,
			want: []Write{{UserID: "user.1", Upsert: true, Set: map[string]any{"a": "user.1"},
				Max: map[string]any{"seen": testTime}, SetOnInsert: map[string]any{"first": testTime}}},
		},
		{
			name: "rule on another operation",
			rule: "{name: r, on: [CREATE, DELETE], set: {a: {from: userId}}}",
		},
		{
			name: "rule on another provider",
			rule: "{name: r, on: [LOGIN], providers: [custom-function], set: {a: {from: userId}}}",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := "lastLogin: {enabled: false}\nrules:\n  - " + tt.rule + "\n"
			s := mustSet(t, mustParse(t, doc))
			got, err := s.Decide(ev)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			assertWrites(t, got, tt.want)
		})
	}
}

// A set built in Go (not parsed) behaves the same and normalizes constants.
func TestNewSetFromGoConfig(t *testing.T) {
	off := false
	cfg := Config{
		LastLogin:          LastLoginConfig{Enabled: &off},
		CreateOnSignup:     CreateOnSignupConfig{Defaults: map[string]any{"n": uint8(3)}},
		DeleteOnUserDelete: DeleteOnUserDeleteConfig{Mode: DeleteModeOff},
		Rules: []Rule{{
			Name: "plan", On: []events.Operation{events.OperationCreate}, Upsert: true,
			SetOnInsert: map[string]ValueSource{"plan": {From: SourceConstant, Value: "free"}, "tier": {From: SourceConstant}},
		}},
	}
	s := mustSet(t, cfg)
	got, err := s.Decide(event(events.OperationCreate, "u1"))
	if err != nil {
		t.Fatal(err)
	}
	assertWrites(t, got, []Write{
		{UserID: "u1", Upsert: true, SetOnInsert: map[string]any{"createdAt": testTime, "n": int64(3)}},
		{UserID: "u1", Upsert: true, SetOnInsert: map[string]any{"plan": "free", "tier": nil}},
	})
	if cfg.CreateOnSignup.Defaults["n"] != uint8(3) || cfg.CreateOnSignup.Enabled != nil {
		t.Error("NewSet modified the caller's config")
	}
}

// Teams embedding the worker add Go handlers after the configured ones.
func TestRegisterCustomAfterNewSet(t *testing.T) {
	s := mustSet(t, Config{})
	err := s.Register("custom", On(events.OperationLogin), HandlerFunc(func(ev events.AuthEvent) ([]Write, error) {
		return []Write{{UserID: ev.User.ID, Set: map[string]any{"loginCount": 1}}}, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Register(NameLastLogin, On(events.OperationLogin), writes()); err == nil {
		t.Error("a custom handler could take a built-in's name")
	}
	got, err := s.Decide(event(events.OperationLogin, "u1"))
	if err != nil {
		t.Fatal(err)
	}
	assertWrites(t, got, []Write{
		{UserID: "u1", Max: map[string]any{"lastLogin": testTime}},
		{UserID: "u1", Set: map[string]any{"loginCount": 1}},
	})
}

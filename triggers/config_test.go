package triggers

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/customdata-worker/customdata-worker/events"
)

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if c.UserIDField != "" || !c.LastLogin.IsEnabled() || c.LastLogin.Field != "lastLogin" || c.LastLogin.Upsert ||
		!c.CreateOnSignup.IsEnabled() || c.CreateOnSignup.CreatedAtField != "createdAt" ||
		c.DeleteOnUserDelete.Mode != DeleteModeDelete || len(c.Rules) != 0 {
		t.Fatalf("DefaultConfig = %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config invalid: %v", err)
	}
	for _, doc := range []string{"", "\n# only a comment\n", "{}", " {}\n", "---\n"} {
		got, err := ParseConfig([]byte(doc))
		if err != nil {
			t.Fatalf("ParseConfig(%q): %v", doc, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("ParseConfig(%q) = %+v, want defaults", doc, got)
		}
	}
}

func TestParseConfigYAMLAndJSONAgree(t *testing.T) {
	yamlDoc := `
userIdField: uid
lastLogin: {enabled: false, field: seen, providers: [oauth2-google], upsert: true}
createOnSignup: {providers: [local-userpass], createdAtField: born, defaults: {plan: free, n: 3}}
deleteOnUserDelete: {mode: "off", providers: [anon-user]}
rules:
  - name: r1
    on: [LOGIN]
    providers: [oauth2-google]
    upsert: true
    set: {p: {from: provider}}
    max: {t: {from: eventTime}}
    setOnInsert: {c: {from: constant, value: 1.5}, z: {from: constant, value: null}}
`
	jsonDoc := `{
	"userIdField": "uid",
	"lastLogin": {"enabled": false, "field": "seen", "providers": ["oauth2-google"], "upsert": true},
	"createOnSignup": {"providers": ["local-userpass"], "createdAtField": "born", "defaults": {"plan": "free", "n": 3}},
	"deleteOnUserDelete": {"mode": "off", "providers": ["anon-user"]},
	"rules": [{
		"name": "r1", "on": ["LOGIN"], "providers": ["oauth2-google"], "upsert": true,
		"set": {"p": {"from": "provider"}},
		"max": {"t": {"from": "eventTime"}},
		"setOnInsert": {"c": {"from": "constant", "value": 1.5}, "z": {"from": "constant", "value": null}}
	}]
}`
	y, err := ParseConfig([]byte(yamlDoc))
	if err != nil {
		t.Fatalf("YAML: %v", err)
	}
	j, err := ParseConfig([]byte(jsonDoc))
	if err != nil {
		t.Fatalf("JSON: %v", err)
	}
	if !reflect.DeepEqual(y, j) {
		t.Fatalf("YAML and JSON differ:\n%+v\n%+v", y, j)
	}
	if y.LastLogin.IsEnabled() || y.DeleteOnUserDelete.IsEnabled() || !y.CreateOnSignup.IsEnabled() {
		t.Errorf("enabled states wrong: %+v", y)
	}
	if got := y.CreateOnSignup.Defaults["n"]; got != int64(3) {
		t.Errorf("defaults.n = %#v, want int64(3)", got)
	}
	if got := y.Rules[0].SetOnInsert["c"].Value; got != 1.5 {
		t.Errorf("constant = %#v, want 1.5", got)
	}
}

func TestLoadConfig(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("..", "deploy", "triggers.example.yaml"))
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	if len(cfg.Rules) == 0 || len(cfg.CreateOnSignup.Defaults) == 0 {
		t.Errorf("example config does not show rules and defaults: %+v", cfg)
	}
	if _, err := NewSet(cfg); err != nil {
		t.Fatalf("NewSet(example): %v", err)
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("lastLogn: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(bad); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "bad.yaml") {
		t.Errorf("LoadConfig(bad) = %v, want ErrInvalidConfig naming the file", err)
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadConfig(missing) = %v, want os.ErrNotExist", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("#"+strings.Repeat("x", MaxConfigBytes)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(big); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("LoadConfig(big) = %v, want ErrInvalidConfig", err)
	}
}

func TestConfigErrors(t *testing.T) {
	rule := func(body string) string { return "rules:\n  - " + body + "\n" }
	tests := []struct {
		name string
		doc  string
		want []string // substrings of the error
	}{
		// Syntax and strictness.
		{"unknown top-level key", "lastLogn: {}", []string{"lastLogn"}},
		{"unknown nested key", "lastLogin: {feild: x}", []string{"feild"}},
		{"unknown rule key", rule("{name: r, on: [LOGIN], inc: {n: {from: constant, value: 1}}}"), []string{"inc"}},
		{"unknown value source key", rule("{name: r, on: [LOGIN], set: {n: {from: constant, value: 1, op: $inc}}}"), []string{"op"}},
		{"unknown JSON key", `{"lastLogin": {"enabled": true}, "extra": 1}`, []string{"extra"}},
		{"unknown JSON value source key", `{"rules": [{"name": "r", "on": ["LOGIN"], "set": {"a": {"from": "userId", "x": 1}}}]}`, []string{`"x"`}},
		{"duplicate YAML key", "lastLogin: {}\nlastLogin: {}\n", []string{"already defined"}},
		{"two YAML documents", "lastLogin: {}\n---\nrules: []\n", []string{"one document"}},
		{"trailing JSON", `{"lastLogin": {}} {"rules": []}`, []string{"trailing"}},
		{"malformed JSON", `{"lastLogin": `, []string{"JSON"}},
		{"malformed YAML", "lastLogin: [\n", []string{"YAML"}},
		{"wrong type", "lastLogin: {enabled: sometimes}", []string{"sometimes"}},
		{"value source is not a mapping", rule("{name: r, on: [LOGIN], set: {a: eventTime}}"), []string{"mapping"}},

		// Built-ins.
		{"bad userIdField", "userIdField: a.b", []string{"userIdField", "'.'"}},
		{"lastLogin field is the user-id field", "lastLogin: {field: userId}", []string{"lastLogin.field", "user-id field"}},
		{"lastLogin field with $", "lastLogin: {field: $set}", []string{"lastLogin.field", "'$'"}},
		{"lastLogin field dotted", "lastLogin: {field: a.b}", []string{"lastLogin.field", "'.'"}},
		{"lastLogin field _id", "lastLogin: {field: _id}", []string{"lastLogin.field", "_id"}},
		{"lastLogin bad provider", "lastLogin: {providers: [Google]}", []string{"lastLogin.providers[0]", "Google"}},
		{"createdAtField with $", "createOnSignup: {createdAtField: $where}", []string{"createdAtField", "'$'"}},
		{"createdAtField is custom user-id field", "userIdField: uid\ncreateOnSignup: {createdAtField: uid}", []string{"createdAtField", "user-id field"}},
		{"defaults key with $", "createOnSignup: {defaults: {$set: 1}}", []string{"defaults", "$set", "'$'"}},
		{"defaults key dotted", "createOnSignup: {defaults: {a.b: 1}}", []string{"defaults", "a.b", "'.'"}},
		{"defaults key is user-id field", "createOnSignup: {defaults: {userId: x}}", []string{"defaults", "user-id field"}},
		{"defaults key is createdAtField", "createOnSignup: {defaults: {createdAt: x}}", []string{"defaults.createdAt", "createdAtField"}},
		{"defaults object value", "createOnSignup: {defaults: {a: {$gt: 1}}}", []string{"defaults.a", "object"}},
		{"defaults list value", "createOnSignup: {defaults: {a: [1]}}", []string{"defaults.a", "list"}},
		{"defaults timestamp value", "createOnSignup: {defaults: {a: 2024-01-01}}", []string{"defaults.a", "timestamp"}},
		{"defaults huge number", "createOnSignup: {defaults: {a: 18446744073709551615}}", []string{"defaults.a", "out of range"}},
		{"defaults infinity", "createOnSignup: {defaults: {a: .inf}}", []string{"defaults.a", "finite"}},
		{"defaults JSON object value", `{"createOnSignup": {"defaults": {"a": {"$gt": 1}}}}`, []string{"defaults.a", "object"}},
		{"defaults JSON huge number", `{"createOnSignup": {"defaults": {"a": 1e999}}}`, []string{"defaults.a", "out of range"}},
		{"delete mode", "deleteOnUserDelete: {mode: soft}", []string{"deleteOnUserDelete.mode", "soft"}},
		{"delete mode as YAML bool", "deleteOnUserDelete: {mode: false}", []string{"deleteOnUserDelete.mode"}},
		{"delete bad provider", "deleteOnUserDelete: {providers: ['a b']}", []string{"deleteOnUserDelete.providers[0]"}},

		// Rules.
		{"rule without name", rule("{on: [LOGIN], set: {a: {from: userId}}}"), []string{"rules[0]", "name is required"}},
		{"rule name with spaces", rule("{name: 'a b', on: [LOGIN], set: {a: {from: userId}}}"), []string{"rules[0]", "name"}},
		{"duplicate rule name", "rules:\n  - {name: r, on: [LOGIN], set: {a: {from: userId}}}\n  - {name: r, on: [CREATE], set: {a: {from: userId}}}\n",
			[]string{"rules[1]", `"r"`, "earlier rule"}},
		{"rule without on", rule("{name: r, set: {a: {from: userId}}}"), []string{`"r"`, "on:"}},
		{"rule unknown operation", rule("{name: r, on: [LOGOUT], set: {a: {from: userId}}}"), []string{`"r"`, "LOGOUT"}},
		{"rule lowercase operation", rule("{name: r, on: [login], set: {a: {from: userId}}}"), []string{`"r"`, "login"}},
		{"rule operation twice", rule("{name: r, on: [LOGIN, LOGIN], set: {a: {from: userId}}}"), []string{`"r"`, "twice"}},
		{"rule bad provider", rule("{name: r, on: [LOGIN], providers: ['*'], set: {a: {from: userId}}}"), []string{`"r"`, "providers[0]"}},
		{"rule writes nothing", rule("{name: r, on: [LOGIN]}"), []string{`"r"`, "writes nothing"}},
		{"rule setOnInsert without upsert", rule("{name: r, on: [CREATE], setOnInsert: {a: {from: userId}}}"), []string{`"r"`, "upsert"}},
		{"rule operator field", rule("{name: r, on: [LOGIN], set: {$inc: {from: constant, value: 1}}}"), []string{`"r"`, "$inc", "'$'"}},
		{"rule dotted field", rule("{name: r, on: [LOGIN], set: {profile.name: {from: userId}}}"), []string{`"r"`, "profile.name", "'.'"}},
		{"rule _id field", rule("{name: r, on: [LOGIN], set: {_id: {from: userId}}}"), []string{`"r"`, "_id"}},
		{"rule empty field", rule("{name: r, on: [LOGIN], set: {'': {from: userId}}}"), []string{`"r"`, "empty"}},
		{"rule long field", rule("{name: r, on: [LOGIN], set: {" + strings.Repeat("f", 65) + ": {from: userId}}}"), []string{`"r"`, "64"}},
		{"rule control char field", rule("{name: r, on: [LOGIN], set: {\"a\\tb\": {from: userId}}}"), []string{`"r"`, "control"}},
		{"rule writes user-id field", rule("{name: r, on: [LOGIN], set: {userId: {from: userId}}}"), []string{`"r"`, "set.userId", "user-id field"}},
		{"rule field under two operators", rule("{name: r, on: [LOGIN], upsert: true, set: {a: {from: userId}}, setOnInsert: {a: {from: eventId}}}"),
			[]string{`"r"`, "set.a", "setOnInsert"}},
		{"rule unknown source", rule("{name: r, on: [LOGIN], set: {a: {from: userData}}}"), []string{`"r"`, "set.a", "userData"}},
		{"rule expression source", rule("{name: r, on: [LOGIN], set: {a: {from: '$user.data.email'}}}"), []string{`"r"`, "set.a", "unknown"}},
		{"rule missing source", rule("{name: r, on: [LOGIN], set: {a: {value: 1}}}"), []string{`"r"`, "set.a", "from is required"}},
		{"rule constant without value", rule("{name: r, on: [LOGIN], set: {a: {from: constant}}}"), []string{`"r"`, "set.a", "needs a value"}},
		{"rule value on non-constant", rule("{name: r, on: [LOGIN], set: {a: {from: eventTime, value: 1}}}"), []string{`"r"`, "set.a", "takes no value"}},
		{"rule null value on non-constant", rule("{name: r, on: [LOGIN], set: {a: {from: userId, value: null}}}"), []string{`"r"`, "set.a", "takes no value"}},
		{"rule object constant", rule("{name: r, on: [LOGIN], set: {a: {from: constant, value: {$gt: 1}}}}"), []string{`"r"`, "set.a", "object"}},
		{"rule list constant", rule("{name: r, on: [LOGIN], set: {a: {from: constant, value: [1]}}}"), []string{`"r"`, "set.a", "list"}},
		{"rule value source key twice", rule("{name: r, on: [LOGIN], set: {a: {from: userId, from: constant}}}"), []string{`"r"`, "set.a", "twice"}},
		{"rule aliased object constant", rule("{name: r, on: [LOGIN], set: {a: &o {from: userId}, b: {from: constant, value: *o}}}"),
			[]string{`"r"`, "set.b", "object"}},
		{"rule timestamp constant", rule("{name: r, on: [LOGIN], max: {a: {from: constant, value: 2024-01-01T00:00:00Z}}}"), []string{`"r"`, "max.a", "timestamp"}},
		{"rule JSON object constant", `{"rules": [{"name": "r", "on": ["LOGIN"], "set": {"a": {"from": "constant", "value": {"$gt": 1}}}}]}`,
			[]string{`"r"`, "set.a", "object"}},
		{"rule JSON list constant", `{"rules": [{"name": "r", "on": ["LOGIN"], "set": {"a": {"from": "constant", "value": [1]}}}]}`,
			[]string{`"r"`, "set.a", "list"}},
		{"rule JSON constant without value", `{"rules": [{"name": "r", "on": ["LOGIN"], "set": {"a": {"from": "constant"}}}]}`,
			[]string{`"r"`, "set.a", "needs a value"}},
		{"too many rules", "rules:\n" + strings.Repeat("  - {name: r, on: [LOGIN], set: {a: {from: userId}}}\n", MaxRules+1), []string{"at most"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tt.doc))
			if err == nil {
				t.Fatalf("ParseConfig accepted it: %+v", cfg)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not match ErrInvalidConfig", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// Config.Validate and NewSet catch in Go-built configs what ParseConfig
// catches in files.
func TestValidateGoConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"object default", Config{CreateOnSignup: CreateOnSignupConfig{Defaults: map[string]any{"a": map[string]any{"$gt": 1}}}}, "defaults.a"},
		{"struct default", Config{CreateOnSignup: CreateOnSignupConfig{Defaults: map[string]any{"a": struct{}{}}}}, "defaults.a"},
		{"unknown delete mode", Config{DeleteOnUserDelete: DeleteOnUserDeleteConfig{Mode: "soft"}}, "mode"},
		{"value on eventTime", Config{Rules: []Rule{{Name: "r", On: []events.Operation{events.OperationLogin},
			Set: map[string]ValueSource{"a": {From: SourceEventTime, Value: "x"}}}}}, "takes no value"},
		{"unknown source", Config{Rules: []Rule{{Name: "r", On: []events.Operation{events.OperationLogin},
			Set: map[string]ValueSource{"a": {From: "script"}}}}}, "script"},
		{"operator field", Config{Rules: []Rule{{Name: "r", On: []events.Operation{events.OperationLogin},
			Max: map[string]ValueSource{"$max": {From: SourceEventTime}}}}}, "$max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig mentioning %q", err, tt.want)
			}
			if s, err := NewSet(tt.cfg); !errors.Is(err, ErrInvalidConfig) || s != nil {
				t.Fatalf("NewSet = %v, %v; want ErrInvalidConfig", s, err)
			}
		})
	}
}

func TestUserIDFieldMayBeID(t *testing.T) {
	// Documents keyed by _id: triggers still may not write _id.
	if _, err := ParseConfig([]byte("userIdField: _id\n")); err != nil {
		t.Fatal(err)
	}
}

// The worker's wiring fills an absent userIdField with its own setting,
// and the rules are then checked against that field.
func TestUserIDFieldFromWiring(t *testing.T) {
	cfg := mustParse(t, "rules:\n  - {name: r, on: [LOGIN], set: {uid: {from: userId}}}\n")
	if cfg.UserIDField != "" {
		t.Fatalf("absent userIdField parsed as %q", cfg.UserIDField)
	}
	cfg.UserIDField = "uid"
	if _, err := NewSet(cfg); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "set.uid") {
		t.Fatalf("NewSet = %v, want the rule writing the user-id field rejected", err)
	}
	// Without wiring, the default field is protected.
	if _, err := ParseConfig([]byte("lastLogin: {field: userId}")); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("ParseConfig = %v, want the default user-id field protected", err)
	}
}

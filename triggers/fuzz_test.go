package triggers

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/customdata-worker/customdata-worker/events"
)

// FuzzParseConfig: ParseConfig never panics, and a configuration it
// accepts builds a Set whose writes for any valid event are all valid: a
// config file cannot produce an operator, a path or a structured value.
func FuzzParseConfig(f *testing.F) {
	if example, err := os.ReadFile(filepath.Join("..", "deploy", "triggers.example.yaml")); err == nil {
		f.Add(example)
	}
	for _, s := range []string{
		"", "{}", "lastLogin: {enabled: false}",
		"rules:\n  - {name: r, on: [LOGIN], set: {a: {from: constant, value: 1}}}\n",
		"rules:\n  - {name: r, on: [LOGIN], upsert: true, setOnInsert: {a: {from: provider}}, max: {b: {from: eventTime}}}\n",
		`{"createOnSignup": {"defaults": {"a": 1.5, "b": null, "c": "x"}}}`,
		"createOnSignup: {defaults: {a: &x 1, b: *x}}",
	} {
		f.Add([]byte(s))
	}
	evs := []events.AuthEvent{
		event(events.OperationLogin, "u.1", "oauth2-google", "local-userpass"),
		event(events.OperationCreate, "*", "anon-user"),
		event(events.OperationDelete, "ü", "local-userpass"),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := ParseConfig(data)
		if err != nil {
			return
		}
		s, err := NewSet(cfg)
		if err != nil {
			t.Fatalf("accepted config does not build: %v", err)
		}
		userIDField := cfg.UserIDField
		if userIDField == "" {
			userIDField = DefaultUserIDField
		}
		for _, ev := range evs {
			ws, err := s.Decide(ev)
			if err != nil {
				t.Fatalf("accepted config yields an invalid write: %v", err)
			}
			for _, w := range ws {
				if _, ok := w.SetOnInsert[userIDField]; ok {
					t.Fatalf("write touches the user-id field")
				}
				if _, ok := w.Set[userIDField]; ok {
					t.Fatalf("write touches the user-id field")
				}
				if _, ok := w.Max[userIDField]; ok {
					t.Fatalf("write touches the user-id field")
				}
			}
		}
	})
}

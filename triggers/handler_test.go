package triggers

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
)

var testTime = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

// event builds a valid event for tests.
func event(op events.Operation, user string, providers ...string) events.AuthEvent {
	if len(providers) == 0 {
		providers = []string{"local-userpass"}
	}
	return events.AuthEvent{
		SchemaVersion: events.SchemaVersion,
		ID:            "ev-1",
		OperationType: op,
		Providers:     providers,
		User:          events.User{ID: user},
		Time:          testTime,
	}
}

func TestFilterMatch(t *testing.T) {
	login := event(events.OperationLogin, "u1", "local-userpass")
	multi := event(events.OperationLogin, "u1", "anon-user", "oauth2-google")
	create := event(events.OperationCreate, "u1", "local-userpass")
	tests := []struct {
		name string
		f    Filter
		ev   events.AuthEvent
		want bool
	}{
		{"zero filter matches nothing", Filter{}, login, false},
		{"providers alone match nothing", Filter{Providers: []string{"local-userpass"}}, login, false},
		{"operation", On(events.OperationLogin), login, true},
		{"other operation", On(events.OperationLogin), create, false},
		{"several operations", On(events.OperationCreate, events.OperationLogin), create, true},
		{"provider listed", On(events.OperationLogin).WithProviders("local-userpass"), login, true},
		{"provider not listed", On(events.OperationLogin).WithProviders("oauth2-google"), login, false},
		{"one of several event providers", On(events.OperationLogin).WithProviders("oauth2-google"), multi, true},
		{"none of several event providers", On(events.OperationLogin).WithProviders("custom-token"), multi, false},
		{"provider match but wrong operation", On(events.OperationCreate).WithProviders("oauth2-google"), multi, false},
		{"empty provider list matches all", On(events.OperationLogin).WithProviders(), multi, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Match(tt.ev); got != tt.want {
				t.Errorf("Match = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestWithProvidersCopies(t *testing.T) {
	base := On(events.OperationLogin)
	_ = base.WithProviders("oauth2-google")
	if len(base.Providers) != 0 {
		t.Fatalf("WithProviders modified its receiver: %v", base.Providers)
	}
}

func writes(ws ...Write) HandlerFunc {
	return func(events.AuthEvent) ([]Write, error) { return ws, nil }
}

func TestSetRegister(t *testing.T) {
	var s Set
	h := writes()
	if err := s.Register("a", On(events.OperationLogin), h); err != nil {
		t.Fatal(err)
	}
	if err := s.Register("b", On(events.OperationLogin), h); err != nil {
		t.Fatal(err)
	}
	if err := s.Register("a", On(events.OperationCreate), h); err == nil {
		t.Error("duplicate name accepted")
	}
	if err := s.Register("", On(events.OperationCreate), h); err == nil {
		t.Error("empty name accepted")
	}
	if err := s.Register("c", On(events.OperationCreate), nil); err == nil {
		t.Error("nil handler accepted")
	}
	if got := s.Names(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Names = %v", got)
	}
}

func TestSetDecide(t *testing.T) {
	boom := errors.New("boom")
	ev := event(events.OperationLogin, "u1")
	tests := []struct {
		name      string
		handlers  map[string]Handler // registered in name order
		want      []Write
		wantErrIs error
	}{
		{
			name: "writes in registration order, non-matching skipped, no-ops dropped",
			handlers: map[string]Handler{
				"1": writes(Write{UserID: "u1", Set: map[string]any{"a": 1}}),
				"2": writes(Write{UserID: "u1"}),
				"3": writes(Write{UserID: "u1", Max: map[string]any{"b": 2}}),
			},
			want: []Write{{UserID: "u1", Set: map[string]any{"a": 1}}, {UserID: "u1", Max: map[string]any{"b": 2}}},
		},
		{
			name:      "write for another user is permanent",
			handlers:  map[string]Handler{"1": writes(Write{UserID: "u2", Set: map[string]any{"a": 1}})},
			wantErrIs: ErrPermanent,
		},
		{
			name:      "invalid write is permanent",
			handlers:  map[string]Handler{"1": writes(Write{UserID: "u1", Set: map[string]any{"$set": 1}})},
			wantErrIs: ErrPermanent,
		},
		{
			name: "handler error is wrapped and stays retryable",
			handlers: map[string]Handler{"1": HandlerFunc(func(events.AuthEvent) ([]Write, error) {
				return nil, boom
			})},
			wantErrIs: boom,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Set
			for _, name := range []string{"1", "2", "3"} {
				if h, ok := tt.handlers[name]; ok {
					if err := s.Register(name, On(events.OperationLogin), h); err != nil {
						t.Fatal(err)
					}
				}
			}
			// A handler on another operation must never run.
			if err := s.Register("create-only", On(events.OperationCreate), HandlerFunc(func(events.AuthEvent) ([]Write, error) {
				t.Error("create handler ran on a login")
				return nil, nil
			})); err != nil {
				t.Fatal(err)
			}
			got, err := s.Decide(ev)
			if tt.wantErrIs != nil {
				if !errors.Is(err, tt.wantErrIs) {
					t.Fatalf("Decide error = %v, want %v", err, tt.wantErrIs)
				}
				if tt.wantErrIs == boom && errors.Is(err, ErrPermanent) {
					t.Errorf("handler error became permanent: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertWrites(t, got, tt.want)
		})
	}
}

func assertWrites(t *testing.T, got, want []Write) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d writes %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range got {
		if !writeEqual(got[i], want[i]) {
			t.Errorf("write %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// writeEqual compares writes, treating nil and empty maps alike and times
// by instant.
func writeEqual(a, b Write) bool {
	return a.UserID == b.UserID && a.Delete == b.Delete && a.Upsert == b.Upsert &&
		fieldsEqual(a.Set, b.Set) && fieldsEqual(a.Max, b.Max) && fieldsEqual(a.SetOnInsert, b.SetOnInsert)
}

func fieldsEqual(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, av := range a {
		bv, ok := b[k]
		if !ok || !valueEqual(av, bv) {
			return false
		}
	}
	return true
}

func valueEqual(a, b any) bool {
	if at, ok := a.(time.Time); ok {
		bt, ok := b.(time.Time)
		return ok && at.Equal(bt) && at.Location() == bt.Location()
	}
	return a == b
}

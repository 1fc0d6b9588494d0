package triggers

import (
	"errors"
	"fmt"
	"slices"

	"github.com/customdata-worker/customdata-worker/events"
)

// Handler decides the writes for one event. It must be pure and
// deterministic: the worker may call it again for a redelivered event.
// A returned error that matches ErrPermanent sends the event to the dead
// letter; any other error is retried.
type Handler interface {
	Handle(ev events.AuthEvent) ([]Write, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ev events.AuthEvent) ([]Write, error)

// Handle calls f(ev).
func (f HandlerFunc) Handle(ev events.AuthEvent) ([]Write, error) { return f(ev) }

// Filter selects the events a handler runs on. The zero Filter matches
// nothing; use On to build one.
type Filter struct {
	// Operations the handler runs on. Empty matches none.
	Operations []events.Operation
	// Providers restricts the handler to events naming at least one of
	// these providers. Empty matches every provider.
	Providers []string
}

// On returns a Filter for the given operations and any provider.
func On(ops ...events.Operation) Filter { return Filter{Operations: ops} }

// WithProviders returns a copy of f restricted to providers.
func (f Filter) WithProviders(providers ...string) Filter {
	f.Providers = providers
	return f
}

// Match reports whether ev passes the filter.
func (f Filter) Match(ev events.AuthEvent) bool {
	if !slices.Contains(f.Operations, ev.OperationType) {
		return false
	}
	if len(f.Providers) == 0 {
		return true
	}
	for _, p := range ev.Providers {
		if slices.Contains(f.Providers, p) {
			return true
		}
	}
	return false
}

type registered struct {
	name    string
	filter  Filter
	handler Handler
}

// Set is an ordered collection of named, filtered handlers. Build it once at
// startup, then call Decide concurrently.
type Set struct {
	handlers []registered
	// userIDField is the Config.UserIDField NewSet validated the
	// triggers against; empty when none was named.
	userIDField string
}

// UserIDField is the user-id field NewSet checked that no trigger writes
// (Config.UserIDField); empty for a set built by hand or from a config
// that named none. The worker refuses a set checked for another field
// than its collection's.
func (s *Set) UserIDField() string { return s.userIDField }

// Register adds a handler under a unique name.
func (s *Set) Register(name string, f Filter, h Handler) error {
	if name == "" || h == nil {
		return errors.New("triggers: register needs a name and a handler")
	}
	for _, r := range s.handlers {
		if r.name == name {
			return fmt.Errorf("triggers: a handler named %q is already registered", name)
		}
	}
	s.handlers = append(s.handlers, registered{name: name, filter: f, handler: h})
	return nil
}

// Names lists the registered handlers in order.
func (s *Set) Names() []string {
	names := make([]string, len(s.handlers))
	for i, r := range s.handlers {
		names[i] = r.name
	}
	return names
}

// Decide runs every matching handler on ev, in registration order, and
// returns their writes in that order. Writes for another user than
// ev.User.ID are refused as permanent errors: one event may only change its
// own user's document.
func (s *Set) Decide(ev events.AuthEvent) ([]Write, error) {
	var out []Write
	for _, r := range s.handlers {
		if !r.filter.Match(ev) {
			continue
		}
		ws, err := r.handler.Handle(ev)
		if err != nil {
			return nil, fmt.Errorf("trigger %s: %w", r.name, err)
		}
		noops := 0
		for _, w := range ws {
			if w.UserID != ev.User.ID {
				return nil, fmt.Errorf("trigger %s: write for another user: %w", r.name, ErrPermanent)
			}
			if err := ValidateWrite(w); err != nil {
				return nil, fmt.Errorf("trigger %s: %w", r.name, err)
			}
			if w.IsNoop() {
				noops++
			}
		}
		if out == nil && noops == 0 && len(ws) > 0 {
			// The common case, one handler matching: its slice is the
			// result, without a copy. Clipped, so a later handler's
			// writes are appended to a new array, never into the
			// handler's.
			out = ws[:len(ws):len(ws)]
			continue
		}
		for _, w := range ws {
			if !w.IsNoop() {
				out = append(out, w)
			}
		}
	}
	return out, nil
}

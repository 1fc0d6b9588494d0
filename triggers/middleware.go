package triggers

import (
	"fmt"

	"github.com/customdata-worker/customdata-worker/events"
)

// Middleware wraps a Handler with a policy that applies to every event
// (recovering panics, checking writes), as Watermill's router middleware
// wraps its handlers: the handler stays about its decision.
type Middleware func(Handler) Handler

// Chain returns h wrapped by mws, the first outermost: Chain(h, a, b)
// handles an event as a(b(h)).
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// Recover turns a panic of the handler into a permanent error (matching
// ErrPanicked and ErrPermanent): the same event would panic again, so it
// is dead-lettered instead of crashing the worker in a loop.
func Recover() Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ev events.AuthEvent) (ws []Write, err error) {
			defer func() {
				if r := recover(); r != nil {
					ws, err = nil, fmt.Errorf("%w: %v: %w", ErrPanicked, r, ErrPermanent)
				}
			}()
			return next.Handle(ev)
		})
	}
}

// CheckWrites refuses, with check's error, the decision of an event one
// of whose writes check refuses (say, a write the collection's rules
// forbid); a check error should match ErrPermanent when no retry can
// change it.
func CheckWrites(check func(Write) error) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ev events.AuthEvent) ([]Write, error) {
			ws, err := next.Handle(ev)
			if err != nil {
				return nil, err
			}
			for _, w := range ws {
				if err := check(w); err != nil {
					return nil, err
				}
			}
			return ws, nil
		})
	}
}

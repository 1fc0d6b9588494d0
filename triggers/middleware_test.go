package triggers

import (
	"errors"
	"testing"

	"github.com/customdata-worker/customdata-worker/events"
)

func TestMiddleware(t *testing.T) {
	ev := events.NewAuthEvent(events.OperationLogin, "ada", "local-userpass")
	write := Write{UserID: "ada"}
	refused := errors.New("refused")
	tests := []struct {
		name      string
		h         Handler
		mws       []Middleware
		wantN     int
		wantErrIs []error
	}{
		{"no middleware", HandlerFunc(func(events.AuthEvent) ([]Write, error) { return []Write{write}, nil }), nil, 1, nil},
		{"a panic becomes a permanent error", HandlerFunc(func(events.AuthEvent) ([]Write, error) { panic("boom") }),
			[]Middleware{Recover()}, 0, []error{ErrPanicked, ErrPermanent}},
		{"a refused write refuses the decision", HandlerFunc(func(events.AuthEvent) ([]Write, error) { return []Write{write, write}, nil }),
			[]Middleware{CheckWrites(func(Write) error { return refused })}, 0, []error{refused}},
		{"checked writes pass", HandlerFunc(func(events.AuthEvent) ([]Write, error) { return []Write{write, write}, nil }),
			[]Middleware{Recover(), CheckWrites(func(Write) error { return nil })}, 2, nil},
		{"a handler error is not checked further", HandlerFunc(func(events.AuthEvent) ([]Write, error) { return nil, ErrPermanent }),
			[]Middleware{CheckWrites(func(Write) error { t.Error("check called"); return nil })}, 0, []error{ErrPermanent}},
		{"a panic inside a check is recovered by an outer Recover", HandlerFunc(func(events.AuthEvent) ([]Write, error) { return []Write{write}, nil }),
			[]Middleware{Recover(), CheckWrites(func(Write) error { panic("check") })}, 0, []error{ErrPanicked}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, err := Chain(tt.h, tt.mws...).Handle(ev)
			if len(ws) != tt.wantN {
				t.Errorf("got %d writes, want %d", len(ws), tt.wantN)
			}
			if len(tt.wantErrIs) == 0 && err != nil {
				t.Errorf("err = %v, want nil", err)
			}
			for _, target := range tt.wantErrIs {
				if !errors.Is(err, target) {
					t.Errorf("err = %v, want it to match %v", err, target)
				}
			}
		})
	}
}

// TestChainOrder: the first middleware is the outermost.
func TestChainOrder(t *testing.T) {
	var order []string
	mark := func(name string) Middleware {
		return func(next Handler) Handler {
			return HandlerFunc(func(ev events.AuthEvent) ([]Write, error) {
				order = append(order, name)
				return next.Handle(ev)
			})
		}
	}
	h := HandlerFunc(func(events.AuthEvent) ([]Write, error) { order = append(order, "handler"); return nil, nil })
	if _, err := Chain(h, mark("a"), mark("b")).Handle(events.AuthEvent{}); err != nil {
		t.Fatal(err)
	}
	if got := len(order); got != 3 || order[0] != "a" || order[1] != "b" || order[2] != "handler" {
		t.Fatalf("order = %v, want [a b handler]", order)
	}
}

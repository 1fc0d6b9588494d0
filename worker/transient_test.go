package worker

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

func TestIsTransientSeparatesOutagesFromMistakes(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"nats timeout", fmt.Errorf("provision: %w", nats.ErrTimeout), true},
		{"no responders (JetStream not reachable yet)", nats.ErrNoResponders, true},
		{"disconnected", nats.ErrDisconnected, true},
		{"deadline", fmt.Errorf("ping: %w", context.DeadlineExceeded), true},
		{"mongo client disconnected", mongo.ErrClientDisconnected, true},
		{"jetstream unavailable", &jetstream.APIError{Code: 503, Description: "JetStream system temporarily unavailable"}, true},
		{"stream missing in verify mode", fmt.Errorf("verify: %w", jetstream.ErrStreamNotFound), false},
		{"duplicate users", fmt.Errorf("index: %w", ErrDuplicateUsers), false},
		{"incompatible provisioning", ErrIncompatibleProvisioning, false},
		{"bad request", &jetstream.APIError{Code: 400, Description: "subjects overlap"}, false},
		// A missing role is fixed by an operator; the worker waits for it
		// rather than exiting, as it does for writes.
		{"unauthorized", mongo.CommandError{Code: 13, Message: "not authorized"}, true},
		{"invalid options", mongo.CommandError{Code: 72, Message: "invalid options"}, false},
		{"plain error", errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsTransient(tt.err); got != tt.want {
				t.Errorf("IsTransient(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

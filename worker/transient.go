package worker

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// IsTransient reports whether err means a dependency (MongoDB or NATS) is
// unavailable for now, so the same call may succeed later, as opposed to
// the request or the configuration being wrong. Startup steps retry
// transient errors with backoff and stop on any other.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if isInfraError(err) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	for _, target := range []error{
		nats.ErrTimeout, nats.ErrNoResponders, nats.ErrDisconnected,
		nats.ErrConnectionReconnecting, nats.ErrNoServers, nats.ErrConnectionDraining,
		jetstream.ErrNoHeartbeat, jetstream.ErrJetStreamPublisherClosed,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	// JetStream answered but has no quorum / leader yet (cluster starting or
	// a stream's replicas re-electing): 503 and the "temporarily
	// unavailable" codes.
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.Code {
		case 503, 408:
			return true
		}
	}
	return false
}

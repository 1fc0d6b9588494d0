package notify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
)

// heartbeatPayload is the notice every heartbeat of part carries. An
// unpartitioned notifier's is exactly what it was before partitions
// existed (issuers read no partition fields as partition 0 of 1).
func heartbeatPayload(part partition) []byte {
	if !part.partitioned() {
		return []byte(`{"schemaVersion":1,"kind":"heartbeat"}`)
	}
	return fmt.Appendf(nil, `{"schemaVersion":1,"kind":"heartbeat","partition":%d,"partitions":%d}`, part.index, part.count)
}

// heartbeats publishes events.HeartbeatSubject every HeartbeatInterval
// until the term's ctx ends, so that issuers can tell that a leader is
// announcing changes: with none (every replica down, NATS KV unreachable,
// the lease lost) they stop caching instead of serving data no one
// invalidates. A failed heartbeat is only logged: the next one follows,
// and an issuer that misses a few reads through for a while, which is safe.
// A failed one while connected looks for the notice stream and provisions
// it again if gone (create mode), so an idle leader notices the loss
// before a change does.
func (n *Notifier) heartbeats(ctx context.Context, s *slot) {
	subject := events.HeartbeatSubject(n.cfg.SubjectPrefix)
	payload := heartbeatPayload(s.part)
	t := time.NewTicker(n.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, n.cfg.HeartbeatInterval)
		floor := s.watch.floor()
		ack, err := n.js.Publish(pctx, subject, payload)
		cancel()
		switch {
		case err == nil:
			s.watch.stored(ack, floor)
			s.health.heartbeatResult(nil)
		case ctx.Err() == nil:
			s.log.Debug().Err(err).Msg("heartbeat not published")
			// Connected and still failing (no response from stream, or
			// out of time retrying for one): the stream may be gone.
			perr := n.restoreAfterPublishFailure(ctx)
			if errors.Is(perr, ErrNotProvisioned) {
				s.health.heartbeatResult(perr) // what /readyz must say
			} else if perr != nil && ctx.Err() == nil {
				if ok, held := n.limiter.allow("provision"); ok {
					n.log.Warn().Err(perr).Int("suppressed", held).
						Msg("the notice stream could not be checked or provisioned again after a failed heartbeat")
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

package notify

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/customdata-worker/customdata-worker/internal/retry"
)

// compete competes for s's lease until ctx ends and, while holding it,
// leads s's partition. A replica that already leads other partitions waits
// before it takes a free one, longer the more it leads (spreadDelay), so
// that replicas share the partitions instead of the fastest taking all.
func (n *Notifier) compete(ctx context.Context, s *slot) {
	interval := n.cfg.LeaseTTL / 3
	lastHolder := ""
	leaseErrLogged := false
	if s.part.partitioned() {
		// Replicas started together do not try every partition in step.
		retry.Sleep(ctx, time.Duration(rand.Int64N(int64(interval/5)+1)))
	}
	for ctx.Err() == nil {
		ok, err := n.tryAcquire(ctx, s)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			// Connected yet refused: the bucket itself may be gone.
			if n.js.Conn().IsConnected() {
				if perr := n.restoreProvisioningBounded(ctx); errors.Is(perr, ErrNotProvisioned) {
					err = perr // what /readyz must say: nothing to reach
				}
			}
			s.health.leaseFailed(err)
			if !leaseErrLogged {
				s.log.Warn().Err(err).Msg("cannot reach the lease; retrying")
				leaseErrLogged = true
			}
		case ok:
			s.health.leaseOK()
			leaseErrLogged, lastHolder = false, ""
			if holdOff := n.lead(ctx, s); holdOff > 0 {
				// Stepped down: stay out of the competition long enough
				// for a standby to win it.
				retry.Sleep(ctx, holdOff)
			}
			continue
		default:
			s.health.leaseOK()
			leaseErrLogged = false
			if h := s.lease.Holder(); h != lastHolder && h != "" {
				s.log.Info().Str("holder", h).Msg("standing by: another replica holds the change-stream lease")
				lastHolder = h
			}
			n.probeAfterStepDown(ctx, s)
		}
		// Jitter keeps standbys from hammering the bucket in step.
		retry.Sleep(ctx, interval-interval/10+time.Duration(rand.Int64N(int64(interval/5)+1)))
	}
}

// tryAcquire takes s's lease if it is free. On a partitioned notifier that
// already leads other partitions, a free lease is taken only after
// spreadDelay, and only if it is still free then: a replica leading none
// takes it first.
//
// Each lease call is bounded (requestTimeout): Run's context may carry a
// far deadline, under which nats.go applies no timeout of its own, and a
// reply lost in a reconnect would hold the competition, and so the
// partition's leadership, until it.
func (n *Notifier) tryAcquire(ctx context.Context, s *slot) (bool, error) {
	if wait := n.spreadDelay(); wait > 0 {
		rctx, cancel := n.request(ctx)
		free, err := s.lease.Free(rctx)
		cancel()
		if err != nil {
			return false, err
		}
		if !free {
			rctx, cancel := n.request(ctx)
			defer cancel()
			return s.lease.TryAcquire(rctx) // ours after a failed renewal, or someone's
		}
		if !retry.Sleep(ctx, wait) {
			return false, nil
		}
	}
	rctx, cancel := n.request(ctx)
	defer cancel()
	return s.lease.TryAcquire(rctx)
}

// spreadDelay is how long this replica waits before it takes a free
// partition: half a renewal interval per partition it already leads.
// Standbys poll every third of a lease TTL, so a replica leading fewer
// partitions polls first and wins; a free partition nobody else wants is
// still taken, later. Capped at half a lease TTL, so a
// lone survivor of many partitions takes each over within 1.5 TTL plus a
// poll, not after leading × TTL/6. Zero when unpartitioned.
func (n *Notifier) spreadDelay() time.Duration {
	if len(n.slots) < 2 {
		return 0
	}
	return min(time.Duration(n.leading())*n.cfg.LeaseTTL/6, n.cfg.LeaseTTL/2)
}

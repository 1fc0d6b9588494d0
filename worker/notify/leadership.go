package notify

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/customdata-worker/customdata-worker/internal/lease"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// lead runs one leadership term. The term ends the moment a renewal fails
// (leaseCtx is cancelled, which also aborts an in-flight publish), when
// the change feed stalls (the lease is given up; lead returns how long
// to keep away from it), or when ctx ends (the feed stops after the
// event in hand is published and checkpointed).
func (n *Notifier) lead(ctx context.Context, s *slot) (holdOff time.Duration) {
	rev := s.lease.Revision()
	leaseCtx, cancelLease := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelLease(nil)
	termCtx, cancelTerm := context.WithCancel(leaseCtx)
	defer cancelTerm()
	defer context.AfterFunc(ctx, cancelTerm)()
	// A handoff asked of an earlier term is stale (before leader is set:
	// the rebalancer only asks leaders).
	select {
	case <-s.handoff:
	default:
	}
	var handedOff atomic.Bool
	stopWatch, watchDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-s.handoff:
			handedOff.Store(true)
			cancelTerm()
		case <-stopWatch:
		}
	}()
	defer func() { close(stopWatch); <-watchDone }()
	s.leader.Store(true)
	n.metrics.leading(s.part, true)
	if s.part.partitioned() {
		s.log.Info().Uint64("term", rev).Ints("leading", n.LeadsPartitions()).Msg("acquired the change-stream lease of the partition: leading it")
	} else {
		s.log.Info().Uint64("term", rev).Msg("acquired the change-stream lease: leading")
	}

	beatsDone := make(chan struct{})
	go func() {
		defer close(beatsDone)
		n.heartbeats(termCtx, s)
	}()
	defer func() { cancelTerm(); <-beatsDone }()
	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		n.renewLoop(leaseCtx, s, cancelLease)
	}()
	n.ensurePreImages(termCtx) // bounded like a feed operation
	// The notice stream alone may be gone (deleted) while the buckets
	// live on; notices published now must have somewhere to go.
	if err := n.restoreProvisioningBounded(termCtx); err != nil {
		s.log.Warn().Err(err).Msg("could not check the notice stream at the start of the term")
	}
	stalled := newTerm(n.termDeps(s), s.log, s.lease.Session(), rev, leaseCtx).run(termCtx)
	cancelLease(errTermEnded)
	<-renewDone

	s.health.feedOK()
	defer func() {
		// After the health update: whoever sees "not leader" also sees
		// why.
		s.leader.Store(false)
		n.metrics.leading(s.part, false)
		n.metrics.checkpointWritten(s.part, time.Time{})
	}()
	if cause := context.Cause(leaseCtx); errors.Is(cause, lease.ErrLost) {
		s.log.Warn().Err(cause).Msg("lost the change-stream lease: stopped the change stream")
		return 0
	}
	if stalled != nil && ctx.Err() == nil {
		return n.stepDown(ctx, s, stalled)
	}
	if handedOff.Load() && ctx.Err() == nil {
		return n.handOff(ctx, s)
	}
	if ctx.Err() != nil {
		if err := n.releaseLease(ctx, s); err != nil {
			s.log.Debug().Err(err).Msg("lease release failed; it expires by itself")
		}
	}
	s.log.Info().Msg("stopped leading")
	return 0
}

// termDeps is what each term of s is given (once bound: Provision or Run).
func (n *Notifier) termDeps(s *slot) termDeps {
	return termDeps{
		part: s.part, cfg: n.cfg, data: n.data, coll: n.coll, feeds: n.feeds, store: s.checkpoints, js: n.js,
		metrics: n.metrics, health: s.health, limiter: n.limiter, localSizeWarned: &n.localSizeWarned,
		pubJS: n.publishJS(), acks: n.acks, maxInFlight: n.maxInFlight,
		hooks: termHooks{collectionGone: n.collectionGone, changedUser: n.changedUser, publishFailed: n.restoreAfterPublishFailure},
		watch: s.watch, reprovisions: &n.reprovisions,
	}
}

// stepDownStalled labels stepdowns_total for a stalled change feed.
const stepDownStalled = "change_stream_stalled"

// stepDown gives the lease up after the change feed stalled, and returns
// how long to keep away from it: one TTL plus jitter when released (a
// standby polls every TTL/3, so it wins), two when the release failed (our
// value may live one more TTL).
func (n *Notifier) stepDown(ctx context.Context, s *slot, cause error) time.Duration {
	s.health.steppedDown(cause)
	n.metrics.steppedDown(s.part, stepDownStalled)
	holdOff := n.cfg.LeaseTTL
	releaseErr := n.releaseLease(ctx, s)
	if releaseErr != nil {
		holdOff *= 2
	}
	holdOff += time.Duration(rand.Int64N(int64(n.cfg.LeaseTTL/5) + 1))
	ev := s.log.Warn().Err(cause).Dur("stall_after", n.cfg.StallAfter).Dur("hold_off", holdOff)
	if releaseErr != nil {
		ev = ev.AnErr("release_error", releaseErr)
	}
	ev.Msg("stepped down: the change stream made no progress while the lease still renewed; leaving the lease to a replica whose MongoDB works")
	return holdOff
}

// releaseLease deletes our lease revision, bounded in time.
func (n *Notifier) releaseLease(ctx context.Context, s *slot) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	return s.lease.Release(rctx)
}

// probeAfterStepDown, on a standby that stepped down, checks whether the
// change feed works again (opens one and closes it) and if so clears the
// step-down from Healthy. It does not compete for the lease: a replica
// that recovered simply stands by.
func (n *Notifier) probeAfterStepDown(ctx context.Context, s *slot) {
	if !s.health.isSteppedDown() {
		return
	}
	timeout := n.cfg.feedOpTimeout()
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cs, err := n.coll.Watch(pctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(n.cfg.MaxAwaitTime))
	if err != nil {
		return
	}
	closeFeed(ctx, cs, timeout)
	s.health.feedOK()
	s.log.Info().Msg("the change stream works again after the step-down: healthy, standing by")
}

// renewLoop renews the lease every TTL/3. A renewal that fails or takes
// longer than TTL/3 ends the term: by then another replica may be about to
// take over.
func (n *Notifier) renewLoop(ctx context.Context, s *slot, cancel context.CancelCauseFunc) {
	interval := n.cfg.LeaseTTL / 3
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, rcancel := context.WithTimeout(ctx, interval)
		err := s.lease.Renew(rctx)
		rcancel()
		if err != nil {
			if ctx.Err() == nil {
				s.health.leaseFailed(err)
			}
			cancel(err)
			return
		}
		s.health.leaseOK()
	}
}

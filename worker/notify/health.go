package notify

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/customdata-worker/customdata-worker/internal/outage"
)

// Healthy returns nil while the notifier runs and neither the lease nor
// (on the leader) the change feed or publishing has been failing for
// longer than UnhealthyAfter.
func (n *Notifier) Healthy() error {
	if !n.running.Load() {
		return ErrNotifierNotRunning
	}
	if len(n.slots) == 1 {
		s := n.slots[0]
		return s.health.check(n.cfg.UnhealthyAfter, s.leader.Load())
	}
	// Every partition counts: one whose lease or feed fails leaves its
	// share of the changes unannounced, whoever leads the others.
	var errs []error
	for _, s := range n.slots {
		if err := s.health.check(n.cfg.UnhealthyAfter, s.leader.Load()); err != nil {
			errs = append(errs, fmt.Errorf("partition %s: %w", s.part, err))
		}
	}
	return errors.Join(errs...)
}

// notifierHealth tracks since when the lease and the feed fail.
type notifierHealth struct {
	lease, stream outage.Tracker

	mu sync.Mutex
	// stepDownErr: this replica stepped down because its change feed
	// stalled, and has not seen a change feed work since.
	stepDownErr error
	// unprovisioned: the leader's heartbeat found the notice stream or a
	// bucket gone in verify mode (ErrNotProvisioned); cleared by the next
	// heartbeat stored. Kept apart from the feed's health, which every
	// answered poll clears, so an idle leader still says it.
	unprovisioned error
}

func (h *notifierHealth) reset() {
	h.lease.Reset()
	h.stream.Reset()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stepDownErr = nil
	h.unprovisioned = nil
}

// heartbeatResult records what a heartbeat found (see unprovisioned).
func (h *notifierHealth) heartbeatResult(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unprovisioned = err
}

func (h *notifierHealth) leaseFailed(err error) { h.lease.Failed(time.Now(), err) }

func (h *notifierHealth) leaseOK() { h.lease.Succeeded(time.Now()) }

func (h *notifierHealth) feedFailed(err error) { h.stream.Failed(time.Now(), err) }

// feedOK: the change feed works (this also ends a step-down).
func (h *notifierHealth) feedOK() {
	h.stream.Succeeded(time.Now())
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stepDownErr = nil
}

func (h *notifierHealth) steppedDown(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stepDownErr = err
}

func (h *notifierHealth) isSteppedDown() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stepDownErr != nil
}

func (h *notifierHealth) check(after time.Duration, leader bool) error {
	now := time.Now()
	if down, err, ok := h.lease.Down(now); ok && down > after {
		return fmt.Errorf("%w: lease unavailable for %s: %w", ErrNotifierUnhealthy, down.Round(time.Second), err)
	}
	if err := func() error { h.mu.Lock(); defer h.mu.Unlock(); return h.stepDownErr }(); err != nil {
		// Reported at once: the feed already failed for StallAfter.
		return fmt.Errorf("%w: stepped down from leading: %w", ErrNotifierUnhealthy, err)
	}
	if err := func() error { h.mu.Lock(); defer h.mu.Unlock(); return h.unprovisioned }(); leader && err != nil {
		return fmt.Errorf("%w: %w", ErrNotifierUnhealthy, err)
	}
	if down, err, ok := h.stream.Down(now); leader && ok && down > after {
		return fmt.Errorf("%w: change stream or publishing failing for %s: %w", ErrNotifierUnhealthy, down.Round(time.Second), err)
	}
	return nil
}

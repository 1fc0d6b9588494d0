package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"syscall"
	"time"
)

// fault is one kind of failure the harness injects.
type fault string

const (
	faultKillReplica fault = "kill_replica"     // SIGKILL a random replica, restart it
	faultKillLeader  fault = "kill_leader"      // SIGKILL the change-stream leader, restart it
	faultNATSRestart fault = "nats_restart"     // SIGKILL nats-server, restart it on the same store
	faultMongoCut    fault = "mongodb_outage"   // the replicas and issuers cut from MongoDB for a while
	faultPause       fault = "pause_replica"    // SIGSTOP a replica for longer than ACK_WAIT
	faultEmptyStore  fault = "nats_empty_store" // SIGKILL nats-server, delete its store, restart it empty
)

var allFaults = []fault{faultKillReplica, faultKillLeader, faultNATSRestart, faultMongoCut, faultPause, faultEmptyStore}

// injector draws faults and their moments from the seeded generator.
type injector struct {
	rng     *rand.Rand
	h       *harness
	counts  map[fault]int
	every   time.Duration // mean time between faults
	outage  time.Duration // longest MongoDB outage
	ackWait time.Duration
	// clock hears of every nats-server kill and restart and every pause.
	clock *faultClock
	// removeAll deletes a store directory (os.RemoveAll; tests make it fail).
	removeAll func(string) error
	// injectFn injects one fault (inject; tests of the schedule replace it).
	injectFn func(context.Context, fault) error
}

// errSkipped: the fault cannot be injected at this moment (no replica
// leads, the cluster's replicas are not all current).
var errSkipped = errors.New("skipped")

// kinds are the fault kinds this run injects: all, but MongoDB outages
// only when a proxy stands in front of MongoDB (not for a MONGODB_URI of
// several hosts, SRV or TLS: see proxiedURI; a kill_replica takes their
// turn).
func (in *injector) kinds() []fault {
	var out []fault
	for _, f := range allFaults {
		if f != faultMongoCut || in.h.canCutMongo() {
			out = append(out, f)
		}
	}
	return out
}

// missing are the kinds not injected yet.
func (in *injector) missing() []fault {
	var out []fault
	for _, f := range in.kinds() {
		if in.counts[f] == 0 {
			out = append(out, f)
		}
	}
	return out
}

// grace is how long faults may go on after stop for the kinds still
// missing then: a turn each, generously. A run that needs more fails.
func (in *injector) grace() time.Duration {
	return time.Duration(len(in.kinds())) * (2*in.every + 30*time.Second)
}

// run injects faults until stop ends and every kind has been injected at
// least once: every kind once, in a shuffled order, then again. A fault
// that cannot be injected at its turn (errSkipped: no replica leads, the
// replicas are not current) comes again after the next one, and after
// stop only the kinds still missing take turns, so even a short run meets
// each kind; ctx bounds how long that may take (the run then fails, naming
// the kinds missing). A fault that cannot be injected as drawn (a process
// that does not start again, a store that cannot be deleted) ends the run
// with its error: what the checks would then prove is unknown. Faults run
// to the end under ctx, not stop: a pause or an outage is never cut short.
func (in *injector) run(stop, ctx context.Context) error {
	var order []fault
	for {
		if stop.Err() != nil {
			missing := in.missing()
			if len(missing) == 0 {
				return nil
			}
			order = slices.DeleteFunc(order, func(f fault) bool { return !slices.Contains(missing, f) })
			if len(order) == 0 {
				order = missing
			}
		}
		wait := in.every/2 + time.Duration(in.rng.Int64N(int64(in.every)))
		select {
		case <-ctx.Done():
			return fmt.Errorf("fault kinds never injected within %s after the run's duration: %v", in.grace(), in.missing())
		case <-time.After(wait):
		}
		if len(order) == 0 {
			order = append(order, allFaults...)
			in.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		f := order[0]
		order = order[1:]
		if f == faultMongoCut && !in.h.canCutMongo() {
			f = faultKillReplica
		}
		inject := in.inject
		if in.injectFn != nil {
			inject = in.injectFn
		}
		err := inject(ctx, f)
		switch {
		case errors.Is(err, errSkipped):
			in.h.logf("fault %s: %v; it comes again after the next one", f, err)
			order = slices.Insert(order, min(1, len(order)), f)
			continue
		case err != nil:
			in.h.logf("fault %s: %v; no more faults", f, err)
			return fmt.Errorf("fault %s could not be injected: %w", f, err)
		}
		in.counts[f]++
	}
}

// inject injects one fault and undoes it; an error if it could not be
// injected as drawn, or was cut short (ctx ended).
func (in *injector) inject(ctx context.Context, f fault) error {
	cut := false
	err := in.injectOnce(ctx, f, func(d time.Duration) {
		select {
		case <-ctx.Done():
			cut = true
		case <-time.After(d):
		}
	})
	if err == nil && cut {
		err = fmt.Errorf("cut short: %w", ctx.Err())
	}
	return err
}

// injectOnce injects f and undoes it, waiting with pause.
func (in *injector) injectOnce(ctx context.Context, f fault, pause func(time.Duration)) error {
	h := in.h
	switch f {
	case faultKillReplica, faultKillLeader:
		w, why := h.workers[in.rng.IntN(len(h.workers))], ""
		if f == faultKillLeader {
			var led []int
			if w, led = h.leader(ctx); w == nil {
				return fmt.Errorf("%w: no replica leads right now", errSkipped)
			}
			why = " (the leader)"
			if h.cfg.Partitions > 1 {
				why = fmt.Sprintf(" (the leader of partitions %v of %d)", led, h.cfg.Partitions)
			}
		}
		h.logf("fault: SIGKILL %s%s", w.name, why)
		w.kill()
		pause(time.Duration(500+in.rng.IntN(2500)) * time.Millisecond)
		return w.start()
	case faultNATSRestart:
		n, why := in.natsTarget(ctx)
		h.logf("fault: SIGKILL %s%s, restart on the same store", n.name, why)
		n.kill()
		in.clock.natsDown(false)
		pause(time.Duration(500+in.rng.IntN(2500)) * time.Millisecond)
		if err := n.startAndWait(context.WithoutCancel(ctx)); err != nil {
			return err
		}
		in.clock.natsUp()
		return nil
	case faultEmptyStore:
		// One node of a cluster loses its disk: its peers hold every
		// stream (R3), so nothing is lost as long as they are current
		// when it goes. A lone server loses everything.
		lost := !h.nats.clustered()
		if !lost && !h.replicasCurrent(ctx, 30*time.Second) {
			return fmt.Errorf("%w: the stream replicas are not all current", errSkipped)
		}
		n := h.nats.nodes[in.rng.IntN(len(h.nats.nodes))]
		h.logf("fault: SIGKILL %s, delete its store, restart it empty", n.name)
		n.kill()
		// Counted as wiped before the deletion: a deletion that fails
		// half way has lost part of the store, and only the events the
		// wipe relaxes may be missing from it.
		in.clock.natsDown(lost)
		wipeErr := in.removeAll(n.store)
		if wipeErr != nil {
			// Started again on whatever is left, so the run can settle and
			// close; it fails with the reason (injector.run).
			h.logf("fault: deleting the store %s failed: %v", n.store, wipeErr)
			wipeErr = fmt.Errorf("delete the store %s: %w (the server restarted on what was left; what it lost is unknown)", n.store, wipeErr)
		} else {
			pause(time.Duration(500+in.rng.IntN(2500)) * time.Millisecond)
		}
		if err := n.startAndWait(context.WithoutCancel(ctx)); err != nil {
			return errors.Join(wipeErr, err)
		}
		in.clock.natsUp()
		return wipeErr
	case faultMongoCut:
		d := in.outage/2 + time.Duration(in.rng.Int64N(int64(in.outage/2)))
		h.logf("fault: MongoDB cut from the replicas and issuers (proxy) for %s", d.Round(time.Second))
		h.proxy.setCut(true)
		pause(d)
		h.proxy.setCut(false)
		return nil
	case faultPause:
		w := h.workers[in.rng.IntN(len(h.workers))]
		d := in.ackWait + 2*time.Second
		h.logf("fault: SIGSTOP %s for %s (ACK_WAIT %s)", w.name, d, in.ackWait)
		if err := w.signal(syscall.SIGSTOP); err != nil {
			return err
		}
		in.clock.paused()
		defer in.clock.resumed()
		pause(d)
		return w.signal(syscall.SIGCONT)
	}
	return fmt.Errorf("unknown fault %q", f)
}

// natsTarget picks the nats-server to restart: in a cluster, half the time
// the node leading the auth-event stream.
func (in *injector) natsTarget(ctx context.Context) (*natsProcess, string) {
	c := in.h.nats
	if c.clustered() && in.rng.IntN(2) == 0 {
		if leader := in.h.streamLeader(ctx, "AUTH_EVENTS"); leader != nil {
			return leader, " (the auth-event stream leader)"
		}
	}
	return c.nodes[in.rng.IntN(len(c.nodes))], ""
}

package chaos

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestEmptyStoreThatCannotBeDeleted: when the store of a killed lone
// server cannot be deleted, the fault is not passed off as done: the
// server is started again on what is left (so the run can settle and
// close), the epoch counts it as wiped (part of the store may be gone),
// and the error names the store, which ends the run.
func TestEmptyStoreThatCannotBeDeleted(t *testing.T) {
	dir := t.TempDir()
	n, err := newNATSCluster(natsServerBin(t), dir, 1, testAuth(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.startAll(ctx); err != nil {
		t.Fatal(err)
	}
	defer n.stop(5 * time.Second)
	clock := newFaultClock()
	in := &injector{rng: newRand(1), h: &harness{nats: n, logf: t.Logf}, counts: map[fault]int{}, clock: clock,
		removeAll: func(string) error { return errors.New("device or resource busy") }}
	err = in.inject(ctx, faultEmptyStore)
	if err == nil || !strings.Contains(err.Error(), n.nodes[0].store) || !strings.Contains(err.Error(), "device or resource busy") {
		t.Fatalf("inject = %v, want an error naming the store and why", err)
	}
	if n.nodes[0].exited() {
		t.Fatal("nats-server was not started again")
	}
	if err := n.nodes[0].waitListening(ctx); err != nil {
		t.Fatal(err)
	}
	if gen, epoch := clock.now(); gen != 1 || epoch != 1 {
		t.Fatalf("clock at generation %d, epoch %d; want 1, 1 (killed, counted as wiped)", gen, epoch)
	}
}

// TestEveryFaultKindComes: the schedule injects every kind at least once
// however short the run (stop ended before the first fault here), a kind
// impossible at its turn comes again later, and a run in which a kind
// never becomes possible, or a fault fails, fails naming it.
func TestEveryFaultKindComes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		skips   map[fault]int // times a kind is impossible at its turn
		fatal   fault
		wantErr string
	}{
		{"each kind once, though the run is over before the first", nil, "", ""},
		{"kinds skipped at their turns come later", map[fault]int{faultKillLeader: 3, faultEmptyStore: 1}, "", ""},
		{"a kind never possible fails the run", map[fault]int{faultKillLeader: 1 << 30}, "", "never injected"},
		{"a fault that fails ends the run", nil, faultPause, "pause_replica could not be injected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			skips := maps.Clone(tc.skips)
			in := &injector{rng: newRand(7), h: &harness{proxy: &mongoProxy{}, logf: t.Logf}, counts: map[fault]int{}, every: time.Millisecond,
				injectFn: func(_ context.Context, f fault) error {
					if f == tc.fatal {
						return errors.New("exec: no such file")
					}
					if skips[f] > 0 {
						skips[f]--
						return fmt.Errorf("%w: not now", errSkipped)
					}
					return nil
				}}
			stop, cancel := context.WithCancel(context.Background())
			cancel()
			bound, cancelBound := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancelBound()
			err := in.run(stop, bound)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("run = %v, want an error saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range allFaults {
				if in.counts[f] != 1 {
					t.Errorf("%s injected %d times, want once", f, in.counts[f])
				}
			}
		})
	}
}

// TestNoMongoDBOutageWithoutAProxy: with a MONGODB_URI the proxy cannot
// stand in front of, MongoDB outages are not among the kinds a run must
// inject (kill_replica takes their turn), and the rest still are.
func TestNoMongoDBOutageWithoutAProxy(t *testing.T) {
	in := &injector{h: &harness{logf: t.Logf}}
	kinds := in.kinds()
	if slices.Contains(kinds, faultMongoCut) || len(kinds) != len(allFaults)-1 {
		t.Fatalf("kinds without a proxy = %v, want every kind but %s", kinds, faultMongoCut)
	}
}

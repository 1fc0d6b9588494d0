package chaos

import (
	"context"
	"errors"
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
	n, err := newNATSCluster(natsServerBin(t), dir, 1)
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

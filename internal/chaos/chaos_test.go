package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestChaos is the short chaos run of `make test` (40 s of faults, and on
// until every fault kind has been injected once, on one nats-server); `make chaos` sets CHAOS_DURATION for the long one and
// CHAOS_NATS_NODES=3 for a cluster with R3 streams; CHAOS_PARTITIONS
// (default 1) is every replica's NOTIFIER_PARTITIONS. CHAOS_SEED replays a
// run; NATS_SERVER_BIN names the nats-server binary (the Makefile installs
// bin/nats-server); MONGODB_URI, if set, is used instead of a stand-in.
// Both runs have deploy/nats/nats.conf's users and signed events.
func TestChaos(t *testing.T) {
	duration := 40 * time.Second
	if v := os.Getenv("CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CHAOS_DURATION: %v", err)
		}
		duration = d
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED: %v", err)
		}
		seed = s
	}
	nodes := 1
	if v := os.Getenv("CHAOS_NATS_NODES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("CHAOS_NATS_NODES: %q is not a node count", v)
		}
		nodes = n
	}
	partitions := 1
	if v := os.Getenv("CHAOS_PARTITIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("CHAOS_PARTITIONS: %q is not a partition count", v)
		}
		partitions = n
	}
	natsBin := natsServerBin(t)
	// Logs stay behind when the run fails (t.TempDir would remove them).
	dir, err := os.MkdirTemp("", "chaos-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("CHAOS_KEEP_LOGS") == "" {
			_ = os.RemoveAll(dir)
		}
	})
	workerBin, issuerBin := filepath.Join(dir, "customdata-worker"), filepath.Join(dir, "reference-issuer")
	if out, err := exec.Command("go", "build", "-o", workerBin, "../../cmd/customdata-worker").CombinedOutput(); err != nil {
		t.Fatalf("build the worker: %v\n%s", err, out)
	}
	if out, err := exec.Command("go", "build", "-o", issuerBin, "../../cmd/reference-issuer").CombinedOutput(); err != nil {
		t.Fatalf("build the reference issuer: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration+10*time.Minute)
	defer cancel()
	sum, err := Run(ctx, Config{
		WorkerBin: workerBin, IssuerBin: issuerBin, NATSServerBin: natsBin, NATSConf: deployNATSConf, NATSNodes: nodes, Partitions: partitions, Dir: dir, Duration: duration, Seed: seed,
		MongoURI: os.Getenv("MONGODB_URI"), Logf: t.Logf,
	})
	t.Log(sum)
	if err != nil {
		// Beside the logs, for whoever reads them later.
		_ = os.WriteFile(filepath.Join(dir, "FAILED.txt"), fmt.Appendf(nil, "%s\n%v\n", sum, err), 0o644)
		t.Fatalf("%v\n(logs of every process are in %s; CHAOS_SEED=%d replays the faults)", err, dir, seed)
	}
	// Run fails when a kind never came; this says it where the test
	// does, from the counts the summary prints.
	for _, f := range allFaults {
		if _, proxied := proxiedURI(os.Getenv("MONGODB_URI"), "127.0.0.1:1"); f == faultMongoCut && os.Getenv("MONGODB_URI") != "" && !proxied {
			continue // no proxy can stand in front of that MongoDB
		}
		if sum.Faults[f] == 0 {
			t.Errorf("fault %s was never injected: the run proves nothing about it", f)
		}
	}
}

// natsServerBin is the nats-server binary: NATS_SERVER_BIN, or the one the
// Makefile installs into bin/.
func natsServerBin(t *testing.T) string {
	t.Helper()
	natsBin := os.Getenv("NATS_SERVER_BIN")
	if natsBin == "" {
		natsBin = "../../bin/nats-server"
	}
	if _, err := exec.LookPath(natsBin); err != nil {
		t.Fatalf("nats-server binary %s: %v (run `make test`, which installs it, or set NATS_SERVER_BIN)", natsBin, err)
	}
	return natsBin
}

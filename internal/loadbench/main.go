// Command loadbench measures the worker from outside, as users run it: a
// nats-server process with JetStream on disk, MongoDB (MONGODB_URI, else
// the stand-in), and the worker binary configured by its environment. It
// compares the worker with a naive worker (one UpdateOne and one ack per
// message), the database ceiling (the same final writes as unordered bulk
// writes, no NATS) and the broker ceiling (fetch and ack only), and
// measures commit → notice latency and the peak RSS of a backlog drain.
// It prints a table and writes JSON to BENCH_OUT; it asserts no target
// (figures on a shared machine are noisy) but fails when a contender
// leaves MongoDB in the wrong state. `make bench` runs it; see
// docs/BENCHMARK.md for every setting.
//
// The naive worker and the ceilings are this same binary, re-executed:
//
//	loadbench                      run the benchmark
//	loadbench naive|broker|dbceiling -nats URL -mongo URI -db DB …
package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/customdata-worker/customdata-worker/internal/redact"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		kind := args[0]
		f, err := parseChildFlags(kind, args[1:])
		if err != nil {
			return 2
		}
		switch kind {
		case "naive":
			err = runNaive(ctx, f)
		case "broker":
			err = runBroker(ctx, f)
		case "dbceiling":
			err = runDBCeiling(ctx, f, stdin, stdout)
		default:
			fmt.Fprintf(stderr, "unknown command %q (want no argument, naive, broker or dbceiling)\n", kind)
			return 2
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", kind, err)
			return 1
		}
		return 0
	}
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	r, err := benchmark(ctx, cfg, stdout)
	if r != nil {
		r.printTable(stdout)
		if path, werr := r.write(cfg.Out); werr != nil {
			fmt.Fprintln(stderr, werr)
			return 1
		} else {
			fmt.Fprintf(stdout, "\nresults: %s\n", path)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "benchmark failed:", err)
		return 1
	}
	if len(r.Failures) > 0 {
		return 1
	}
	return 0
}

// benchmark runs every selected workload. Progress goes to out as it
// happens; the report is returned even when a step fails, with what was
// measured before.
func benchmark(ctx context.Context, cfg config, out io.Writer) (*report, error) {
	r := &report{Config: cfg, Environment: benchEnvironment(), Machine: describeMachine(), MongoDB: "stand-in (mongo-java-server, fresh per workload)"}
	if cfg.MongoURI != "" {
		r.MongoDB = redact.URI(cfg.MongoURI)
	}
	r.Commit, r.CommitDirty = gitCommit()
	defer func() {
		r.Machine.Finished = time.Now().UTC()
		r.Machine.LoadAvgEnd = loadAvg()
		r.summarize()
	}()
	workerBin, err := filepath.Abs(cfg.WorkerBin)
	if err != nil {
		return r, fmt.Errorf("worker binary: %w", err)
	}
	if _, err := os.Stat(workerBin); err != nil {
		return r, fmt.Errorf("worker binary (build it with `make build`, or set WORKER_BIN): %w", err)
	}
	cfg.WorkerBin = workerBin
	r.Worker = describeBinary(workerBin)
	r.Worker.Label = os.Getenv("WORKER_LABEL")
	if r.Worker.VCSRevision == "" && os.Getenv("WORKER_BIN") == "" {
		// The default binary is the one `make bench` just built from this
		// checkout (GOFLAGS=-buildvcs=false leaves no stamp in it).
		r.Worker.VCSRevision, r.Worker.VCSModified = r.Commit, r.CommitDirty
	}
	self, err := os.Executable()
	if err != nil {
		return r, fmt.Errorf("locate own binary: %w", err)
	}
	dir, err := os.MkdirTemp("", "loadbench-")
	if err != nil {
		return r, fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(dir)

	b := &bench{cfg: cfg, dir: dir, self: self}
	defer b.close()
	if b.nats, err = startNATS(ctx, cfg.NATSServerBin, dir); err != nil {
		return r, err
	}
	r.NATSServer = b.nats.version
	if b.nc, err = nats.Connect(b.nats.url, nats.Name("loadbench")); err != nil {
		return r, fmt.Errorf("connect NATS: %w", err)
	}
	if b.js, err = jetstream.New(b.nc); err != nil {
		return r, fmt.Errorf("jetstream: %w", err)
	}
	progress := func(format string, args ...any) {
		fmt.Fprintf(out, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	progress("worker %s, nats-server %s on %s, MongoDB %s", workerBin, r.NATSServer, b.nats.url, r.MongoDB)

	type queueWorkload struct {
		name, desc string
		events     int
		users      int // 0: one per event
		contenders []string
	}
	var wls []queueWorkload
	all := []string{cWorker, cNaive, cDBCeiling, cBroker}
	if cfg.has(wlDistinct) {
		wls = append(wls, queueWorkload{wlDistinct, fmt.Sprintf("%d LOGINs of distinct users, notices off", cfg.Events), cfg.Events, 0, all})
	}
	if cfg.has(wlSkewed) {
		// The skewed target is stated with notices on; notices on
		// runs first: on the stand-in it gets the smallest oplog.
		wls = append(wls, queueWorkload{wlSkewed, fmt.Sprintf("%d LOGINs, Zipf(s=%.2f) over %d users, worker with notices on and off", cfg.Events, cfg.ZipfS, cfg.SkewedUsers),
			cfg.Events, cfg.SkewedUsers, append([]string{cWorkerNotices}, all...)})
	}
	if cfg.has(wlNotices) {
		// Notices on first: on the stand-in it gets the smallest oplog.
		wls = append(wls, queueWorkload{wlNotices, fmt.Sprintf("%d LOGINs, Zipf(s=%.2f) over %d users, worker with notices on and off", cfg.NoticeEvents, cfg.ZipfS, cfg.SkewedUsers), cfg.NoticeEvents, cfg.SkewedUsers, []string{cWorkerNotices, cWorker}})
	}
	for i, wl := range wls {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		bl, err := newBacklog(wl.events, wl.users, cfg.ZipfS, uint64(i+1))
		if err != nil {
			return r, err
		}
		if err := b.freshMongo(ctx); err != nil {
			return r, err
		}
		res := workloadResult{Name: wl.name, Description: wl.desc, Events: wl.events, Users: len(bl.users)}
		for _, c := range wl.contenders {
			var runs []contenderResult
			for run := range cfg.Repeat {
				progress("%s: %s (run %d of %d)…", wl.name, c, run+1, cfg.Repeat)
				var cr contenderResult
				if c == cDBCeiling {
					cr, err = b.runDBCeiling(ctx, wl.name, bl)
				} else {
					cr, err = b.runQueued(ctx, wl.name, bl, c)
				}
				if err != nil {
					r.Workloads = append(r.Workloads, res)
					return r, fmt.Errorf("%s, %s: %w", wl.name, c, err)
				}
				if !cr.Verified {
					r.Failures = append(r.Failures, fmt.Sprintf("%s, %s: MongoDB not in the expected state: %s", wl.name, c, cr.VerifyError))
				}
				progress("%s: %s: %.0f events/s, %.1f µs CPU/event, other load %s%%", wl.name, c, cr.EventsPerS, cr.CPUUsPerEvent, fmtOpt(cr.OtherLoadPct, "%.0f"))
				runs = append(runs, cr)
			}
			res.Contenders = append(res.Contenders, medianRun(runs))
		}
		r.Workloads = append(r.Workloads, res)
	}
	if cfg.has(wlLatency) {
		if err := b.freshMongo(ctx); err != nil {
			return r, err
		}
		progress("latency: commit → notice, from %d changes/s…", cfg.NoticeRate)
		r.NoticeLatency, err = b.runLatency(ctx)
		if err != nil {
			return r, fmt.Errorf("latency: %w", err)
		}
	}
	if cfg.has(wlBurst) {
		bl, err := newBacklog(cfg.BurstEvents, 0, cfg.ZipfS, 99)
		if err != nil {
			return r, err
		}
		if err := b.freshMongo(ctx); err != nil {
			return r, err
		}
		progress("burst: %d events…", cfg.BurstEvents)
		res := workloadResult{Name: wlBurst, Description: fmt.Sprintf("%d-event backlog of distinct users, notices off: peak RSS", cfg.BurstEvents), Events: cfg.BurstEvents, Users: len(bl.users)}
		cr, err := b.runQueued(ctx, wlBurst, bl, cWorker)
		if err != nil {
			r.Workloads = append(r.Workloads, res)
			return r, fmt.Errorf("burst: %w", err)
		}
		if !cr.Verified {
			r.Failures = append(r.Failures, fmt.Sprintf("burst, worker: MongoDB not in the expected state: %s", cr.VerifyError))
		}
		progress("burst: %.0f events/s, %.1f µs CPU/event, peak RSS %.1f MiB", cr.EventsPerS, cr.CPUUsPerEvent, cr.PeakRSSMiB)
		res.Contenders = append(res.Contenders, cr)
		r.Workloads = append(r.Workloads, res)
	}
	return r, nil
}

// medianRun returns the run with the median events/s, carrying every
// run's rate; a run that failed verification makes the result unverified.
func medianRun(runs []contenderResult) contenderResult {
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b contenderResult) int { return cmp.Compare(a.EventsPerS, b.EventsPerS) })
	m := sorted[len(sorted)/2]
	m.Runs = len(runs)
	if len(runs) > 1 {
		m.EventsPerSRuns = nil
		for _, r := range runs {
			m.EventsPerSRuns = append(m.EventsPerSRuns, r.EventsPerS)
			if !r.Verified && m.Verified {
				m.Verified, m.VerifyError = false, r.VerifyError
			}
		}
	}
	return m
}

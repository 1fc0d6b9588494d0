package main

import (
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/customdata-worker/customdata-worker/internal/redact"
)

// contenderResult is what one contender did on one workload. CPU figures
// are CPU-seconds of a process over the drain window divided by the
// events of the backlog, in microseconds; nil means not measured (a
// MongoDB the harness does not own, or a process without that role).
type contenderResult struct {
	Name       string  `json:"name"`
	Events     int     `json:"events"`
	EventsPerS float64 `json:"events_per_s"`
	// DrainS runs from the first delivery (or the start signal, for the
	// database ceiling) to the last ack (or the last write).
	DrainS float64 `json:"drain_s"`
	// WallS runs from starting the process to the last ack: startup,
	// connecting and provisioning included.
	WallS                float64  `json:"wall_s"`
	CPUUsPerEvent        float64  `json:"cpu_us_per_event"`
	StandinCPUUsPerEvent *float64 `json:"standin_cpu_us_per_event"`
	NATSCPUUsPerEvent    *float64 `json:"nats_cpu_us_per_event"`
	PeakRSSMiB           float64  `json:"peak_rss_mib"`
	// OtherLoadPct is the share of the machine's CPU that processes
	// outside the benchmark used during the drain (a shared machine).
	OtherLoadPct *float64 `json:"other_load_pct"`
	// Runs and EventsPerSRuns: with BENCH_REPEAT > 1 the contender ran
	// that often; the figures are those of the median run.
	Runs           int       `json:"runs"`
	EventsPerSRuns []float64 `json:"events_per_s_runs,omitempty"`
	Verified       bool      `json:"verified"`
	VerifyError    string    `json:"verify_error,omitempty"`
	// Redelivered counts deliveries beyond one per event (redeliveries
	// after AckWait or a Nak), from the consumer's delivered sequence;
	// nil for the database ceiling. DeadLetters is the size of the
	// dead-letter stream after a worker's drain (nil for the others); any
	// dead letter fails verification.
	Redelivered *uint64 `json:"redelivered"`
	DeadLetters *uint64 `json:"dead_letters,omitempty"`
	ExitCode    int     `json:"exit_code"`
	// Notices, for a worker with notices on: how many the notice stream
	// held when the drain ended and once it settled, and how long after
	// the drain it settled.
	NoticesAtDrain  *uint64  `json:"notices_at_drain,omitempty"`
	NoticesTotal    *uint64  `json:"notices_total,omitempty"`
	NoticesSettledS *float64 `json:"notices_settled_s,omitempty"`
}

// workloadResult is one workload and its contenders.
type workloadResult struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Events      int               `json:"events"`
	Users       int               `json:"users"`
	Contenders  []contenderResult `json:"contenders"`
}

func (w *workloadResult) find(name string) *contenderResult {
	for i := range w.Contenders {
		if w.Contenders[i].Name == name {
			return &w.Contenders[i]
		}
	}
	return nil
}

// latencyStep is one rate of the notice latency scenario.
type latencyStep struct {
	TargetRate   float64 `json:"target_rate_per_s"`
	AchievedRate float64 `json:"achieved_rate_per_s"`
	Changes      int     `json:"changes"`
	P50Ms        float64 `json:"p50_ms"`
	P90Ms        float64 `json:"p90_ms"`
	P99Ms        float64 `json:"p99_ms"`
	MaxMs        float64 `json:"max_ms"`
	Missing      int     `json:"missing"`
	// NotifierCPUUsPerChange is the worker process's CPU (it consumes no
	// auth events here, so all of it is the notifier's) per change, from
	// the first change to the last notice.
	NotifierCPUUsPerChange float64  `json:"notifier_cpu_us_per_change"`
	OtherLoadPct           *float64 `json:"other_load_pct"`
	StandinCPUUsPerChange  *float64 `json:"standin_cpu_us_per_change"`
	Sustained              bool     `json:"sustained"`
}

type latencyResult struct {
	TargetP99Ms float64       `json:"target_p99_ms"`
	Steps       []latencyStep `json:"steps"`
}

type machineInfo struct {
	CPUs         int       `json:"cpus"`
	Model        string    `json:"cpu_model"`
	MemTotalMiB  int64     `json:"mem_total_mib"`
	Kernel       string    `json:"kernel"`
	GoVersion    string    `json:"go_version"`
	LoadAvgStart string    `json:"loadavg_start"`
	LoadAvgEnd   string    `json:"loadavg_end"`
	Hostname     string    `json:"hostname"`
	Started      time.Time `json:"started"`
	Finished     time.Time `json:"finished"`
}

type binaryInfo struct {
	Path string `json:"path"`
	// Label is WORKER_LABEL, a name for a binary built elsewhere
	// (e.g. "97878d2, before").
	Label       string `json:"label,omitempty"`
	VCSRevision string `json:"vcs_revision,omitempty"`
	VCSModified bool   `json:"vcs_modified,omitempty"`
	GoVersion   string `json:"go_version,omitempty"`
}

// report is the JSON written to BENCH_OUT. The top-level figures are the
// ones issue targets are stated in; nil means the workload did not run.
type report struct {
	RatioVsNaive        *float64 `json:"ratio_vs_naive"`
	RatioVsCeiling      *float64 `json:"ratio_vs_ceiling"`
	RatioVsBrokerSkewed *float64 `json:"ratio_vs_broker_ceiling_skewed"`
	// The skewed ratios of the worker with notices on.
	RatioVsNaiveNotices  *float64    `json:"ratio_vs_naive_skewed_notices"`
	RatioVsBrokerNotices *float64    `json:"ratio_vs_broker_ceiling_skewed_notices"`
	WorkerCPUUsPerEvent  *float64    `json:"worker_cpu_us_per_event"`
	WorkerCPUSource      string      `json:"worker_cpu_source,omitempty"`
	EventsPerS           *float64    `json:"events_per_s"`
	NoticeP50Ms          *float64    `json:"notice_p50_ms"`
	NoticeP99Ms          *float64    `json:"notice_p99_ms"`
	NoticeMissing        *int        `json:"notice_missing"`
	NoticeRatePerS       *float64    `json:"notice_rate_per_s"`
	NoticeTargetMet      *bool       `json:"notice_target_met"`
	NotifierCPUUsPerChg  *float64    `json:"notifier_cpu_us_per_change"`
	StandinCPUUsPerChg   *float64    `json:"standin_cpu_us_per_change"`
	PeakRSSMiB           *float64    `json:"peak_rss_mib"`
	Commit               string      `json:"commit"`
	CommitDirty          bool        `json:"commit_dirty"`
	Worker               binaryInfo  `json:"worker"`
	NATSServer           string      `json:"nats_server"`
	MongoDB              string      `json:"mongodb"`
	Machine              machineInfo `json:"machine"`
	Config               config      `json:"config"`
	// Environment holds the BENCH_* and CUSTOMDATA_* variables the run
	// was given (CUSTOMDATA_* pass through to the worker), secrets removed.
	Environment   map[string]string `json:"environment"`
	Workloads     []workloadResult  `json:"workloads"`
	NoticeLatency *latencyResult    `json:"notice_latency,omitempty"`
	Failures      []string          `json:"failures,omitempty"`
}

func ptr[T any](v T) *T { return &v }

// summarize fills the top-level figures from the workloads.
func (r *report) summarize() {
	for i := range r.Workloads {
		w := &r.Workloads[i]
		worker := w.find(cWorker)
		switch w.Name {
		case wlDistinct:
			if worker != nil && worker.Verified {
				r.EventsPerS = ptr(worker.EventsPerS)
				if r.WorkerCPUUsPerEvent == nil {
					r.WorkerCPUUsPerEvent = ptr(worker.CPUUsPerEvent)
					r.WorkerCPUSource = wlDistinct
				}
				if c := w.find(cDBCeiling); c != nil && c.Verified && c.EventsPerS > 0 {
					r.RatioVsCeiling = ptr(worker.EventsPerS / c.EventsPerS)
				}
			}
		case wlSkewed:
			if worker != nil && worker.Verified {
				if c := w.find(cNaive); c != nil && c.Verified && c.EventsPerS > 0 {
					r.RatioVsNaive = ptr(worker.EventsPerS / c.EventsPerS)
				}
				if c := w.find(cBroker); c != nil && c.EventsPerS > 0 {
					r.RatioVsBrokerSkewed = ptr(worker.EventsPerS / c.EventsPerS)
				}
			}
			if wn := w.find(cWorkerNotices); wn != nil && wn.Verified {
				if c := w.find(cNaive); c != nil && c.Verified && c.EventsPerS > 0 {
					r.RatioVsNaiveNotices = ptr(wn.EventsPerS / c.EventsPerS)
				}
				if c := w.find(cBroker); c != nil && c.EventsPerS > 0 {
					r.RatioVsBrokerNotices = ptr(wn.EventsPerS / c.EventsPerS)
				}
			}
		case wlBurst:
			if worker != nil && worker.Verified {
				// The CPU target is stated per 100k events: the burst is
				// that backlog, so it is the source when it ran.
				r.WorkerCPUUsPerEvent = ptr(worker.CPUUsPerEvent)
				r.WorkerCPUSource = wlBurst
				r.PeakRSSMiB = ptr(worker.PeakRSSMiB)
			}
		}
	}
	if r.NoticeLatency != nil && len(r.NoticeLatency.Steps) > 0 {
		// The first sustained step is the highest rate sustained (steps go
		// down from the target); if none was, the last (lowest) tried.
		steps := r.NoticeLatency.Steps
		s := steps[len(steps)-1]
		for _, st := range steps {
			if st.Sustained {
				s = st
				break
			}
		}
		r.NoticeP50Ms, r.NoticeP99Ms, r.NoticeMissing = ptr(s.P50Ms), ptr(s.P99Ms), ptr(s.Missing)
		r.NoticeRatePerS = ptr(s.AchievedRate)
		r.NoticeTargetMet = ptr(steps[0].Sustained)
		r.NotifierCPUUsPerChg = ptr(s.NotifierCPUUsPerChange)
		r.StandinCPUUsPerChg = s.StandinCPUUsPerChange
	}
}

// write stores the report as JSON in dir and returns the file's path.
func (r *report) write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("results directory: %w", err)
	}
	commit := r.Commit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	name := fmt.Sprintf("bench-%s-%s.json", r.Machine.Started.UTC().Format("20060102T150405Z"), commit)
	path := filepath.Join(dir, name)
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("write report: %w", err)
	}
	return path, nil
}

func fmtOpt(v *float64, format string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v)
}

// printTable writes the human-readable summary.
func (r *report) printTable(w io.Writer) {
	fmt.Fprintf(w, "\nworker %s (%scommit %s%s), harness commit %s%s, nats-server %s, MongoDB: %s\n",
		r.Worker.Path, label(r.Worker.Label), orDash(r.Worker.VCSRevision), map[bool]string{true: "+dirty"}[r.Worker.VCSModified],
		orDash(r.Commit), map[bool]string{true: "+dirty"}[r.CommitDirty], r.NATSServer, r.MongoDB)
	fmt.Fprintf(w, "machine: %d CPUs, %s; load average at start %s, at end %s\n",
		r.Machine.CPUs, r.Machine.Model, r.Machine.LoadAvgStart, r.Machine.LoadAvgEnd)
	for _, wl := range r.Workloads {
		fmt.Fprintf(w, "\n%s — %s\n", wl.Name, wl.Description)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "contender\tevents/s\tdrain s\tCPU µs/ev\tstand-in µs/ev\tnats µs/ev\tpeak RSS MiB\tother load %\tredelivered\tok\t")
		for _, c := range wl.Contenders {
			ok := "yes"
			if !c.Verified {
				ok = "NO"
			}
			redelivered := "-"
			if c.Redelivered != nil {
				redelivered = strconv.FormatUint(*c.Redelivered, 10)
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.1f\t%s\t%s\t%.1f\t%s\t%s\t%s\t\n", c.Name, c.EventsPerS, c.DrainS, c.CPUUsPerEvent,
				fmtOpt(c.StandinCPUUsPerEvent, "%.1f"), fmtOpt(c.NATSCPUUsPerEvent, "%.1f"), c.PeakRSSMiB, fmtOpt(c.OtherLoadPct, "%.0f"), redelivered, ok)
		}
		tw.Flush()
		for _, c := range wl.Contenders {
			if c.NoticesTotal != nil {
				fmt.Fprintf(w, "  %s: %d notices at drain end, %d in all, settled %.2fs after the drain\n",
					c.Name, *c.NoticesAtDrain, *c.NoticesTotal, *c.NoticesSettledS)
			}
			if c.VerifyError != "" {
				fmt.Fprintf(w, "  %s: NOT VERIFIED: %s\n", c.Name, c.VerifyError)
			}
		}
	}
	if r.NoticeLatency != nil {
		fmt.Fprintf(w, "\nlatency — commit → notice (inserts at a paced rate, ordered consumer on the notice stream; sustained = 0 missing and p99 ≤ %.0f ms)\n", r.NoticeLatency.TargetP99Ms)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "target/s\tachieved/s\tchanges\tp50 ms\tp90 ms\tp99 ms\tmax ms\tmissing\tnotifier µs/chg\tstand-in µs/chg\tother load %\tsustained\t")
		for _, s := range r.NoticeLatency.Steps {
			fmt.Fprintf(tw, "%.0f\t%.0f\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%.1f\t%s\t%s\t%v\t\n", s.TargetRate, s.AchievedRate, s.Changes,
				s.P50Ms, s.P90Ms, s.P99Ms, s.MaxMs, s.Missing, s.NotifierCPUUsPerChange, fmtOpt(s.StandinCPUUsPerChange, "%.1f"), fmtOpt(s.OtherLoadPct, "%.0f"), s.Sustained)
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\nsummary")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  events_per_s (distinct)\t%s\n", fmtOpt(r.EventsPerS, "%.0f"))
	fmt.Fprintf(tw, "  ratio_vs_ceiling (distinct)\t%s\n", fmtOpt(r.RatioVsCeiling, "%.2f"))
	fmt.Fprintf(tw, "  ratio_vs_naive (skewed)\t%s\n", fmtOpt(r.RatioVsNaive, "%.2f"))
	fmt.Fprintf(tw, "  ratio_vs_broker_ceiling (skewed)\t%s\n", fmtOpt(r.RatioVsBrokerSkewed, "%.2f"))
	fmt.Fprintf(tw, "  ratio_vs_naive (skewed, notices on)\t%s\n", fmtOpt(r.RatioVsNaiveNotices, "%.2f"))
	fmt.Fprintf(tw, "  ratio_vs_broker_ceiling (skewed, notices on)\t%s\n", fmtOpt(r.RatioVsBrokerNotices, "%.2f"))
	fmt.Fprintf(tw, "  worker_cpu_us_per_event (%s)\t%s\n", orDash(r.WorkerCPUSource), fmtOpt(r.WorkerCPUUsPerEvent, "%.1f"))
	fmt.Fprintf(tw, "  peak_rss_mib (burst)\t%s\n", fmtOpt(r.PeakRSSMiB, "%.1f"))
	missing := "-"
	if r.NoticeMissing != nil {
		missing = fmt.Sprint(*r.NoticeMissing)
	}
	fmt.Fprintf(tw, "  notice p50 / p99 ms at %s/s, missing\t%s / %s, %s\n", fmtOpt(r.NoticeRatePerS, "%.0f"),
		fmtOpt(r.NoticeP50Ms, "%.1f"), fmtOpt(r.NoticeP99Ms, "%.1f"), missing)
	tw.Flush()
	for _, f := range r.Failures {
		fmt.Fprintf(w, "FAILED: %s\n", f)
	}
}

func label(s string) string {
	if s == "" {
		return ""
	}
	return s + ", "
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// describeMachine gathers what a reader needs to compare two runs.
func describeMachine() machineInfo {
	m := machineInfo{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), LoadAvgStart: loadAvg(), Started: time.Now().UTC()}
	m.Hostname, _ = os.Hostname()
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		if b, err := parseStatusKB(f, "MemTotal"); err == nil {
			m.MemTotalMiB = b >> 20
		}
		f.Close()
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	return m
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// describeBinary reads the VCS stamp Go builds embed, so a report says
// which commit of the worker it measured.
func describeBinary(path string) binaryInfo {
	b := binaryInfo{Path: path}
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return b
	}
	b.GoVersion = info.GoVersion
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.VCSRevision = s.Value
		case "vcs.modified":
			b.VCSModified = s.Value == "true"
		}
	}
	return b
}

// benchEnvironment records the settings that shaped a run.
func benchEnvironment() map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "BENCH_"), k == "WORKER_BIN", k == "WORKER_LABEL", k == "NATS_SERVER_BIN":
			env[k] = v
		case strings.HasPrefix(k, "CUSTOMDATA_"):
			if strings.Contains(k, "PASSWORD") || strings.Contains(k, "TOKEN") || strings.Contains(k, "SEED") || strings.Contains(k, "CREDS") {
				v = "<redacted>"
			} else if strings.Contains(k, "URI") {
				v = redact.URI(v)
			}
			env[k] = v
		case k == "MONGODB_URI":
			env[k] = redact.URI(v)
		}
	}
	return env
}

// gitCommit is the commit of the checkout the harness runs in.
func gitCommit() (string, bool) {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		if info, ok := debug.ReadBuildInfo(); ok {
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" {
					return s.Value, false
				}
			}
		}
		return "", false
	}
	status, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
	return strings.TrimSpace(string(out)), len(strings.TrimSpace(string(status))) > 0
}

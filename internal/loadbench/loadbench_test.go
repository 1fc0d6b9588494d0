package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
)

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    time.Duration
		wantErr bool
	}{
		{"plain", "4242 (customdata-work) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 37 0 0 20 0 9 0 100 0 0", 2870 * time.Millisecond, false},
		{"command with spaces and parens", "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0", 70 * time.Millisecond, false},
		{"truncated", "7 (x) R 1 2 3", 0, true},
		{"no command", "7 x R", 0, true},
		{"not a number", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 a 4 0 0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tt.stat))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseStatusKB(t *testing.T) {
	status := "Name:\tjava\nVmPeak:\t  999 kB\nVmHWM:\t   20480 kB\nVmRSS:\t  100 kB\n"
	tests := []struct {
		key     string
		want    int64
		wantErr bool
	}{
		{"VmHWM", 20480 << 10, false},
		{"VmRSS", 100 << 10, false},
		{"VmSwap", 0, true},
		{"Name", 0, true}, // not a kB line
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got, err := parseStatusKB(strings.NewReader(status), tt.key)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

// The harness's own process must be measurable through the same path it
// uses for the worker.
func TestCPUAndRSSOfSelf(t *testing.T) {
	if _, err := cpuTime(os.Getpid()); err != nil {
		t.Fatalf("cpuTime(self): %v", err)
	}
	rss, err := peakRSS(os.Getpid())
	if err != nil || rss <= 0 {
		t.Fatalf("peakRSS(self) = %d, %v", rss, err)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	tests := []struct {
		p    float64
		in   []time.Duration
		want time.Duration
	}{
		{0.50, d, 50 * time.Millisecond},
		{0.99, d, 99 * time.Millisecond},
		{1, d, 100 * time.Millisecond},
		{0.99, d[:1], time.Millisecond},
		{0.5, nil, 0},
	}
	for _, tt := range tests {
		if got := percentile(tt.in, tt.p); got != tt.want {
			t.Errorf("percentile(%d values, %g) = %v, want %v", len(tt.in), tt.p, got, tt.want)
		}
	}
}

func TestNewBacklog(t *testing.T) {
	tests := []struct {
		name           string
		n, users       int
		wantUsers      int
		wantFinalUsers func(int) bool
	}{
		{"distinct", 500, 0, 500, func(n int) bool { return n == 500 }},
		{"skewed", 2000, 100, 100, func(n int) bool { return n > 1 && n <= 100 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := newBacklog(tt.n, tt.users, 1.1, 7)
			if err != nil {
				t.Fatal(err)
			}
			if len(b.events) != tt.n || len(b.ids) != tt.n || len(b.users) != tt.wantUsers {
				t.Fatalf("%d events, %d ids, %d users", len(b.events), len(b.ids), len(b.users))
			}
			if !tt.wantFinalUsers(len(b.final)) {
				t.Fatalf("%d users logged in", len(b.final))
			}
			// Every event is one the worker accepts, and each user's final
			// time is the time of its last event.
			last := map[string]time.Time{}
			seen := map[string]bool{}
			for i, data := range b.events {
				ev, err := events.Decode(data)
				if err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
				if ev.ID != b.ids[i] || seen[ev.ID] {
					t.Fatalf("event %d: id %q, recorded %q, duplicate %v", i, ev.ID, b.ids[i], seen[ev.ID])
				}
				seen[ev.ID] = true
				last[ev.User.ID] = ev.Time
			}
			for u, want := range last {
				if !b.final[u].Equal(want) {
					t.Errorf("final[%s] = %v, want %v", u, b.final[u], want)
				}
			}
		})
	}
}

func TestSkewedBacklogIsSkewed(t *testing.T) {
	b, err := newBacklog(5000, 1000, 1.1, 1)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, data := range b.events {
		var ev events.AuthEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			t.Fatal(err)
		}
		counts[ev.User.ID]++
	}
	// Under Zipf the most frequent user logs in far more than a uniform
	// 5 times out of 5,000.
	if top := counts[userID(0)]; top < 100 {
		t.Errorf("user 0 has %d of 5000 events; the workload is not skewed", top)
	}
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		check   func(config) bool
		wantErr string
	}{
		{"defaults", nil, func(c config) bool {
			return c.Events == 50_000 && c.Repeat == 3 && c.BurstEvents == 100_000 && c.NoticeRate == 1000 &&
				c.NoticeP99 == 50*time.Millisecond && len(c.Workloads) == len(allWorkloads) && c.Out == "bench/results"
		}, ""},
		{"selection keeps the run order", map[string]string{"BENCH_WORKLOADS": "burst, distinct"}, func(c config) bool {
			return len(c.Workloads) == 2 && c.Workloads[0] == wlDistinct && c.Workloads[1] == wlBurst && !c.has(wlLatency)
		}, ""},
		{"underscores in counts", map[string]string{"BENCH_EVENTS": "20_000"}, func(c config) bool { return c.Events == 20_000 }, ""},
		{"unknown workload", map[string]string{"BENCH_WORKLOADS": "distinct,fast"}, nil, `unknown workload "fast"`},
		{"zero events", map[string]string{"BENCH_EVENTS": "0"}, nil, "BENCH_EVENTS must be at least 1"},
		{"bad zipf", map[string]string{"BENCH_ZIPF_S": "1"}, nil, "BENCH_ZIPF_S must be above 1"},
		{"bad duration", map[string]string{"BENCH_NOTICE_P99": "fast"}, nil, "BENCH_NOTICE_P99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"BENCH_EVENTS", "BENCH_WORKLOADS", "BENCH_ZIPF_S", "BENCH_NOTICE_P99", "BENCH_OUT",
				"BENCH_BURST_EVENTS", "BENCH_NOTICE_RATE", "BENCH_NOTICE_EVENTS", "BENCH_SKEWED_USERS", "BENCH_REPEAT"} {
				t.Setenv(k, tt.env[k])
			}
			c, err := loadConfig()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	r := &report{
		Workloads: []workloadResult{
			{Name: wlDistinct, Contenders: []contenderResult{
				{Name: cWorker, EventsPerS: 3000, CPUUsPerEvent: 100, Verified: true},
				{Name: cDBCeiling, EventsPerS: 12000, Verified: true},
			}},
			{Name: wlSkewed, Contenders: []contenderResult{
				{Name: cWorkerNotices, EventsPerS: 4000, Verified: true},
				{Name: cWorker, EventsPerS: 5000, Verified: true},
				{Name: cNaive, EventsPerS: 1000, Verified: true},
				{Name: cBroker, EventsPerS: 50000, Verified: true},
			}},
			{Name: wlBurst, Contenders: []contenderResult{{Name: cWorker, CPUUsPerEvent: 90, PeakRSSMiB: 30, Verified: true}}},
		},
		NoticeLatency: &latencyResult{Steps: []latencyStep{
			{TargetRate: 1000, AchievedRate: 990, P99Ms: 80},
			{TargetRate: 500, AchievedRate: 500, P50Ms: 3, P99Ms: 20, Sustained: true},
		}},
	}
	r.summarize()
	checks := []struct {
		name      string
		got, want float64
	}{
		{"events_per_s", *r.EventsPerS, 3000},
		{"ratio_vs_ceiling", *r.RatioVsCeiling, 0.25},
		{"ratio_vs_naive", *r.RatioVsNaive, 5},
		{"ratio_vs_broker", *r.RatioVsBrokerSkewed, 0.1},
		{"ratio_vs_naive, notices on", *r.RatioVsNaiveNotices, 4},
		{"ratio_vs_broker, notices on", *r.RatioVsBrokerNotices, 0.08},
		{"worker_cpu (burst)", *r.WorkerCPUUsPerEvent, 90},
		{"peak_rss", *r.PeakRSSMiB, 30},
		{"notice p99 (highest sustained)", *r.NoticeP99Ms, 20},
		{"notice rate", *r.NoticeRatePerS, 500},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if *r.NoticeTargetMet {
		t.Error("target met although the target rate's step was not sustained")
	}
	path, err := r.write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	data, _ := os.ReadFile(path)
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ratio_vs_naive", "ratio_vs_ceiling", "worker_cpu_us_per_event", "events_per_s",
		"notice_p50_ms", "notice_p99_ms", "notice_missing", "ratio_vs_naive_skewed_notices", "ratio_vs_broker_ceiling_skewed_notices", "peak_rss_mib", "workloads", "machine", "commit"} {
		if _, ok := back[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	if filepath.Ext(path) != ".json" {
		t.Errorf("report file %s", path)
	}
}

func TestParseSystemBusy(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    time.Duration
		wantErr bool
	}{
		// user nice system idle iowait irq softirq steal: busy = 100+2+50+3+4+1 ticks.
		{"busy excludes idle and iowait", "cpu  100 2 50 9000 70 3 4 1 0 0\ncpu0 50 1 25 4500 35 1 2 0 0 0\n", 1600 * time.Millisecond, false},
		{"no cpu line", "intr 1 2 3\n", 0, true},
		{"short", "cpu 1 2 3\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSystemBusy([]byte(tt.stat))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMedianRun(t *testing.T) {
	runs := []contenderResult{
		{EventsPerS: 300, CPUUsPerEvent: 3, Verified: true},
		{EventsPerS: 100, CPUUsPerEvent: 1, Verified: true},
		{EventsPerS: 200, CPUUsPerEvent: 2, Verified: true},
	}
	m := medianRun(runs)
	if m.EventsPerS != 200 || m.CPUUsPerEvent != 2 || m.Runs != 3 || len(m.EventsPerSRuns) != 3 || !m.Verified {
		t.Errorf("median = %+v", m)
	}
	runs[0].Verified, runs[0].VerifyError = false, "lost writes"
	if m := medianRun(runs); m.Verified || m.VerifyError != "lost writes" {
		t.Errorf("an unverified run must make the result unverified: %+v", m)
	}
	if m := medianRun(runs[1:2]); m.Runs != 1 || m.EventsPerSRuns != nil {
		t.Errorf("single run = %+v", m)
	}
}

// TestCheckDelivery: after a drain, deliveries beyond one per event are
// reported as redeliveries, and a contender that dead-lettered events
// fails verification even though MongoDB may hold the right final state
// (dead-lettering all but each user's newest login would pass verify).
func TestCheckDelivery(t *testing.T) {
	tests := []struct {
		name                 string
		deliveries, lastSeq  uint64
		deadLetters          *uint64
		wantRedelivered      uint64
		wantVerified         bool
		wantErrHasDeadLetter bool
	}{
		{"clean worker", 1000, 1000, ptr(uint64(0)), 0, true, false},
		{"redeliveries are reported, not failed", 1012, 1000, ptr(uint64(0)), 12, true, false},
		{"dead letters fail the run", 1000, 1000, ptr(uint64(3)), 0, false, true},
		{"no dead-letter stream to check (naive, broker)", 1000, 1000, nil, 0, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := contenderResult{Verified: true}
			checkDelivery(&res, tt.deliveries, tt.lastSeq, tt.deadLetters)
			if res.Redelivered == nil || *res.Redelivered != tt.wantRedelivered {
				t.Errorf("redelivered = %v, want %d", res.Redelivered, tt.wantRedelivered)
			}
			if res.Verified != tt.wantVerified {
				t.Errorf("verified = %v (%q), want %v", res.Verified, res.VerifyError, tt.wantVerified)
			}
			if got := strings.Contains(res.VerifyError, "dead-lettered"); got != tt.wantErrHasDeadLetter {
				t.Errorf("verify error %q, want it to name dead letters: %v", res.VerifyError, tt.wantErrHasDeadLetter)
			}
			if (res.DeadLetters == nil) != (tt.deadLetters == nil) {
				t.Errorf("dead letters = %v, want %v", res.DeadLetters, tt.deadLetters)
			}
		})
	}
}

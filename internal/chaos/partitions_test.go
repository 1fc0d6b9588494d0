package chaos

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
)

// TestParseLeaderMetric: the partitions a replica leads, read from its
// /metrics as the worker writes them with and without partitions.
func TestParseLeaderMetric(t *testing.T) {
	for _, tc := range []struct {
		name, metrics string
		want          []int
	}{
		{"unpartitioned, leading", "# HELP x\ncustomdata_worker_notifier_leader 1\n", []int{0}},
		{"unpartitioned, standing by", "customdata_worker_notifier_leader 0\n", nil},
		{"no gauge yet", "customdata_worker_notifier_leader_other 1\n", nil},
		{"partitions, some led", `customdata_worker_notifier_leader{partition="2"} 1
customdata_worker_notifier_leader{partition="0"} 1
customdata_worker_notifier_leader{partition="1"} 0
customdata_worker_notifier_stepdowns_total{partition="1",reason="stall"} 1
`, []int{0, 2}},
		{"partitions, none led", `customdata_worker_notifier_leader{partition="0"} 0` + "\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseLeaderMetric(strings.NewReader(tc.metrics))
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("parseLeaderMetric = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	if _, err := parseLeaderMetric(strings.NewReader(`customdata_worker_notifier_leader{partition="x"} 1`)); err == nil {
		t.Fatal("a partition label that is not a number was read")
	}
}

// TestHeartbeatLog: a partition counts as heard from its last heartbeat's
// time on; a heartbeat of another partition count is reported, not
// counted (the replicas would not run the run's notifier).
func TestHeartbeatLog(t *testing.T) {
	base := time.Unix(1_800_000_000, 0)
	beat := func(p, n int) events.Notice {
		return events.Notice{Kind: events.NoticeHeartbeat, Partition: p, Partitions: n}
	}
	b := newHeartbeatLog()
	b.add(beat(0, 3), base, 3)
	b.add(beat(2, 3), base.Add(-time.Second), 3)
	b.add(beat(1, 3), base.Add(time.Second), 3)
	b.add(beat(1, 3), base.Add(-time.Second), 3) // an older one read later
	if got := b.silentSince(base, 3); !slices.Equal(got, []int{2}) {
		t.Fatalf("silent since base = %v, want [2]", got)
	}
	if len(b.wrong) != 0 {
		t.Fatalf("wrong = %v", b.wrong)
	}
	b.add(beat(0, 0), base, 3) // an unpartitioned notifier's
	if len(b.wrong) != 1 || !strings.Contains(b.wrong[0], "partition 0 of 1") {
		t.Fatalf("wrong = %v, want the heartbeat of partition 0 of 1", b.wrong)
	}

	one := newHeartbeatLog()
	one.add(beat(0, 0), base, 1)
	if got := one.silentSince(base, 1); len(got) != 0 || len(one.wrong) != 0 {
		t.Fatalf("unpartitioned: silent %v, wrong %v", got, one.wrong)
	}
}

// TestSummaryNamesPartitions: the result line says partitions=N above
// one, and is what it was before partitions with one.
func TestSummaryNamesPartitions(t *testing.T) {
	one := Summary{Seed: 1, Duration: time.Second, Partitions: 1, OK: true}.String()
	if strings.Contains(one, "partitions") || !strings.HasPrefix(one, "chaos ok: seed=1 duration=1s logins=0 ") {
		t.Fatalf("one partition: %q", one)
	}
	three := Summary{Seed: 1, Duration: time.Second, Partitions: 3, OK: true}.String()
	if !strings.HasPrefix(three, "chaos ok: seed=1 duration=1s partitions=3 logins=0 ") {
		t.Fatalf("three partitions: %q", three)
	}
}

// TestLeadership: after settling, each partition must have exactly one
// leader among the replicas' metrics; none, two, or a partition beyond
// the run's count is named.
func TestLeadership(t *testing.T) {
	gauges := func(led ...int) string {
		var b strings.Builder
		for p := range 3 {
			fmt.Fprintf(&b, "customdata_worker_notifier_leader{partition=\"%d\"} %d\n", p, map[bool]int{true: 1}[slices.Contains(led, p)])
		}
		return b.String()
	}
	for _, tc := range []struct {
		name    string
		metrics []string // each replica's /metrics
		want    string   // "" or what the problem says
	}{
		{"shared out", []string{gauges(0, 2), gauges(1)}, ""},
		{"one leads all", []string{gauges(0, 1, 2), gauges()}, ""},
		{"a partition without a leader", []string{gauges(0), gauges(1)}, "partition 2 led by 0 replicas"},
		{"a partition with two", []string{gauges(0, 1), gauges(1, 2)}, "partition 1 led by 2 replicas [w1 w2]"},
		{"a replica that cannot be read", []string{gauges(0, 1, 2), ""}, "w2: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &harness{cfg: Config{Partitions: 3}}
			for i, m := range tc.metrics {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					if m == "" {
						http.Error(w, "down", http.StatusServiceUnavailable)
						return
					}
					_, _ = io.WriteString(w, m)
				}))
				defer srv.Close()
				h.workers = append(h.workers, &workerProcess{process: &process{name: fmt.Sprintf("w%d", i+1)}, metricsURL: srv.URL})
			}
			got := h.leadership(context.Background())
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("leadership = %q, want %q", got, tc.want)
			}
		})
	}
}

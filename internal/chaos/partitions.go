package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/customdata-worker/customdata-worker/events"
)

// A run's notifier is split into Config.Partitions partitions
// (NOTIFIER_PARTITIONS of every replica): each its own lease, change
// stream, checkpoint and heartbeat, led by whichever replica took it. With
// one, the worker's metrics and heartbeats are those of a notifier without
// partitions, and so is everything the harness reads of them.

// leaderMetric is the gauge a replica sets to 1 for each partition it
// leads: unlabelled with one partition, {partition="i"} with more.
const leaderMetric = "customdata_worker_notifier_leader"

// parseLeaderMetric returns the partitions a replica's /metrics says it
// leads, in order: partition 0 for the unlabelled gauge of an
// unpartitioned notifier.
func parseLeaderMetric(r io.Reader) ([]int, error) {
	var led []int
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), leaderMetric)
		if !ok {
			continue
		}
		part := 0
		switch {
		case strings.HasPrefix(rest, " "):
		case strings.HasPrefix(rest, `{partition="`):
			labels, value, ok := strings.Cut(rest, "} ")
			if !ok {
				return nil, fmt.Errorf("cannot read %q", sc.Text())
			}
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(labels, `{partition="`), `"`))
			if err != nil {
				return nil, fmt.Errorf("cannot read the partition of %q: %w", sc.Text(), err)
			}
			part, rest = n, " "+value
		default:
			continue // another metric whose name begins the same
		}
		if strings.TrimSpace(rest) == "1" {
			led = append(led, part)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sort.Ints(led)
	return led, nil
}

// ledPartitions are the partitions the replica's metrics say it leads.
func (w *workerProcess) ledPartitions(ctx context.Context) ([]int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.metricsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s /metrics: %s", w.name, resp.Status)
	}
	return parseLeaderMetric(resp.Body)
}

// leader is the replica whose metrics say it leads the most partitions
// (the first such; with one partition, the one that leads it), and those
// partitions; nil when none leads any.
func (h *harness) leader(ctx context.Context) (*workerProcess, []int) {
	var best *workerProcess
	var bestLed []int
	for _, w := range h.workers {
		if led, err := w.ledPartitions(ctx); err == nil && len(led) > len(bestLed) {
			best, bestLed = w, led
		}
	}
	return best, bestLed
}

// leadership says, from every replica's metrics, who leads each of the
// run's partitions; "" when every partition has exactly one leader.
func (h *harness) leadership(ctx context.Context) string {
	leaders := make([][]string, h.cfg.Partitions)
	var problems []string
	for _, w := range h.workers {
		led, err := w.ledPartitions(ctx)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", w.name, err))
			continue
		}
		for _, p := range led {
			if p >= len(leaders) {
				problems = append(problems, fmt.Sprintf("%s leads partition %d of %d", w.name, p, len(leaders)))
				continue
			}
			leaders[p] = append(leaders[p], w.name)
		}
	}
	for p, ws := range leaders {
		if len(ws) != 1 {
			problems = append(problems, fmt.Sprintf("partition %d led by %d replicas %v", p, len(ws), ws))
		}
	}
	return strings.Join(problems, "; ")
}

// verifyLeadership: once everything is back, every partition is led by
// exactly one replica (none would leave its changes unannounced and the
// issuers reading through; two would be two change streams acting on one
// lease), as their metrics say, within within.
func (h *harness) verifyLeadership(ctx context.Context, within time.Duration) error {
	var last string
	for deadline := time.Now().Add(within); ; time.Sleep(500 * time.Millisecond) {
		if last = h.leadership(ctx); last == "" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("leadership after settling (%s): %s", within, last)
		}
	}
}

// heartbeatLog is what the harness heard of the notifier's heartbeats on
// the notice stream: when it last heard each partition, and any heartbeat
// that spoke for another partition count than the run's.
type heartbeatLog struct {
	mu    sync.Mutex
	last  map[int]time.Time
	wrong []string
}

func newHeartbeatLog() *heartbeatLog { return &heartbeatLog{last: map[int]time.Time{}} }

// add records a heartbeat, heard at (its stream timestamp), against the
// run's partition count.
func (b *heartbeatLog) add(nt events.Notice, at time.Time, partitions int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if got := nt.PartitionsOf(); got != partitions {
		if len(b.wrong) < 5 {
			b.wrong = append(b.wrong, fmt.Sprintf("a heartbeat of partition %d of %d at %s", nt.PartitionOf(), got, at.Format(time.RFC3339)))
		}
		return
	}
	if at.After(b.last[nt.PartitionOf()]) {
		b.last[nt.PartitionOf()] = at
	}
}

// silentSince lists the partitions not heard at or after since.
func (b *heartbeatLog) silentSince(since time.Time, partitions int) []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	var silent []int
	for p := range partitions {
		if b.last[p].Before(since) {
			silent = append(silent, p)
		}
	}
	return silent
}

// verifyHeartbeats: every heartbeat of the run spoke for the run's
// partition count (else the replicas did not run the notifier the run
// claims to test), and every partition has been heard since since (once
// everything was back) within within: an issuer reads through while any
// partition is silent.
func (h *harness) verifyHeartbeats(ctx context.Context, beats *heartbeatLog, since time.Time, within time.Duration) error {
	partitions := h.cfg.Partitions
	beats.mu.Lock()
	wrong := slices.Clone(beats.wrong)
	beats.mu.Unlock()
	if len(wrong) > 0 {
		return fmt.Errorf("heartbeats of another partition count than the run's %d: %s", partitions, strings.Join(wrong, "; "))
	}
	for deadline := time.Now().Add(within); ; time.Sleep(500 * time.Millisecond) {
		silent := beats.silentSince(since, partitions)
		if len(silent) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no heartbeat of partition(s) %v (of %d) within %s after settling: no replica announces their changes", silent, partitions, within)
		}
	}
}

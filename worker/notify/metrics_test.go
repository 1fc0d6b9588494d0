package notify

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestPartitionMetricsExposition: with one partition the leader,
// checkpoint and step-down series are exactly those of a notifier before
// partitions (no partition label: dashboards, alerts and the chaos harness
// read `customdata_worker_notifier_leader 1`); with several, one series
// per partition exists from the start.
func TestPartitionMetricsExposition(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		count int
		want  string
	}{
		{1, `
# HELP customdata_worker_notifier_leader 1 while this replica holds the change-stream lease (of the partition, when NOTIFIER_PARTITIONS is above 1) and runs the change stream.
# TYPE customdata_worker_notifier_leader gauge
customdata_worker_notifier_leader 1
# HELP customdata_worker_notifier_checkpoint_timestamp_seconds Unix time the leader (of the partition, when NOTIFIER_PARTITIONS is above 1) last wrote its checkpoint (0 on standbys); time() minus it is the checkpoint's age. On an idle collection it stops moving unless the server reports post-batch resume tokens.
# TYPE customdata_worker_notifier_checkpoint_timestamp_seconds gauge
customdata_worker_notifier_checkpoint_timestamp_seconds 1.8e+09
# HELP customdata_worker_notifier_stepdowns_total Times this replica gave the lease up although it could renew it, by reason (and partition, when NOTIFIER_PARTITIONS is above 1).
# TYPE customdata_worker_notifier_stepdowns_total counter
customdata_worker_notifier_stepdowns_total{reason="change_stream_stalled"} 1
`},
		{3, `
# HELP customdata_worker_notifier_leader 1 while this replica holds the change-stream lease (of the partition, when NOTIFIER_PARTITIONS is above 1) and runs the change stream.
# TYPE customdata_worker_notifier_leader gauge
customdata_worker_notifier_leader{partition="0"} 0
customdata_worker_notifier_leader{partition="1"} 0
customdata_worker_notifier_leader{partition="2"} 1
# HELP customdata_worker_notifier_checkpoint_timestamp_seconds Unix time the leader (of the partition, when NOTIFIER_PARTITIONS is above 1) last wrote its checkpoint (0 on standbys); time() minus it is the checkpoint's age. On an idle collection it stops moving unless the server reports post-batch resume tokens.
# TYPE customdata_worker_notifier_checkpoint_timestamp_seconds gauge
customdata_worker_notifier_checkpoint_timestamp_seconds{partition="0"} 0
customdata_worker_notifier_checkpoint_timestamp_seconds{partition="1"} 0
customdata_worker_notifier_checkpoint_timestamp_seconds{partition="2"} 1.8e+09
# HELP customdata_worker_notifier_stepdowns_total Times this replica gave the lease up although it could renew it, by reason (and partition, when NOTIFIER_PARTITIONS is above 1).
# TYPE customdata_worker_notifier_stepdowns_total counter
customdata_worker_notifier_stepdowns_total{partition="2",reason="change_stream_stalled"} 1
`},
	} {
		reg := prometheus.NewPedanticRegistry()
		parts := partitions(tc.count)
		m, err := newNotifierMetrics(reg, parts)
		if err != nil {
			t.Fatal(err)
		}
		m.initPartitions(parts)
		last := parts[len(parts)-1]
		m.leading(last, true)
		m.checkpointWritten(last, at)
		m.steppedDown(last, stepDownStalled)
		if err := testutil.GatherAndCompare(reg, strings.NewReader(tc.want),
			"customdata_worker_notifier_leader", "customdata_worker_notifier_checkpoint_timestamp_seconds",
			"customdata_worker_notifier_stepdowns_total"); err != nil {
			t.Errorf("%d partitions: %v", tc.count, err)
		}
	}
}

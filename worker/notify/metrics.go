package notify

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// notifierMetrics are the notifier's Prometheus metrics, all under
// customdata_worker_notifier_*.
type notifierMetrics struct {
	published     *prometheus.CounterVec // kind, operation
	flushes       *prometheus.CounterVec // reason
	oversize      prometheus.Counter
	ignored       prometheus.Counter
	duplicateUser prometheus.Counter
	feedErrors    *prometheus.CounterVec // class
	leader        *prometheus.GaugeVec   // [partition]
	stepdowns     *prometheus.CounterVec // reason[, partition]
	latency       prometheus.Histogram
	checkpointAt  *prometheus.GaugeVec // [partition]; unix seconds, 0 while not leading

	// partitioned: the per-partition series carry a partition label. An
	// unpartitioned notifier's have none, so that its exposition (scraped
	// by dashboards, alerts and the chaos harness) is what it was before
	// partitions existed.
	partitioned bool
}

// newNotifierMetrics makes the metrics of a notifier with parts (see
// partitions).
func newNotifierMetrics(reg prometheus.Registerer, parts []partition) (*notifierMetrics, error) {
	const ns, sub = "customdata_worker", "notifier"
	partitioned := len(parts) > 1
	var partLabel []string
	if partitioned {
		partLabel = []string{"partition"}
	}
	m := &notifierMetrics{partitioned: partitioned,
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "notices_published_total",
			Help: "Notices acknowledged by JetStream, by kind (user, flush_all) and change operation.",
		}, []string{"kind", "operation"}),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "flush_all_total",
			Help: "Flush-all notices published, by reason.",
		}, []string{"reason"}),
		oversize: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "oversize_documents_total",
			Help: "Changes to documents larger than the oversize limit.",
		}),
		ignored: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "changes_ignored_total",
			Help: "Updates that changed only NOTICE_IGNORE_FIELDS and so published no notice.",
		}),
		duplicateUser: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "duplicate_user_changes_total",
			Help: "Changes to a user that has more than one document (checked only while the unique user-id index is not known to be in place).",
		}),
		feedErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "change_stream_errors_total",
			Help: "Change-stream failures that made the notifier reopen it, by class.",
		}, []string{"class"}),
		stepdowns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "stepdowns_total",
			Help: "Times this replica gave the lease up although it could renew it, by reason (and partition, when NOTIFIER_PARTITIONS is above 1).",
		}, append([]string{"reason"}, partLabel...)),
		leader: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "leader",
			Help: "1 while this replica holds the change-stream lease (of the partition, when NOTIFIER_PARTITIONS is above 1) and runs the change stream.",
		}, partLabel),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "commit_to_publish_seconds",
			Help:    "From the change's cluster time (1 s resolution) to the notice's publish acknowledgement.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300},
		}),
	}
	m.checkpointAt = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: ns, Subsystem: sub, Name: "checkpoint_timestamp_seconds",
		Help: "Unix time the leader (of the partition, when NOTIFIER_PARTITIONS is above 1) last wrote its checkpoint (0 on standbys); time() minus it is the checkpoint's age. On an idle collection it stops moving unless the server reports post-batch resume tokens.",
	}, partLabel)
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.published, m.flushes, m.oversize, m.ignored, m.duplicateUser, m.feedErrors, m.stepdowns, m.leader, m.latency, m.checkpointAt} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register notifier metrics: %w", err)
		}
	}
	return m, nil
}

// partLabels are the partition label values of part's series: none when
// unpartitioned.
func (m *notifierMetrics) partLabels(part partition) []string {
	if !m.partitioned {
		return nil
	}
	return []string{part.label()}
}

// leading sets the leader gauge of part.
func (m *notifierMetrics) leading(part partition, leads bool) {
	v := 0.0
	if leads {
		v = 1
	}
	m.leader.WithLabelValues(m.partLabels(part)...).Set(v)
}

// steppedDown counts a step-down of part's leader for reason.
func (m *notifierMetrics) steppedDown(part partition, reason string) {
	m.stepdowns.WithLabelValues(append([]string{reason}, m.partLabels(part)...)...).Inc()
}

// checkpointWritten records a checkpoint write of part at at; the zero
// time (a term's end) sets 0.
func (m *notifierMetrics) checkpointWritten(part partition, at time.Time) {
	g := m.checkpointAt.WithLabelValues(m.partLabels(part)...)
	if at.IsZero() {
		g.Set(0)
		return
	}
	g.Set(float64(at.UnixNano()) / 1e9)
}

// initPartitions makes every partition's series exist from the start (0:
// not leading), so a dashboard sees N series, not only those led here.
func (m *notifierMetrics) initPartitions(parts []partition) {
	for _, p := range parts {
		m.leading(p, false)
		m.checkpointWritten(p, time.Time{})
	}
}

package issuer

import "github.com/prometheus/client_golang/prometheus"

// Invalidation kinds (label "kind" of customdata_issuer_invalidations_total).
const (
	kindUser     = "user"
	kindDocument = "doc"
	kindRefresh  = "refresh"
)

// Flush reasons (label "reason" of customdata_issuer_flushes_total).
const (
	FlushNotice       = "notice"        // a flush-all notice (…all or kind flush_all)
	FlushGap          = "sequence_gap"  // a stream sequence was skipped: notices were lost
	FlushDisconnected = "disconnected"  // the NATS connection dropped
	FlushReconnected  = "reconnected"   // the NATS connection came back
	FlushConsumer     = "consumer_lost" // the notice consumer failed (missed heartbeats, deleted)
	FlushFollowing    = "following"     // the feed (re)started: nothing before it is trusted
	FlushStreamReset  = "stream_reset"  // the notice stream was deleted or recreated
	FlushStopped      = "stopped"       // Run returned
	FlushUnreadable   = "unreadable"    // a notice whose subject or payload names nothing usable
	FlushManual       = "manual"        // Cache.Flush called by the issuer
	FlushNoLeader     = "no_leader"     // no heartbeat of the worker's notifier for NoticeConfig.LeaderTimeout
)

type metrics struct {
	hits          prometheus.Counter
	misses        prometheus.Counter
	invalidations *prometheus.CounterVec
	invUser       prometheus.Counter
	invDoc        prometheus.Counter
	invRefresh    prometheus.Counter
	flushes       *prometheus.CounterVec
	readSeconds   prometheus.Histogram
	readErrors    prometheus.Counter
	notices       prometheus.Counter
	following     prometheus.Gauge
	entries       prometheus.GaugeFunc
}

func newMetrics(labels prometheus.Labels, entries func() float64) *metrics {
	const ns = "customdata_issuer"
	m := &metrics{
		hits: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "cache_hits_total",
			Help: "Gets answered from the cache.", ConstLabels: labels}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "cache_misses_total",
			Help: "Gets that had to read MongoDB (joined reads of one user count once each).", ConstLabels: labels}),
		invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "invalidations_total",
			Help: "Invalidations applied by kind: user (a user notice), doc (a document notice), refresh (a Refresh call); one per notice or call, however many entries it dropped.", ConstLabels: labels}, []string{"kind"}),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "flushes_total",
			Help: "Whole-cache flushes by reason (flush-all notice, sequence gap, disconnect, …).", ConstLabels: labels}, []string{"reason"}),
		readSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "read_duration_seconds",
			Help:    "MongoDB read latency of cache misses and refreshes.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), ConstLabels: labels}),
		readErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "read_errors_total",
			Help: "MongoDB reads that failed (not cached).", ConstLabels: labels}),
		notices: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "notices_total",
			Help: "Invalidation notices received.", ConstLabels: labels}),
		following: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "notices_following",
			Help: "1 while the notice feed is followed and the cache may keep values, else 0.", ConstLabels: labels}),
		entries: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "cache_entries",
			Help: "Users currently cached.", ConstLabels: labels}, entries),
	}
	m.invUser = m.invalidations.WithLabelValues(kindUser)
	m.invDoc = m.invalidations.WithLabelValues(kindDocument)
	m.invRefresh = m.invalidations.WithLabelValues(kindRefresh)
	for _, r := range []string{FlushNotice, FlushGap, FlushDisconnected, FlushReconnected, FlushConsumer, FlushFollowing, FlushStreamReset, FlushStopped, FlushUnreadable, FlushManual} {
		m.flushes.WithLabelValues(r)
	}
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.hits, m.misses, m.invalidations, m.flushes, m.readSeconds, m.readErrors, m.notices, m.following, m.entries}
}

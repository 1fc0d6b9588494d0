package authsync

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of an auth event, the "outcome" label of
// customdata_worker_auth_events_total.
const (
	outcomeApplied      = "applied"       // its writes are durable and it was acked
	outcomeNoWrites     = "no_writes"     // no trigger matched; acked
	outcomeDeadLettered = "dead_lettered" // published to the dead-letter stream and terminated
	outcomeRetried      = "retried"       // Nak'd for redelivery
)

// authMetrics are the auth consumer's Prometheus metrics.
type authMetrics struct {
	events       *prometheus.CounterVec
	batchSize    prometheus.Histogram
	writeLatency prometheus.Histogram
	writeOps     *prometheus.CounterVec
	deadLetters  *prometheus.CounterVec
	mongoUp      prometheus.Gauge
	natsUp       prometheus.Gauge
}

func newAuthMetrics(reg prometheus.Registerer) (*authMetrics, error) {
	m := &authMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "customdata_worker", Subsystem: "auth", Name: "events_total",
			Help: "Auth events handled, by operation and outcome (applied, no_writes, dead_lettered, retried).",
		}, []string{"operation", "outcome"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "customdata_worker", Subsystem: "auth", Name: "batch_messages",
			Help:    "Messages per fetched batch.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000},
		}),
		writeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "customdata_worker", Subsystem: "auth", Name: "write_duration_seconds",
			Help:    "Duration of one MongoDB bulk write (one coalesced round), including write-concern wait.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		writeOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "customdata_worker", Subsystem: "auth", Name: "write_operations_total",
			Help: "MongoDB write operations sent after coalescing, by kind (update, delete).",
		}, []string{"kind"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "customdata_worker", Subsystem: "auth", Name: "dead_letters_total",
			Help: "Auth events dead-lettered, by reason.",
		}, []string{"reason"}),
		mongoUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "customdata_worker", Name: "mongo_up",
			Help: "1 while the worker's last MongoDB write (auth events) succeeded, 0 while writes fail for infrastructure reasons.",
		}),
		natsUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "customdata_worker", Name: "nats_up",
			Help: "1 while the worker's last fetch of auth events from NATS succeeded, 0 while fetches fail.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.events = registerAuthCollector(reg, m.events, &err)
	m.batchSize = registerAuthCollector(reg, m.batchSize, &err)
	m.writeLatency = registerAuthCollector(reg, m.writeLatency, &err)
	m.writeOps = registerAuthCollector(reg, m.writeOps, &err)
	m.deadLetters = registerAuthCollector(reg, m.deadLetters, &err)
	m.mongoUp = registerAuthCollector(reg, m.mongoUp, &err)
	m.natsUp = registerAuthCollector(reg, m.natsUp, &err)
	return m, err
}

// registerAuthCollector registers c, or returns the collector already registered under
// the same name (a consumer rebuilt in the same process keeps counting).
func registerAuthCollector[C prometheus.Collector](reg prometheus.Registerer, c C, errp *error) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		if *errp == nil {
			*errp = err
		}
	}
	return c
}

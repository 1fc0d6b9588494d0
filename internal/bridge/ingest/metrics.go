package ingest

import "github.com/prometheus/client_golang/prometheus"

// Sources (label "source"), each the last part of its route.
const (
	sourceClerk  = "clerk"
	sourceKratos = "kratos"
	sourceAuth0  = "auth0"
)

// Outcomes of a request (label "outcome" of
// customdata_bridge_ingest_requests_total).
const (
	requestOK           = "ok"           // every event stored, every bad body dead-lettered: 2xx
	requestUnauthorized = "unauthorized" // signature or credentials missing or wrong: 401
	requestTooLarge     = "too_large"    // body over the limit: 413
	requestNotKept      = "not_kept"     // a body that cannot be mapped could not be dead-lettered: 503
	requestUnavailable  = "unavailable"  // an event was not stored (NATS or JetStream): 503
)

// Outcomes of one event (label "outcome" of
// customdata_bridge_ingest_events_total).
const (
	eventPublished    = "published"     // stored
	eventDuplicate    = "duplicate"     // already stored: a retried delivery
	eventDeadLettered = "dead_lettered" // could not be mapped: on the dead-letter stream
	eventIgnored      = "ignored"       // a kind the source sends that maps to no event (Auth0's other log types)
)

type metrics struct {
	requests *prometheus.CounterVec
	events   *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics() *metrics {
	const ns = "customdata_bridge"
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "ingest_requests_total",
			Help: "Webhook requests by source (clerk, kratos, auth0) and outcome."}, []string{"source", "outcome"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "ingest_events_total",
			Help: "Events in webhook requests by source and outcome (published, duplicate, dead_lettered, ignored)."}, []string{"source", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "ingest_duration_seconds",
			Help:    "Time to answer a webhook request, by source, publishing included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17)}, []string{"source"}),
	}
	for _, s := range []string{sourceClerk, sourceKratos, sourceAuth0} {
		for _, o := range []string{requestOK, requestUnauthorized, requestTooLarge, requestNotKept, requestUnavailable} {
			m.requests.WithLabelValues(s, o)
		}
		for _, o := range []string{eventPublished, eventDuplicate, eventDeadLettered, eventIgnored} {
			m.events.WithLabelValues(s, o)
		}
		m.duration.WithLabelValues(s)
	}
	return m
}

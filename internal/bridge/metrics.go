package bridge

import "github.com/prometheus/client_golang/prometheus"

// Hook names (label "hook").
const (
	hookSupabase = "supabase"
	hookHydra    = "hydra"
	hookGeneric  = "generic"
)

// Outcomes of a call (label "outcome" of customdata_bridge_hook_calls_total).
const (
	outcomeOK           = "ok"           // answered with the user's data
	outcomeNoDocument   = "no_document"  // answered; the user has no document
	outcomeOversize     = "oversize"     // answered; the document was over the limit and left out
	outcomeNoUser       = "no_user"      // Hydra: no user in the session (client credentials): no change
	outcomeUnauthorized = "unauthorized" // signature, API key or token missing or wrong
	outcomeBadRequest   = "bad_request"  // body not the documented request
	outcomeUnavailable  = "unavailable"  // custom data could not be read in time
)

// Outcomes of a LOGIN published for a Supabase login (label "outcome" of
// customdata_bridge_logins_total).
const (
	loginPublished = "published"
	loginRejected  = "rejected"   // the event was invalid (events.ReasonOf)
	loginFailed    = "failed"     // not acknowledged within its time
	loginDropped   = "queue_full" // the bounded queue was full
)

type metrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	logins   *prometheus.CounterVec
}

func newMetrics() *metrics {
	const ns = "customdata_bridge"
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "hook_calls_total",
			Help: "Hook calls by hook (supabase, hydra, generic) and outcome."}, []string{"hook", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "hook_duration_seconds",
			Help:    "Time to answer a hook call, by hook.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 18)}, []string{"hook"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "logins_total",
			Help: "LOGIN events for Supabase logins, by outcome."}, []string{"outcome"}),
	}
	for _, h := range []string{hookSupabase, hookHydra, hookGeneric} {
		for _, o := range []string{outcomeOK, outcomeNoDocument, outcomeOversize, outcomeUnauthorized, outcomeBadRequest, outcomeUnavailable} {
			m.calls.WithLabelValues(h, o)
		}
		m.duration.WithLabelValues(h)
	}
	m.calls.WithLabelValues(hookHydra, outcomeNoUser)
	for _, o := range []string{loginPublished, loginRejected, loginFailed, loginDropped} {
		m.logins.WithLabelValues(o)
	}
	return m
}

package testsupport

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total"}, []string{"op", "outcome"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h"})
	reg.MustRegister(c, g, h)
	c.WithLabelValues("LOGIN", "applied").Add(2)
	c.WithLabelValues("LOGIN", "retried").Add(3)
	c.WithLabelValues("CREATE", "applied").Add(5)
	g.Set(7)
	h.Observe(1)
	h.Observe(2)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"c_total", nil, 10},
		{"c_total", map[string]string{"outcome": "applied"}, 7},
		{"c_total", map[string]string{"op": "LOGIN", "outcome": "retried"}, 3},
		{"c_total", map[string]string{"op": "DELETE"}, 0},
		{"g", nil, 7},
		{"h", nil, 2},
		{"absent", nil, 0},
	} {
		if got := Metric(t, reg, tc.name, tc.labels); got != tc.want {
			t.Errorf("Metric(%s, %v) = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}

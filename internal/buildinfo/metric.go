package buildinfo

import "github.com/prometheus/client_golang/prometheus"

// Collector exports info as the gauge <namespace>_build_info, always 1,
// labelled with the version, commit and Go version: the usual way to
// tell from metrics which build a replica runs (join it on instance).
func Collector(namespace string, info Info) prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "Always 1; the labels say which build runs.",
	}, []string{"version", "commit", "goversion"})
	g.WithLabelValues(info.Version, info.Commit, info.GoVersion).Set(1)
	return g
}

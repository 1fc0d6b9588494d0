package buildinfo

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollectorExportsTheBuild(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector("customdata_worker", Info{Version: "v1.2.3", Commit: "abc123", GoVersion: "go1.26.8"}))
	want := `
# HELP customdata_worker_build_info Always 1; the labels say which build runs.
# TYPE customdata_worker_build_info gauge
customdata_worker_build_info{commit="abc123",goversion="go1.26.8",version="v1.2.3"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "customdata_worker_build_info"); err != nil {
		t.Fatal(err)
	}
}

package promrules

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
)

const dashboardFile = "../grafana/customdata-worker.json"

// grafanaDashboard is the part of Grafana's dashboard JSON model the test
// reads.
type grafanaDashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name, Type, Query string
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID      int                      `json:"id"`
		Type    string                   `json:"type"`
		Title   string                   `json:"title"`
		GridPos struct{ H, W, X, Y int } `json:"gridPos"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// TestDashboardQueriesExportedMetrics: every panel query parses as PromQL
// (with Grafana's $__rate_interval standing in for a range) and names only
// metrics and labels the code exports, and every exported family is shown.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s is not JSON: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		t.Errorf("dashboard lacks uid, title or schemaVersion: %q %q %d", d.UID, d.Title, d.SchemaVersion)
	}
	if !slices.ContainsFunc(d.Templating.List, func(v struct{ Name, Type, Query string }) bool {
		return v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus"
	}) {
		t.Error("dashboard has no Prometheus datasource variable ${datasource}")
	}
	families := exported(t)
	shown := map[string]bool{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q does not fit the 24-column grid: %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			expr, err := parser.NewParser(parser.Options{}).ParseExpr(strings.ReplaceAll(q.Expr, "$__rate_interval", "5m"))
			if err != nil {
				t.Errorf("panel %q query %s: %v", p.Title, q.RefID, err)
				continue
			}
			parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok {
					name := baseFamily(vs.Name)
					if _, ok := families[name]; !ok {
						t.Errorf("panel %q queries %s, which nothing exports", p.Title, vs.Name)
					}
					shown[name] = true
				}
				if agg, ok := n.(*parser.AggregateExpr); ok {
					checkGrouping(t, p.Title, agg, families)
				}
				return nil
			})
		}
	}
	for name := range families {
		if !shown[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
}

// checkGrouping: a "sum by (label)" must group by a label its metric has
// (or by instance, which Prometheus adds).
func checkGrouping(t *testing.T, panel string, agg *parser.AggregateExpr, families map[string][]string) {
	t.Helper()
	var names []string
	parser.Inspect(agg.Expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, baseFamily(vs.Name))
		}
		return nil
	})
	for _, g := range agg.Grouping {
		if g == "instance" || g == "job" || g == "le" {
			continue
		}
		for _, name := range names {
			if !slices.Contains(families[name], g) {
				t.Errorf("panel %q groups %s by %q, which it does not have (labels %v)", panel, name, g, families[name])
			}
		}
	}
}

func baseFamily(name string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			return base
		}
	}
	return name
}

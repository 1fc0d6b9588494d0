// Package promrules tests deploy/prometheus/alerts.yml against the code:
// every rule parses as Prometheus parses it, names only metrics and labels
// the worker and package issuer export, and fires on the series it is
// meant for (and not on healthy ones).
package promrules

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/customdata-worker/customdata-worker/events"
	"github.com/customdata-worker/customdata-worker/internal/testsupport"
	"github.com/customdata-worker/customdata-worker/issuer"
	"github.com/customdata-worker/customdata-worker/triggers"
	"github.com/customdata-worker/customdata-worker/worker/authsync"
	"github.com/customdata-worker/customdata-worker/worker/customdata"
	"github.com/customdata-worker/customdata-worker/worker/notify"
)

const rulesFile = "alerts.yml"

func loadRules(t *testing.T) []rulefmt.Rule {
	t.Helper()
	groups, errs := rulefmt.ParseFile(rulesFile, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("%s does not load as Prometheus loads it: %v", rulesFile, err)
	}
	var rules []rulefmt.Rule
	for _, g := range groups.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatal("no rules")
	}
	return rules
}

// exported are the metric families the code registers, with their label
// names: the auth consumer's and the notifier's (as the worker registers
// them, with one partition and with several: a family's labels are the
// union) and an issuer cache's. Building them does no MongoDB IO; the
// notifier wants a JetStream context, so an in-process server gives one.
func exported(t *testing.T) map[string][]string {
	t.Helper()
	rec := &recordingRegisterer{families: map[string][]string{}}
	client, err := mongo.Connect() // no IO until the first operation
	if err != nil {
		t.Fatal(err)
	}
	db := client.Database("app")
	_, js := testsupport.StartNATS(t).Connect(t)
	set, err := triggers.NewSet(triggers.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	data := customdata.Config{Database: "app"}
	if _, err := authsync.New(js, db.Collection(events.DefaultCollection), set, authsync.Config{}, authsync.WithData(data), authsync.WithRegisterer(rec)); err != nil {
		t.Fatalf("auth consumer: %v", err)
	}
	for _, parts := range []int{1, 2} {
		if _, err := notify.New(js, db, notify.Config{Partitions: parts}, notify.WithData(data), notify.WithRegisterer(rec)); err != nil {
			t.Fatalf("notifier of %d partitions: %v", parts, err)
		}
	}
	cache, err := issuer.NewCache(unusedGetter{}, issuer.CacheConfig{}, issuer.WithNotices(js, issuer.NoticeConfig{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cache.Collectors() {
		rec.MustRegister(c)
	}
	return rec.families
}

func TestAlertsNameExportedMetricsAndLabels(t *testing.T) {
	families := exported(t)
	// Families the rules may use besides the code's: Prometheus's own.
	families["up"] = []string{"job", "instance"}
	doc, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	runbook := strings.Split(string(doc), "\n")
	for _, r := range loadRules(t) {
		expr, err := parser.NewParser(parser.Options{}).ParseExpr(r.Expr)
		if err != nil {
			t.Fatalf("%s: %v", r.Alert, err)
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if agg, ok := n.(*parser.AggregateExpr); ok {
				checkGrouping(t, "alert "+r.Alert, agg, families)
			}
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			name := baseFamily(vs.Name)
			labels, ok := families[name]
			if !ok {
				t.Errorf("alert %s names %s, which nothing exports", r.Alert, vs.Name)
				return nil
			}
			for _, m := range vs.LabelMatchers {
				if m.Name == "__name__" || m.Name == "job" || m.Name == "instance" || m.Name == "le" {
					continue
				}
				if !slices.Contains(labels, m.Name) {
					t.Errorf("alert %s matches label %q on %s, which has labels %v", r.Alert, m.Name, name, labels)
				}
			}
			return nil
		})
		if r.Annotations["summary"] == "" {
			t.Errorf("alert %s has no summary", r.Alert)
		}
		if want := "docs/OPERATIONS.md#" + strings.ToLower(r.Alert); r.Annotations["runbook"] != want {
			t.Errorf("alert %s: runbook = %q, want %q", r.Alert, r.Annotations["runbook"], want)
		}
		if !slices.Contains(runbook, "## "+r.Alert) {
			t.Errorf("alert %s has no \"## %s\" entry in docs/OPERATIONS.md", r.Alert, r.Alert)
		}
	}
}

// TestAlertsFireOnTheirSeries evaluates each alert's expression over
// series shaped as the worker and an issuer export them: it must return a
// result in the bad state and none in the healthy one.
func TestAlertsFireOnTheirSeries(t *testing.T) {
	cases := map[string]struct{ firing, healthy string }{
		"CustomdataWorkerDown": {
			`up{job="customdata-worker", instance="w1"} 0x20`,
			`up{job="customdata-worker", instance="w1"} 1x20`},
		"CustomdataMongoDBDown": {
			`customdata_worker_mongo_up{instance="w1"} 0x20`,
			`customdata_worker_mongo_up{instance="w1"} 1x20`},
		"CustomdataNATSDown": {
			`customdata_worker_nats_up{instance="w1"} 0x20`,
			`customdata_worker_nats_up{instance="w1"} 1x20`},
		"CustomdataDeadLettersGrowing": {
			`customdata_worker_auth_dead_letters_total{reason="invalid"} 0+1x20`,
			`customdata_worker_auth_dead_letters_total{reason="invalid"} 3x20`},
		"CustomdataNotifierNotLeading": {
			"customdata_worker_notifier_leader{instance=\"w1\"} 0x20\ncustomdata_worker_notifier_leader{instance=\"w2\"} 0x20",
			"customdata_worker_notifier_leader{instance=\"w1\"} 0x20\ncustomdata_worker_notifier_leader{instance=\"w2\"} 1x20"},
		"CustomdataNotifierPartitionNotLed": {
			// Two partitions: w1 leads 0, nobody 1; healthy: w2 leads 1.
			"customdata_worker_notifier_leader{instance=\"w1\",partition=\"0\"} 1x20\ncustomdata_worker_notifier_leader{instance=\"w1\",partition=\"1\"} 0x20\n" +
				"customdata_worker_notifier_leader{instance=\"w2\",partition=\"0\"} 0x20\ncustomdata_worker_notifier_leader{instance=\"w2\",partition=\"1\"} 0x20",
			"customdata_worker_notifier_leader{instance=\"w1\",partition=\"0\"} 1x20\ncustomdata_worker_notifier_leader{instance=\"w1\",partition=\"1\"} 0x20\n" +
				"customdata_worker_notifier_leader{instance=\"w2\",partition=\"0\"} 0x20\ncustomdata_worker_notifier_leader{instance=\"w2\",partition=\"1\"} 1x20"},
		"CustomdataCheckpointStale": {
			// Written once at t=60s, then never again (the leader on w1 is
			// stuck); healthy: written every minute (the value follows the
			// clock); w2 is a standby (0) in both.
			"customdata_worker_notifier_checkpoint_timestamp_seconds{instance=\"w1\"} 60x20\ncustomdata_worker_notifier_checkpoint_timestamp_seconds{instance=\"w2\"} 0x20",
			"customdata_worker_notifier_checkpoint_timestamp_seconds{instance=\"w1\"} 0+60x20\ncustomdata_worker_notifier_checkpoint_timestamp_seconds{instance=\"w2\"} 0x20"},
		"CustomdataFlushAll": {
			`customdata_worker_notifier_flush_all_total{reason="history_lost"} 0x10 1x10`,
			`customdata_worker_notifier_flush_all_total{reason="no_checkpoint"} 1x20`},
		"CustomdataChangeStreamErrors": {
			`customdata_worker_notifier_change_stream_errors_total{class="transient"} 0+2x20`,
			`customdata_worker_notifier_change_stream_errors_total{class="transient"} 1x20`},
		"CustomdataNoticesSlow": {
			"customdata_worker_notifier_commit_to_publish_seconds_bucket{le=\"10\"} 0x20\ncustomdata_worker_notifier_commit_to_publish_seconds_bucket{le=\"30\"} 0+100x20\ncustomdata_worker_notifier_commit_to_publish_seconds_bucket{le=\"+Inf\"} 0+100x20",
			"customdata_worker_notifier_commit_to_publish_seconds_bucket{le=\"0.05\"} 0+100x20\ncustomdata_worker_notifier_commit_to_publish_seconds_bucket{le=\"10\"} 0+100x20\ncustomdata_worker_notifier_commit_to_publish_seconds_bucket{le=\"+Inf\"} 0+100x20"},
		"CustomdataIssuerNotFollowing": {
			`customdata_issuer_notices_following{instance="i1"} 0x20`,
			`customdata_issuer_notices_following{instance="i1"} 1x20`},
		"CustomdataIssuerReadErrors": {
			`customdata_issuer_read_errors_total{instance="i1"} 0+5x20`,
			`customdata_issuer_read_errors_total{instance="i1"} 2x20`},
	}
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, 100000)
	for _, r := range loadRules(t) {
		c, ok := cases[r.Alert]
		if !ok {
			t.Errorf("alert %s has no firing/healthy case here", r.Alert)
			continue
		}
		delete(cases, r.Alert)
		for _, state := range []struct {
			series string
			fire   bool
		}{{c.firing, true}, {c.healthy, false}} {
			if got, v := fires(t, engine, r, state.series); got != state.fire {
				t.Errorf("alert %s on\n%s\nfires = %v, want %v (result %v)", r.Alert, state.series, got, state.fire, v)
			}
		}
	}
	for name := range cases {
		t.Errorf("case %s names no alert in %s", name, rulesFile)
	}
}

// fires evaluates r's expression at 19 minutes into series (loaded one
// sample a minute) and reports whether it returns anything.
func fires(t *testing.T, engine promql.QueryEngine, r rulefmt.Rule, series string) (bool, promql.Vector) {
	t.Helper()
	storage := promqltest.LoadedStorage(t, "load 1m\n"+indent(series))
	q, err := engine.NewInstantQuery(context.Background(), storage, nil, r.Expr, time.Unix(0, 0).Add(19*time.Minute))
	if err != nil {
		t.Fatalf("%s: %v", r.Alert, err)
	}
	defer q.Close()
	res := q.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("%s: %v", r.Alert, res.Err)
	}
	v, err := res.Vector()
	if err != nil {
		t.Fatalf("%s: %v", r.Alert, err)
	}
	return len(v) > 0, v
}

// TestLeadershipAlertsDoNotOverlap: CustomdataNotifierNotLeading speaks
// when no partition is led anywhere (with one partition, whose series
// carry no partition label, and with several), and
// CustomdataNotifierPartitionNotLed only when some partitions are led and
// another is not; never both at once.
func TestLeadershipAlertsDoNotOverlap(t *testing.T) {
	rules := map[string]rulefmt.Rule{}
	for _, r := range loadRules(t) {
		rules[r.Alert] = r
	}
	const notLeading, partitionNotLed = "CustomdataNotifierNotLeading", "CustomdataNotifierPartitionNotLed"
	leader := func(instance, partition string, v int) string {
		labels := `instance="` + instance + `"`
		if partition != "" {
			labels += `,partition="` + partition + `"`
		}
		return "customdata_worker_notifier_leader{" + labels + "} " + strconv.Itoa(v) + "x20"
	}
	lines := func(l ...string) string { return strings.Join(l, "\n") }
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, 100000)
	for _, tc := range []struct {
		name   string
		series string
		want   string // the alert that fires; "" none
	}{
		{"one partition, led", lines(leader("w1", "", 1), leader("w2", "", 0)), ""},
		{"one partition, not led", lines(leader("w1", "", 0), leader("w2", "", 0)), notLeading},
		{"two partitions, both led", lines(leader("w1", "0", 1), leader("w1", "1", 0), leader("w2", "0", 0), leader("w2", "1", 1)), ""},
		{"two partitions, one not led", lines(leader("w1", "0", 1), leader("w1", "1", 0), leader("w2", "0", 0), leader("w2", "1", 0)), partitionNotLed},
		{"two partitions, none led", lines(leader("w1", "0", 0), leader("w1", "1", 0), leader("w2", "0", 0), leader("w2", "1", 0)), notLeading},
		// A rollout from 1 to 2 partitions: the old replica leads the
		// whole collection, the new count's partition 1 has no leader.
		{"rollout, a new partition not led", lines(leader("w1", "", 1), leader("w2", "0", 1), leader("w2", "1", 0)), partitionNotLed},
	} {
		for _, name := range []string{notLeading, partitionNotLed} {
			r, ok := rules[name]
			if !ok {
				t.Fatalf("no alert %s in %s", name, rulesFile)
			}
			if got, v := fires(t, engine, r, tc.series); got != (tc.want == name) {
				t.Errorf("%s: %s fires = %v, want %v (result %v)", tc.name, name, got, tc.want == name, v)
			}
		}
	}
}

func indent(series string) string {
	lines := strings.Split(series, "\n")
	for i := range lines {
		lines[i] = "  " + lines[i]
	}
	return strings.Join(lines, "\n")
}

// recordingRegisterer keeps every registered collector's metric names and
// label names (from its descriptors).
type recordingRegisterer struct{ families map[string][]string }

var descPattern = regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		m := descPattern.FindStringSubmatch(d.String())
		if m == nil {
			return errors.New("unexpected descriptor " + d.String())
		}
		var labels []string
		if m[2] != "" {
			labels = strings.Split(m[2], ",")
		}
		for _, l := range labels {
			if !slices.Contains(r.families[m[1]], l) {
				r.families[m[1]] = append(r.families[m[1]], l)
			}
		}
		if _, ok := r.families[m[1]]; !ok {
			r.families[m[1]] = labels
		}
	}
	return nil
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recordingRegisterer) Unregister(prometheus.Collector) bool { return true }

type unusedGetter struct{}

func (unusedGetter) Get(context.Context, string) (issuer.Data, error) {
	return issuer.Data{}, errors.New("unused")
}

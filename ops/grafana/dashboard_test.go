// The Grafana dashboard is checked like code: it must be well-formed, laid
// out on Grafana's 24-column grid, and query only metrics that whippet (or
// franz-go's kprom, under the names whippet gives it) exports.
package grafana

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

func load(t *testing.T) (dashboard, []byte) {
	t.Helper()
	raw, err := os.ReadFile("whippet.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("whippet.json is not valid JSON: %v", err)
	}
	if dec.More() {
		t.Fatal("whippet.json holds more than one JSON value")
	}
	return d, raw
}

func TestDashboardIsWellFormed(t *testing.T) {
	d, raw := load(t)
	if !json.Valid(raw) {
		t.Fatal("whippet.json is not valid JSON")
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 || len(d.Panels) == 0 {
		t.Fatalf("uid %q, title %q, schemaVersion %d, %d panels", d.UID, d.Title, d.SchemaVersion, len(d.Panels))
	}
	ids := map[int]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v is off Grafana's 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("panels %q and %q overlap at %d,%d", other, p.Title, x, y)
				}
				taken[cell{x, y}] = p.Title
			}
		}
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: target %+v: empty expression or refId, or refId used twice", p.Title, tg)
			}
			refs[tg.RefID] = true
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") {
				t.Errorf("panel %q: unbalanced brackets in %s", p.Title, tg.Expr)
			}
		}
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	for _, want := range []string{"datasource", "group", "topic", "producer"} {
		if !slices.Contains(vars, want) {
			t.Errorf("no $%s variable (have %v)", want, vars)
		}
	}
}

// exprs returns every PromQL expression of the dashboard: the panels'
// queries and the variables'.
func exprs(d dashboard) []string {
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			out = append(out, v.Definition)
		}
	}
	return out
}

var (
	metricRef  = regexp.MustCompile(`\bwhippet_[a-z0-9_]+`)
	nameField  = regexp.MustCompile(`Name:\s*"([a-z0-9_]+)"`)
	fqName     = regexp.MustCompile(`BuildFQName\(\w+, \w+, "([a-z0-9_]+)"\)`)
	kpromName  = regexp.MustCompile(`"([a-z0-9_]+_(?:total|seconds|bytes))"`)
	kpromNS    = regexp.MustCompile(`kprom\.NewMetrics\("([a-z0-9_]+)", kprom\.Subsystem\("([a-z0-9_]+)"\)`)
	producerNS = regexp.MustCompile(`const metricsNamespace = "([a-z0-9_]+)"`)
)

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func submatches(re *regexp.Regexp, s string) []string {
	var out []string
	for _, m := range re.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// exported lists the metric names the code exports: whippet's own, read
// from consumer/metrics.go and producer/metrics.go, and franz-go's kprom
// ones under the name internal/connect gives them (every component's
// client, told apart by the component and name labels), read from kprom's
// source in the module cache.
func exported(t *testing.T) map[string]bool {
	root := filepath.Join("..", "..")
	names := map[string]bool{}

	consumerMetrics := read(t, filepath.Join(root, "consumer", "metrics.go"))
	if !strings.Contains(consumerMetrics, `ns, sub = "whippet", "consumer"`) {
		t.Fatal(`consumer/metrics.go no longer names its metrics "whippet_consumer_*": update this test`)
	}
	for _, n := range append(submatches(nameField, consumerMetrics), submatches(fqName, consumerMetrics)...) {
		names["whippet_consumer_"+n] = true
	}
	for _, pkg := range []string{"atomicstore", "aggregator"} {
		for _, n := range ownMetrics(t, pkg) {
			names[n] = true
		}
	}
	producerSrc := read(t, filepath.Join(root, "producer", "metrics.go"))
	ns := submatches(producerNS, producerSrc)
	if len(ns) != 1 {
		t.Fatal("producer/metrics.go: no metricsNamespace constant: update this test")
	}
	for _, n := range submatches(nameField, producerSrc) {
		names[ns[0]+"_"+n] = true
	}

	// kprom's names, under the namespace and subsystem internal/connect
	// gives them.
	var prefixes []string
	if m := kpromNS.FindAllStringSubmatch(read(t, filepath.Join(root, "internal", "connect", "connect.go")), -1); len(m) == 1 {
		prefixes = append(prefixes, m[0][1]+"_"+m[0][2]+"_")
	} else {
		t.Fatalf("internal/connect/connect.go: want one kprom.NewMetrics(\"<namespace>\", kprom.Subsystem(\"<name>\"), ...), found %v", m)
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/twmb/franz-go/plugin/kprom").Output()
	if err != nil {
		t.Fatalf("locating kprom's source (go list -m): %v", err)
	}
	kp := read(t, filepath.Join(strings.TrimSpace(string(out)), "kprom.go"))
	kpNames := submatches(kpromName, kp)
	if !slices.Contains(kpNames, "fetch_bytes_total") {
		t.Fatalf("kprom.go no longer defines fetch_bytes_total: update this test (found %v)", kpNames)
	}
	for _, p := range prefixes {
		for _, n := range kpNames {
			names[p+n] = true
		}
	}
	return names
}

func TestDashboardQueriesOnlyExportedMetrics(t *testing.T) {
	d, _ := load(t)
	names := exported(t)
	used := map[string]bool{}
	for _, e := range exprs(d) {
		for _, m := range metricRef.FindAllString(e, -1) {
			used[m] = true
			base := m
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				base = strings.TrimSuffix(base, suffix)
			}
			if !names[m] && !names[base] {
				t.Errorf("the dashboard queries %s, which no code exports", m)
			}
		}
	}
	// Every metric of the README's list has a panel.
	for _, m := range []string{
		"whippet_consumer_records_handled_total", "whippet_consumer_records_failed_total", "whippet_consumer_handler_seconds_bucket",
		"whippet_consumer_partition_lag", "whippet_consumer_in_flight", "whippet_consumer_paused_partitions",
		"whippet_consumer_retries_total", "whippet_consumer_dlq_forwards_total", "whippet_consumer_forward_failures_total",
		"whippet_consumer_blocked_partitions", "whippet_consumer_retry_lateness_seconds_bucket",
		"whippet_kafka_fetch_bytes_total", "whippet_producer_records_produced_total",
		"whippet_producer_records_failed_total", "whippet_producer_produce_latency_seconds_bucket",
		"whippet_kafka_produce_bytes_total",
	} {
		if !used[m] {
			t.Errorf("no panel queries %s", m)
		}
	}
	t.Logf("%d metric names queried, all exported", len(used))
}

// ownMetrics lists the metrics <pkg>/metrics.go names: whippet_<pkg>_*.
func ownMetrics(t *testing.T, pkg string) []string {
	t.Helper()
	src := read(t, filepath.Join("..", "..", pkg, "metrics.go"))
	if !strings.Contains(src, `ns, sub = "whippet", "`+pkg+`"`) {
		t.Fatalf(`%s/metrics.go no longer names its metrics "whippet_%s_*": update this test`, pkg, pkg)
	}
	var out []string
	for _, n := range submatches(nameField, src) {
		out = append(out, "whippet_"+pkg+"_"+n)
	}
	counter := regexp.MustCompile(`counter\("([a-z0-9_]+)"`) // atomicstore's helper
	for _, n := range submatches(counter, src) {
		out = append(out, "whippet_"+pkg+"_"+n)
	}
	return out
}

// The atomic store and aggregator row charts every metric of those
// packages, and only metrics they export.
func TestDashboardShowsAtomicStoresAndAggregators(t *testing.T) {
	d, _ := load(t)
	used := map[string]bool{}
	for _, e := range exprs(d) {
		for _, m := range metricRef.FindAllString(e, -1) {
			used[strings.TrimSuffix(m, "_bucket")] = true
		}
	}
	for _, pkg := range []string{"atomicstore", "aggregator"} {
		names := ownMetrics(t, pkg)
		if len(names) == 0 {
			t.Fatalf("%s/metrics.go: no metric names found: update this test", pkg)
		}
		for _, n := range names {
			if !used[n] {
				t.Errorf("no panel queries %s", n)
			}
		}
		for m := range used {
			if strings.HasPrefix(m, "whippet_"+pkg+"_") && !slices.Contains(names, m) {
				t.Errorf("the dashboard queries %s, which %s does not export", m, pkg)
			}
		}
	}
}

// kafkaSelector is a selector of franz-go client metrics with its component.
var kafkaSelector = regexp.MustCompile(`whippet_kafka_[a-z0-9_]+(\{[^}]*\})?`)

// Every component's franz-go client reports under whippet_kafka_*: a query
// must say whose it wants (component), and a consumer panel selects the
// $group variable through name, a producer panel $producer.
func TestDashboardSelectsKafkaClientsByComponent(t *testing.T) {
	d, _ := load(t)
	n := 0
	for _, e := range exprs(d) {
		for _, sel := range kafkaSelector.FindAllString(e, -1) {
			n++
			switch {
			case strings.Contains(sel, `component="consumer"`):
				if !strings.Contains(sel, `name=~"$group"`) {
					t.Errorf("%s: a consumer's client is named by its group: want name=~\"$group\"", sel)
				}
			case strings.Contains(sel, `component="producer"`):
				if !strings.Contains(sel, `name=~"$producer"`) {
					t.Errorf("%s: a producer's client is named by its client id: want name=~\"$producer\"", sel)
				}
			default:
				t.Errorf("%s selects no component: it would add up every component's clients", sel)
			}
		}
	}
	if n == 0 {
		t.Fatal("no whippet_kafka_* query: the Kafka client panels are gone")
	}
}

package main

import (
	"context"
	"strings"
	"testing"
)

// S6's ratios divide whippet-batch's median by each contender's, and the
// targets give batch ÷ per-record and batch ÷ Spring's batch listener.
func TestS6RatiosFromWhippetBatch(t *testing.T) {
	rows := []*row{
		{scenario: "S6", contender: "whippet-batch", rates: []float64{100_000, 120_000, 110_000}, rss: []int64{40 << 20, 40 << 20, 40 << 20}},
		{scenario: "S6", contender: "whippet-per-record", rates: []float64{2_500}, rss: []int64{30 << 20},
			extra: []map[string]any{{"unfinished": true}}},
		{scenario: "S6", contender: "spring-kafka-batch", rates: []float64{55_000}, rss: []int64{200 << 20}},
	}
	table := formatTable(rows)
	for _, want := range []string{
		"| S6 | whippet-batch | 110000 | n/a | n/a | 40 | — |",
		"| S6 | whippet-per-record | 2500 | n/a | n/a | 30 | 44.00 | 2500 (1 of 1 rounds unfinished",
		"| S6 | spring-kafka-batch | 55000 | n/a | n/a | 200 | 2.00 |",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	tg := targets(rows, 0)
	for _, want := range []string{
		"- S6: whippet's batch handler at 44.00× the per-record handler (whippet-per-record).",
		"- S6: whippet's batch handler at 2.00× Spring Kafka's batch listener (spring-kafka-batch).",
	} {
		if !strings.Contains(tg, want) {
			t.Errorf("targets lack %q:\n%s", want, tg)
		}
	}
}

// Running S6 alone builds its peer only: no other Maven project, no goka,
// no Greyhound (whose source this test's empty directory does not have).
func TestBuildPeersOnlyForTheScenarios(t *testing.T) {
	t.Chdir(t.TempDir()) // no bench/peers here: the spring-batch build fails, and says so
	ps := buildPeers(context.Background(), []string{"S6"})
	if len(ps) != 1 || ps["spring-batch"] == nil {
		t.Fatalf("built %v, want only spring-batch", keys(ps))
	}
	if ps["spring-batch"].err == nil {
		t.Fatal("spring-batch built without its project")
	}
	if u := unavailable(ps, "spring-retry"); u == "" {
		t.Fatal("spring-retry, not built, is available")
	}
}

func keys(ps peers) []string {
	var ks []string
	for k := range ps {
		ks = append(ks, k)
	}
	return ks
}

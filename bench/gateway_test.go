package main

import (
	"strings"
	"testing"
)

// recordedGatewayRun is the stdout of one run of notify's test binary
// (-test.bench GatewayLoad -test.benchtime 1x -notify.clients 200
// -notify.channels 100 -notify.notifications 10000): the benchmark's own
// lines, then the test binary's header and result line.
const recordedGatewayRun = `notify load: 2 gateways, 200 clients on 100 channels, 10000 notifications (100 per channel) on 6 partitions
  every socket got every notification of its channel once, in order: 20000 deliveries (gateways counted 20000, dropped 0)
  published in 3.982s; last delivery after 3.982s: 2511 notifications/s, 5023 deliveries/s
  Publish -> socket: p50 31.83ms, p99 213.62ms, max 390ms
  memory per connection (gateway + client side, heap + stacks): 47.8 KiB
goos: linux
goarch: amd64
pkg: github.com/whippet-go/whippet/notify
cpu: Intel(R) Xeon(R) Processor
BenchmarkGatewayLoad-2   	       1	3981337533 ns/op	     48947 B/conn	      2511 notifications/s	        31.83 p50-ms	       213.6 p99-ms
PASS
`

func TestParseGatewayBench(t *testing.T) {
	g, err := parseGatewayBench([]byte(recordedGatewayRun))
	if err != nil {
		t.Fatal(err)
	}
	if want := (gatewayFigures{rate: 2511, p50: 31.83, p99: 213.6, bytesPerConn: 48947}); g != want {
		t.Fatalf("got %+v, want %+v", g, want)
	}
}

func TestParseGatewayBenchRejects(t *testing.T) {
	for name, out := range map[string]string{
		"failed run": "--- FAIL: BenchmarkGatewayLoad\n    load_test.go:180: client 3 (channel 3): got ch-3 #5, want ch-3 #4 (once each, in order)\nFAIL\n",
		"no p99":     "BenchmarkGatewayLoad-2 \t 1\t3981337533 ns/op\t 48947 B/conn\t 2511 notifications/s\t 31.83 p50-ms\nPASS\n",
		"cut short":  "BenchmarkGatewayLoad-2 \t 1\t3981337533 ns/op\t 48947 B/conn\t 2511\n",
		"no rate":    "BenchmarkGatewayLoad-2 \t 1\t3981337533 ns/op\t 48947 B/conn\t 0 notifications/s\t 31.83 p50-ms\t 213.6 p99-ms\n",
	} {
		if g, err := parseGatewayBench([]byte(out)); err == nil {
			t.Errorf("%s: parsed %+v, want an error", name, g)
		}
	}
}

// S7's row shows each round's B/conn in its last column and no ratio (it
// has no peer); its target line gives the median rate and p99.
func TestS7TableAndTargets(t *testing.T) {
	rows := []*row{{scenario: "S7", contender: gatewayName, rates: []float64{2511, 3000, 2800},
		p50s: []float64{31.83, 20, 25}, p99s: []float64{213.6, 150, 180}, rss: []int64{300 << 20, 310 << 20, 305 << 20},
		extra: []map[string]any{{"bytes_per_conn": 48947.0}, {"bytes_per_conn": 49001.0}, {"bytes_per_conn": 48800.0}}}}
	table := formatTable(rows)
	if want := "| S7 | whippet-gateway | 2800 | 25.0 | 180.0 | 305 | — | 2511, 3000, 2800; B/conn: 48947, 49001, 48800 |"; !strings.Contains(table, want) {
		t.Errorf("table lacks %q:\n%s", want, table)
	}
	if want := "- S7: whippet's WebSocket gateway at 2800 notifications/s, p99 180.0 ms Publish → socket (medians of 3 rounds; no peer to compare).\n"; targets(rows, 0) != want {
		t.Errorf("targets are %q, want %q", targets(rows, 0), want)
	}
	failed := []*row{{scenario: "S7", contender: gatewayName, failures: []string{"boom"}}}
	if tg := targets(failed, 0); !strings.Contains(tg, "S7: whippet's WebSocket gateway not measured") {
		t.Errorf("targets of a failed S7: %q", tg)
	}
}

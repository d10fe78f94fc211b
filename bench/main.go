// Command bench runs whippet against plain franz-go and the JVM and Go peer
// libraries on one Kafka broker, in one run, and prints one table:
// records/s, p50/p99 latency where it applies, peak RSS, and each
// contender's ratio against whippet. It also writes bench/RESULTS.md.
//
// Run with `make bench`, or against a running broker:
//
//	set -a; source .kafka/env; set +a; go run ./bench
//
// Every contender runs as its own process (Go contenders are this binary
// re-executed as "bench contender ..."; peers are the Maven and Go projects
// under bench/peers, built here), so peak RSS is the contender's own (its
// VmHWM, which it reports). Each prints one JSON result line. The harness creates
// the topics and produces the data once per scenario with franz-go; every
// contender run gets a fresh consumer group. Contenders alternate within each
// round and the table shows the median of the rounds.
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "contender" {
		if err := runContender(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench contender:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// options are the harness's flags; the sizes default to what `make bench`
// runs in about a quarter of an hour on 2 cores.
type options struct {
	scenarios   string
	rounds      int
	s1Rounds    int
	s5Rounds    int
	s4Rounds    int
	s1Records   int
	s1Live      int
	s1LiveRate  int
	s2Records   int
	s2Retry     time.Duration
	s3Records   int
	s3Live      int
	s3LiveRate  int
	s3Keys      int
	s3Conc      int
	s3Handler   time.Duration
	s4Keys      int
	s4Limit     time.Duration
	s1GhLimit   time.Duration
	slowRounds  int
	s5Records   int
	s6Rounds    int
	s6Records   int
	s6Live      int
	s6LiveRate  int
	s6Call      time.Duration
	s6Record    time.Duration
	s6RecLimit  time.Duration
	s7Rounds    int
	s7Clients   int
	s7Channels  int
	s7Notifs    int
	results     string
	runTimeout  time.Duration
	skipResults bool
	baseline    string
}

func parseOptions() (options, error) {
	var o options
	flag.StringVar(&o.scenarios, "scenarios", "S1,S2,S3,S4,S5,S6,S7", "scenarios to run, comma-separated")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of S2 and S3; the table shows each contender's median")
	flag.IntVar(&o.s4Rounds, "s4-rounds", 9, "rounds of S4 (loads of under a second)")
	flag.IntVar(&o.s1Rounds, "s1-rounds", 7, "rounds of S1")
	flag.IntVar(&o.slowRounds, "slow-peer-rounds", 3, "rounds of the peers a time limit stops (Greyhound in S1, goka in S4), at most the scenario's")
	flag.IntVar(&o.s5Rounds, "s5-rounds", 5, "rounds of S5 (Go contenders only: short runs)")
	flag.IntVar(&o.s1Records, "s1-records", 3_000_000, "S1: backlog records (100 B, 4 partitions)")
	flag.IntVar(&o.s1Live, "s1-live", 20_000, "S1: live records produced after the backlog, for latency")
	flag.IntVar(&o.s1LiveRate, "s1-live-rate", 10_000, "S1: live records per second")
	flag.IntVar(&o.s2Records, "s2-records", 20_000, "S2: records (100 B, 4 partitions), every 10th failing once")
	flag.DurationVar(&o.s2Retry, "s2-retry", time.Second, "S2: retry interval")
	flag.IntVar(&o.s3Records, "s3-records", 20_000, "S3: backlog records (1 partition)")
	flag.IntVar(&o.s3Live, "s3-live", 10_000, "S3: live records produced after the backlog, for latency")
	flag.IntVar(&o.s3LiveRate, "s3-live-rate", 5_000, "S3: live records per second")
	flag.IntVar(&o.s3Keys, "s3-keys", 1000, "S3: distinct keys")
	flag.IntVar(&o.s3Conc, "s3-concurrency", 100, "S3: handler concurrency")
	flag.DurationVar(&o.s3Handler, "s3-handler", 5*time.Millisecond, "S3: handler time per record")
	flag.IntVar(&o.s4Keys, "s4-keys", 1_000_000, "S4: distinct keys in the compacted topic (4 partitions)")
	flag.DurationVar(&o.s1GhLimit, "s1-greyhound-limit", 20*time.Second, "S1: stop Greyhound's backlog after this long and report its partial rate (0: no limit)")
	flag.DurationVar(&o.s4Limit, "s4-goka-limit", 20*time.Second, "S4: stop goka's load after this long and report its partial rate (0: no limit)")
	flag.IntVar(&o.s5Records, "s5-records", 200_000, "S5: records to transform (100 B, 4 partitions)")
	flag.IntVar(&o.s6Rounds, "s6-rounds", 3, "rounds of S6")
	flag.IntVar(&o.s6Records, "s6-records", 1_000_000, "S6: backlog records (100 B, 6 partitions) into the batch sink")
	flag.IntVar(&o.s6Live, "s6-live", 3_000, "S6: live records produced after the backlog, for latency (batch contenders)")
	flag.IntVar(&o.s6LiveRate, "s6-live-rate", 1_000, "S6: live records per second")
	flag.DurationVar(&o.s6Call, "s6-call-cost", 2*time.Millisecond, "S6: the sink's cost per call (slept)")
	flag.DurationVar(&o.s6Record, "s6-record-cost", 2*time.Microsecond, "S6: the sink's cost per record (busy-spun)")
	flag.DurationVar(&o.s6RecLimit, "s6-record-limit", 10*time.Second, "S6: stop whippet-per-record after this long and report its partial rate (0: no limit)")
	flag.IntVar(&o.s7Rounds, "s7-rounds", 3, "rounds of S7")
	flag.IntVar(&o.s7Clients, "s7-clients", 2000, "S7: WebSocket clients, over the 2 gateway instances")
	flag.IntVar(&o.s7Channels, "s7-channels", 1000, "S7: channels (the clients spread evenly over them)")
	flag.IntVar(&o.s7Notifs, "s7-notifications", 200_000, "S7: notifications, spread evenly over the channels")
	flag.StringVar(&o.results, "results", "bench/RESULTS.md", "where to write the results page")
	flag.BoolVar(&o.skipResults, "no-results", false, "print the table only; do not write -results")
	flag.DurationVar(&o.runTimeout, "run-timeout", 5*time.Minute, "limit for one contender run")
	flag.StringVar(&o.baseline, "baseline", "", "a bench binary built from another whippet commit (see make bench-compare): S1, S2, S3 and S5 run its whippet as whippet-baseline, in the same rounds")
	flag.Parse()
	for name, v := range map[string]int{"-rounds": o.rounds, "-s1-rounds": o.s1Rounds, "-s4-rounds": o.s4Rounds, "-s5-rounds": o.s5Rounds, "-s6-rounds": o.s6Rounds, "-s7-rounds": o.s7Rounds, "-slow-peer-rounds": o.slowRounds} {
		if v < 1 {
			return o, fmt.Errorf("%s must be at least 1, got %d", name, v)
		}
	}
	for name, v := range map[string]int{"-s1-records": o.s1Records, "-s2-records": o.s2Records, "-s3-records": o.s3Records,
		"-s3-keys": o.s3Keys, "-s3-concurrency": o.s3Conc, "-s4-keys": o.s4Keys, "-s5-records": o.s5Records,
		"-s1-live-rate": o.s1LiveRate, "-s3-live-rate": o.s3LiveRate, "-s6-records": o.s6Records, "-s6-live-rate": o.s6LiveRate,
		"-s7-clients": o.s7Clients, "-s7-channels": o.s7Channels, "-s7-notifications": o.s7Notifs} {
		if v <= 0 {
			return o, fmt.Errorf("%s must be positive, got %d", name, v)
		}
	}
	if o.s1Live < 0 || o.s3Live < 0 || o.s6Live < 0 {
		return o, errors.New("-s1-live, -s3-live and -s6-live must not be negative")
	}
	if o.s6Call < 0 || o.s6Record < 0 {
		return o, errors.New("-s6-call-cost and -s6-record-cost must not be negative")
	}
	if o.s7Clients < o.s7Channels || o.s7Notifs%o.s7Channels != 0 { // as BenchmarkGatewayLoad requires
		return o, fmt.Errorf("-s7-clients (%d) must be at least -s7-channels (%d), and -s7-notifications (%d) a multiple of it", o.s7Clients, o.s7Channels, o.s7Notifs)
	}
	if o.s2Records < 10 {
		return o, fmt.Errorf("-s2-records must be at least 10 (every 10th fails), got %d", o.s2Records)
	}
	return o, nil
}

// row is one contender's outcome in one scenario.
type row struct {
	scenario, contender string
	unavailable         string // why it did not run, if it did not
	rates, p50s, p99s   []float64
	rounds              []int   // the round (from 0) of each rate
	rss                 []int64 // bytes
	extra               []map[string]any
	failures            []string
}

// median returns the middle of xs (the upper one of an even count), 0 for none.
func median[T cmp.Ordered](xs []T) T {
	var zero T
	if len(xs) == 0 {
		return zero
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func run() error {
	o, err := parseOptions()
	if err != nil {
		return err
	}
	brokers := os.Getenv("KAFKA_BROKERS")
	if brokers == "" {
		return errors.New("KAFKA_BROKERS is not set: start Kafka (make kafka-up) and source its env file, or run make bench")
	}
	began := time.Now()
	loadBefore := loadAvg()
	ctx := context.Background()
	if _, err := os.Stat(peerDir); err != nil {
		return fmt.Errorf("run from the repository root (%s not found): %w", peerDir, err)
	}
	if err := os.MkdirAll(filepath.Join(buildDir, "logs"), 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var ids []string
	for _, id := range strings.Split(o.scenarios, ",") {
		ids = append(ids, strings.ToUpper(strings.TrimSpace(id)))
	}
	fmt.Printf("bench: Kafka at %s; building peers in %s\n", brokers, buildDir)
	peers := buildPeers(ctx, ids)
	k, err := newKafka(brokers)
	if err != nil {
		return err
	}
	defer k.close()

	var (
		rows []*row
		scs  []*scenario
	)
	for _, id := range ids {
		sc, err := scenarioFor(id, o, k, self, peers)
		if err != nil {
			return err
		}
		scs = append(scs, sc)
		fmt.Printf("\n== %s: %s\n", sc.id, sc.title)
		t0 := time.Now()
		if err := sc.setup(ctx); err != nil {
			return fmt.Errorf("%s: set up: %w", sc.id, err)
		}
		fmt.Printf("   data ready in %v\n", time.Since(t0).Round(time.Millisecond))
		rows = append(rows, runScenario(ctx, o, k, sc)...)
	}
	wall := time.Since(began)
	table := formatTable(rows)
	fmt.Println()
	fmt.Print(table)
	fmt.Printf("\nwall time: %v\n", wall.Round(time.Second))
	if o.skipResults {
		return nil
	}
	return writeResults(o, peers, scs, rows, table, wall, loadBefore, loadAvg())
}

// scenario is one row group of the table.
type scenario struct {
	id, title string
	rounds    int
	latency   string // what p50/p99 measure, or "" when not applicable
	timing    string // what the records/s clock covers
	setup     func(context.Context) error
	// live, if not nil, is called when a contender prints BACKLOG-DONE.
	live       func(context.Context) error
	contenders []contender
}

// contender is one program in a scenario: cmd builds its process for one
// run with a fresh consumer group, or unavailable says why it cannot run.
type contender struct {
	name        string
	unavailable string
	// maxRounds, if not 0, caps the contender's rounds below the
	// scenario's: a peer stopped at a time limit in every round (see
	// -slow-peer-rounds) needs fewer rounds than the targets do.
	maxRounds int
	cmd       func(group string) (*exec.Cmd, error)
}

func runScenario(ctx context.Context, o options, k *kafka, sc *scenario) []*row {
	rows := make([]*row, len(sc.contenders))
	for i, c := range sc.contenders {
		rows[i] = &row{scenario: sc.id, contender: c.name, unavailable: c.unavailable}
		if c.unavailable != "" {
			fmt.Printf("   %-22s not available (%s)\n", c.name, c.unavailable)
		}
	}
	for round := range sc.rounds {
		for j := range sc.contenders {
			i := (round + j) % len(sc.contenders) // alternate who goes first
			c := sc.contenders[i]
			if c.unavailable != "" || c.maxRounds > 0 && round >= c.maxRounds {
				continue
			}
			group := fmt.Sprintf("bench-%s-%s-%d-%d", strings.ToLower(sc.id), c.name, round, time.Now().UnixNano())
			log := filepath.Join(buildDir, "logs", fmt.Sprintf("%s-%s-%d.log", sc.id, c.name, round))
			r := rows[i]
			cmd, err := c.cmd(group)
			if err != nil {
				r.failures = append(r.failures, err.Error())
				fmt.Printf("   round %d %-22s FAILED: %v\n", round+1, c.name, err)
				continue
			}
			if waited, share, err := settle(procStat, time.Sleep, settleWindow, settleBusy, settleMax); err != nil {
				fmt.Printf("   (cannot wait for a quiet machine: %v)\n", err)
			} else if waited > settleWindow {
				fmt.Printf("   (waited %.2fs for a quiet machine; last %.0f ms %.0f%% busy)\n", waited.Seconds(), settleWindow.Seconds()*1000, share*100)
			}
			res, rss, err := runOne(ctx, o, sc, cmd, log)
			if err != nil {
				r.failures = append(r.failures, err.Error())
				fmt.Printf("   round %d %-22s FAILED: %v (log %s)\n", round+1, c.name, err, log)
				continue
			}
			rate := res.Records / res.Seconds
			r.rates = append(r.rates, rate)
			r.rounds = append(r.rounds, round)
			r.rss = append(r.rss, rss)
			if res.P50 != nil && res.P99 != nil {
				r.p50s = append(r.p50s, *res.P50)
				r.p99s = append(r.p99s, *res.P99)
			}
			r.extra = append(r.extra, res.Extra)
			lat := ""
			if res.P50 != nil && res.P99 != nil {
				lat = fmt.Sprintf(", p50 %.1f ms, p99 %.1f ms", *res.P50, *res.P99)
			}
			ex := ""
			if len(res.Extra) > 0 {
				b, _ := json.Marshal(res.Extra)
				ex = " " + string(b)
			}
			fmt.Printf("   round %d %-22s %10.0f rec/s (%.0f records in %.3fs)%s, peak RSS %.0f MiB%s\n",
				round+1, c.name, rate, res.Records, res.Seconds, lat, float64(rss)/(1<<20), ex)
		}
	}
	return rows
}

// runOne runs one contender process, feeding the scenario's live phase when
// it prints BACKLOG-DONE, and returns its result line and peak RSS.
func runOne(ctx context.Context, o options, sc *scenario, cmd *exec.Cmd, logPath string) (result, int64, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return result{}, 0, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "$ %s\n", strings.Join(cmd.Args, " "))
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return result{}, 0, err
	}
	if err := cmd.Start(); err != nil {
		return result{}, 0, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	timer := time.AfterFunc(o.runTimeout, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	var (
		last    string
		liveErr error
		wg      sync.WaitGroup
	)
	sc2 := bufio.NewScanner(stdout)
	sc2.Buffer(make([]byte, 64<<10), 1<<20)
	for sc2.Scan() {
		line := strings.TrimSpace(sc2.Text())
		fmt.Fprintf(logf, "stdout: %s\n", line)
		switch {
		case line == "BACKLOG-DONE":
			if sc.live != nil {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := sc.live(ctx); err != nil {
						liveErr = err
						_ = cmd.Process.Kill()
					}
				}()
			}
		case strings.HasPrefix(line, "{"):
			last = line
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	werr := cmd.Wait()
	wg.Wait()
	if liveErr != nil {
		return result{}, 0, fmt.Errorf("live phase: %w", liveErr)
	}
	if werr != nil {
		return result{}, 0, fmt.Errorf("%s: %w", filepath.Base(cmd.Path), werr)
	}
	var res result
	if last == "" {
		return result{}, 0, errors.New("no result line")
	}
	if err := json.Unmarshal([]byte(last), &res); err != nil {
		return result{}, 0, fmt.Errorf("result line %q: %w", last, err)
	}
	if res.Seconds <= 0 || res.Records <= 0 || res.PeakRSS <= 0 {
		return result{}, 0, fmt.Errorf("result line %q: no records, no time or no peak RSS", last)
	}
	return res, res.PeakRSS * 1024, nil
}

func formatTable(rows []*row) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| scenario | contender | records/s | p50 ms | p99 ms | peak RSS MiB | whippet ÷ this | rounds |\n")
	fmt.Fprintf(&b, "|---|---|---:|---:|---:|---:|---:|---|\n")
	whippet := map[string]float64{}
	for _, r := range rows {
		if r.contender == reference(r.scenario) && len(r.rates) > 0 {
			whippet[r.scenario] = median(r.rates)
		}
	}
	for _, r := range rows {
		switch {
		case r.unavailable != "":
			fmt.Fprintf(&b, "| %s | %s | not available (%s) | | | | | |\n", r.scenario, r.contender, r.unavailable)
			continue
		case len(r.rates) == 0:
			fmt.Fprintf(&b, "| %s | %s | failed: %s | | | | | |\n", r.scenario, r.contender, strings.Join(r.failures, "; "))
			continue
		}
		rate := median(r.rates)
		p50, p99 := "n/a", "n/a"
		if len(r.p50s) > 0 {
			p50, p99 = fmt.Sprintf("%.1f", median(r.p50s)), fmt.Sprintf("%.1f", median(r.p99s))
		}
		ratio := "—"
		if w, ok := whippet[r.scenario]; ok && r.contender != reference(r.scenario) {
			ratio = fmt.Sprintf("%.2f", w/rate)
		}
		rounds := make([]string, len(r.rates))
		for i, x := range r.rates {
			rounds[i] = fmt.Sprintf("%.0f", x)
		}
		note := strings.Join(rounds, ", ")
		unfinished := 0
		for _, e := range r.extra {
			if _, ok := e["unfinished"]; ok {
				unfinished++
			}
		}
		if unfinished > 0 {
			note += fmt.Sprintf(" (%d of %d rounds unfinished at the time limit: rate of the part done)", unfinished, len(r.rates))
		}
		var perConn []string // S7: memory per WebSocket connection, each round's
		for _, e := range r.extra {
			if v, ok := e["bytes_per_conn"].(float64); ok {
				perConn = append(perConn, fmt.Sprintf("%.0f", v))
			}
		}
		if len(perConn) > 0 {
			note += "; B/conn: " + strings.Join(perConn, ", ")
		}
		if len(r.failures) > 0 {
			note += fmt.Sprintf(" (%d failed)", len(r.failures))
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %s | %s | %.0f | %s | %s |\n",
			r.scenario, r.contender, rate, p50, p99, float64(median(r.rss))/(1<<20), ratio, note)
	}
	return b.String()
}

// reference is the contender of scenario id that the column "whippet ÷
// this" divides by: whippet, or in S6 whippet's batch handler and in S7
// its WebSocket gateway, whose scenarios they are.
func reference(id string) string {
	switch id {
	case "S6":
		return "whippet-batch"
	case "S7":
		return gatewayName
	}
	return "whippet"
}

func goVersionOf(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "unknown"
}

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// writeResults writes the results page: the command, the machine, the
// versions, the table, what each scenario measures, and the targets.
func writeResults(o options, ps peers, scs []*scenario, rows []*row, table string, wall time.Duration, loadBefore, loadAfter string) error {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# whippet benchmarks against franz-go and the peers\n\n")
	w("Written by `bench/` (`make bench`) on %s; every figure below comes from that one run, on one broker.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"))
	w("## Command\n\n```\n%s\n```\n\n", command())
	w("Wall time of the run (peer builds, data, every round): %v.\n\n", wall.Round(time.Second))
	w("## Machine\n\n")
	w("- %d CPUs: %s\n- RAM: %s\n- kernel: %s\n- the broker, the harness and the contender share the machine.\n",
		runtime.NumCPU(), cpuModel(), memTotal(), strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")))
	w("- load average (1, 5, 15 min) when the run began: %s; when it ended: %s. Anything well above the CPU count\n"+
		"  means other work shared the cores, and single rounds are noisy: compare the medians, and the rounds in the last column.\n\n",
		loadBefore, loadAfter)
	w("## Versions\n\n")
	w("- Apache Kafka %s, one KRaft node on 127.0.0.1 (`whippet kafka up`)\n", orUnknown(os.Getenv("KAFKA_VERSION")))
	w("- %s; franz-go %s; whippet at commit %s\n", runtime.Version(), goVersionOf("github.com/twmb/franz-go"), gitHead(o.results))
	w("- %s\n", javaVersion())
	for _, c := range []struct{ peer, contender string }{
		{"spring-retry", "spring-kafka"}, {"parallel-consumer", "parallel-consumer"}, {"goka", "goka"}, {greyhoundName, greyhoundName},
		{"spring-batch", "spring-kafka-batch"},
	} {
		p := ps[c.peer]
		if p == nil {
			continue // no scenario of this run runs it
		}
		status := "built from bench/peers/" + c.peer
		if p.err != nil {
			status = "not available: " + p.err.Error()
		}
		w("- %s: %s%s — %s\n", c.contender, p.version, kafkaClientsOf(c.peer), status)
	}
	w("\n## Results (medians of the rounds: S1 %d, S4 %d, S5 %d, S6 %d, S7 %d, S2 and S3 %d each)\n\n", o.s1Rounds, o.s4Rounds, o.s5Rounds, o.s6Rounds, o.s7Rounds, o.rounds)
	w("`whippet ÷ this` is whippet's records/s divided by the contender's (in S6, whippet-batch's): above 1 means whippet is ahead. ")
	w("Peak RSS is the contender process's high-water resident set (VmHWM in /proc/self/status, read by the contender just before it prints its result), the whole JVM included for the JVM peers. ")
	w("The last column lists each round's records/s.\n\n")
	w("%s\n", table)
	w("## Targets\n\n%s\n", targets(rows, float64(o.s3Conc)/o.s3Handler.Seconds()))
	w("## What each scenario measures\n\n")
	for _, sc := range scs {
		w("- **%s** — %s.\n  - records/s clock: %s.\n", sc.id, sc.title, sc.timing)
		if sc.latency != "" {
			w("  - p50/p99: %s.\n", sc.latency)
		} else {
			w("  - p50/p99: not applicable.\n")
		}
	}
	w("\n%s", methodNotes)
	w("\n## Extra counts per round\n\n")
	for _, r := range rows {
		for i, e := range r.extra {
			if len(e) > 0 {
				w("- %s %s round %d: %v\n", r.scenario, r.contender, i+1, e)
			}
		}
		for _, f := range r.failures {
			w("- %s %s failed round: %s\n", r.scenario, r.contender, f)
		}
	}
	return os.WriteFile(o.results, []byte(b.String()), 0o644)
}

const methodNotes = `## Method and fairness

- One harness (` + "`go run ./bench`" + `) creates a fresh topic per scenario and produces the data once with
  franz-go; every contender reads the same records from the same broker. Each contender run uses a new
  consumer group (and, in S5, a new output topic), so nobody reads from a warm committed position.
- Every contender is its own process, started by the harness: whippet and plain franz-go are the harness
  binary re-executed (` + "`bench contender ...`" + `), the JVM peers are small Maven projects under
  ` + "`bench/peers/`" + ` run with ` + "`java -cp`" + ` and JVM defaults, goka is its own Go module there. Process start,
  JVM start-up and the group join are outside every clock (the clocks start at the first record handled, or at
  client creation in S4); the same rule holds for every contender.
- Client settings are each library's defaults (Spring's @RetryableTopic machinery and parallel-consumer
  untuned), except where the scenario needs a setting: earliest offset for
  new groups; Spring's listener concurrency = partitions (4), as whippet runs one worker per partition;
  retry topics with the source topic's 4 partitions for whippet and Spring; parallel-consumer with KEY ordering,
  maxConcurrency = the scenario's concurrency and periodic asynchronous commits; goka's view with in-memory
  storage (its default is LevelDB on disk), stopped after ` + "`-s4-goka-limit`" + ` (20 s by default) with the rate of
  what it loaded by then when it has not finished (the table says so), and sarama protocol version 3.5 (goka's default, 2.0, predates Kafka
  4's oldest supported protocols). The JVM peers use the kafka-clients version their own POMs bring.
- Rounds alternate who goes first; the table shows each contender's median round. Peak RSS is the median of
  the rounds' peaks. A peer that a time limit stops in every round (Greyhound in S1, goka in S4) runs only the
  first ` + "`-slow-peer-rounds`" + ` (3) rounds: its rate is orders of magnitude away, and each of its rounds costs 20 s.
  A target is judged on the ratio of the medians; its line also gives the ratio within each round, whose runs
  were back to back, so that a miss or a pass can be told from the noise between rounds. Before every run the
  harness waits (up to 15 s) for a quarter-second in which at most 10% of the cores' time was busy, so that no
  run starts while the broker is still busy with the run before it (a 20-second Greyhound or goka run precedes
  the same contender in most rounds).
- Greyhound (wix/greyhound, Scala on ZIO, MIT) is built from its last public source snapshot (commit 385bb84,
  2023-02-09; its com.wix artifacts are not served here), which the harness reads from
  ` + "`../shared/peers/greyhound`" + ` next to the repository (the table says "not available" without it) and never
  copies into the repository. It stages core, future-interop and java-interop in a temporary directory and
  applies two build-time steps there, because dev.zio:zio-managed is not served: it leaves out
  ` + "`core/src/main/scala/com/wixpress/dst/greyhound/core/zioutils/AcquiredManagedResource.scala`" + ` and drops the
  unused ` + "`import zio.managed._`" + ` from ` + "`core/src/main/scala/com/wixpress/dst/greyhound/core/producer/Producer.scala`" + `.
  Then Maven builds ` + "`bench/peers/greyhound`" + `: Greyhound's core, its interop modules, and our driver, with
  Scala 2.12.20, ZIO 2.0.21 (Greyhound pinned 2.0.2, not served here) and kafka-clients 3.9.1; the build is
  skipped while neither the source nor the peer project changes. The driver runs Greyhound's RecordConsumer
  (its ZIO API) with offset reset Earliest and metrics through GreyhoundMetrics.live, as Greyhound's Java and
  Futures APIs do. ` + "`greyhound`" + ` keeps EventLoopConfig.Default: a partition is paused once 256 of its records
  wait in the dispatcher and resumed at 128, fewer than the 500 records one kafka-clients poll may bring: a
  record that does not fit pauses its partition and seeks it back to that record. ` + "`greyhound-tuned`" + ` raises those watermarks to 2048 and 1024. Greyhound's README
  names no setting to tune (it promises parallel handling "with automatic throttling", which these
  watermarks are); this tuning is the harness's. In S2 Greyhound retries through its own retry topic
  (` + "`<topic>-<group>-retry-0`" + `, which it creates with 1 partition) with ZRetryConfig.nonBlockingRetry(the retry
  interval). In S1 a Greyhound backlog not consumed within ` + "`-s1-greyhound-limit`" + ` (20 s of the records/s
  clock) is stopped, and the rate of the part handled is shown without latency (the table says so).
- S3's ideal (concurrency ÷ handler time) assumes a sleep that wakes on time. ` + "`go-floor`" + ` is S3's handler (the
  sleep, then the order check's lock, key and map) run by as many plain goroutines as the concurrency, with no
  Kafka, timed like the contenders: the rate the Go runtime allows that handler on this machine, since a
  time.Sleep of 5 ms wakes a fraction of a millisecond late (timers fire from the scheduler and from epoll
  waits of whole milliseconds). whippet's ratio to it is the consumer's own cost.
- S6's sink is the same in Go (` + "`bench/batch.go`" + `) and Java (` + "`bench/peers/spring-batch`" + `): a call sleeps the
  per-call cost (time.Sleep, Thread.sleep; both overshoot by about 0.1 ms on Linux) and then busy-spins on the
  monotonic clock (time.Now, System.nanoTime) for the per-record cost times the call's records. Every
  contender is one process, one consumer group, the topic's 6 partitions, at-least-once with commits:
  whippet-batch is consumer.NewBatch with the default BatchSize (500 records, 5 ms linger), one sink call per
  batch; whippet-per-record is consumer.New, one sink call per record, stopped after ` + "`-s6-record-limit`" + `
  (the table says so) since its backlog would take minutes; spring-kafka-batch is a batch @KafkaListener
  (setBatchListener(true), AckMode.BATCH, max.poll.records at its default 500, listener concurrency 6: one
  KafkaConsumer per partition, as whippet runs one worker per partition), one sink call per poll.
- S7 has one contender, whippet's WebSocket gateway (package notify): no peer library in any language has its
  shape (a Kafka topic fanned out by channel id to WebSocket clients, with resume from an id), so the row stands
  alone and its ratio column is empty. Its figures are notify's own load benchmark (` + "`notify/load_test.go`" + `,
  BenchmarkGatewayLoad), built once per run with ` + "`go test -c`" + ` and run once per round against the harness's
  broker: 2 gateway instances and every client (Go, github.com/coder/websocket) in one process, one Publisher
  with 200 concurrent Publish calls, a new topic of 6 partitions per round. A round fails unless every
  notification reaches every socket of its channel exactly once and in order. records/s is its notifications/s
  (a notification is delivered to clients ÷ channels sockets); peak RSS is that process's (wait4's ru_maxrss,
  the benchmark run as the child of a small wrapper process, whose few MiB are the figure's floor), so it
  holds both the gateways' and the clients' side; B/conn in the last column is the benchmark's memory per
  connection (heap and stacks in use after connecting, minus before, over the clients; both sides again).
`

// targets checks the targets against the medians; s3Ideal is S3's
// ideal rate (concurrency ÷ handler time).
func targets(rows []*row, s3Ideal float64) string {
	rate := map[string]map[string]float64{}
	rowOf := map[string]map[string]*row{}
	for _, r := range rows {
		if len(r.rates) == 0 {
			continue
		}
		if rate[r.scenario] == nil {
			rate[r.scenario] = map[string]float64{}
			rowOf[r.scenario] = map[string]*row{}
		}
		rate[r.scenario][r.contender] = median(r.rates)
		rowOf[r.scenario][r.contender] = r
	}
	// byRound is how the ratio of medians compares with the ratios of the
	// runs of one round, which ran back to back on the same machine state.
	byRound := func(s, other string) string {
		rs := pairedRatios(rowOf[s]["whippet"], rowOf[s][other])
		if len(rs) < 2 {
			return ""
		}
		return fmt.Sprintf(" Round by round, whippet ÷ %s was %.3f× in the median round, from %.3f× to %.3f× over %d rounds.", other, median(rs), slices.Min(rs), slices.Max(rs), len(rs))
	}
	var b strings.Builder
	for _, s := range []string{"S1", "S5"} {
		w, f := rate[s]["whippet"], rate[s]["franz-go"]
		if w == 0 || f == 0 {
			continue
		}
		verdict := "met"
		if w/f < 0.95 {
			verdict = fmt.Sprintf("missed by %.1f%%", (0.95-w/f)*100)
		}
		fmt.Fprintf(&b, "- %s: whippet at %.3f× franz-go (target ≥ 0.95×): %s.%s\n", s, w/f, verdict, byRound(s, "franz-go"))
	}
	if w, c := rate["S4"]["whippet"], rate["S4"]["franz-go-consume"]; w > 0 && c > 0 {
		verdict := "met"
		if w/c < 0.85 {
			verdict = fmt.Sprintf("missed by %.1f%%", (0.85-w/c)*100)
		}
		fmt.Fprintf(&b, "- S4: whippet's load at %.3f× a plain franz-go consume of the topic (target ≥ 0.85×): %s.%s\n", w/c, verdict, byRound("S4", "franz-go-consume"))
	}
	if w, fl := rate["S3"]["whippet"], rate["S3"]["go-floor"]; w > 0 && s3Ideal > 0 {
		verdict := "met"
		if w/s3Ideal < 0.9 {
			verdict = fmt.Sprintf("missed by %.1f%%", (0.9-w/s3Ideal)*100)
		}
		floor := ""
		if fl > 0 {
			floor = fmt.Sprintf("; the Go floor, S3's handler in plain goroutines without Kafka, ran at %.3f× the ideal, and whippet at %.3f× that floor", fl/s3Ideal, w/fl)
		}
		fmt.Fprintf(&b, "- S3: whippet at %.3f× the ideal %.0f rec/s (target ≥ 0.9×): %s%s.\n", w/s3Ideal, s3Ideal, verdict, floor)
	}
	for _, s := range []string{"S1", "S2", "S3", "S4"} {
		w := rate[s]["whippet"]
		if w == 0 {
			continue
		}
		for _, r := range rows {
			if r.scenario != s || r.contender == "whippet" || r.contender == "franz-go" || r.contender == "franz-go-consume" || r.contender == "go-floor" {
				continue
			}
			switch p := rate[s][r.contender]; {
			case r.unavailable != "":
				fmt.Fprintf(&b, "- %s vs %s: not measured (%s).\n", s, r.contender, r.unavailable)
			case p == 0:
				fmt.Fprintf(&b, "- %s vs %s: not measured (every round failed).\n", s, r.contender)
			case w > p:
				fmt.Fprintf(&b, "- %s vs %s: whippet ahead, %.2f×.\n", s, r.contender, w/p)
			default:
				fmt.Fprintf(&b, "- %s vs %s: whippet behind, %.2f×.\n", s, r.contender, w/p)
			}
		}
	}
	if b6 := rate["S6"]["whippet-batch"]; b6 > 0 {
		for _, c := range []struct{ name, what string }{{"whippet-per-record", "the per-record handler"}, {"spring-kafka-batch", "Spring Kafka's batch listener"}} {
			if p := rate["S6"][c.name]; p > 0 {
				fmt.Fprintf(&b, "- S6: whippet's batch handler at %.2f× %s (%s).\n", b6/p, c.what, c.name)
			} else {
				fmt.Fprintf(&b, "- S6 vs %s: not measured.\n", c.name)
			}
		}
	}
	for _, r := range rows {
		if r.scenario != "S7" {
			continue
		}
		if len(r.rates) == 0 {
			fmt.Fprintf(&b, "- S7: whippet's WebSocket gateway not measured (every round failed).\n")
			continue
		}
		p99 := "n/a"
		if len(r.p99s) > 0 {
			p99 = fmt.Sprintf("%.1f ms", median(r.p99s))
		}
		of := "the one round"
		if len(r.rates) > 1 {
			of = fmt.Sprintf("medians of %d rounds", len(r.rates))
		}
		fmt.Fprintf(&b, "- S7: whippet's WebSocket gateway at %.0f notifications/s, p99 %s Publish → socket (%s; no peer to compare).\n",
			median(r.rates), p99, of)
	}
	return b.String()
}

func command() string {
	args := strings.Join(os.Args[1:], " ")
	c := "go run ./bench " + args
	if os.Getenv("MAKELEVEL") != "" {
		target := "bench"
		if t := os.Getenv("BENCH_MAKE_TARGET"); t != "" { // set by make bench-batch
			target = t
		}
		c = "make " + target + "   # runs: " + strings.TrimSpace(c)
	}
	return strings.TrimSpace(c)
}

func readFile(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return string(b)
}

func cpuModel() string {
	for _, l := range strings.Split(readFile("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	for _, l := range strings.Split(readFile("/proc/meminfo"), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb); err == nil {
				return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return "unknown"
}

// gitHead names the commit measured, and says so if the working tree
// differs from it in anything but the files the run itself writes: the
// results page (results) and go.work.sum, which go run completes.
func gitHead(results string) string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	s := strings.TrimSpace(string(out))
	st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no", "--",
		".", ":(exclude)"+results, ":(exclude)go.work.sum").Output()
	if err == nil && len(bytes.TrimSpace(st)) > 0 {
		s += " (with uncommitted changes)"
	}
	return s
}

func javaVersion() string {
	out, err := exec.Command("java", "-version").CombinedOutput()
	if err != nil {
		return "java: not found"
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > 1 {
		return strings.TrimSpace(lines[0]) + ", " + strings.TrimSpace(lines[1])
	}
	return strings.TrimSpace(lines[0])
}

// kafkaClientsOf names the kafka-clients jar a Maven peer was built with.
func kafkaClientsOf(name string) string {
	m, _ := filepath.Glob(filepath.Join(buildDir, name, "lib", "kafka-clients-*.jar"))
	if len(m) == 0 {
		return ""
	}
	return ", with " + strings.TrimSuffix(filepath.Base(m[0]), ".jar")
}

// loadAvg is the 1, 5 and 15 minute load averages.
func loadAvg() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], ", ")
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// pairedRatios returns a's rate ÷ b's in each round both finished, in
// round order (nil if either row is nil).
func pairedRatios(a, b *row) []float64 {
	if a == nil || b == nil {
		return nil
	}
	of := make(map[int]float64, len(b.rounds))
	for i, r := range b.rounds {
		of[r] = b.rates[i]
	}
	var rs []float64
	for i, r := range a.rounds {
		if x, ok := of[r]; ok && x > 0 {
			rs = append(rs, a.rates[i]/x)
		}
	}
	return rs
}

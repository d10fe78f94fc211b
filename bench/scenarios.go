package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// values hands out 100-byte values of random letters, a new one per
// record: with the records produced uncompressed, every fetch carries
// 100 B per record, as with real payloads, instead of a compressed run of
// identical bytes that makes the fetch nearly free. The seed is fixed, so
// every run produces the same bytes.
type values struct{ rng *rand.Rand }

func newValues() *values { return &values{rng: rand.New(rand.NewPCG(1, 2))} }

func (vs *values) next() []byte {
	v := make([]byte, 100)
	for i := range v {
		v[i] = 'a' + byte(vs.rng.IntN(26))
	}
	return v
}

const (
	greyhoundName = "greyhound"
	gatewayName   = "whippet-gateway" // S7's one contender
)

func unavailable(ps peers, name string) string {
	switch p := ps[name]; {
	case p == nil:
		return "not built: peersOf does not list it for this scenario"
	case p.err != nil:
		return p.err.Error()
	}
	return ""
}

// scenarioFor builds scenario id: its data, its live phase, its contenders.
func scenarioFor(id string, o options, k *kafka, self string, ps peers) (*scenario, error) {
	sc := &scenario{id: id, rounds: o.rounds}
	switch id {
	case "S1":
		sc.rounds = o.s1Rounds
	case "S4":
		sc.rounds = o.s4Rounds
	case "S5":
		sc.rounds = o.s5Rounds
	case "S6":
		sc.rounds = o.s6Rounds
	case "S7":
		sc.rounds = o.s7Rounds
	}
	var topic, liveTopic string
	// withLive gives each run of c a new live topic, so that no run reads
	// another run's live records.
	withLive := func(c contender, partitions int32) contender {
		inner := c.cmd
		if inner == nil {
			return c
		}
		c.cmd = func(group string) (*exec.Cmd, error) {
			var err error
			if liveTopic, err = k.topic(context.Background(), strings.ToLower(id)+"-live", partitions, nil); err != nil {
				return nil, err
			}
			cmd, err := inner(group)
			if err != nil {
				return nil, err
			}
			if cmd.Args[0] == "java" {
				cmd.Args = slices.Insert(cmd.Args, len(cmd.Args)-1, "-Dbench.liveTopic="+liveTopic)
			} else {
				cmd.Args = append(cmd.Args, "-live-topic", liveTopic)
			}
			return cmd, nil
		}
		return c
	}
	goCmd := func(who string, extra ...string) contender {
		return contender{name: who, cmd: func(group string) (*exec.Cmd, error) {
			args := append([]string{"contender", "-scenario", id, "-who", who, "-brokers", k.brokers, "-topic", topic, "-group", group}, extra...)
			return exec.Command(self, args...), nil
		}}
	}
	// withBaseline adds whippet as built by -baseline (another commit's
	// bench binary), run like c, to compare two commits in one run.
	withBaseline := func(cs []contender, c contender) []contender {
		if o.baseline == "" {
			return cs
		}
		inner := c.cmd
		c.name = "whippet-baseline"
		c.cmd = func(group string) (*exec.Cmd, error) {
			cmd, err := inner(group)
			if err != nil {
				return nil, err
			}
			cmd.Path, cmd.Args[0] = o.baseline, o.baseline
			return cmd, nil
		}
		return append(cs, c)
	}
	// greyhound runs Greyhound's RecordConsumer with its defaults and, as
	// greyhound-tuned, with its metrics reporter off and larger dispatcher
	// watermarks (bench/peers/greyhound); props are the scenario's.
	greyhound := func(props map[string]string) []contender {
		var cs []contender
		for _, tuned := range []bool{false, true} {
			c := contender{name: greyhoundName, unavailable: unavailable(ps, greyhoundName)}
			if tuned {
				c.name += "-tuned"
			}
			if c.unavailable == "" {
				c.cmd = func(group string) (*exec.Cmd, error) {
					pr := map[string]string{"bench.scenario": id, "bench.brokers": k.brokers, "bench.topic": topic, "bench.group": group,
						"bench.tuned": strconv.FormatBool(tuned)}
					for k, v := range props {
						pr[k] = v
					}
					return ps[greyhoundName].javaCmd(pr), nil
				}
			}
			cs = append(cs, c)
		}
		return cs
	}
	switch id {
	case "S1":
		sc.title = fmt.Sprintf("plain consume, no-op handler: %d backlog records of 100 B over 4 partitions", o.s1Records)
		sc.timing = "first record handled → last backlog record handled"
		sc.latency = fmt.Sprintf("end-to-end, handler call minus produce time, of %d live records produced at %d/s after the backlog", o.s1Live, o.s1LiveRate)
		vs := newValues()
		sc.setup = func(ctx context.Context) (err error) {
			if topic, err = k.topic(ctx, "s1", 4, nil); err != nil {
				return err
			}
			return k.produce(ctx, o.s1Records, func(int) *kgo.Record { return &kgo.Record{Topic: topic, Value: vs.next()} })
		}
		if o.s1Live > 0 {
			sc.live = func(ctx context.Context) error {
				return k.producePaced(ctx, o.s1Live, o.s1LiveRate, func(int) *kgo.Record { return &kgo.Record{Topic: liveTopic, Value: vs.next()} })
			}
		}
		n := []string{"-records", strconv.Itoa(o.s1Records), "-live", strconv.Itoa(o.s1Live)}
		sc.contenders = []contender{withLive(goCmd("whippet", n...), 4), withLive(goCmd("franz-go", n...), 4)}
		sc.contenders = withBaseline(sc.contenders, withLive(goCmd("whippet", n...), 4))
		for _, c := range greyhound(map[string]string{"bench.live": strconv.Itoa(o.s1Live), "bench.limitMs": strconv.FormatInt(o.s1GhLimit.Milliseconds(), 10)}) {
			c.maxRounds = o.slowRounds
			sc.contenders = append(sc.contenders, withLive(c, 4))
		}

	case "S2":
		sc.title = fmt.Sprintf("non-blocking retries: %d records of 100 B over 4 partitions, every 10th failing once, retried after %v", o.s2Records, o.s2Retry)
		sc.timing = fmt.Sprintf("first record handled → last record handled successfully (retries included), so never shorter than the %v retry interval", o.s2Retry)
		sc.latency = fmt.Sprintf("retry lateness of the failed records: handled on the retry topic minus due time (first failure + %v)", o.s2Retry)
		sc.setup = func(ctx context.Context) (err error) {
			if topic, err = k.topic(ctx, "s2", 4, nil); err != nil {
				return err
			}
			vs := newValues()
			return k.produce(ctx, o.s2Records, func(i int) *kgo.Record {
				key := fmt.Appendf(nil, "ok-%d", i)
				if i%10 == 0 {
					key[0] = 'f' // "fk-…": fails on its first attempt
				}
				return &kgo.Record{Topic: topic, Key: key, Value: vs.next()}
			})
		}
		spring := contender{name: "spring-kafka", unavailable: unavailable(ps, "spring-retry")}
		if spring.unavailable == "" {
			spring.cmd = func(group string) (*exec.Cmd, error) {
				return ps["spring-retry"].javaCmd(map[string]string{
					"bench.brokers": k.brokers, "bench.topic": topic, "bench.group": group,
					"bench.records": strconv.Itoa(o.s2Records), "bench.retryMs": strconv.FormatInt(o.s2Retry.Milliseconds(), 10),
					"bench.partitions": "4", "bench.concurrency": "4",
				}), nil
			}
		}
		s2 := goCmd("whippet", "-records", strconv.Itoa(o.s2Records), "-retry-delay", o.s2Retry.String())
		sc.contenders = append([]contender{s2, spring},
			greyhound(map[string]string{"bench.records": strconv.Itoa(o.s2Records), "bench.retryMs": strconv.FormatInt(o.s2Retry.Milliseconds(), 10)})...)
		sc.contenders = withBaseline(sc.contenders, s2)

	case "S3":
		sc.title = fmt.Sprintf("key-ordered parallel processing: %d records, 1 partition, %d keys, %v handler, concurrency %d (ideal %.0f rec/s)",
			o.s3Records, o.s3Keys, o.s3Handler, o.s3Conc, float64(o.s3Conc)/o.s3Handler.Seconds())
		sc.timing = "first record handled → last backlog record handled"
		sc.latency = fmt.Sprintf("end-to-end, handler end minus produce time, of %d live records produced at %d/s after the backlog", o.s3Live, o.s3LiveRate)
		sc.setup = func(ctx context.Context) (err error) {
			if topic, err = k.topic(ctx, "s3", 1, nil); err != nil {
				return err
			}
			vs := newValues()
			return k.produce(ctx, o.s3Records, func(i int) *kgo.Record {
				return &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "key-%d", i%o.s3Keys), Value: vs.next()}
			})
		}
		if o.s3Live > 0 {
			vs := newValues()
			sc.live = func(ctx context.Context) error {
				return k.producePaced(ctx, o.s3Live, o.s3LiveRate, func(i int) *kgo.Record {
					return &kgo.Record{Topic: liveTopic, Key: fmt.Appendf(nil, "key-%d", i%o.s3Keys), Value: vs.next()}
				})
			}
		}
		pc := contender{name: "parallel-consumer", unavailable: unavailable(ps, "parallel-consumer")}
		if pc.unavailable == "" {
			pc.cmd = func(group string) (*exec.Cmd, error) {
				return ps["parallel-consumer"].javaCmd(map[string]string{
					"bench.brokers": k.brokers, "bench.topic": topic, "bench.group": group,
					"bench.backlog": strconv.Itoa(o.s3Records), "bench.live": strconv.Itoa(o.s3Live),
					"bench.concurrency": strconv.Itoa(o.s3Conc), "bench.handlerMs": strconv.FormatInt(o.s3Handler.Milliseconds(), 10),
				}), nil
			}
		}
		s3 := withLive(goCmd("whippet", "-records", strconv.Itoa(o.s3Records), "-live", strconv.Itoa(o.s3Live),
			"-concurrency", strconv.Itoa(o.s3Conc), "-handler", o.s3Handler.String()), 1)
		// go-floor: the same handler in plain goroutines, no Kafka (see s3Floor).
		floor := goCmd("go-floor", "-records", strconv.Itoa(o.s3Records), "-concurrency", strconv.Itoa(o.s3Conc), "-handler", o.s3Handler.String())
		sc.contenders = withBaseline([]contender{s3, withLive(pc, 1), floor}, s3)

	case "S4":
		sc.title = fmt.Sprintf("compacted topic loaded into memory: %d keys (11 B key, 100 B value) over 4 partitions", o.s4Keys)
		sc.timing = "client creation (kvstore.Open, kgo.NewClient, goka.NewView) → every partition loaded to its end offset"
		sc.setup = func(ctx context.Context) (err error) {
			if topic, err = k.topic(ctx, "s4", 4, map[string]*string{"cleanup.policy": new("compact")}); err != nil {
				return err
			}
			vs := newValues()
			return k.produce(ctx, o.s4Keys, func(i int) *kgo.Record {
				return &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "key-%07d", i), Value: vs.next()}
			})
		}
		goka := contender{name: "goka", unavailable: unavailable(ps, "goka"), maxRounds: o.slowRounds}
		if goka.unavailable == "" {
			goka.cmd = func(string) (*exec.Cmd, error) {
				return exec.Command(ps["goka"].argv[0], "-brokers", k.brokers, "-topic", topic, "-keys", strconv.Itoa(o.s4Keys),
					"-limit", o.s4Limit.String()), nil
			}
		}
		n := strconv.Itoa(o.s4Keys)
		sc.contenders = []contender{goCmd("whippet", "-records", n), goCmd("franz-go", "-records", n),
			goCmd("franz-go-consume", "-records", n), goka}

	case "S5":
		sc.title = fmt.Sprintf("exactly-once transform: %d records of 100 B over 4 partitions, one output each", o.s5Records)
		sc.timing = "first record handled → every input offset committed (transactions included)"
		sc.setup = func(ctx context.Context) (err error) {
			if topic, err = k.topic(ctx, "s5", 4, nil); err != nil {
				return err
			}
			vs := newValues()
			return k.produce(ctx, o.s5Records, func(i int) *kgo.Record {
				return &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "order-%d", i), Value: vs.next()}
			})
		}
		withOut := func(c contender) contender {
			inner := c.cmd
			c.cmd = func(group string) (*exec.Cmd, error) {
				out, err := k.topic(context.Background(), "s5-out", 4, nil)
				if err != nil {
					return nil, err
				}
				cmd, err := inner(group)
				if err != nil {
					return nil, err
				}
				cmd.Args = append(cmd.Args, "-out", out)
				return cmd, nil
			}
			return c
		}
		n := strconv.Itoa(o.s5Records)
		sc.contenders = []contender{withOut(goCmd("whippet", "-records", n)), withOut(goCmd("franz-go", "-records", n))}
		sc.contenders = withBaseline(sc.contenders, withOut(goCmd("whippet", "-records", n)))

	case "S6":
		// s6Partitions is also the JVM peer's listener concurrency: one
		// consumer per partition, as whippet runs one worker per partition.
		const s6Partitions = 6
		sc.title = fmt.Sprintf("batch sink: %d records of 100 B over %d partitions into a simulated bulk insert costing %v per call (slept) + %v per record (busy-spun)",
			o.s6Records, s6Partitions, o.s6Call, o.s6Record)
		sc.timing = fmt.Sprintf("first sink call begins → the sink call of the last backlog record returns; whippet-per-record is stopped after %v of it and shows the rate of the part handled", o.s6RecLimit)
		if o.s6Live > 0 {
			sc.latency = fmt.Sprintf("end-to-end, sink call returned minus produce time, of %d live records produced at %d/s after the backlog (the batch contenders only)", o.s6Live, o.s6LiveRate)
		}
		sc.setup = func(ctx context.Context) (err error) {
			if topic, err = k.topic(ctx, "s6", s6Partitions, nil); err != nil {
				return err
			}
			vs := newValues()
			// Keys spread the records evenly over the partitions (the
			// slowest partition ends the clock); the consumers ignore them.
			return k.produce(ctx, o.s6Records, func(i int) *kgo.Record {
				return &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "row-%d", i), Value: vs.next()}
			})
		}
		if o.s6Live > 0 {
			vs := newValues()
			sc.live = func(ctx context.Context) error {
				return k.producePaced(ctx, o.s6Live, o.s6LiveRate, func(i int) *kgo.Record {
					return &kgo.Record{Topic: liveTopic, Key: fmt.Appendf(nil, "live-%d", i), Value: vs.next()}
				})
			}
		}
		costs := []string{"-call-cost", o.s6Call.String(), "-record-cost", o.s6Record.String()}
		n := strconv.Itoa(o.s6Records)
		batch := goCmd("whippet-batch", append([]string{"-records", n, "-live", strconv.Itoa(o.s6Live)}, costs...)...)
		perRecord := goCmd("whippet-per-record", append([]string{"-records", n, "-limit", o.s6RecLimit.String()}, costs...)...)
		spring := contender{name: "spring-kafka-batch", unavailable: unavailable(ps, "spring-batch")}
		if spring.unavailable == "" {
			spring.cmd = func(group string) (*exec.Cmd, error) {
				return ps["spring-batch"].javaCmd(map[string]string{
					"bench.brokers": k.brokers, "bench.topic": topic, "bench.group": group,
					"bench.live": strconv.Itoa(o.s6Live), "bench.concurrency": strconv.Itoa(s6Partitions),
					"bench.callNs": strconv.FormatInt(o.s6Call.Nanoseconds(), 10), "bench.recordNs": strconv.FormatInt(o.s6Record.Nanoseconds(), 10),
				}), nil
			}
		}
		sc.contenders = []contender{withLive(batch, s6Partitions), perRecord, withLive(spring, s6Partitions)}

	case "S7":
		sc.title = fmt.Sprintf("WebSocket gateway (notify): 2 gateway instances and %d WebSocket clients on %d channels in one process, "+
			"%d notifications published to a 6-partition topic, each to reach every socket of its channel once and in order; "+
			"whippet alone: no peer in any language has this shape (topic → channel fan-out → WebSocket, with resume)",
			o.s7Clients, o.s7Channels, o.s7Notifs)
		sc.timing = "first Publish → last delivery to a socket (notifications/s, shown as records/s)"
		sc.latency = "Publish → socket, over every delivery (the notification's send time, stamped before Publish, to its read by the client)"
		var bin string // notify's test binary, built once by setup
		sc.setup = func(ctx context.Context) (err error) {
			bin, err = buildNotifyTest(ctx)
			return err
		}
		sc.contenders = []contender{{name: gatewayName, cmd: func(string) (*exec.Cmd, error) {
			return exec.Command(self, "contender", "-scenario", id, "-who", gatewayName, "-brokers", k.brokers, "-binary", bin,
				"-records", strconv.Itoa(o.s7Notifs), "-clients", strconv.Itoa(o.s7Clients), "-channels", strconv.Itoa(o.s7Channels)), nil
		}}}

	default:
		return nil, fmt.Errorf("unknown scenario %q (want S1..S7)", id)
	}
	return sc, nil
}

//go:build chaos

package chaos_test

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/testkit"
)

// freezeFor is how long testBrokerFreeze keeps a broker SIGSTOPped:
// WHIPPET_CHAOS_FREEZE (a Go duration), default 10s.
func freezeFor(t *testing.T) time.Duration {
	s := os.Getenv("WHIPPET_CHAOS_FREEZE")
	if s == "" {
		return 10 * time.Second
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("WHIPPET_CHAOS_FREEZE=%q is not a positive duration", s)
	}
	return d
}

// testBrokerKill: the leader of a partition is SIGKILLed mid-stream and,
// once the clients go on without it, restarted (and takes its partitions
// back a few seconds later: preferred leader election).
func testBrokerKill(t *testing.T, e *env) {
	brokerFault(t, e, "broker SIGKILLed + restarted", func(t *testing.T, node int, recovered func() bool) {
		if err := e.lk.Kill(node); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { restartIfDown(t, e, node) })
		testkit.Eventually(t, 2*time.Minute, func() error {
			if !recovered() {
				return fmt.Errorf("clients not recovered with node %d down", node)
			}
			return nil
		})
		e.restart(t, node)
	})
}

// testBrokerFreeze: the leader of a partition is frozen with SIGSTOP for
// freezeFor (its connections stay open and silent, like a long GC pause or
// a hung host), then continued with SIGCONT.
func testBrokerFreeze(t *testing.T, e *env) {
	d := freezeFor(t)
	brokerFault(t, e, fmt.Sprintf("broker frozen (SIGSTOP %v, SIGCONT)", d), func(t *testing.T, node int, recovered func() bool) {
		if err := e.lk.Pause(node); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.lk.Resume(node) })
		time.Sleep(d)
		if err := e.lk.Resume(node); err != nil {
			t.Fatal(err)
		}
	})
}

func restartIfDown(t *testing.T, e *env, node int) {
	if !e.lk.Alive()[node-1] {
		if err := e.lk.Start(ctxT(t, 3*time.Minute), node); err != nil && !e.lk.Alive()[node-1] {
			t.Errorf("restarting node %d after a failure: %v", node, err)
		}
	}
}

// pipeline is what runs through a broker fault: a feed producing to in, an
// at-least-once consumer of in, and a transactional transform of in to out
// whose read_committed outputs a watcher reads as they become visible.
type pipeline struct {
	in, out string
	feed    *feed

	mu      sync.Mutex
	handled map[string]int // consumer: times each key was handled
	handles progress       // consumer progress, by input partition/offset
	outputs progress       // transform outputs seen read_committed, by input partition/offset
	logs    *observer.ObservedLogs
}

// brokerFault runs a pipeline, applies fault to the leader of in's
// partition 0 once the pipeline is in full swing, and checks the outcome.
// fault returns when the node runs again; recovered reports whether every
// client has made progress on every partition since the fault began.
func brokerFault(t *testing.T, e *env, label string, fault func(t *testing.T, node int, recovered func() bool)) {
	const parts, rate = 6, 500
	pl := &pipeline{in: e.kc.NewTopic(t, parts, nil), out: e.kc.NewTopic(t, parts, nil), handled: map[string]int{}}
	core, logs := observer.New(zap.WarnLevel)
	pl.logs = logs
	log := zap.New(core)
	defer logWarnings(t, logs)

	reg := prometheus.NewRegistry()
	alo, err := consumer.New(whippet.Connection{Brokers: e.lk.Brokers, Logger: log.Named("alo")}, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		pl.mu.Lock()
		pl.handled[string(r.Key)]++
		pl.mu.Unlock()
		pl.handles.add(r.Partition, r.Offset)
		return nil
	}), consumer.Group(pl.in+"-alo"), consumer.Topics(pl.in))
	if err != nil {
		t.Fatal(err)
	}
	eos, err := consumer.New(whippet.Connection{Brokers: e.lk.Brokers, Logger: log.Named("eos"), Registerer: reg}, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		return consumer.Emit(ctx, &kgo.Record{Topic: pl.out, Key: r.Key, Value: fmt.Appendf(nil, "%d/%d", r.Partition, r.Offset)})
	}), consumer.Group(pl.in+"-eos"), consumer.Topics(pl.in),
		consumer.Transactional(pl.in+"-eos-0"))
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for _, c := range []*consumer.Consumer{alo, eos} {
		go func() { errs <- c.Run(context.Background()) }()
	}
	running := true
	stopConsumers := func() {
		if !running {
			return
		}
		running = false
		alo.Close(context.Background())
		eos.Close(context.Background())
		for range 2 {
			if err := <-errs; err != nil {
				t.Errorf("consumer Run: %v", err)
			}
		}
	}
	defer stopConsumers()

	watchCtx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	defer func() { stopWatch(); <-watched }()
	watcher, err := kgo.NewClient(append(watchOpts(e.lk.Brokers), kgo.ConsumeTopics(pl.out),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(200*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(watched)
		defer watcher.Close()
		for watchCtx.Err() == nil {
			watcher.PollFetches(watchCtx).EachRecord(func(r *kgo.Record) {
				p, off, _ := strings.Cut(string(r.Value), "/")
				pn, _ := strconv.ParseInt(p, 10, 32)
				on, _ := strconv.ParseInt(off, 10, 64)
				pl.outputs.addAt(time.Now(), int32(pn), on)
			})
		}
	}()

	pl.feed = newFeed(t, e.lk.Brokers, pl.in, rate)
	pl.feed.start(seqKey, 0)
	feeding := true
	defer func() {
		if feeding {
			pl.feed.stop(t)
		}
	}()
	var progressWG sync.WaitGroup
	defer func() { stopWatch(); progressWG.Wait() }()
	progressWG.Go(func() {
		// Progress every 5s, for the log: what went on when.
		for {
			select {
			case <-watchCtx.Done():
				return
			case <-time.After(5 * time.Second):
			}
			_, acked, _ := pl.feed.counts()
			t.Logf("progress: %d acknowledged, %d handled, %d outputs visible; transform: %v records handled, %v transactions committed, %v aborted",
				acked, len(pl.handles.events()), len(pl.outputs.events()), metricSum(reg, "whippet_consumer_records_handled_total"),
				metricSum(reg, "whippet_consumer_transactions_committed_total"), metricSum(reg, "whippet_consumer_transactions_aborted_total"))
		}
	})
	testkit.Eventually(t, 2*time.Minute, func() error {
		if h, o := len(pl.handles.events()), len(pl.outputs.events()); h < 1000 || o < 1000 {
			return fmt.Errorf("consumer handled %d, transform output %d: warming up", h, o)
		}
		return nil
	})

	node := e.leaderOf(t, pl.in, 0)
	t.Logf("fault on %s", e.roles(t, node, pl.in, pl.out, "__consumer_offsets", "__transaction_state"))
	t0 := time.Now()
	comps := []struct {
		name string
		ev   func() []event
	}{
		{"producer", pl.feed.acks.events},
		{"consumer", pl.handles.events},
		{"transform", pl.outputs.events},
	}
	recovered := func() bool {
		for _, c := range comps {
			if _, ok := recovery(c.ev(), t0, parts); !ok {
				return false
			}
		}
		return true
	}
	fault(t, node, recovered)
	testkit.Eventually(t, 2*time.Minute, func() error {
		var not []string
		for _, c := range comps {
			if _, ok := recovery(c.ev(), t0, parts); !ok {
				not = append(not, c.name)
			}
		}
		if len(not) > 0 {
			return fmt.Errorf("not recovered since the fault: %v", not)
		}
		return nil
	})
	e.waitHealthy(t, pl.in, pl.out)
	// The restarted or continued node leads its partitions again (preferred
	// leader election every 5s), a second move under the clients' feet.
	testkit.Eventually(t, 60*time.Second, func() error {
		if l := e.leaderOf(t, pl.in, 0); l != node {
			return fmt.Errorf("%s[0] is led by node %d, waiting for node %d to take it back", pl.in, l, node)
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	pl.feed.stop(t)
	feeding = false
	sent, acked, failed := pl.feed.counts()
	if failed > 0 || acked != sent {
		t.Errorf("producer: %d sent, %d acknowledged, %d failed (%s)", sent, acked, failed, pl.feed.firstFailure())
	}

	want := pl.feed.ackedKeys()
	waitUntil(2*time.Minute, func() bool {
		pl.mu.Lock()
		defer pl.mu.Unlock()
		for k := range want {
			if pl.handled[k] == 0 {
				return false
			}
		}
		return true
	})
	waitUntil(2*time.Minute, func() bool {
		seen := map[string]bool{}
		for _, ev := range pl.outputs.events() {
			seen[fmt.Sprintf("%d/%d", ev.p, ev.off)] = true
		}
		for _, res := range want {
			if !seen[fmt.Sprintf("%d/%d", res.Partition, res.Offset)] {
				return false
			}
		}
		return true
	})
	stopConsumers()

	rec := func(ev []event) string {
		d, ok := recovery(ev, t0, parts)
		if !ok {
			return "did not recover"
		}
		return secs(d)
	}
	inLost, inDup := checkInput(t, e, pl.feed)
	report(row{scenario: label + ": producer", records: acked, lost: inLost, dup: inDup, recover: rec(pl.feed.acks.events()),
		notes: fmt.Sprintf("whippet producer defaults (idempotent, acks=all); %d sent, %d failed", sent, failed)})

	pl.mu.Lock()
	cLost, cDup := 0, 0
	for k := range want {
		if pl.handled[k] == 0 {
			cLost++
		}
	}
	for _, n := range pl.handled {
		cDup += n - 1
	}
	pl.mu.Unlock()
	report(row{scenario: label + ": consumer", records: acked, lost: cLost, dup: cDup, recover: rec(pl.handles.events()),
		notes: "whippet consumer defaults, at-least-once"})

	outs := map[string]int{}
	for _, r := range e.readAll(t, pl.out, true) {
		outs[string(r.Key)]++
	}
	oLost, oDup := 0, 0
	for k := range want {
		if outs[k] == 0 {
			oLost++
		}
	}
	for k, n := range outs {
		if _, ok := want[k]; !ok {
			t.Errorf("output %s has no acknowledged input", k)
		}
		oDup += n - 1
	}
	aborted := pl.logs.FilterMessageSnippet("transaction aborted").Len()
	report(row{scenario: label + ": exactly-once transform", records: acked, lost: oLost, dup: oDup, recover: rec(pl.outputs.events()),
		notes: fmt.Sprintf("read_committed outputs; %d transactions aborted", aborted)})

	if inLost+inDup+cLost+oLost+oDup > 0 {
		t.Errorf("input: %d lost, %d duplicated; consumer: %d lost; outputs: %d lost, %d duplicated", inLost, inDup, cLost, oLost, oDup)
	}
}

// waitUntil polls cond until it holds or d passes; the caller checks the
// outcome itself (so that it can count what is missing).
func waitUntil(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// metricSum returns the sum of a metric's series in reg.
func metricSum(reg *prometheus.Registry, name string) float64 {
	mfs, _ := reg.Gather()
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// logWarnings logs how many warnings and errors whippet logged, by message.
func logWarnings(t *testing.T, logs *observer.ObservedLogs) {
	count := map[string]int{}
	for _, l := range logs.All() {
		count[l.Level.String()+" "+l.LoggerName+": "+l.Message]++
	}
	keys := make([]string, 0, len(count))
	for k := range count {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("whippet logged %d× %s", count[k], k)
	}
}

//go:build chaos

package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/testkit"
)

// transformChild is the child mode of testEOSRebalance's transform
// processes. The switch in TestMain does not know it: init runs the child
// before TestMain, so that the scenario lives in this file alone.
const transformChild = "transform"

func init() {
	if os.Getenv(childEnv) == transformChild {
		runTransformChild()
		os.Exit(0)
	}
}

// runTransformChild is a transform process of testEOSRebalance: a
// Transactional consumer that emits one output per input, keyed
// "<partition>/<offset>" of the input, to $WHIPPET_CHAOS_OUT_TOPIC, and
// appends "<name> <partition> <offset> <unix ms>" to $WHIPPET_CHAOS_OUT for
// every record it handles (aborted attempts included). With
// WHIPPET_CHAOS_NO_START=1 it commits no start positions, as a transform on
// plain franz-go does: a partition's first offset is then transactional.
func runTransformChild() {
	f, err := os.OpenFile(os.Getenv("WHIPPET_CHAOS_OUT"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	name, out := os.Getenv("WHIPPET_CHAOS_NAME"), os.Getenv("WHIPPET_CHAOS_OUT_TOPIC")
	runChildConsumer(consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if _, err := fmt.Fprintf(f, "%s %d %d %d\n", name, r.Partition, r.Offset, time.Now().UnixMilli()); err != nil {
			return err
		}
		return consumer.Emit(ctx, &kgo.Record{Topic: out, Key: fmt.Appendf(nil, "%d/%d", r.Partition, r.Offset), Value: r.Value})
	}), consumer.Group(os.Getenv("WHIPPET_CHAOS_GROUP")), consumer.Topics(os.Getenv("WHIPPET_CHAOS_TOPIC")),
		consumer.Transactional(os.Getenv("WHIPPET_CHAOS_TXN_ID")),
		consumer.CommitStartOnAssign(os.Getenv("WHIPPET_CHAOS_NO_START") == ""),
		// A killed process's open transaction is aborted when its
		// successor (same transactional id) starts; this bounds it if not.
		consumer.TransactionTimeout(10*time.Second),
		consumer.SessionTimeout(childSessionTimeout))
}

// testEOSRebalance: exactly-once transform through rebalances on
// never-committed partitions. A stream at 500 records/s feeds a group with
// no committed offsets, over 3 of its 12 partitions at first and 2 more
// before each rebalance, so that every rebalance moves partitions whose
// only offsets are in transactions under way. Transform processes a and b
// commit no start positions (a partition's first offset is transactional);
// c, which joins and leaves, does (it must wait for those transactions,
// not commit over them). a starts, b joins as soon as a handles records;
// then, twice, c joins, one of a and b is SIGKILLed and restarted at once
// (its successor fences it, aborting its open transaction), and c leaves.
// The read_committed outputs must hold exactly one output per acknowledged
// input.
func testEOSRebalance(t *testing.T, e *env) {
	const parts, rounds, rate = 12, 2, 500
	topic := e.kc.NewTopic(t, parts, nil)
	out := e.kc.NewTopic(t, parts, nil)
	group := topic
	handledPath := filepath.Join(t.TempDir(), "handled.txt")
	start := func(name string) *child {
		vars := []string{"WHIPPET_CHAOS_BROKERS=" + strings.Join(e.lk.Brokers, ","),
			"WHIPPET_CHAOS_GROUP=" + group, "WHIPPET_CHAOS_TOPIC=" + topic, "WHIPPET_CHAOS_OUT_TOPIC=" + out,
			"WHIPPET_CHAOS_OUT=" + handledPath, "WHIPPET_CHAOS_NAME=" + name, "WHIPPET_CHAOS_TXN_ID=" + group + "-" + name}
		if name != "c" {
			vars = append(vars, "WHIPPET_CHAOS_NO_START=1")
		}
		return startChild(t, "transform "+name, transformChild, vars...)
	}
	// Record i goes to partition i % open: partitions open one after the
	// other, each receiving its first records just before a rebalance.
	var open atomic.Int32
	open.Store(3)
	openMore := func() {
		open.Store(min(open.Load()+2, parts))
		time.Sleep(time.Duration(200+rand.IntN(600)) * time.Millisecond) // their first transactions under way
	}
	h := newHandledLog(handledPath)
	f := newFeed(t, e.lk.Brokers, topic, rate, kgo.RecordPartitioner(kgo.BasicConsistentPartitioner(
		func(string) func(*kgo.Record, int) int {
			return func(r *kgo.Record, _ int) int {
				i, _ := strconv.Atoi(string(r.Key))
				return i % int(open.Load())
			}
		})))
	f.start(seqKey, 0)
	stopped := false
	defer func() {
		if !stopped {
			f.stop(t)
		}
	}()
	// members waits until the group is stable with n members and every
	// partition assigned: some members may own no open partition.
	members := func(n int) {
		t.Helper()
		testkit.Eventually(t, 60*time.Second, func() error {
			ds, err := e.mon.DescribeGroups(ctxT(t, 5*time.Second), group)
			if err != nil {
				return err
			}
			g := ds[group]
			if g.Err != nil {
				return g.Err
			}
			if assigned := len(g.AssignedPartitions()[topic]); g.State != "Stable" || len(g.Members) != n || assigned != parts {
				return fmt.Errorf("group %s with %d members, %d partitions assigned; waiting for %d members", g.State, len(g.Members), assigned, n)
			}
			return nil
		})
	}
	// recovered waits until every open partition progressed past what it
	// had reached at the fault.
	var recover []time.Duration
	recovered := func(what string, at time.Time) {
		t.Helper()
		var took time.Duration
		n := open.Load()
		testkit.Eventually(t, 60*time.Second, func() error {
			d, ok := recovery(h.update(t).ev, at, n)
			if !ok {
				return fmt.Errorf("%s: not every partition progressed yet", what)
			}
			took = d
			return nil
		})
		t.Logf("%s at %s: every partition progressed again %v later (%d open; %s)", what, at.Format("15:04:05.000"),
			took.Round(10*time.Millisecond), n, slowest(h.ev, at, n))
		recover = append(recover, took)
	}

	procs := map[string]*child{"a": start("a")}
	testkit.Eventually(t, 60*time.Second, func() error {
		if h.update(t).by["a"] == 0 {
			return errors.New("a handled nothing yet")
		}
		return nil
	})
	openMore()
	joined := time.Now()
	procs["b"] = start("b")
	members(2)
	recovered("b joined", joined)

	kills := 0
	for i := range rounds {
		openMore()
		joined := time.Now()
		procs["c"] = start("c")
		members(3)
		openMore()
		name := []string{"a", "b"}[i%2]
		at := procs[name].kill(t)
		kills++
		procs[name] = start(name)
		recovered(fmt.Sprintf("round %d: c joined (%v before), %s SIGKILLed and restarted", i+1, at.Sub(joined).Round(10*time.Millisecond), name), at)
		left := time.Now()
		procs["c"].stop(t)
		recovered(fmt.Sprintf("round %d: c left", i+1), left)
	}
	time.Sleep(time.Second)
	f.stop(t)
	stopped = true
	sent, acked, failed := f.counts()
	if failed > 0 || acked != sent {
		t.Fatalf("producer: %d sent, %d acknowledged, %d failed (%s)", sent, acked, failed, f.firstFailure())
	}
	e.waitCommitted(t, 2*time.Minute, group, topic)
	for _, name := range []string{"a", "b"} {
		procs[name].stop(t)
	}

	want := map[string]bool{}
	for _, res := range f.ackedKeys() {
		want[fmt.Sprintf("%d/%d", res.Partition, res.Offset)] = true
	}
	seen := map[string]int{}
	for _, r := range e.readAll(t, out, true) {
		seen[string(r.Key)]++
	}
	lost, dup := 0, 0
	for k := range want {
		if seen[k] == 0 {
			lost++
			if lost <= 5 {
				t.Errorf("input %s has no read_committed output", k)
			}
		}
	}
	for k, n := range seen {
		if !want[k] {
			t.Errorf("output %s answers no acknowledged input", k)
		}
		if n > 1 {
			dup += n - 1
			if dup <= 5 {
				t.Errorf("input %s has %d read_committed outputs", k, n)
			}
		}
	}
	handledAgain := h.update(t).lines - len(h.seen)
	report(row{scenario: "exactly-once transform through rebalances on never-committed partitions", records: acked, lost: lost, dup: dup,
		recover: spread(recover), notes: fmt.Sprintf("transactional; 2 processes + 1 joining and leaving %d times, %d SIGKILLs + restarts; "+
			"group with no committed offsets, 2 partitions get their first records before each rebalance; %d records handled again in aborted transactions",
			rounds, kills, handledAgain)})
	t.Logf("%d inputs: read_committed holds %d outputs, %d lost, %d duplicated; %d handlings in aborted transactions", acked, len(seen), lost, dup, handledAgain)
}

// slowest describes the partition that progressed last after t0.
func slowest(ev []event, t0 time.Time, parts int32) string {
	reached := make([]int64, parts)
	first := make([]time.Time, parts)
	for i := range reached {
		reached[i] = -1
	}
	for _, e := range ev {
		if e.p < parts && e.at.Before(t0) && e.off > reached[e.p] {
			reached[e.p] = e.off
		}
	}
	for _, e := range ev {
		if e.p < parts && !e.at.Before(t0) && e.off > reached[e.p] && (first[e.p].IsZero() || e.at.Before(first[e.p])) {
			first[e.p] = e.at
		}
	}
	last := 0
	for p := range first {
		if first[p].After(first[last]) {
			last = p
		}
	}
	return fmt.Sprintf("slowest: partition %d, past offset %d at %s", last, reached[last], first[last].Format("15:04:05.000"))
}

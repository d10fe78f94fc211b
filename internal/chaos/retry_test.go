//go:build chaos

package chaos_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// retryIntervals are the non-blocking retries of testRetryDLQ: a record
// that always fails is handled 3 times, then dead-lettered.
var retryIntervals = []time.Duration{500 * time.Millisecond, time.Second}

// recordKind says how the handler treats a record: "bad" ones always fail,
// "flaky" ones fail their first attempt only, the others succeed.
func recordKind(i int) string {
	switch i % 10 {
	case 3:
		return "bad"
	case 7:
		return "flaky"
	}
	return "ok"
}

func kindKey(i int) string { return recordKind(i) + "-" + seqKey(i) }

// runRetryChild is a consumer process of testRetryDLQ with the retry policy
// retryIntervals, at-least-once (WHIPPET_CHAOS_MODE=alo) or transactional
// (eos, whose successes Emit to $WHIPPET_CHAOS_OUT_TOPIC). It appends
// "<key> <attempt> <partition> <offset> <unix ms> <ok|fail>" to
// $WHIPPET_CHAOS_OUT for every attempt.
func runRetryChild() {
	f, err := os.OpenFile(os.Getenv("WHIPPET_CHAOS_OUT"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	eos := os.Getenv("WHIPPET_CHAOS_MODE") == "eos"
	out := os.Getenv("WHIPPET_CHAOS_OUT_TOPIC")
	h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		key := string(r.Key)
		attempt := 1
		if info, ok := retry.InfoFrom(ctx); ok {
			attempt = info.Attempt
		}
		fail := strings.HasPrefix(key, "bad-") || strings.HasPrefix(key, "flaky-") && attempt == 1
		result := "ok"
		if fail {
			result = "fail"
		}
		if _, err := fmt.Fprintf(f, "%s %d %d %d %d %s\n", key, attempt, r.Partition, r.Offset, time.Now().UnixMilli(), result); err != nil {
			return err
		}
		if fail {
			return fmt.Errorf("%s fails attempt %d", key, attempt)
		}
		if eos {
			return consumer.Emit(ctx, &kgo.Record{Topic: out, Key: r.Key, Value: r.Value})
		}
		return nil
	})
	opts := []consumer.Option{
		consumer.Group(os.Getenv("WHIPPET_CHAOS_GROUP")), consumer.Topics(os.Getenv("WHIPPET_CHAOS_TOPIC")),
		consumer.Retry(retry.NonBlocking(retryIntervals...)),
		consumer.SessionTimeout(childSessionTimeout),
	}
	if eos {
		opts = append(opts, consumer.Transactional(os.Getenv("WHIPPET_CHAOS_TXN_ID")))
	}
	runChildConsumer(h, opts...)
}

// attemptLog accumulates a retry child's attempt lines.
type attemptLog struct {
	tail     tail
	attempts map[string][]int // attempt numbers logged per key, in order
	ok       map[string]int   // successful attempts per key
	first    []event          // first attempts, by input partition/offset
}

func newAttemptLog(path string) *attemptLog {
	return &attemptLog{tail: tail{path: path}, attempts: map[string][]int{}, ok: map[string]int{}}
}

func (a *attemptLog) update(t testing.TB) *attemptLog {
	for _, fs := range a.tail.next(t) {
		if len(fs) != 6 {
			t.Fatalf("bad line in %s: %q", a.tail.path, fs)
		}
		attempt, _ := strconv.Atoi(fs[1])
		p, _ := strconv.ParseInt(fs[2], 10, 32)
		off, _ := strconv.ParseInt(fs[3], 10, 64)
		ms, _ := strconv.ParseInt(fs[4], 10, 64)
		a.attempts[fs[0]] = append(a.attempts[fs[0]], attempt)
		if fs[5] == "ok" {
			a.ok[fs[0]]++
		}
		if attempt == 1 {
			a.first = append(a.first, event{time.UnixMilli(ms), int32(p), off})
		}
	}
	return a
}

// retryGroup is one consumer group of testRetryDLQ, run as a child process.
type retryGroup struct {
	mode   string // alo or eos
	group  string
	vars   []string
	proc   *child
	log    *attemptLog
	faults []time.Time
}

func (g *retryGroup) start(t *testing.T) {
	g.proc = startChild(t, g.mode+" consumer", "retry", g.vars...)
}

// crash SIGKILLs the process and starts a new one at once.
func (g *retryGroup) crash(t *testing.T) {
	g.faults = append(g.faults, g.proc.kill(t))
	g.start(t)
}

// recovered reports whether first attempts progressed on every partition
// since the last fault.
func (g *retryGroup) recovered(t testing.TB, parts int32) error {
	at := g.faults[len(g.faults)-1]
	if _, ok := recovery(g.log.update(t).first, at, parts); !ok {
		return fmt.Errorf("%s: first attempts not on every partition since the fault at %s", g.mode, at.Format("15:04:05.000"))
	}
	return nil
}

// testRetryDLQ: records of which every tenth always fails and every tenth
// fails once are handled with non-blocking retries (2 retry topics, then
// the DLQ) by two groups, each one consumer process: at-least-once and
// transactional. Each process is SIGKILLed and restarted twice, and a
// partition leader is SIGKILLed and restarted in between. Every failing
// record must reach the DLQ with 3 attempts: once in the transactional
// group, at least once in the other (duplicates counted); every other
// record must be handled (exactly once in the transactional outputs).
func testRetryDLQ(t *testing.T, e *env) {
	const parts, rate = 3, 200
	in := e.kc.NewTopic(t, parts, nil)
	outEOS := e.kc.NewTopic(t, parts, nil)
	dir := t.TempDir()
	brokers := "WHIPPET_CHAOS_BROKERS=" + strings.Join(e.lk.Brokers, ",")
	var groups []*retryGroup
	for _, mode := range []string{"alo", "eos"} {
		g := &retryGroup{mode: mode, group: in + "-" + mode}
		path := filepath.Join(dir, mode+".txt")
		g.vars = []string{brokers, "WHIPPET_CHAOS_GROUP=" + g.group, "WHIPPET_CHAOS_TOPIC=" + in, "WHIPPET_CHAOS_OUT=" + path,
			"WHIPPET_CHAOS_MODE=" + mode, "WHIPPET_CHAOS_OUT_TOPIC=" + outEOS, "WHIPPET_CHAOS_TXN_ID=" + g.group + "-0"}
		g.log = newAttemptLog(path)
		g.start(t)
		groups = append(groups, g)
	}
	alo, eos := groups[0], groups[1]
	f := newFeed(t, e.lk.Brokers, in, rate)
	f.start(kindKey, 0)
	feeding := true
	defer func() {
		if feeding {
			f.stop(t)
		}
	}()
	testkit.Eventually(t, 60*time.Second, func() error {
		for _, g := range groups {
			if n := len(g.log.update(t).first); n < 200 {
				return fmt.Errorf("%s: %d first attempts, warming up", g.mode, n)
			}
		}
		return nil
	})
	waitRecovered := func() {
		testkit.Eventually(t, 2*time.Minute, func() error {
			for _, g := range groups {
				if err := g.recovered(t, parts); err != nil {
					return err
				}
			}
			return nil
		})
	}

	// Consumer crashes, one group after the other.
	alo.crash(t)
	time.Sleep(time.Second)
	eos.crash(t)
	waitRecovered()

	// A broker crash: the leader of in's partition 0, restarted once the
	// consumers go on without it.
	node := e.leaderOf(t, in, 0)
	t.Logf("killing %s", e.roles(t, node, in, retry.TopicName(in, alo.group, 0), retry.TopicName(in, alo.group, 1),
		retry.DLQTopicName(in, alo.group), "__consumer_offsets", "__transaction_state"))
	if err := e.lk.Kill(node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { restartIfDown(t, e, node) })
	at := time.Now()
	for _, g := range groups {
		g.faults = append(g.faults, at)
	}
	waitRecovered()
	e.restart(t, node)
	e.waitHealthy(t, in, outEOS)

	// And crashes again.
	eos.crash(t)
	time.Sleep(time.Second)
	alo.crash(t)
	waitRecovered()
	time.Sleep(time.Second)
	f.stop(t)
	feeding = false
	sent, acked, failed := f.counts()
	if failed > 0 || acked != sent {
		t.Fatalf("producer: %d sent, %d acknowledged, %d failed (%s)", sent, acked, failed, f.firstFailure())
	}

	bad, good := map[string]bool{}, map[string]bool{}
	for k := range f.ackedKeys() {
		if strings.HasPrefix(k, "bad-") {
			bad[k] = true
		} else {
			good[k] = true
		}
	}
	dlqOf := func(g *retryGroup) []*kgo.Record {
		return e.readAll(t, retry.DLQTopicName(in, g.group), g.mode == "eos")
	}
	missing := func(recs []*kgo.Record, want map[string]bool) int {
		seen := map[string]bool{}
		for _, r := range recs {
			seen[string(r.Key)] = true
		}
		n := 0
		for k := range want {
			if !seen[k] {
				n++
			}
		}
		return n
	}
	done := func(g *retryGroup) bool {
		if missing(dlqOf(g), bad) > 0 {
			return false
		}
		if g.mode == "eos" {
			return missing(e.readAll(t, outEOS, true), good) == 0
		}
		g.log.update(t)
		for k := range good {
			if g.log.ok[k] == 0 {
				return false
			}
		}
		return true
	}
	for _, g := range groups {
		waitUntil(2*time.Minute, func() bool { time.Sleep(400 * time.Millisecond); return done(g) })
	}
	// Nothing left to re-handle: the at-least-once group committed
	// everything (the transactional one commits with its outputs).
	e.waitCommitted(t, time.Minute, alo.group, in, retry.TopicName(in, alo.group, 0), retry.TopicName(in, alo.group, 1))
	for _, g := range groups {
		g.proc.stop(t)
	}

	for _, g := range groups {
		g.log.update(t)
		dlq := dlqOf(g)
		lost := missing(dlq, bad)
		dlqDup := len(dlq) - (len(bad) - lost)
		for _, r := range dlq {
			info, ok := retry.InfoFor(r)
			switch {
			case !bad[string(r.Key)]:
				t.Errorf("%s: %s dead-lettered, but it does not always fail", g.mode, r.Key)
			case !ok || info.Attempt != 1+len(retryIntervals) || info.Reason != retry.ReasonExhausted:
				t.Errorf("%s: %s dead-lettered with %+v, want exhausted after %d attempts", g.mode, r.Key, info, 1+len(retryIntervals))
			}
		}
		for k := range bad {
			if err := attemptsOK(g.log.attempts[k], 1+len(retryIntervals)); err != nil {
				t.Errorf("%s: %s: %v", g.mode, k, err)
			}
		}
		var outDup int
		rehandled := 0
		if g.mode == "eos" {
			outs := e.readAll(t, outEOS, true)
			lost += missing(outs, good)
			outDup = len(outs) - (len(good) - missing(outs, good))
		} else {
			for k := range good {
				if g.log.ok[k] == 0 {
					lost++
				}
				rehandled += max(0, g.log.ok[k]-1)
			}
		}
		var rec []time.Duration
		for _, at := range g.faults {
			if d, ok := recovery(g.log.first, at, parts); ok {
				rec = append(rec, d)
			}
		}
		name := map[string]string{"alo": "retries + DLQ, at-least-once", "eos": "retries + DLQ, exactly-once"}[g.mode]
		notes := fmt.Sprintf("%d always failing: each dead-lettered with %d attempts; 2 consumer SIGKILLs + 1 broker restart", len(bad), 1+len(retryIntervals))
		if g.mode == "eos" {
			notes += fmt.Sprintf("; duplicated counts the DLQ (%d) and outputs (%d), read_committed", dlqDup, outDup)
		} else {
			notes += fmt.Sprintf("; duplicated counts the DLQ; %d successes handled again", rehandled)
		}
		report(row{scenario: name, records: acked, lost: lost, dup: dlqDup + outDup, recover: spread(rec), notes: notes})
		if lost > 0 {
			t.Errorf("%s: %d records neither handled nor dead-lettered", g.mode, lost)
		}
		if g.mode == "eos" && dlqDup+outDup > 0 {
			t.Errorf("eos: %d duplicates in the DLQ and %d in the outputs, want none", dlqDup, outDup)
		}
	}
}

// attemptsOK checks that a record that always fails was attempted 1, 2,
// ... n times, in order, each at least once (attempts aborted or not
// committed before a crash are made again).
func attemptsOK(got []int, n int) error {
	next := 1
	for _, a := range got {
		switch {
		case a == next:
			next++
		case a < next: // a repeat after a crash
		default:
			return fmt.Errorf("attempts %v: attempt %d before %d", got, a, next)
		}
	}
	if next != n+1 {
		return fmt.Errorf("attempts %v, want 1..%d", got, n)
	}
	return nil
}

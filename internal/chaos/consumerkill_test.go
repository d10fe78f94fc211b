//go:build chaos

package chaos_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/testkit"
)

// childSessionTimeout is the group session timeout of the consumer
// processes: the broker's minimum (group.min.session.timeout.ms), so that
// the group evicts a killed process 6s after its last heartbeat instead of
// the consumer's default 10s. A restarted process joins with a new member id, so the
// group waits out the dead member's session before it reassigns.
const childSessionTimeout = 6 * time.Second

// runConsumerChild is a consumer process of testConsumerKills: a whippet
// consumer with default options (but the session timeout) that appends
// "<name> <partition> <offset> <unix ms>" to $WHIPPET_CHAOS_OUT for every
// record it handles.
func runConsumerChild() {
	f, err := os.OpenFile(os.Getenv("WHIPPET_CHAOS_OUT"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	name := os.Getenv("WHIPPET_CHAOS_NAME")
	runChildConsumer(consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		// One write per record: O_APPEND keeps the lines of two processes whole.
		_, err := fmt.Fprintf(f, "%s %d %d %d\n", name, r.Partition, r.Offset, time.Now().UnixMilli())
		return err
	}), consumer.Group(os.Getenv("WHIPPET_CHAOS_GROUP")), consumer.Topics(os.Getenv("WHIPPET_CHAOS_TOPIC")),
		consumer.SessionTimeout(childSessionTimeout))
}

// handledLog accumulates the lines the consumer processes append.
type handledLog struct {
	tail  tail
	lines int
	by    map[string]int   // lines per process
	seen  map[[2]int64]int // times each partition/offset was handled
	ev    []event          // every handling, for recovery
}

func newHandledLog(path string) *handledLog {
	return &handledLog{tail: tail{path: path}, by: map[string]int{}, seen: map[[2]int64]int{}}
}

// update reads the lines appended since the last call.
func (h *handledLog) update(t testing.TB) *handledLog {
	for _, fs := range h.tail.next(t) {
		if len(fs) != 4 {
			t.Fatalf("bad line in %s: %q", h.tail.path, fs)
		}
		p, _ := strconv.ParseInt(fs[1], 10, 32)
		off, _ := strconv.ParseInt(fs[2], 10, 64)
		ms, _ := strconv.ParseInt(fs[3], 10, 64)
		h.lines++
		h.by[fs[0]]++
		h.seen[[2]int64{p, off}]++
		h.ev = append(h.ev, event{time.UnixMilli(ms), int32(p), off})
	}
	return h
}

// testConsumerKills: two consumer processes in one group handle a stream
// produced at 1,000 records/s over 6 partitions; one of them is SIGKILLed
// (and restarted at once) every couple of seconds, six times. Every
// acknowledged record must be handled; records handled again after a kill
// are counted; the time to recover is, per kill, the time until every
// partition handles a record past the highest offset handled before the
// kill.
func testConsumerKills(t *testing.T, e *env) {
	const parts, kills, rate = 6, 6, 1000
	topic := e.kc.NewTopic(t, parts, nil)
	group := topic
	out := filepath.Join(t.TempDir(), "handled.txt")
	start := func(name string) *child {
		return startChild(t, "consumer "+name, "consumer", "WHIPPET_CHAOS_BROKERS="+strings.Join(e.lk.Brokers, ","),
			"WHIPPET_CHAOS_GROUP="+group, "WHIPPET_CHAOS_TOPIC="+topic, "WHIPPET_CHAOS_OUT="+out, "WHIPPET_CHAOS_NAME="+name)
	}
	names := []string{"a", "b"}
	h := newHandledLog(out)
	procs := map[string]*child{"a": start("a"), "b": start("b")}
	f := newFeed(t, e.lk.Brokers, topic, rate)
	f.start(seqKey, 0)
	stopped := false
	defer func() {
		if !stopped {
			f.stop(t)
		}
	}()
	// Both processes own partitions before the first kill.
	testkit.Eventually(t, 60*time.Second, func() error {
		h.update(t)
		if h.by["a"] < 500 || h.by["b"] < 500 {
			return fmt.Errorf("handled %v, waiting for both processes", h.by)
		}
		return nil
	})

	var recover []time.Duration
	for i := range kills {
		time.Sleep(time.Duration(1000+rand.IntN(1500)) * time.Millisecond)
		name := names[i%2]
		at := procs[name].kill(t)
		procs[name] = start(name)
		var took time.Duration
		testkit.Eventually(t, 90*time.Second, func() error {
			d, ok := recovery(h.update(t).ev, at, parts)
			if !ok {
				return fmt.Errorf("kill %d (%s): not every partition progressed yet", i+1, name)
			}
			took = d
			return nil
		})
		t.Logf("kill %d at %s: SIGKILLed consumer %s; every partition progressed again %v later", i+1, at.Format("15:04:05.000"), name, took.Round(10*time.Millisecond))
		recover = append(recover, took)
	}
	time.Sleep(time.Second)
	f.stop(t)
	stopped = true
	sent, acked, failed := f.counts()
	if failed > 0 || acked != sent {
		t.Fatalf("producer: %d sent, %d acknowledged, %d failed (%s)", sent, acked, failed, f.firstFailure())
	}

	want := f.ackedKeys()
	missing := func(h *handledLog) int {
		n := 0
		for _, res := range want {
			if h.seen[[2]int64{int64(res.Partition), res.Offset}] == 0 {
				n++
			}
		}
		return n
	}
	waitUntil(2*time.Minute, func() bool { return missing(h.update(t)) == 0 })
	e.waitCommitted(t, time.Minute, group, topic)
	for _, name := range names {
		procs[name].stop(t)
	}
	lost := missing(h.update(t))
	dup := h.lines - len(h.seen)
	report(row{scenario: "consumer processes SIGKILLed (at-least-once)", records: acked, lost: lost, dup: dup,
		recover: spread(recover), notes: fmt.Sprintf("2 processes, %d SIGKILLs + restarts, session timeout %v, commit interval 1s", kills, childSessionTimeout)})
	if lost > 0 {
		t.Errorf("%d of %d acknowledged records never handled", lost, acked)
	}
	if len(h.seen) != acked {
		t.Errorf("%d distinct records handled, %d produced", len(h.seen), acked)
	}
	t.Logf("%d records, %d SIGKILLs: none lost, %d handled again after a kill", acked, kills, dup)
}

//go:build chaos

package chaos_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/producer/spool"
	"github.com/whippet-go/whippet/testkit"
)

// The events of testSpoolOutage: spoolKeys keys with spoolPerKey events
// each, produced at spoolRate events/s; event n of key k is due
// (n*spoolKeys+k)/spoolRate seconds after the start.
const (
	spoolKeys   = 1000
	spoolPerKey = 100
	spoolRate   = 1000
	// spoolOutage is how long every broker stays frozen.
	spoolOutage = 60 * time.Second
)

// eventID is the event's own id, which the service sets as the record's
// whippet-record-id header (the spool keeps a header it is given): a process
// restarted after a SIGKILL produces again the events it was not told were
// durable, and their copies then carry the same id as the first.
func eventID(k, n int) string { return fmt.Sprintf("ev-%04d-%04d", k, n) }

// runSpoolChild is the producing process of testSpoolOutage: a service that
// produces its events through a durable spool (whippet's defaults) in
// $WHIPPET_CHAOS_SPOOL_DIR, one goroutine per key, each key's events one
// after the other. It appends to $WHIPPET_CHAOS_OUT:
//
//	recovered <name> <records> <possible duplicates> <torn parts cut off>
//	acked <name> <key> <n> <1 if spooled, 0 if Kafka acknowledged> <unix ms>
//	stats <name> <held> <spooled> <relayed> <skipped> <possible duplicates> <unix ms>
//	drained <name> <unix ms>
//
// On start it reads the file and produces each key's events from the one
// after the last acknowledged (by any earlier process). Once every event is
// acknowledged and the spool is empty it writes "drained" and waits for
// SIGTERM, then closes the spool.
func runSpoolChild() {
	out, name := os.Getenv("WHIPPET_CHAOS_OUT"), os.Getenv("WHIPPET_CHAOS_NAME")
	next := make([]int, spoolKeys)
	if b, err := os.ReadFile(out); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			fs := strings.Fields(line)
			if len(fs) != 6 || fs[0] != "acked" {
				continue // another kind of line, or one cut by the kill
			}
			k, _ := strconv.Atoi(fs[2])
			n, _ := strconv.Atoi(fs[3])
			next[k] = max(next[k], n+1)
		}
	}
	begin, _ := strconv.ParseInt(os.Getenv("WHIPPET_CHAOS_BEGIN"), 10, 64)
	f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	conn := whippet.Connection{Brokers: strings.Split(os.Getenv("WHIPPET_CHAOS_BROKERS"), ","), Logger: childLogger()}
	p, err := spool.New(conn, os.Getenv("WHIPPET_CHAOS_SPOOL_DIR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	rec := p.Recovered()
	// One write per line: O_APPEND keeps lines whole.
	fmt.Fprintf(f, "recovered %s %d %d %d\n", name, rec.Records, rec.PossibleDuplicates, len(rec.Dropped))
	go func() {
		for range time.Tick(250 * time.Millisecond) {
			st := p.Stats()
			fmt.Fprintf(f, "stats %s %d %d %d %d %d %d\n", name, st.Records, st.Spooled, st.Relayed, st.Skipped, st.PossibleDuplicates, time.Now().UnixMilli())
		}
	}()
	var wg sync.WaitGroup
	for k := range spoolKeys {
		wg.Go(func() {
			for n := next[k]; n < spoolPerKey; n++ {
				time.Sleep(time.Until(time.UnixMilli(begin).Add(time.Duration(n*spoolKeys+k) * time.Second / spoolRate)))
				r := &kgo.Record{Topic: os.Getenv("WHIPPET_CHAOS_TOPIC"), Key: fmt.Appendf(nil, "key-%04d", k),
					Value:   fmt.Appendf(nil, "%d %d %s", k, n, name),
					Headers: []kgo.RecordHeader{{Key: spool.IDHeader, Value: []byte(eventID(k, n))}}}
				res, err := p.Produce(context.Background(), r)
				if err != nil {
					fmt.Fprintf(os.Stderr, "produce %s: %v\n", eventID(k, n), err)
					os.Exit(1)
				}
				spooled := 0
				if res.Spooled {
					spooled = 1
				}
				fmt.Fprintf(f, "acked %s %d %d %d %d\n", name, k, n, spooled, time.Now().UnixMilli())
			}
		})
	}
	wg.Wait()
	for p.Stats().Records > 0 {
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(f, "drained %s %d\n", name, time.Now().UnixMilli())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	if err := p.Close(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// spoolLog accumulates what the producing processes of testSpoolOutage
// append to their file.
type spoolLog struct {
	tail      tail
	acked     map[string]int // per process
	spooled   map[string]int // per process: acknowledged once durable in the spool
	recovered map[string][3]int64
	last      map[string][5]int64 // per process, its last stats line
	maxHeld   int64
	drainedAt time.Time
	// firstRelay is when each process's relay first had delivered
	// records, and how many.
	firstRelay map[string]relayMark
}

type relayMark struct {
	at      time.Time
	relayed int64
}

func newSpoolLog(path string) *spoolLog {
	return &spoolLog{tail: tail{path: path}, acked: map[string]int{}, spooled: map[string]int{},
		recovered: map[string][3]int64{}, last: map[string][5]int64{}, firstRelay: map[string]relayMark{}}
}

func (l *spoolLog) update(t testing.TB) *spoolLog {
	for _, fs := range l.tail.next(t) {
		nums := make([]int64, len(fs))
		for i := 2; i < len(fs); i++ {
			nums[i], _ = strconv.ParseInt(fs[i], 10, 64)
		}
		switch {
		case len(fs) == 6 && fs[0] == "acked":
			l.acked[fs[1]]++
			if fs[4] == "1" {
				l.spooled[fs[1]]++
			}
		case len(fs) == 5 && fs[0] == "recovered":
			l.recovered[fs[1]] = [3]int64{nums[2], nums[3], nums[4]}
		case len(fs) == 8 && fs[0] == "stats":
			l.last[fs[1]] = [5]int64{nums[2], nums[3], nums[4], nums[5], nums[6]}
			l.maxHeld = max(l.maxHeld, nums[2])
			if _, ok := l.firstRelay[fs[1]]; !ok && nums[4] > 0 {
				l.firstRelay[fs[1]] = relayMark{time.UnixMilli(nums[7]), nums[4]}
			}
		case len(fs) == 3 && fs[0] == "drained":
			l.drainedAt = time.UnixMilli(nums[2])
		default:
			t.Fatalf("bad line in %s: %q", l.tail.path, fs)
		}
	}
	return l
}

// testSpoolOutage: a service produces 100,000 events over 1,000 keys through
// a durable spool (package producer/spool, whippet's defaults) at 1,000
// events/s. Once it produces directly (a fresh cluster may take longer than
// Threshold to give the first producer id: those are spooled), every broker
// is frozen (SIGSTOP) for 60s: produces are spooled. The producing process
// is SIGKILLed 20s and 40s into the outage and started again each time; the
// new process recovers the spool and produces the events the last one had
// not been told were durable, with the same event id. Then one broker is
// SIGKILLed (while frozen) and restarted and the other two are continued:
// the relay delivers the spool. Every event must be in the topic, each key's events in order
// once copies are dropped by the whippet-record-id header; copies are
// counted, split into those the spool sent twice and those the service
// produced again.
func testSpoolOutage(t *testing.T, e *env) {
	const parts = 6
	total := spoolKeys * spoolPerKey
	topic := e.kc.NewTopic(t, parts, nil)
	dir := filepath.Join(t.TempDir(), "spool")
	out := filepath.Join(t.TempDir(), "events.txt")
	begin := time.Now().Add(500 * time.Millisecond)
	start := func(name string) *child {
		return startChild(t, "producer "+name, "spool", "WHIPPET_CHAOS_BROKERS="+strings.Join(e.lk.Brokers, ","),
			"WHIPPET_CHAOS_TOPIC="+topic, "WHIPPET_CHAOS_SPOOL_DIR="+dir, "WHIPPET_CHAOS_OUT="+out,
			"WHIPPET_CHAOS_NAME="+name, "WHIPPET_CHAOS_BEGIN="+strconv.FormatInt(begin.UnixMilli(), 10))
	}
	l := newSpoolLog(out)
	proc := start("a")
	// Warm-up: the process produces directly (a fresh process's first
	// produces may be spooled while its producer id is being allocated).
	testkit.Eventually(t, 60*time.Second, func() error {
		l.update(t)
		if direct := l.acked["a"] - l.spooled["a"]; direct < 2000 || l.last["a"][0] != 0 {
			return fmt.Errorf("process a: %d events acknowledged by Kafka, %d spooled, %d held in the spool: warming up", direct, l.spooled["a"], l.last["a"][0])
		}
		return nil
	})
	warmSpooled := l.spooled["a"]
	t.Logf("warm-up: %d events acknowledged by Kafka, %d spooled", l.acked["a"]-l.spooled["a"], warmSpooled)
	node := e.leaderOf(t, topic, 0)
	t.Logf("outage: every broker frozen; node %d is then SIGKILLed and restarted (%s)", node, e.roles(t, node, topic))
	for n := 1; n <= 3; n++ {
		if err := e.lk.Pause(n); err != nil {
			t.Fatal(err)
		}
	}
	down := time.Now()
	t.Cleanup(func() {
		for n, alive := range e.lk.Alive() {
			if alive {
				_ = e.lk.Resume(n + 1)
			}
		}
		restartIfDown(t, e, node)
	})

	// Two SIGKILLs of the producing process while it spools.
	for i, name := range []string{"a", "b"} {
		time.Sleep(time.Until(down.Add(time.Duration(i+1) * spoolOutage / 3)))
		testkit.Eventually(t, 30*time.Second, func() error {
			n := l.update(t).spooled[name]
			if name == "a" {
				n -= warmSpooled
			}
			if n < 1000 {
				return fmt.Errorf("process %s: %d events spooled, waiting for 1000", name, n)
			}
			return nil
		})
		at := proc.kill(t)
		l.update(t)
		t.Logf("SIGKILLed producing process %s, %v into the outage: %d events acknowledged, %d of them spooled", name,
			at.Sub(down).Round(100*time.Millisecond), l.acked[name], l.spooled[name])
		proc = start(string(rune('b' + i)))
	}

	time.Sleep(time.Until(down.Add(spoolOutage)))
	if err := e.lk.Kill(node); err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 3; n++ {
		if n != node {
			if err := e.lk.Resume(n); err != nil {
				t.Fatal(err)
			}
		}
	}
	up := time.Now()
	t.Logf("outage over after %v: node %d SIGKILLed, the others continued", up.Sub(down).Round(100*time.Millisecond), node)
	e.restart(t, node)
	heldAtEnd := l.update(t).last["c"][0]
	testkit.Eventually(t, 5*time.Minute, func() error {
		if l.update(t).drainedAt.IsZero() {
			st := l.last["c"]
			return fmt.Errorf("process c: %d acknowledged, %d held in the spool, %d relayed", l.acked["c"], st[0], st[2])
		}
		return nil
	})
	proc.stop(t)
	l.update(t)
	e.waitHealthy(t, topic)

	// Read the topic back: every event, each key's in order once copies
	// are dropped by the header.
	byID := map[string][]string{} // id → the processes whose copies were read
	nextN := make([]int, spoolKeys)
	records, badOrder, badID := 0, 0, 0
	for _, r := range e.readAll(t, topic, false) {
		records++
		fs := strings.Fields(string(r.Value))
		if len(fs) != 3 {
			t.Fatalf("record %s/%d: value %q", r.Key, r.Offset, r.Value)
		}
		k, _ := strconv.Atoi(fs[0])
		n, _ := strconv.Atoi(fs[1])
		id := spool.RecordID(r)
		if id != eventID(k, n) {
			if badID++; badID <= 5 {
				t.Errorf("record %d/%d (event %d/%d) has %s %q", r.Partition, r.Offset, k, n, spool.IDHeader, id)
			}
			continue
		}
		byID[id] = append(byID[id], fs[2])
		if len(byID[id]) > 1 {
			continue // a copy: dropped by its id
		}
		if n != nextN[k] {
			if badOrder++; badOrder <= 5 {
				t.Errorf("key %d: event %d read where %d was expected (partition %d, offset %d)", k, n, nextN[k], r.Partition, r.Offset)
			}
		}
		nextN[k] = n + 1
	}
	lost := total - len(byID)
	dups, respooled, reproduced := records-len(byID), 0, 0
	for _, names := range byID {
		first := map[string]bool{}
		for _, name := range names {
			if first[name] {
				respooled++ // the same process's copy: sent twice by the spool
			} else if len(first) > 0 {
				reproduced++
			}
			first[name] = true
		}
	}
	var counted int64
	for _, st := range l.last {
		counted += st[4]
	}
	st := l.last["c"]
	drain := l.drainedAt.Sub(up)
	fr := l.firstRelay["c"]
	rate := float64(st[2]-fr.relayed) / l.drainedAt.Sub(fr.at).Seconds()
	t.Logf("%d records read for %d events: %d lost, %d copies (%d sent twice by a spool, %d produced again after a SIGKILL), "+
		"%d out of order, %d with a wrong id; spool: %d held at most, %d when the outage ended; recovered (records, possible duplicates, torn parts) %v; "+
		"process c relayed %d (its relay started %v after the outage ended, then %.0f records/s while 1,000/s more came in) and counted %d possible duplicates; "+
		"drained %v after the outage ended",
		records, total, lost, dups, respooled, reproduced, badOrder, badID, l.maxHeld, heldAtEnd, l.recovered,
		st[2], fr.at.Sub(up).Round(100*time.Millisecond), rate, st[4], drain.Round(100*time.Millisecond))
	report(row{scenario: "durable spool: every broker frozen 60s, producing process SIGKILLed twice", records: total, lost: lost, dup: dups,
		recover: secs(drain) + " to drain",
		notes: fmt.Sprintf("1,000 keys at 1,000 events/s, spool defaults; %d spooled at most; relay %.0f records/s; copies: %d sent twice by a spool "+
			"(%d counted as possible), %d produced again after a kill, 0 once dropped by %s; key order intact: %v",
			l.maxHeld, rate, respooled, counted, reproduced, spool.IDHeader, badOrder == 0)})
	if lost > 0 || badOrder > 0 || badID > 0 {
		t.Errorf("%d of %d events lost, %d read out of order, %d with a wrong id", lost, total, badOrder, badID)
	}
	if int64(respooled) > counted {
		t.Errorf("%d records sent twice by a spool, it counted %d possible duplicates", respooled, counted)
	}
}

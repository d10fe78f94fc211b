package consumer_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// attemptLog records every handling attempt.
type attemptLog struct {
	mu       sync.Mutex
	attempts map[string][]attemptEvent // by key
}

type attemptEvent struct {
	topic     string
	partition int32
	offset    int64
	attempt   int
	due       time.Time
	at        time.Time
}

func (l *attemptLog) add(ctx context.Context, r *kgo.Record) attemptEvent {
	info, ok := retry.InfoFrom(ctx)
	e := attemptEvent{topic: r.Topic, partition: r.Partition, offset: r.Offset, attempt: 1, at: time.Now()}
	if ok {
		e.attempt, e.due = info.Attempt, info.Due
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.attempts == nil {
		l.attempts = map[string][]attemptEvent{}
	}
	l.attempts[string(r.Key)] = append(l.attempts[string(r.Key)], e)
	return e
}

func (l *attemptLog) snapshot() map[string][]attemptEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string][]attemptEvent, len(l.attempts))
	for k, v := range l.attempts {
		out[k] = append([]attemptEvent(nil), v...)
	}
	return out
}

// readDLQ reads n records from the dead-letter topic, and checks no more come
// within a short while.
func readDLQ(t *testing.T, kc *testkit.Cluster, topic, group string, n int) []*kgo.Record {
	t.Helper()
	dlq := retry.DLQTopicName(topic, group)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	recs := kc.ConsumeUntil(ctx, t, dlq, func(all []*kgo.Record) bool { return len(all) >= n })
	if len(recs) != n {
		t.Fatalf("%d records in %s, want %d", len(recs), dlq, n)
	}
	return recs
}

func TestNonBlockingRetriesThenDeadLetter(t *testing.T) {
	kc := testkit.Shared(t)
	const parts, n, failing = 3, 1000, 100
	topic := kc.NewTopic(t, parts, nil)
	group := topic
	cl := kc.Client(t)
	recs := make([]*kgo.Record, n)
	for i := range recs {
		key := fmt.Sprintf("ok-%d", i)
		if i%10 == 3 {
			key = fmt.Sprintf("fail-%d", i)
		}
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(key), Value: fmt.Appendf(nil, "v%d", i),
			Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte(key)}}}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	original := map[string]*kgo.Record{}
	for _, r := range recs {
		original[string(r.Key)] = r
	}

	var log attemptLog
	h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		log.add(ctx, r)
		if strings.HasPrefix(string(r.Key), "fail-") {
			return errors.New("downstream says no to " + string(r.Key))
		}
		return nil
	})
	c := newConsumer(t, kc, h, group, consumer.Topics(topic), consumer.Retry(retry.NonBlocking(time.Second, 2*time.Second)))
	run(t, c)

	dead := readDLQ(t, kc, topic, group, failing)
	got := log.snapshot()

	// Exactly the failing records are dead, each after exactly 3 attempts, with
	// the headers that say where it came from and why.
	for _, d := range dead {
		key := string(d.Key)
		orig, ok := original[key]
		if !ok || !strings.HasPrefix(key, "fail-") {
			t.Fatalf("dead-lettered %q, which never failed", key)
		}
		info, ok := retry.InfoFor(d)
		if !ok {
			t.Fatalf("%s: no retry headers on the dead-letter record", key)
		}
		if info.Attempt != 3 || info.Reason != retry.ReasonExhausted || info.Group != group ||
			info.OriginalTopic != topic || info.OriginalPartition != orig.Partition || info.OriginalOffset != orig.Offset ||
			info.OriginalTimestamp.UnixMilli() != orig.Timestamp.UnixMilli() ||
			info.LastError != "downstream says no to "+key || info.FirstFailure.IsZero() || info.LastFailure.Before(info.FirstFailure.Add(3*time.Second)) {
			t.Fatalf("%s: dead-letter info %+v does not match the record at %d/%d", key, info, orig.Partition, orig.Offset)
		}
		if string(d.Value) != string(orig.Value) || len(d.Headers) == 0 || d.Headers[0].Key != "trace" || string(d.Headers[0].Value) != key {
			t.Fatalf("%s: value %q / headers %v not kept", key, d.Value, d.Headers)
		}
		if n := len(got[key]); n != 3 {
			t.Fatalf("%s handled %d times, want 3", key, n)
		}
	}

	var lateness []time.Duration
	var lastGood, firstDue time.Time
	for key, es := range got {
		if strings.HasPrefix(key, "ok-") {
			if len(es) != 1 {
				t.Fatalf("%s handled %d times", key, len(es))
			}
			if es[0].at.After(lastGood) {
				lastGood = es[0].at
			}
			continue
		}
		for i, e := range es {
			if e.attempt != i+1 {
				t.Fatalf("%s: attempt %d reported as %d", key, i+1, e.attempt)
			}
			if i == 0 {
				continue
			}
			if e.at.Before(e.due) {
				t.Fatalf("%s attempt %d handled at %v, before its due time %v", key, e.attempt, e.at, e.due)
			}
			wantTopic := retry.TopicName(topic, group, i-1)
			if e.topic != wantTopic {
				t.Fatalf("%s attempt %d came from %s, want %s", key, e.attempt, e.topic, wantTopic)
			}
			if gap, want := e.due.Sub(es[i-1].at), []time.Duration{time.Second, 2 * time.Second}[i-1]; gap < want-5*time.Millisecond || gap > want+time.Second {
				t.Fatalf("%s attempt %d due %v after the failure, want %v", key, e.attempt, gap, want)
			}
			lateness = append(lateness, e.at.Sub(e.due))
			if firstDue.IsZero() || e.due.Before(firstDue) {
				firstDue = e.due
			}
		}
	}
	if !lastGood.Before(firstDue) {
		t.Fatalf("the last of the 900 good records was handled at %v, after the first retry was due (%v): they waited for retries", lastGood, firstDue)
	}
	slices.Sort(lateness)
	p50, p99 := lateness[len(lateness)/2], lateness[len(lateness)*99/100]
	t.Logf("%d records, %d failing: all %d dead-lettered after 3 attempts; %d good handled before the first retry was due; retry lateness p50 %v p99 %v (of %d retries)",
		n, failing, len(dead), n-failing, p50.Round(time.Microsecond), p99.Round(time.Microsecond), len(lateness))
}

func TestBlockingRetryHoldsOnlyItsPartitionAndOperatorSkip(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 2, nil)
	group := topic
	produceSpread(t, kc, topic, 2, 40, nil) // offsets 0..19 in each partition
	var h handled
	var attemptsOf5 int
	var mu sync.Mutex
	c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if r.Partition == 0 && r.Offset == 5 {
			mu.Lock()
			attemptsOf5++
			mu.Unlock()
			return errors.New("poison")
		}
		h.add("c", r)
		return nil
	}), group, consumer.Topics(topic), consumer.Retry(retry.BlockingBackoff(retry.Exponential{
		Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond, Multiplier: 2, Retries: retry.Forever})))
	run(t, c)

	testkit.Eventually(t, 30*time.Second, func() error {
		b := c.Blocked()
		if len(b) != 1 || b[0].Partition != 0 || b[0].Offset != 5 || b[0].Error != "poison" || b[0].Attempts < 3 || b[0].Forwarding {
			return fmt.Errorf("blocked: %+v", b)
		}
		return nil
	})
	// Partition 1 went on; partition 0 stopped right before the poison.
	perPartition := map[int32][]int64{}
	for _, e := range h.snapshot() {
		perPartition[e.partition] = append(perPartition[e.partition], e.offset)
	}
	if len(perPartition[1]) != 20 || !slices.Equal(perPartition[0], []int64{0, 1, 2, 3, 4}) {
		t.Fatalf("while blocked: partition 0 handled %v, partition 1 %d records", perPartition[0], len(perPartition[1]))
	}
	// What came before the blocking record is committed and reported; the
	// blocking record is not.
	testkit.Eventually(t, 10*time.Second, func() error {
		if got := committed(t, kc.Admin(t), group, topic); got[0] != 5 {
			return fmt.Errorf("committed %v while offset 5 blocks partition 0, want 5", got)
		}
		for _, ps := range c.Partitions() {
			if ps.Partition == 0 && ps.NextOffset != 5 {
				return fmt.Errorf("partition 0 reports next offset %d, want 5", ps.NextOffset)
			}
		}
		return nil
	})
	if err := c.Skip(topic, 1); !errors.Is(err, consumer.ErrNotBlocked) {
		t.Fatalf("Skip of an unblocked partition: %v, want ErrNotBlocked", err)
	}
	if err := c.Skip(topic, 0); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if d := h.distinct(); d != 39 {
			return fmt.Errorf("handled %d of 39 after the skip", d)
		}
		return nil
	})
	var order []int64
	for _, e := range h.snapshot() {
		if e.partition == 0 {
			order = append(order, e.offset)
		}
	}
	want := []int64{0, 1, 2, 3, 4}
	for o := int64(6); o < 20; o++ {
		want = append(want, o)
	}
	if !slices.Equal(order, want) {
		t.Fatalf("partition 0 handled %v, want %v", order, want)
	}
	dead := readDLQ(t, kc, topic, group, 1)
	info, _ := retry.InfoFor(dead[0])
	if info.Reason != retry.ReasonSkipped || info.OriginalOffset != 5 || info.OriginalPartition != 0 || info.Attempt < 3 {
		t.Fatalf("dead-letter info %+v, want the skipped record 0/5", info)
	}
	if len(c.Blocked()) != 0 {
		t.Fatalf("still blocked after the skip: %+v", c.Blocked())
	}
	t.Logf("offset 5 blocked partition 0 for %d attempts while partition 1 finished; skipped to the dead-letter topic, partition 0 went on in order", attemptsOf5)
}

func TestSkipAllDeadLettersWithoutBlockingUntilBlock(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	group := topic
	var mu sync.Mutex
	calls := map[int64]int{}
	c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		mu.Lock()
		calls[r.Offset]++
		mu.Unlock()
		if string(r.Value) == "0-1" || string(r.Value) == "0-2" {
			return errors.New("bad")
		}
		return nil
	}), group, consumer.Topics(topic), consumer.Retry(retry.Blocking(time.Hour)))
	run(t, c)
	waitAssigned(t, c, 1)
	c.SkipAll(topic, 0)
	produceSpread(t, kc, topic, 1, 4, nil)
	dead := readDLQ(t, kc, topic, group, 2)
	for _, d := range dead {
		if info, _ := retry.InfoFor(d); info.Reason != retry.ReasonSkipped || info.Attempt != 1 {
			t.Fatalf("dead-letter info %+v, want skipped after 1 attempt", info)
		}
	}
	c.Block(topic, 0)
	produceSpread(t, kc, topic, 1, 2, nil) // "0-0", "0-1": the second fails and must now block
	testkit.Eventually(t, 30*time.Second, func() error {
		if b := c.Blocked(); len(b) != 1 || b[0].Offset != 5 {
			return fmt.Errorf("blocked %+v, want offset 5", b)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if calls[1] != 1 || calls[2] != 1 || calls[3] != 1 {
		t.Fatalf("calls %v: skipped records must be tried once", calls)
	}
}

func TestNonRetriableAndDecodeErrorsGoStraightToTheDeadLetterTopic(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	group := topic
	cl := kc.Client(t)
	for _, v := range []string{`{"n":1}`, `not json`, `{"n":-1}`, `{"n":2}`} {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	type msg struct{ N int }
	codec := codec.JSON[msg]()
	var log attemptLog
	c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		log.add(ctx, r)
		m, err := codec.Decode(r.Value)
		if err != nil {
			return err
		}
		if m.N < 0 {
			return retry.NonRetriable(errors.New("negative amounts are refused"))
		}
		return nil
	}), group, consumer.Topics(topic), consumer.Retry(retry.BlockingThenNonBlocking(retry.Blocking(time.Hour), retry.NonBlocking(time.Hour))))
	run(t, c)
	dead := readDLQ(t, kc, topic, group, 2)
	want := map[string]retry.Reason{`not json`: retry.ReasonDecode, `{"n":-1}`: retry.ReasonNonRetriable}
	for _, d := range dead {
		info, _ := retry.InfoFor(d)
		if want[string(d.Value)] != info.Reason || info.Attempt != 1 {
			t.Fatalf("%s dead-lettered with %+v, want reason %q after 1 attempt", d.Value, info, want[string(d.Value)])
		}
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if got := sum(committed(t, kc.Admin(t), group, topic)); got != 4 {
			return fmt.Errorf("committed %d of 4", got)
		}
		return nil
	})
}

func TestFailingForwardStopsThePartitionAndNeverSkips(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	group := topic
	dlq := retry.DLQTopicName(topic, group)
	small := "1000"
	kc.CreateTopic(t, dlq, 1, map[string]*string{"max.message.bytes": &small})
	cl := kc.Client(t)
	// Random, so that compression cannot bring it under the limit.
	raw := make([]byte, 3000)
	for i := range raw {
		raw[i] = byte(rand.IntN(256))
	}
	big := string(raw)
	produce := func(values ...string) {
		for _, v := range values {
			if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	produce("a", big)
	var h handled
	c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if len(r.Value) > 100 {
			return errors.New("too big to handle")
		}
		h.add("c", r)
		return nil
	}), group, consumer.Topics(topic), consumer.CommitInterval(100*time.Millisecond))
	run(t, c)
	testkit.Eventually(t, 30*time.Second, func() error {
		b := c.Blocked()
		if len(b) != 1 || !b[0].Forwarding || b[0].Offset != 1 || !strings.Contains(b[0].Error, "forward to "+dlq) {
			return fmt.Errorf("blocked %+v, want the failing forward of offset 1", b)
		}
		return nil
	})
	// Forwards are asynchronous: records after offset 1 may be handled before
	// its forward fails, but none once it has failed.
	produce("c", "d")
	time.Sleep(time.Second)
	if d := h.distinct(); d != 1 {
		t.Fatalf("handled %d records while the forward of offset 1 fails; the partition must wait", d)
	}
	if got := committed(t, kc.Admin(t), group, topic); got[0] > 1 {
		t.Fatalf("committed %v past the record whose forward fails", got)
	}
	if err := c.Skip(topic, 0); !errors.Is(err, consumer.ErrNotBlocked) {
		t.Fatalf("Skip of a failing forward: %v, want ErrNotBlocked (it cannot be skipped)", err)
	}
	// Fix the topic: the forward goes through, and the partition goes on.
	bigger := "1000000"
	if _, err := kc.Admin(t).AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Name: "max.message.bytes", Value: &bigger}}, dlq); err != nil {
		t.Fatal(err)
	}
	dead := readDLQ(t, kc, topic, group, 1)
	if string(dead[0].Value) != big {
		t.Fatal("the dead-letter record lost its value")
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if d := h.distinct(); d != 3 {
			return fmt.Errorf("handled %d of 3 after the forward succeeded", d)
		}
		if got := committed(t, kc.Admin(t), group, topic); got[0] != 4 {
			return fmt.Errorf("committed %v, want 4", got)
		}
		return nil
	})
}

// runRetryChild is a consumer process for TestRetryWaitSurvivesKill: the first
// attempt of every record fails; later ones append "key attempt due-ms
// handled-ms" to $WHIPPET_TEST_OUT.
func runRetryChild() {
	f, err := os.OpenFile(os.Getenv("WHIPPET_TEST_OUT"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	c, err := consumer.New(whippet.Connection{Brokers: strings.Split(os.Getenv("WHIPPET_TEST_BROKERS"), ",")}, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		info, ok := retry.InfoFrom(ctx)
		if !ok {
			_, err := fmt.Fprintf(f, "%s failed-first-attempt\n", r.Key)
			if err != nil {
				return err
			}
			return errors.New("first attempts fail")
		}
		_, err := fmt.Fprintf(f, "%s %d %d %d\n", r.Key, info.Attempt, info.Due.UnixMilli(), time.Now().UnixMilli())
		return err
	}),
		consumer.Group(os.Getenv("WHIPPET_TEST_GROUP")), consumer.Topics(os.Getenv("WHIPPET_TEST_TOPIC")),
		consumer.Retry(retry.NonBlocking(4*time.Second)),
		consumer.SessionTimeout(6*time.Second)) // the broker's minimum: a killed process leaves the group soon
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := c.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func TestRetryWaitSurvivesKill(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	group := topic
	out := filepath.Join(t.TempDir(), "attempts.txt")
	start := func() *exec.Cmd { return startChild(t, kc, "retry", group, topic, "WHIPPET_TEST_OUT="+out) }
	lines := func() []string {
		b, _ := os.ReadFile(out)
		var ls []string
		s := bufio.NewScanner(strings.NewReader(string(b)))
		for s.Scan() {
			ls = append(ls, s.Text())
		}
		return ls
	}
	cmd := start()
	produceSpread(t, kc, topic, 1, 3, func(i int) string { return fmt.Sprintf("k%d", i) })
	// Wait until the three records sit in the retry topic, then kill the
	// process while it waits for their due time.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	kc.ConsumeUntil(ctx, t, retry.TopicName(topic, group, 0), func(all []*kgo.Record) bool { return len(all) == 3 })
	// Let the first attempts' offsets be committed (CommitInterval 1s); the
	// retry records are fetched and wait for their due time, 4s after failing.
	time.Sleep(1500 * time.Millisecond)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if ls := lines(); len(ls) != 3 {
		t.Fatalf("before the kill: %q, want 3 failed first attempts and no retry yet", ls)
	}
	cmd = start()
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	retried := map[string]bool{}
	testkit.Eventually(t, 60*time.Second, func() error {
		for _, l := range lines()[3:] {
			if strings.HasSuffix(l, "failed-first-attempt") {
				continue // at-least-once: a first attempt not committed before the kill is made again
			}
			var key string
			var attempt int
			var due, at int64
			if _, err := fmt.Sscan(l, &key, &attempt, &due, &at); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			if attempt != 2 || at < due {
				t.Fatalf("%q: want attempt 2 handled at or after its due time", l)
			}
			retried[key] = true
		}
		if len(retried) != 3 {
			return fmt.Errorf("retried after the restart: %v, want k0 k1 k2", retried)
		}
		return nil
	})
	t.Logf("killed during the retry wait; after the restart all 3 retries were handled at their due time (%d lines)", len(lines()))
}

func TestDeadLetterReplayIsHandledAgain(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 2, nil)
	group := topic
	var broken atomic.Bool
	broken.Store(true)
	var mu sync.Mutex
	var replayed []string
	c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if broken.Load() && strings.HasPrefix(string(r.Key), "bad") {
			return errors.New("downstream is down")
		}
		if mark, ok := dlq.ReplayMarkOf(r); ok {
			mu.Lock()
			replayed = append(replayed, fmt.Sprintf("%s from %s", r.Key, mark.From))
			mu.Unlock()
		}
		return nil
	}), group, consumer.Topics(topic))
	run(t, c)
	produceSpread(t, kc, topic, 2, 10, func(i int) string {
		if i%5 == 0 {
			return fmt.Sprintf("bad-%d", i)
		}
		return fmt.Sprintf("good-%d", i)
	})
	readDLQ(t, kc, topic, group, 2)

	broken.Store(false) // downstream is back: replay the dead letters
	dc, err := dlq.New(whippet.Connection{Brokers: kc.Brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close(context.Background())
	res, err := dc.Replay(context.Background(), retry.DLQTopicName(topic, group), dlq.Filter{})
	if err != nil || len(res.Replayed) != 2 {
		t.Fatalf("Replay = %+v, %v; want 2 records replayed", res, err)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(replayed) != 2 {
			return fmt.Errorf("handled replays: %v", replayed)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(replayed)
	for i, want := range []string{"bad-0 from ", "bad-5 from "} {
		if !strings.HasPrefix(replayed[i], want+retry.DLQTopicName(topic, group)+"/") {
			t.Fatalf("replayed %v, want bad-0 and bad-5 from the dead-letter topic", replayed)
		}
	}
}

func TestKeyParallelBlockedKeysHoldNoHandlerSlot(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	group := topic
	// Two slots, two keys that always fail and wait an hour between attempts:
	// the other keys must still be handled.
	keys := []string{"stuck-a", "stuck-b", "k1", "k2", "k3", "k4", "k5", "k6"}
	produceSpread(t, kc, topic, 1, 40, func(i int) string { return keys[i%len(keys)] })
	var h handled
	c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if strings.HasPrefix(string(r.Key), "stuck") {
			return errors.New("stuck")
		}
		h.add("c", r)
		return nil
	}), group, consumer.Topics(topic), consumer.KeyParallel(2), consumer.Retry(retry.Blocking(time.Hour)))
	run(t, c)
	testkit.Eventually(t, 30*time.Second, func() error {
		if d := h.distinct(); d != 30 {
			return fmt.Errorf("handled %d of the 30 records of unblocked keys (blocked: %d)", d, len(c.Blocked()))
		}
		if b := c.Blocked(); len(b) != 2 {
			return fmt.Errorf("blocked %+v, want the first records of stuck-a and stuck-b", b)
		}
		return nil
	})
}

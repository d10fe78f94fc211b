package consumer_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
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
	"go.uber.org/goleak"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// newBatchConsumer is newConsumer for a BatchHandler.
func newBatchConsumer(t *testing.T, kc *testkit.Cluster, h consumer.BatchHandler, group string, opts ...consumer.Option) *consumer.Consumer {
	t.Helper()
	c, err := consumer.NewBatch(whippet.Connection{Brokers: kc.Brokers}, h, append([]consumer.Option{consumer.Group(group)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// batchRec is what a test keeps of a record of a batch call: the records
// belong to the consumer once the call returns.
type batchRec struct {
	topic     string
	partition int32
	offset    int64
	key       string
	due       time.Time // for a record of a retry topic, when it was due
}

// batchCall is one HandleBatch call as the handler saw it.
type batchCall struct {
	who        string
	recs       []batchRec
	failed     []bool // which records the call reported failed (nil: none)
	start, end time.Time
	canceled   bool // its context was canceled before it returned
}

func (c batchCall) offsets() []int64 {
	out := make([]int64, len(c.recs))
	for i, r := range c.recs {
		out[i] = r.offset
	}
	return out
}

func (c batchCall) keys() []string {
	out := make([]string, len(c.recs))
	for i, r := range c.recs {
		out[i] = r.key
	}
	return out
}

// batchCalls records batch calls in the order they started.
type batchCalls struct {
	mu    sync.Mutex
	calls []batchCall
}

// begin records the start of a call and returns its index for end.
func (b *batchCalls) begin(who string, recs []*kgo.Record) int {
	c := batchCall{who: who, start: time.Now(), recs: make([]batchRec, len(recs))}
	for i, r := range recs {
		c.recs[i] = batchRec{topic: r.Topic, partition: r.Partition, offset: r.Offset, key: string(r.Key)}
		if info, ok := retry.InfoFor(r); ok {
			c.recs[i].due = info.Due
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, c)
	return len(b.calls) - 1
}

// end records that call i returned, with errs its records' errors (nil if
// none failed).
func (b *batchCalls) end(i int, errs []error) {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	c := &b.calls[i]
	c.end = now
	if errs != nil {
		c.failed = make([]bool, len(errs))
		for j, err := range errs {
			c.failed[j] = err != nil
		}
	}
}

// cancel records that the context of call i was canceled before it
// returned.
func (b *batchCalls) cancel(i int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls[i].canceled = true
}

func (b *batchCalls) snapshot() []batchCall {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// handlings counts, for each record of topic (partition, offset), the calls
// that held it.
func (b *batchCalls) handlings(topic string) map[[2]int64]int {
	out := map[[2]int64]int{}
	for _, c := range b.snapshot() {
		for _, r := range c.recs {
			if r.topic == topic {
				out[[2]int64{int64(r.partition), r.offset}]++
			}
		}
	}
	return out
}

// byKey counts, for each key, the calls that held it, over every topic.
func (b *batchCalls) byKey() map[string]int {
	out := map[string]int{}
	for _, c := range b.snapshot() {
		for _, r := range c.recs {
			out[r.key]++
		}
	}
	return out
}

// waitHandled waits until every one of the n records of topic was in a call.
func (b *batchCalls) waitHandled(t *testing.T, topic string, n int) {
	t.Helper()
	testkit.Eventually(t, 60*time.Second, func() error {
		if d := len(b.handlings(topic)); d != n {
			return fmt.Errorf("handled %d of %d records of %s", d, n, topic)
		}
		return nil
	})
}

// onePartition fails the test unless every record of c is of one topic and
// partition, and returns that partition.
func onePartition(t *testing.T, c batchCall) int32 {
	t.Helper()
	if len(c.recs) == 0 {
		t.Fatalf("a call of %s held no record", c.who)
	}
	first := c.recs[0]
	for _, r := range c.recs {
		if r.topic != first.topic || r.partition != first.partition {
			t.Fatalf("a call held records of %s/%d and of %s/%d: a batch is one partition's", first.topic, first.partition, r.topic, r.partition)
		}
	}
	return first.partition
}

// waitCommitted waits until the group's committed offsets on topic are want.
func waitCommitted(t *testing.T, adm *kadm.Client, group, topic string, want map[int32]int64) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := committed(t, adm, group, topic); !maps.Equal(got, want) {
			return fmt.Errorf("committed %v on %s, want %v", got, topic, want)
		}
		return nil
	})
}

// perPartition is want for waitCommitted when every partition has n records.
func perPartition(parts int32, n int64) map[int32]int64 {
	out := map[int32]int64{}
	for p := range parts {
		out[p] = n
	}
	return out
}

// pastLast is what a group commits on a topic once it consumed recs, all of
// the topic's records: each partition past its last record.
func pastLast(recs []*kgo.Record) map[int32]int64 {
	out := map[int32]int64{}
	for _, r := range recs {
		out[r.Partition] = max(out[r.Partition], r.Offset+1)
	}
	return out
}

func TestBatchOrder(t *testing.T) {
	t.Run("ordered", testBatchOrdered)
	t.Run("key-parallel", testBatchKeyParallel)
}

// testBatchOrdered: every record is handled once, each partition's in offset
// order across calls and within them, no call has more than maxRecords or
// records of two partitions, and a batch smaller than maxRecords waits for
// the linger, gathering what comes meanwhile, then is flushed.
func testBatchOrdered(t *testing.T) {
	kc := testkit.Shared(t)
	const parts, perPart, maxRecs = 3, 200, 50
	const linger = time.Second
	topic := kc.NewTopic(t, parts, nil)
	produceSpread(t, kc, topic, parts, parts*perPart, nil)
	ignore := goleak.IgnoreCurrent()

	var log batchCalls
	var mu sync.Mutex
	inCall := map[int32]bool{}
	var problems []string
	c := newBatchConsumer(t, kc, consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
		i := log.begin("c", recs)
		if len(recs) == 0 {
			return nil // reported by onePartition
		}
		p := recs[0].Partition
		mu.Lock()
		if inCall[p] {
			problems = append(problems, fmt.Sprintf("partition %d: two calls under way at once (ordered mode)", p))
		}
		inCall[p] = true
		mu.Unlock()
		time.Sleep(time.Millisecond)
		mu.Lock()
		inCall[p] = false
		mu.Unlock()
		log.end(i, nil)
		return nil
	}), topic, consumer.Topics(topic), consumer.BatchSize(maxRecs, linger))
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	t.Cleanup(func() { c.Close(context.Background()) }) // if the test stops early
	log.waitHandled(t, topic, parts*perPart)

	// 3 records, then 4 more well within the linger of the batch the first
	// 3 started: one call of 7, flushed by the linger below maxRecords.
	// The test's clients are closed before the leak check.
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, vs := range [][]string{{"a", "b", "c"}, {"d", "e", "f", "g"}} {
		var recs []*kgo.Record
		for _, v := range vs {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: 0, Value: []byte(v)})
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(linger / 20)
	}
	cl.Close()
	log.waitHandled(t, topic, parts*perPart+7)
	acl, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer acl.Close()
	waitCommitted(t, kadm.NewClient(acl), topic, topic, map[int32]int64{0: perPart + 7, 1: perPart, 2: perPart})
	acl.Close()
	c.Close(context.Background())
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}

	mu.Lock()
	for _, p := range problems {
		t.Error(p)
	}
	mu.Unlock()
	calls := log.snapshot()
	next := map[int32]int64{}
	largest := 0
	var late [][]int64 // the calls of the records produced after the first 600
	for _, c := range calls {
		p := onePartition(t, c)
		if len(c.recs) > maxRecs {
			t.Fatalf("a call of partition %d held %d records, more than BatchSize's %d", p, len(c.recs), maxRecs)
		}
		largest = max(largest, len(c.recs))
		for _, r := range c.recs {
			if r.offset != next[p] {
				t.Fatalf("partition %d: offset %d handled when %d was next (calls: order broken, or a record skipped or handled twice): call %v",
					p, r.offset, next[p], c.offsets())
			}
			next[p]++
		}
		if p == 0 && c.recs[0].offset >= perPart {
			late = append(late, c.offsets())
		}
	}
	if largest != maxRecs {
		t.Errorf("the largest call held %d records; with %d records waiting in each partition, calls of %d were due", largest, perPart, maxRecs)
	}
	if want := []int64{200, 201, 202, 203, 204, 205, 206}; len(late) != 1 || !slices.Equal(late[0], want) {
		t.Errorf("the 7 late records of partition 0 came in the calls %v; want one call of %v: the linger holds the first 3 for the other 4, then flushes below maxRecords", late, want)
	}
	goleak.VerifyNone(t, ignore,
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).read"),
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).read.func1"),
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).write"))
	t.Logf("%d records in %d calls (largest %d); the late 7 in one call flushed by the linger", parts*perPart+7, len(calls), largest)
}

// testBatchKeyParallel: in key-parallel mode, no key's records are handled
// out of offset order, no key is in two calls under way at once, at most
// KeyParallel's concurrency of calls are under way, and every record is
// handled once.
func testBatchKeyParallel(t *testing.T) {
	kc := testkit.Shared(t)
	const parts, n, keys, limit, maxRecs = 2, 1200, 30, 4, 40
	topic := kc.NewTopic(t, parts, nil)
	// Key k<j> lands in partition j%2 only (produceSpread is round-robin).
	produceSpread(t, kc, topic, parts, n, func(i int) string { return fmt.Sprintf("k%d", i%keys) })

	var log batchCalls
	var mu sync.Mutex
	active := map[string]bool{} // keys in a call under way
	last := map[string]int64{}  // the last offset of each key handled
	running, maxRunning := 0, 0
	var problems []string
	c := newBatchConsumer(t, kc, consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
		i := log.begin("c", recs)
		mine := map[string]bool{}
		mu.Lock()
		running++
		maxRunning = max(maxRunning, running)
		for _, r := range recs {
			k := string(r.Key)
			if active[k] && !mine[k] {
				problems = append(problems, fmt.Sprintf("key %s in two calls under way at once", k))
			}
			mine[k] = true
			if l, ok := last[k]; ok && r.Offset <= l {
				problems = append(problems, fmt.Sprintf("key %s: offset %d handled after %d", k, r.Offset, l))
			}
			last[k] = r.Offset
		}
		for k := range mine {
			active[k] = true
		}
		mu.Unlock()
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
		mu.Lock()
		for k := range mine {
			delete(active, k)
		}
		running--
		mu.Unlock()
		log.end(i, nil)
		return nil
	}), topic, consumer.Topics(topic), consumer.KeyParallel(limit), consumer.BatchSize(maxRecs, 5*time.Millisecond))
	run(t, c)
	log.waitHandled(t, topic, n)
	waitCommitted(t, kc.Admin(t), topic, topic, perPartition(parts, n/parts))

	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	calls := log.snapshot()
	for _, c := range calls {
		p := onePartition(t, c)
		if len(c.recs) > maxRecs {
			t.Errorf("a call of partition %d held %d records, more than BatchSize's %d", p, len(c.recs), maxRecs)
		}
	}
	for pl, k := range log.handlings(topic) {
		if k != 1 {
			t.Errorf("record %d/%d handled %d times", pl[0], pl[1], k)
		}
	}
	if maxRunning > limit {
		t.Errorf("%d calls under way at once; KeyParallel(%d) bounds them", maxRunning, limit)
	}
	t.Logf("%d records of %d keys in %d calls, up to %d under way at once (limit %d): each key in order, in one call at a time", n, keys, len(calls), maxRunning, limit)
}

func TestBatchPartialFailure(t *testing.T) {
	t.Run("non-blocking", testBatchPartialNonBlocking)
	t.Run("blocking", testBatchPartialBlocking)
	t.Run("whole batch", testBatchWholeBatchFailures)
}

// testBatchPartialNonBlocking: the handler fails every tenth record of its
// calls through RecordErrors; with non-blocking retries only those go to the
// retry topic, then to the dead-letter topic, and the others are handled
// once and never again.
func testBatchPartialNonBlocking(t *testing.T) {
	kc := testkit.Shared(t)
	const parts, n = 2, 200
	topic := kc.NewTopic(t, parts, nil)
	group := topic
	wantBad := map[string]bool{}
	produceSpread(t, kc, topic, parts, n, func(i int) string {
		if i%10 == 3 {
			wantBad[fmt.Sprintf("fail-%d", i)] = true
			return fmt.Sprintf("fail-%d", i)
		}
		return fmt.Sprintf("ok-%d", i)
	})

	var log batchCalls
	var infoInCtx atomic.Bool
	c := newBatchConsumer(t, kc, consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
		i := log.begin("c", recs)
		if _, ok := retry.InfoFrom(ctx); ok {
			infoInCtx.Store(true)
		}
		errs := make([]error, len(recs))
		for j, r := range recs {
			if strings.HasPrefix(string(r.Key), "fail-") {
				errs[j] = errors.New("downstream refuses " + string(r.Key))
			}
		}
		log.end(i, errs)
		return consumer.RecordErrors(errs)
	}), group, consumer.Topics(topic), consumer.BatchSize(20, 5*time.Millisecond),
		consumer.Retry(retry.NonBlocking(300*time.Millisecond)), consumer.CommitInterval(100*time.Millisecond))
	run(t, c)

	dead := readExactly(t, kc, retry.DLQTopicName(topic, group), len(wantBad), false, time.Second)
	onceEach(t, "dead letters", dead, wantBad)
	for _, d := range dead {
		info, ok := retry.InfoFor(d)
		if !ok || info.Reason != retry.ReasonExhausted || info.Attempt != 2 || info.OriginalTopic != topic ||
			!strings.Contains(info.LastError, "downstream refuses "+string(d.Key)) {
			t.Errorf("%s: dead-letter info %+v (ok %v), want exhausted after 2 attempts, with its own error", d.Key, info, ok)
		}
	}
	retryTopic := retry.TopicName(topic, group, 0)
	retried := readExactly(t, kc, retryTopic, len(wantBad), false, time.Second)
	onceEach(t, "retry topic", retried, wantBad)
	waitCommitted(t, kc.Admin(t), group, topic, perPartition(parts, n/parts))
	waitCommitted(t, kc.Admin(t), group, retryTopic, pastLast(retried))

	if infoInCtx.Load() {
		t.Error("retry.InfoFrom(ctx) is set in a batch call; the godoc says it is not")
	}
	for k, got := range log.byKey() {
		if want := map[bool]int{true: 2, false: 1}[wantBad[k]]; got != want {
			t.Errorf("%s handled %d times, want %d", k, got, want)
		}
	}
	retryCalls := 0
	for _, c := range log.snapshot() {
		onePartition(t, c)
		if c.recs[0].topic != retryTopic {
			continue
		}
		retryCalls++
		for _, r := range c.recs {
			if !wantBad[r.key] {
				t.Errorf("%s, which never failed, was handled from the retry topic", r.key)
			}
			if r.due.IsZero() || c.start.Before(r.due) {
				t.Errorf("%s handled from the retry topic at %v, before its due time %v", r.key, c.start, r.due)
			}
		}
	}
	t.Logf("%d of %d records failed in their calls: only they were retried (in %d calls) and dead-lettered", len(wantBad), n, retryCalls)
}

// testBatchPartialBlocking: with blocking retries, the retry of a call holds
// exactly the records that failed in it; records that keep failing are
// dead-lettered once the policy is exhausted.
func testBatchPartialBlocking(t *testing.T) {
	kc := testkit.Shared(t)
	const n = 50
	topic := kc.NewTopic(t, 1, nil)
	group := topic
	produceSpread(t, kc, topic, 1, n, func(i int) string { return fmt.Sprintf("k-%d", i) })
	failAlways := func(o int64) bool { return o%20 == 13 }                // 13, 33
	failOnce := func(o int64) bool { return o%10 == 3 && !failAlways(o) } // 3, 23, 43
	const attempts = 3                                                    // Blocking(5ms, 5ms)

	var log batchCalls
	var mu sync.Mutex
	tries := map[int64]int{}
	c := newBatchConsumer(t, kc, consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
		i := log.begin("c", recs)
		errs := make([]error, len(recs))
		mu.Lock()
		for j, r := range recs {
			tries[r.Offset]++
			if failAlways(r.Offset) || failOnce(r.Offset) && tries[r.Offset] == 1 {
				errs[j] = fmt.Errorf("offset %d refused", r.Offset)
			}
		}
		mu.Unlock()
		log.end(i, errs)
		return consumer.RecordErrors(errs)
	}), group, consumer.Topics(topic), consumer.BatchSize(n, 50*time.Millisecond),
		consumer.Retry(retry.Blocking(5*time.Millisecond, 5*time.Millisecond)), consumer.CommitInterval(100*time.Millisecond))
	run(t, c)

	dead := readExactly(t, kc, retry.DLQTopicName(topic, group), 2, false, time.Second)
	onceEach(t, "dead letters", dead, map[string]bool{"k-13": true, "k-33": true})
	for _, d := range dead {
		if info, _ := retry.InfoFor(d); info.Reason != retry.ReasonExhausted || info.Attempt != attempts {
			t.Errorf("%s: dead-letter info %+v, want exhausted after %d attempts", d.Key, info, attempts)
		}
	}
	waitCommitted(t, kc.Admin(t), group, topic, map[int32]int64{0: n})

	calls := log.snapshot()
	seen := map[int64]int{} // attempts so far, by offset
	retries, smaller := 0, 0
	for i, c := range calls {
		onePartition(t, c)
		again := seen[c.recs[0].offset] > 0
		for _, r := range c.recs {
			if (seen[r.offset] > 0) != again {
				t.Fatalf("call %d %v mixes records handled before with new ones", i, c.offsets())
			}
		}
		if i > 0 {
			prev := calls[i-1]
			var failed []int64
			for j, f := range prev.failed {
				if f {
					failed = append(failed, prev.recs[j].offset)
				}
			}
			mustRetry := len(failed) > 0 && seen[failed[0]] < attempts
			switch {
			case mustRetry && !slices.Equal(c.offsets(), failed):
				t.Fatalf("call %d %v follows call %d %v whose records %v failed (attempt %d of %d): a blocking retry calls again with exactly the failed records",
					i, c.offsets(), i-1, prev.offsets(), failed, seen[failed[0]], attempts)
			case !mustRetry && again:
				t.Fatalf("call %d handles %v again though the call before (%v) left nothing to retry", i, c.offsets(), prev.offsets())
			}
			if again {
				retries++
				if len(c.recs) < len(prev.recs) {
					smaller++
				}
			}
		}
		for _, r := range c.recs {
			seen[r.offset]++
		}
	}
	for o := range int64(n) {
		want := 1
		switch {
		case failAlways(o):
			want = attempts
		case failOnce(o):
			want = 2
		}
		if seen[o] != want {
			t.Errorf("offset %d handled %d times, want %d", o, seen[o], want)
		}
	}
	if smaller == 0 {
		t.Errorf("no retry call held fewer records than the call it retried (%d retry calls): the test did not see a partial failure", retries)
	}
	t.Logf("%d calls, %d of them blocking retries holding only the failed records", len(calls), retries)
}

// testBatchWholeBatchFailures: a record failing with a non-retriable error
// goes straight to the dead-letter topic; a plain error, a panic and a
// *BatchError of the wrong length fail every record of their call.
func testBatchWholeBatchFailures(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	group := topic
	rounds := [][]string{
		{"ok-a1", "ok-a2", "panic-1", "ok-a3"},
		{"ok-b1", "plain-1", "ok-b2"},
		{"ok-c1", "wrong-1", "ok-c2"},
		{"ok-d1", "nr-1", "ok-d2", "nr-2", "ok-d3"},
	}
	var log batchCalls
	has := func(recs []*kgo.Record, prefix string) bool {
		return slices.ContainsFunc(recs, func(r *kgo.Record) bool { return strings.HasPrefix(string(r.Key), prefix) })
	}
	c := newBatchConsumer(t, kc, consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
		i := log.begin("c", recs)
		if recs[0].Topic != topic {
			return nil // a retry, due in an hour: reported below
		}
		switch {
		case has(recs, "panic-"):
			panic("bulk insert crashed")
		case has(recs, "plain-"):
			return errors.New("bulk insert refused")
		case has(recs, "wrong-"):
			return &consumer.BatchError{Errs: make([]error, len(recs)+1)}
		}
		errs := make([]error, len(recs))
		for j, r := range recs {
			if strings.HasPrefix(string(r.Key), "nr-") {
				errs[j] = retry.NonRetriable(errors.New("refused for good: " + string(r.Key)))
			}
		}
		log.end(i, errs)
		return consumer.RecordErrors(errs)
	}), group, consumer.Topics(topic), consumer.BatchSize(10, 100*time.Millisecond),
		consumer.Retry(retry.NonBlocking(time.Hour)), consumer.CommitInterval(100*time.Millisecond))
	run(t, c)

	// One produce batch per round, so that each round comes in one fetch
	// and (with the linger) one call.
	cl := kc.Client(t, kgo.ProducerLinger(50*time.Millisecond))
	total := 0
	for _, keys := range rounds {
		var recs []*kgo.Record
		for _, k := range keys {
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(k)})
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		total += len(keys)
		log.waitHandled(t, topic, total)
	}

	// What the calls should have failed, by the contract, from what they held.
	wantRetried, wantDead := map[string]bool{}, map[string]bool{}
	lastError := map[string]string{}
	mixed := map[string]bool{} // whole-batch failures whose call held an ok record
	for _, c := range log.snapshot() {
		onePartition(t, c)
		if c.recs[0].topic != topic {
			t.Errorf("records %v of %s handled at %v, before they were due (%v)", c.keys(), c.recs[0].topic, c.start, c.recs[0].due)
			continue
		}
		keys := c.keys()
		mode := ""
		for _, m := range []string{"panic-", "plain-", "wrong-"} {
			if slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(k, m) }) {
				mode = m
				break
			}
		}
		for _, k := range keys {
			switch {
			case mode != "":
				wantRetried[k] = true
				lastError[k] = mode
				if strings.HasPrefix(k, "ok-") {
					mixed[mode] = true
				}
			case strings.HasPrefix(k, "nr-"):
				wantDead[k] = true
			}
		}
	}
	for _, m := range []string{"panic-", "plain-", "wrong-"} {
		if !mixed[m] {
			t.Errorf("no call failing with %q held an ok record: the test cannot tell that every record failed", m)
		}
	}
	retried := readExactly(t, kc, retry.TopicName(topic, group, 0), len(wantRetried), false, time.Second)
	onceEach(t, "retry topic", retried, wantRetried)
	for _, r := range retried {
		info, _ := retry.InfoFor(r)
		var ok bool
		switch lastError[string(r.Key)] {
		case "panic-":
			ok = strings.Contains(info.LastError, consumer.ErrHandlerPanic.Error()) && strings.Contains(info.LastError, "bulk insert crashed")
		case "plain-":
			ok = strings.Contains(info.LastError, "bulk insert refused")
		case "wrong-":
			ok = info.LastError != ""
		}
		if !ok || info.Attempt != 2 {
			t.Errorf("%s forwarded to retry with %+v: want attempt 2 and the error of its call (%s)", r.Key, info, lastError[string(r.Key)])
		}
	}
	dead := readExactly(t, kc, retry.DLQTopicName(topic, group), len(wantDead), false, time.Second)
	onceEach(t, "dead letters", dead, wantDead)
	for _, d := range dead {
		if info, _ := retry.InfoFor(d); info.Reason != retry.ReasonNonRetriable || info.Attempt != 1 ||
			!strings.Contains(info.LastError, "refused for good: "+string(d.Key)) {
			t.Errorf("%s: dead-letter info %+v, want non-retriable after 1 attempt", d.Key, info)
		}
	}
	for pl, k := range log.handlings(topic) {
		if k != 1 {
			t.Errorf("record %d/%d of the source topic handled %d times", pl[0], pl[1], k)
		}
	}
	waitCommitted(t, kc.Admin(t), group, topic, map[int32]int64{0: int64(total)})
	t.Logf("whole-batch failures forwarded %d records (ok ones with them); non-retriable %v dead-lettered at once", len(wantRetried), slices.Sorted(maps.Keys(wantDead)))
}

// TestBatchRebalanceMidBatch: a second batch consumer joins while the first
// is inside slow batch calls. No record is lost, a record is handled twice
// only if the call that held it had not finished when the other member
// started it or the drain gave up on it (its context was canceled), and the
// outputs (EmitFor, at-least-once) cover every input. With the default
// drain timeout the calls under way finish and are committed before the
// partitions move; with a drain timeout shorter than a call, they are not,
// and their records are handled again.
func TestBatchRebalanceMidBatch(t *testing.T) {
	t.Run("drained", func(t *testing.T) {
		// 40 calls of 200ms per partition: a alone would take 8s, so b
		// joins with most of the work left.
		testBatchRebalance(t, 1600, 200*time.Millisecond, false)
	})
	t.Run("drain timeout", func(t *testing.T) {
		// 4 calls of 2s per partition, and a drain timeout of 300ms: the
		// calls under way at the revocation outlive it.
		testBatchRebalance(t, 160, 2*time.Second, true, consumer.DrainTimeout(300*time.Millisecond))
	})
}

func testBatchRebalance(t *testing.T, n int, callTime time.Duration, wantAgain bool, extra ...consumer.Option) {
	kc := testkit.Shared(t)
	const parts = 4
	in := kc.NewTopic(t, parts, nil)
	out := kc.NewTopic(t, parts, nil)
	group := in
	produceSpread(t, kc, in, parts, n, nil)
	var log batchCalls
	var aInCall atomic.Int32
	slow := func(who string) consumer.BatchHandler {
		return consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
			i := log.begin(who, recs)
			if who == "a" {
				aInCall.Add(1)
				defer aInCall.Add(-1)
			}
			for _, r := range recs {
				if err := consumer.EmitFor(ctx, r, &kgo.Record{Topic: out, Key: inputKey(r), Value: r.Value}); err != nil {
					return err
				}
			}
			time.Sleep(callTime) // a slow bulk write, deaf to ctx
			if ctx.Err() != nil {
				// The drain gave up on the call: its partition moved
				// before it finished.
				log.cancel(i)
			}
			log.end(i, nil)
			return nil
		})
	}
	opts := append([]consumer.Option{consumer.Topics(in), consumer.BatchSize(10, 5*time.Millisecond), consumer.CommitInterval(100 * time.Millisecond)}, extra...)
	a := newBatchConsumer(t, kc, slow("a"), group, opts...)
	run(t, a)
	testkit.Eventually(t, 60*time.Second, func() error {
		if d := len(log.handlings(in)); d < n/8 || aInCall.Load() == 0 {
			return fmt.Errorf("a handled %d and is in %d calls; waiting for %d, in a call", d, aInCall.Load(), n/8)
		}
		return nil
	})
	joined := time.Now()
	b := newBatchConsumer(t, kc, slow("b"), group, opts...)
	run(t, b)
	log.waitHandled(t, in, n)
	adm := kc.Admin(t)
	testkit.Eventually(t, 30*time.Second, func() error {
		if got, want := committed(t, adm, group, in), perPartition(parts, int64(n/parts)); !maps.Equal(got, want) {
			return fmt.Errorf("committed %v, want %v; a holds %+v (blocked %+v), b holds %+v (blocked %+v)", got, want, a.Partitions(), a.Blocked(), b.Partitions(), b.Blocked())
		}
		return nil
	})

	calls := log.snapshot()
	held := map[[2]int64][]int{} // the calls that held each record, in start order
	owners := map[int32]map[string]bool{}
	overlapping := 0 // a's calls under way when b joined
	for ci, c := range calls {
		p := onePartition(t, c)
		if owners[p] == nil {
			owners[p] = map[string]bool{}
		}
		owners[p][c.who] = true
		if c.who == "a" && c.start.Before(joined) && c.end.After(joined) {
			overlapping++
		}
		for _, r := range c.recs {
			pl := [2]int64{int64(r.partition), r.offset}
			held[pl] = append(held[pl], ci)
		}
	}
	twice := 0
	for pl, cs := range held {
		for j := 1; j < len(cs); j++ {
			first, again := calls[cs[j-1]], calls[cs[j]]
			twice++
			// Unfinished when the partition moved: the drain gave up on
			// it (its context was canceled before it returned), or it was
			// still under way when the other member started the record.
			if !first.canceled && !first.end.After(again.start) {
				t.Errorf("record %d/%d handled by %s at %v, though %s's call holding it had finished at %v, drained",
					pl[0], pl[1], again.who, again.start.Format("15:04:05.000"), first.who, first.end.Format("15:04:05.000"))
			}
		}
	}
	moved := 0
	for _, who := range owners {
		if who["a"] && who["b"] {
			moved++
		}
	}
	if moved == 0 {
		t.Fatalf("no partition moved from a to b (owners %v)", owners)
	}
	if wantAgain && twice == 0 {
		t.Errorf("no record handled again, though the drain timed out on calls under way when partitions moved")
	}
	outs := readExactly(t, kc, out, n, false, time.Second)
	covered := map[string]bool{}
	for _, r := range outs {
		covered[string(r.Key)] = true
	}
	for p := range int64(parts) {
		for o := range int64(n / parts) {
			if !covered[fmt.Sprintf("%d/%d", p, o)] {
				t.Errorf("no output for input %d/%d", p, o)
			}
		}
	}
	t.Logf("%d partitions moved while %d calls of a were under way: none lost, %d handled twice, %d outputs cover the %d inputs",
		moved, overlapping, twice, len(outs), n)
}

// TestBatchDrainTimeoutKeepsOtherPartitionsOutputs: when a revocation's
// drain gives up on a call, the outputs of the calls of the partitions the
// member keeps are still produced and their records committed (outputs are
// never dropped, says Emit), even when they share a produce batch with the
// outputs of the call the drain gave up on.
func TestBatchDrainTimeoutKeepsOtherPartitionsOutputs(t *testing.T) {
	kc := testkit.Shared(t)
	in := kc.NewTopic(t, 2, nil)
	out := kc.NewTopic(t, 1, nil) // one partition: the outputs share produce batches
	group := in
	var log batchCalls
	revoked := make(chan struct{})
	var once sync.Once
	h := func(who string) consumer.BatchHandler {
		return consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
			i := log.begin(who, recs)
			for _, r := range recs {
				if err := consumer.EmitFor(ctx, r, &kgo.Record{Topic: out, Key: inputKey(r), Value: r.Value}); err != nil {
					return err
				}
			}
			if who == "a" && recs[len(recs)-1].Offset >= 1 {
				// Under way until the drain of the revocation gives up on
				// one of them: that one returns at once, the other (of the
				// partition a keeps) a moment later, within the producer's
				// 10ms linger.
				select {
				case <-ctx.Done():
					log.cancel(i)
					once.Do(func() { close(revoked) })
				case <-revoked:
					time.Sleep(time.Millisecond)
				}
			}
			log.end(i, nil)
			return nil
		})
	}
	opts := []consumer.Option{consumer.Topics(in), consumer.BatchSize(10, 0), consumer.DrainTimeout(200 * time.Millisecond),
		consumer.CommitInterval(100 * time.Millisecond)}
	a := newBatchConsumer(t, kc, h("a"), group, opts...)
	run(t, a)
	// Offset 0 of each partition first: handled at once, so that the
	// forwarder is producing already when the revocation comes.
	produceSpread(t, kc, in, 2, 2, nil)
	readExactly(t, kc, out, 2, false, 0)
	produceSpread(t, kc, in, 2, 2, nil)
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := log.handlings(in); got[[2]int64{0, 1}] == 0 || got[[2]int64{1, 1}] == 0 {
			return fmt.Errorf("waiting for a's calls of offset 1 (handled %v)", got)
		}
		return nil
	})
	b := newBatchConsumer(t, kc, h("b"), group, opts...)
	run(t, b)
	select {
	case <-revoked:
	case <-time.After(60 * time.Second):
		t.Fatal("the drain never gave up on a call of a")
	}
	adm := kc.Admin(t)
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := committed(t, adm, group, in); !maps.Equal(got, perPartition(2, 2)) {
			return fmt.Errorf("committed %v, want 2 on each partition; a holds %+v (blocked %+v), b holds %+v", got, a.Partitions(), a.Blocked(), b.Partitions())
		}
		return nil
	})
	if ps := a.Partitions(); len(ps) != 1 {
		t.Fatalf("a holds %+v, want the one partition it kept", ps)
	}
	covered := map[string]bool{}
	for _, r := range readExactly(t, kc, out, 4, false, time.Second) {
		covered[string(r.Key)] = true
	}
	for _, k := range []string{"0/0", "0/1", "1/0", "1/1"} {
		if !covered[k] {
			t.Errorf("no output for input %s", k)
		}
	}
}

// runBatchChild is the consumer process of TestBatchKillMidBatch: a batch
// consumer whose calls write "begin", take 30ms (a bulk write), then write
// "partition offset" for each record and "end" to $WHIPPET_TEST_OUT. With
// $WHIPPET_TEST_OUT_TOPIC set, it is runBatchTxnChild.
func runBatchChild() {
	if os.Getenv("WHIPPET_TEST_OUT_TOPIC") != "" {
		runBatchTxnChild()
		return
	}
	f, err := os.OpenFile(os.Getenv("WHIPPET_TEST_OUT"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	c, err := consumer.NewBatch(whippet.Connection{Brokers: strings.Split(os.Getenv("WHIPPET_TEST_BROKERS"), ",")},
		consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
			if _, err := f.WriteString("begin\n"); err != nil {
				return err
			}
			time.Sleep(30 * time.Millisecond)
			var b []byte
			for _, r := range recs {
				b = fmt.Appendf(b, "%d %d\n", r.Partition, r.Offset)
			}
			_, err := f.Write(append(b, "end\n"...)) // one write: lines of concurrent calls do not interleave
			return err
		}),
		consumer.Group(os.Getenv("WHIPPET_TEST_GROUP")), consumer.Topics(os.Getenv("WHIPPET_TEST_TOPIC")),
		consumer.BatchSize(10, 5*time.Millisecond), consumer.CommitInterval(100*time.Millisecond),
		consumer.SessionTimeout(6*time.Second)) // the broker's minimum: a killed process leaves the group soon
	runChildConsumer(c, err)
}

// TestBatchKillMidBatch SIGKILLs a batch consumer process in the middle of
// its batch calls, three times, and restarts it: in the end every record is
// handled (none lost) and the commits are at the log end.
func TestBatchKillMidBatch(t *testing.T) {
	kc := testkit.Shared(t)
	const parts, n = 3, 3000
	topic := kc.NewTopic(t, parts, nil)
	produceSpread(t, kc, topic, parts, n, nil)
	out := filepath.Join(t.TempDir(), "handled.txt")
	read := func() (distinct map[string]bool, lines, begun, ended int) {
		distinct = map[string]bool{}
		f, err := os.Open(out)
		if errors.Is(err, os.ErrNotExist) {
			return distinct, 0, 0, 0
		}
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			switch l := s.Text(); l {
			case "begin":
				begun++
			case "end":
				ended++
			default:
				lines++
				distinct[l] = true
			}
		}
		return distinct, lines, begun, ended
	}

	// Polled at a fixed short interval (Eventually backs off), so that each
	// kill comes soon after its process handled 400 records.
	waitLines := func(target int) {
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if _, l, _, _ := read(); l >= target {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %d handled records", target)
			}
		}
	}

	kills, midCall, unfinished := 0, 0, 0
	for range 3 {
		_, before, _, _ := read()
		cmd := startChild(t, kc, "batch", topic, topic, "WHIPPET_TEST_OUT="+out)
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) // if the test stops early
		waitLines(before + 400)
		if err := cmd.Process.Kill(); err != nil { // SIGKILL: no drain, no final commit
			t.Fatal(err)
		}
		_ = cmd.Wait()
		kills++
		_, _, begun, ended := read()
		if begun-ended > unfinished {
			midCall++ // a call had begun and not ended at the kill
		}
		unfinished = begun - ended
	}
	cmd := startChild(t, kc, "batch", topic, topic, "WHIPPET_TEST_OUT="+out)
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testkit.Eventually(t, 60*time.Second, func() error {
		if d, _, _, _ := read(); len(d) != n {
			return fmt.Errorf("%d of %d distinct records handled", len(d), n)
		}
		return nil
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("consumer process after SIGTERM: %v", err)
	}
	d, lines, _, _ := read()
	for p := range parts {
		for o := range n / parts {
			if !d[fmt.Sprintf("%d %d", p, o)] {
				t.Fatalf("record %d/%d lost", p, o)
			}
		}
	}
	if got := committed(t, kc.Admin(t), topic, topic); !maps.Equal(got, perPartition(parts, n/parts)) {
		t.Fatalf("committed %v after the graceful stop, want %d in each partition", got, n/parts)
	}
	if midCall == 0 {
		t.Errorf("none of the %d kills landed inside a batch call", kills)
	}
	t.Logf("%d SIGKILLs, %d of them inside batch calls: none of %d lost, %d handled again", kills, midCall, n, lines-n)
}

// TestBatchTransactionalExactlyOnce: a transactional batch consumer emits
// one output per input with EmitFor; failing records go through a retry
// topic to the dead-letter topic in the transactions, and one call aborts
// its transaction once. read_committed readers see every output of a
// successful input once, none of a failed one, and every dead letter once.
func TestBatchTransactionalExactlyOnce(t *testing.T) {
	kc := testkit.Shared(t)
	const parts, n = 3, 300
	in := kc.NewTopic(t, parts, nil)
	out := kc.NewTopic(t, parts, nil)
	group := in
	wantOK, wantBad := map[string]bool{}, map[string]bool{}
	produceSpread(t, kc, in, parts, n, func(i int) string {
		if i%20 == 7 {
			wantBad[fmt.Sprintf("bad-%d", i)] = true
			return fmt.Sprintf("bad-%d", i)
		}
		wantOK[fmt.Sprintf("ok-%d", i)] = true
		return fmt.Sprintf("ok-%d", i)
	})
	var log batchCalls
	var aborted atomic.Bool
	c := newTxnBatchConsumer(t, kc, consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
		i := log.begin("c", recs)
		errs := make([]error, len(recs))
		abort := false
		for j, r := range recs {
			// Bad records emit too, then fail: their outputs must never be seen.
			if err := consumer.EmitFor(ctx, r, &kgo.Record{Topic: out, Key: r.Key, Value: r.Value}); err != nil {
				return err
			}
			if strings.HasPrefix(string(r.Key), "bad-") {
				errs[j] = errors.New("cannot check out " + string(r.Key))
			}
			abort = abort || string(r.Key) == "ok-150"
		}
		if abort && aborted.CompareAndSwap(false, true) {
			// Let the transaction's outputs so far reach the broker, so
			// the abort has something to undo.
			time.Sleep(300 * time.Millisecond)
			return fmt.Errorf("stock service says retry: %w", consumer.ErrAbort)
		}
		log.end(i, errs)
		return consumer.RecordErrors(errs)
	}), group, group+"-txn", consumer.Topics(in), consumer.Retry(retry.NonBlocking(200*time.Millisecond)),
		consumer.BatchSize(25, 0), consumer.TransactionBatch(100, 100*time.Millisecond))
	run(t, c)

	onceEach(t, "read_committed outputs", readExactly(t, kc, out, len(wantOK), true, time.Second), wantOK)
	dead := readExactly(t, kc, retry.DLQTopicName(in, group), len(wantBad), true, time.Second)
	onceEach(t, "read_committed dead letters", dead, wantBad)
	for _, d := range dead {
		if info, ok := retry.InfoFor(d); !ok || info.Reason != retry.ReasonExhausted || info.Attempt != 2 {
			t.Errorf("%s: dead-letter info %+v, want exhausted after 2 attempts", d.Key, info)
		}
	}
	retryTopic := retry.TopicName(in, group, 0)
	retried := readExactly(t, kc, retryTopic, len(wantBad), true, time.Second)
	onceEach(t, "read_committed retry topic", retried, wantBad)
	waitCommitted(t, kc.Admin(t), group, in, perPartition(parts, n/parts))
	waitCommitted(t, kc.Admin(t), group, retryTopic, pastLast(retried))
	again := 0
	counts := log.byKey()
	for k, got := range counts {
		if got > 1 && !wantBad[k] {
			again++
		}
	}
	if counts["ok-150"] != 2 {
		t.Errorf("ok-150 handled %d times; want 2: its transaction aborted once", counts["ok-150"])
	}
	t.Logf("%d outputs and %d dead letters, each once under read_committed; the abort had %d good records handled again", len(wantOK), len(wantBad), again)
}

// newTxnBatchConsumer is newTxnConsumer for a BatchHandler.
func newTxnBatchConsumer(t *testing.T, kc *testkit.Cluster, h consumer.BatchHandler, group, txnID string, opts ...consumer.Option) *consumer.Consumer {
	t.Helper()
	return newBatchConsumer(t, kc, h, group, append([]consumer.Option{consumer.Transactional(txnID)}, opts...)...)
}

// runBatchTxnChild is the transform process of
// TestBatchTransactionalExactlyOnceAcrossKill: a transactional batch
// consumer with one output per input, keyed by the input's
// partition/offset.
func runBatchTxnChild() {
	out := os.Getenv("WHIPPET_TEST_OUT_TOPIC")
	c, err := consumer.NewBatch(whippet.Connection{Brokers: strings.Split(os.Getenv("WHIPPET_TEST_BROKERS"), ",")},
		consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
			time.Sleep(10 * time.Millisecond) // a bulk write: the kills land inside calls and transactions
			for _, r := range recs {
				if err := consumer.EmitFor(ctx, r, &kgo.Record{Topic: out, Key: inputKey(r), Value: r.Value}); err != nil {
					return err
				}
			}
			return nil
		}),
		consumer.Group(os.Getenv("WHIPPET_TEST_GROUP")), consumer.Topics(os.Getenv("WHIPPET_TEST_TOPIC")),
		consumer.Transactional(os.Getenv("WHIPPET_TEST_TXN_ID")), consumer.BatchSize(50, 0),
		consumer.SessionTimeout(6*time.Second)) // the broker's minimum: a killed process leaves the group soon
	runChildConsumer(c, err)
}

// TestBatchTransactionalExactlyOnceAcrossKill SIGKILLs a transactional
// batch consumer twice mid-stream: read_committed outputs hold each input
// exactly once.
func TestBatchTransactionalExactlyOnceAcrossKill(t *testing.T) {
	kc := testkit.Shared(t)
	const parts, n = 4, 20_000
	in := kc.NewTopic(t, parts, nil)
	out := kc.NewTopic(t, parts, nil)
	group := in
	produceSpread(t, kc, in, parts, n, nil)
	adm := kc.Admin(t)
	start := func() *exec.Cmd {
		cmd := startChild(t, kc, "batch", group, in, "WHIPPET_TEST_OUT_TOPIC="+out, "WHIPPET_TEST_TXN_ID="+group+"-transform")
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) // if the test stops early
		return cmd
	}
	progress := func() int64 { return sum(committed(t, adm, group, in)) }
	var killedAt []int64
	for _, target := range []int64{n / 4, n / 2} {
		cmd := start()
		target = max(target, progress()+500) // kill a process that is transforming, not one still joining
		for deadline := time.Now().Add(60 * time.Second); progress() < target; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("committed %d, waiting for %d", progress(), target)
			}
		}
		time.Sleep(time.Duration(rand.IntN(50)) * time.Millisecond) // at a random phase of a transaction
		if err := cmd.Process.Kill(); err != nil {                  // SIGKILL: no abort, no leave
			t.Fatal(err)
		}
		_ = cmd.Wait()
		killedAt = append(killedAt, progress())
	}
	finishTransform(t, kc, start(), progress, out, parts, n, 60*time.Second)
	t.Logf("%d inputs, SIGKILLed at committed %v: read_committed holds each output exactly once", n, killedAt)
}

// TestBatchEmit: in a batch call, Emit returns ErrEmitNeedsInput and
// produces nothing; EmitFor refuses an input that is not a record of the
// call and an invalid output with ErrInvalidOutput, and a call that
// returned with ErrNotInHandler; EmitFor's valid outputs are produced.
func TestBatchEmit(t *testing.T) {
	kc := testkit.Shared(t)
	in := kc.NewTopic(t, 1, nil)
	out := kc.NewTopic(t, 1, nil)
	produceSpread(t, kc, in, 1, 3, nil)
	var mu sync.Mutex
	var problems []string
	var saved context.Context
	check := func(what string, err, want error) {
		if !errors.Is(err, want) {
			mu.Lock()
			problems = append(problems, fmt.Sprintf("%s: %v, want %v", what, err, want))
			mu.Unlock()
		}
	}
	c := newBatchConsumer(t, kc, consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
		check("Emit in a batch call", consumer.Emit(ctx, &kgo.Record{Topic: out, Key: []byte("emit")}), consumer.ErrEmitNeedsInput)
		// A copy: the same place, but not a record of the call.
		copied := &kgo.Record{Topic: recs[0].Topic, Partition: recs[0].Partition, Offset: recs[0].Offset, Value: recs[0].Value}
		check("EmitFor of a record not of the call", consumer.EmitFor(ctx, copied, &kgo.Record{Topic: out, Key: []byte("copy")}), consumer.ErrInvalidOutput)
		check("EmitFor of an output without a topic", consumer.EmitFor(ctx, recs[0], &kgo.Record{Key: []byte("no topic")}), consumer.ErrInvalidOutput)
		check("EmitFor of a nil output", consumer.EmitFor(ctx, recs[0], nil), consumer.ErrInvalidOutput)
		for _, r := range recs {
			check("EmitFor of a valid output", consumer.EmitFor(ctx, r, &kgo.Record{Topic: out, Key: inputKey(r)}), nil)
		}
		mu.Lock()
		saved = ctx
		mu.Unlock()
		return nil
	}), in, consumer.Topics(in))
	run(t, c)
	onceEach(t, "outputs", readExactly(t, kc, out, 3, false, time.Second), map[string]bool{"0/0": true, "0/1": true, "0/2": true})
	mu.Lock()
	defer mu.Unlock()
	after := &kgo.Record{Topic: in}
	if err := consumer.EmitFor(saved, after, &kgo.Record{Topic: out}); !errors.Is(err, consumer.ErrNotInHandler) {
		problems = append(problems, fmt.Sprintf("EmitFor after the call returned: %v, want ErrNotInHandler", err))
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// TestNewBatchConfigErrors: NewBatch refuses, before any network I/O and
// naming the field, a bad BatchSize, middlewares and a nil handler (a
// TypedBatch without codecs); New refuses BatchSize.
func TestNewBatchConfigErrors(t *testing.T) {
	brokerAddr, conns := testkit.CountingListener(t)
	okBatch := consumer.BatchHandlerFunc(func(context.Context, []*kgo.Record) error { return nil })
	noop := consumer.Middleware(func(h consumer.Handler) consumer.Handler { return h })
	cases := []struct {
		name  string
		batch bool
		h     consumer.BatchHandler
		opts  []consumer.Option
		field string
		want  string
	}{
		{"no records", true, okBatch, []consumer.Option{consumer.BatchSize(0, time.Millisecond)}, "BatchSize", "got 0"},
		{"negative records", true, okBatch, []consumer.Option{consumer.BatchSize(-3, time.Millisecond)}, "BatchSize", "got -3"},
		{"negative linger", true, okBatch, []consumer.Option{consumer.BatchSize(10, -time.Millisecond)}, "BatchSize", "got -1ms"},
		{"middleware", true, okBatch, []consumer.Option{consumer.WithMiddleware(noop)}, "WithMiddleware", "NewBatch"},
		{"nil handler", true, nil, nil, "Handler", "must not be nil"},
		{"typed batch without codecs", true, consumer.TypedBatch[string, string](nil, nil, nil), nil, "Handler", "must not be nil"},
		{"batch size of New", false, nil, []consumer.Option{consumer.BatchSize(10, 0)}, "BatchSize", "NewBatch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn := whippet.Connection{Brokers: []string{brokerAddr}}
			opts := append([]consumer.Option{consumer.Group("g"), consumer.Topics("orders")}, tc.opts...)
			var c *consumer.Consumer
			var err error
			if tc.batch {
				c, err = consumer.NewBatch(conn, tc.h, opts...)
			} else {
				c, err = consumer.New(conn, okHandler, opts...)
			}
			if err == nil {
				c.Close(context.Background())
				t.Fatalf("accepted %s", tc.name)
			}
			if !errors.Is(err, consumer.ErrInvalidConfig) {
				t.Errorf("%v does not match ErrInvalidConfig", err)
			}
			found := false
			for _, ce := range configErrors(t, err) {
				if ce.Field == tc.field && strings.Contains(ce.Error(), tc.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("error does not name %s with %q:\n%v", tc.field, tc.want, err)
			}
		})
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("%d connections to the broker: configs must be validated before any network I/O", n)
	}
}

// TestTypedBatchMapsResultsToRecords calls a TypedBatch handler directly:
// an undecodable record fails with a *DecodeError and is left out of fn's
// messages, fn's *BatchError (indexed by its messages) lands on the right
// records, and fn's plain error fails every decoded record.
func TestTypedBatchMapsResultsToRecords(t *testing.T) {
	errRefused := errors.New("refused")
	var got [][]int
	fail := map[int]bool{}
	var whole error
	h := consumer.TypedBatch(codec.String(), codec.Codec[renewal](renewalCodec{}), func(ctx context.Context, ms []consumer.Message[string, renewal]) error {
		var seqs []int
		errs := make([]error, len(ms))
		for j, m := range ms {
			seqs = append(seqs, m.Value.Seq)
			if fail[m.Value.Seq] {
				errs[j] = errRefused
			}
		}
		got = append(got, seqs)
		if whole != nil {
			return whole
		}
		return consumer.RecordErrors(errs)
	})
	recs := []*kgo.Record{
		{Key: []byte("u"), Value: []byte("renewal u 0")},
		{Key: []byte("u"), Value: []byte("not a renewal")},
		{Key: []byte("u"), Value: []byte("renewal u 2")},
		{Key: []byte("u"), Value: []byte("renewal u 3")},
	}
	fail[3] = true
	err := h.HandleBatch(context.Background(), recs)
	var be *consumer.BatchError
	var de *consumer.DecodeError
	if !errors.As(err, &be) || len(be.Errs) != 4 || be.Errs[0] != nil || !errors.As(be.Errs[1], &de) || !errors.Is(be.Errs[1], codec.ErrDecode) ||
		be.Errs[2] != nil || be.Errs[3] != errRefused {
		t.Fatalf("result %#v: want [nil, *DecodeError, nil, refused]", err)
	}
	if len(got) != 1 || !slices.Equal(got[0], []int{0, 2, 3}) {
		t.Fatalf("fn got %v, want the decoded messages [0 2 3]", got)
	}

	whole = errors.New("bulk insert refused")
	err = h.HandleBatch(context.Background(), recs)
	if !errors.As(err, &be) || len(be.Errs) != 4 || be.Errs[0] != whole || !errors.As(be.Errs[1], &de) || be.Errs[2] != whole || be.Errs[3] != whole {
		t.Fatalf("result %#v with fn failing as a whole: want its error on every decoded record and the *DecodeError on the other", err)
	}

	got, whole = nil, nil
	delete(fail, 3)
	if err := h.HandleBatch(context.Background(), []*kgo.Record{{Value: []byte("x")}, {Value: []byte("y")}}); !errors.As(err, &be) || len(be.Errs) != 2 {
		t.Fatalf("no record decodes: %v, want a *BatchError of 2", err)
	}
	if len(got) != 0 {
		t.Fatalf("fn called with %v though no record decodes", got)
	}
	if err := h.HandleBatch(context.Background(), recs[2:]); err != nil || len(got) != 1 {
		t.Fatalf("every record decodes and none fails: %v, fn calls %v", err, got)
	}
}

// TestTypedBatchDeadLettersUndecodableRecords, on real Kafka: a TypedBatch
// consumer dead-letters an undecodable record with reason decode and a
// record its fn refused as non-retriable, while the others reach fn once.
func TestTypedBatchDeadLettersUndecodableRecords(t *testing.T) {
	kc := testkit.Shared(t)
	const n = 12
	topic := kc.NewTopic(t, 1, nil)
	group := topic
	var recs []*kgo.Record
	for i := range n {
		v := fmt.Appendf(nil, "renewal user-%d %d", i, i)
		if i == 3 {
			v = []byte("renewal of user-3, please")
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "user-%d", i), Value: v})
	}
	// One produce batch: the records come in one fetch, so the calls hold
	// decodable records on both sides of the undecodable one.
	if err := kc.Client(t, kgo.ProducerLinger(50*time.Millisecond)).ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	handled := map[int64]int{}
	var problems []string
	calls := 0
	h := consumer.TypedBatch(codec.String(), codec.Codec[renewal](renewalCodec{}), func(ctx context.Context, ms []consumer.Message[string, renewal]) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		errs := make([]error, len(ms))
		for j, m := range ms {
			handled[m.Offset]++
			if int64(m.Value.Seq) != m.Offset || m.Key != fmt.Sprintf("user-%d", m.Offset) {
				problems = append(problems, fmt.Sprintf("message at %d decoded as %q/%+v", m.Offset, m.Key, m.Value))
			}
			if m.Value.Seq == 5 {
				errs[j] = retry.NonRetriable(errors.New("user-5 is closed"))
			}
		}
		return consumer.RecordErrors(errs)
	})
	c := newBatchConsumer(t, kc, h, group, consumer.Topics(topic), consumer.BatchSize(50, 100*time.Millisecond),
		consumer.Retry(retry.Blocking(time.Hour)), consumer.CommitInterval(100*time.Millisecond))
	run(t, c)
	dead := readDLQ(t, kc, topic, group, 2)
	for _, d := range dead {
		info, _ := retry.InfoFor(d)
		var reason retry.Reason
		var lastErr string
		switch info.OriginalOffset {
		case 3:
			reason, lastErr = retry.ReasonDecode, `consumer: decoding the value: renewalCodec: "renewal of user-3, please" is not a renewal`
		case 5:
			reason, lastErr = retry.ReasonNonRetriable, "non-retriable: user-5 is closed"
		default:
			t.Fatalf("dead letter from offset %d, which decodes and was not refused", info.OriginalOffset)
		}
		if info.Reason != reason || info.Attempt != 1 || !strings.HasPrefix(info.LastError, lastErr) {
			t.Errorf("dead letter of offset %d: %+v, want reason %q after 1 attempt, error %q", info.OriginalOffset, info, reason, lastErr)
		}
	}
	waitCommitted(t, kc.Admin(t), group, topic, map[int32]int64{0: n})
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	for o := range int64(n) {
		if want := map[bool]int{true: 0, false: 1}[o == 3]; handled[o] != want {
			t.Errorf("offset %d reached fn %d times, want %d", o, handled[o], want)
		}
	}
	t.Logf("%d fn calls; offset 3 dead-lettered as decode, offset 5 as non-retriable, the rest handled once", calls)
}

// TestBatchLingerFlushedAtShutdownAndRevocation: a batch waiting for its
// linger (an hour here) is handed to the handler at once when the consumer
// shuts down, or when its partition is revoked, and committed.
func TestBatchLingerFlushedAtShutdownAndRevocation(t *testing.T) {
	t.Run("shutdown", func(t *testing.T) {
		kc := testkit.Shared(t)
		topic := kc.NewTopic(t, 1, nil)
		var log batchCalls
		c := newBatchConsumer(t, kc, consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
			log.end(log.begin("c", recs), nil)
			return nil
		}), topic, consumer.Topics(topic), consumer.BatchSize(50, time.Hour), consumer.DrainTimeout(time.Minute))
		errc := make(chan error, 1)
		go func() { errc <- c.Run(context.Background()) }()
		t.Cleanup(func() { c.Close(context.Background()) }) // if the test stops early
		produceSpread(t, kc, topic, 1, 3, nil)
		waitBuffered(t, c, map[int32]int{0: 3})
		if calls := log.snapshot(); len(calls) != 0 {
			t.Fatalf("calls %v before the hour's linger passed", calls[0].offsets())
		}
		// Bounded well below the drain timeout: a shutdown that waited for
		// the linger would be cut by it.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Close(ctx); err != nil {
			t.Fatalf("Close with a batch waiting for its linger: %v", err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("Run: %v", err)
		}
		calls := log.snapshot()
		if len(calls) != 1 || !slices.Equal(calls[0].offsets(), []int64{0, 1, 2}) {
			t.Fatalf("%d calls at the shutdown, want one of offsets 0..2: the batch waiting for its linger was not flushed (committed %v)",
				len(calls), committed(t, kc.Admin(t), topic, topic))
		}
		if got := committed(t, kc.Admin(t), topic, topic); got[0] != 3 {
			t.Fatalf("committed %v after the shutdown, want 3", got)
		}
	})
	t.Run("revocation", func(t *testing.T) {
		kc := testkit.Shared(t)
		topic := kc.NewTopic(t, 2, nil)
		var log batchCalls
		h := func(who string) consumer.BatchHandler {
			return consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
				log.end(log.begin(who, recs), nil)
				return nil
			})
		}
		a := newBatchConsumer(t, kc, h("a"), topic, consumer.Topics(topic), consumer.BatchSize(50, time.Hour))
		run(t, a)
		produceSpread(t, kc, topic, 2, 6, nil)
		waitBuffered(t, a, map[int32]int{0: 3, 1: 3})
		b := newBatchConsumer(t, kc, h("b"), topic, consumer.Topics(topic), consumer.BatchSize(50, time.Hour))
		run(t, b)
		var moved int32
		testkit.Eventually(t, 60*time.Second, func() error {
			ps := b.Partitions()
			if len(ps) != 1 {
				return fmt.Errorf("b holds %d partitions, want 1", len(ps))
			}
			moved = ps[0].Partition
			return nil
		})
		// a's drain at the revocation flushed and committed the batch
		// before b was given the partition: b's own batch would wait an
		// hour.
		adm := kc.Admin(t)
		testkit.Eventually(t, 10*time.Second, func() error {
			if got := committed(t, adm, topic, topic); got[moved] != 3 {
				return fmt.Errorf("committed %v: a's batch of partition %d, waiting for its linger, was not flushed and committed at the revocation", got, moved)
			}
			return nil
		})
		var got []string
		for _, c := range log.snapshot() {
			got = append(got, fmt.Sprintf("%s:%d%v", c.who, onePartition(t, c), c.offsets()))
		}
		if want := []string{fmt.Sprintf("a:%d[0 1 2]", moved)}; !slices.Equal(got, want) {
			t.Fatalf("calls %v; want %v: the batch of the revoked partition flushed by a at the revocation, the other still waiting", got, want)
		}
	})
}

// waitBuffered waits until c holds want records of each partition (fetched,
// not finished).
func waitBuffered(t *testing.T, c *consumer.Consumer, want map[int32]int) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, func() error {
		got := map[int32]int{}
		for _, p := range c.Partitions() {
			got[p.Partition] = p.Buffered
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("buffered %v, want %v", got, want)
		}
		return nil
	})
}

// TestBatchTransactionalHasNoLinger: in transactional mode BatchSize's
// linger does not apply (the transaction's interval gathers the records):
// with an hour's linger, 3 records are still transformed and committed.
func TestBatchTransactionalHasNoLinger(t *testing.T) {
	kc := testkit.Shared(t)
	in := kc.NewTopic(t, 1, nil)
	out := kc.NewTopic(t, 1, nil)
	c := newTxnBatchConsumer(t, kc, consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
		for _, r := range recs {
			if err := consumer.EmitFor(ctx, r, &kgo.Record{Topic: out, Key: inputKey(r)}); err != nil {
				return err
			}
		}
		return nil
	}), in, in+"-txn", consumer.Topics(in), consumer.BatchSize(50, time.Hour))
	run(t, c)
	produceSpread(t, kc, in, 1, 3, nil)
	onceEach(t, "read_committed outputs", readExactly(t, kc, out, 3, true, time.Second), map[string]bool{"0/0": true, "0/1": true, "0/2": true})
	waitCommitted(t, kc.Admin(t), in, in, map[int32]int64{0: 3})
}

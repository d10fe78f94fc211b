package consumer_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/testkit"
)

// handled records who handled which record, for assertions across consumers.
type handled struct {
	mu     sync.Mutex
	events []event
}

type event struct {
	who       string
	partition int32
	offset    int64
	key       string
	value     string
	at        time.Time
}

func (h *handled) add(who string, r *kgo.Record) {
	h.mu.Lock()
	h.events = append(h.events, event{who, r.Partition, r.Offset, string(r.Key), string(r.Value), time.Now()})
	h.mu.Unlock()
}

func (h *handled) snapshot() []event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]event(nil), h.events...)
}

// distinct counts the distinct (partition, offset) pairs handled.
func (h *handled) distinct() int {
	seen := map[[2]int64]bool{}
	for _, e := range h.snapshot() {
		seen[[2]int64{int64(e.partition), e.offset}] = true
	}
	return len(seen)
}

func (h *handled) handler(who string) consumer.Handler {
	return consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		h.add(who, r)
		return nil
	})
}

// run starts c.Run in the background and closes c at the end of the test.
func run(t *testing.T, c *consumer.Consumer) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	t.Cleanup(func() {
		c.Close(context.Background())
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func newConsumer(t *testing.T, kc *testkit.Cluster, h consumer.Handler, group string, opts ...consumer.Option) *consumer.Consumer {
	t.Helper()
	return newConsumerConn(t, whippet.Connection{Brokers: kc.Brokers}, h, group, opts...)
}

// newConsumerConn is newConsumer with a Connection of the test's own.
func newConsumerConn(t *testing.T, conn whippet.Connection, h consumer.Handler, group string, opts ...consumer.Option) *consumer.Consumer {
	t.Helper()
	c, err := consumer.New(conn, h, append([]consumer.Option{consumer.Group(group)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// produceSpread produces n records round-robin over partitions, value = "<partition>-<seq in partition>".
func produceSpread(t *testing.T, kc *testkit.Cluster, topic string, partitions int32, n int, key func(i int) string) {
	t.Helper()
	cl := kc.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	recs := make([]*kgo.Record, n)
	for i := range recs {
		p := int32(i) % partitions
		recs[i] = &kgo.Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "%d-%d", p, i/int(partitions))}
		if key != nil {
			recs[i].Key = []byte(key(i))
		}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// spreadIDs is the "<partition>/<offset>" of each of the n records
// produceSpread spreads over parts partitions: the ids inputKey gives them.
func spreadIDs(parts, n int) map[string]bool {
	ids := make(map[string]bool, n)
	for p := range parts {
		for o := range n / parts {
			ids[fmt.Sprintf("%d/%d", p, o)] = true
		}
	}
	return ids
}

func committed(t *testing.T, adm *kadm.Client, group, topic string) map[int32]int64 {
	t.Helper()
	offs, err := adm.FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			out[o.Partition] = o.At
		}
	})
	return out
}

func sum(m map[int32]int64) (s int64) {
	for _, v := range m {
		s += v
	}
	return s
}

func waitAssigned(t *testing.T, c *consumer.Consumer, n int) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := len(c.Partitions()); got != n {
			return fmt.Errorf("%d partitions assigned, want %d", got, n)
		}
		return nil
	})
}

func TestPartitionOrderAndParallelPartitions(t *testing.T) {
	kc := testkit.Shared(t)
	const parts, n = 4, 2000
	topic := kc.NewTopic(t, parts, nil)
	produceSpread(t, kc, topic, parts, n, nil)

	var h handled
	var running, maxRunning atomic.Int32
	c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		now := running.Add(1)
		for m := maxRunning.Load(); now > m && !maxRunning.CompareAndSwap(m, now); m = maxRunning.Load() {
		}
		time.Sleep(200 * time.Microsecond)
		h.add("c", r)
		running.Add(-1)
		return nil
	}), topic, consumer.Topics(topic))
	run(t, c)
	testkit.Eventually(t, 60*time.Second, func() error {
		if d := h.distinct(); d != n {
			return fmt.Errorf("handled %d of %d", d, n)
		}
		return nil
	})
	next := map[int32]int64{}
	for _, e := range h.snapshot() {
		if e.offset != next[e.partition] {
			t.Fatalf("partition %d: handled offset %d, want %d (offset order broken or record skipped/duplicated)", e.partition, e.offset, next[e.partition])
		}
		if want := fmt.Sprintf("%d-%d", e.partition, e.offset); e.value != want {
			t.Fatalf("partition %d offset %d: value %q, want %q", e.partition, e.offset, e.value, want)
		}
		next[e.partition]++
	}
	if maxRunning.Load() < 2 {
		t.Errorf("at most %d handler ran at once over %d partitions; partitions should run in parallel", maxRunning.Load(), parts)
	}
	t.Logf("%d records over %d partitions in order; up to %d partitions handled at once", n, parts, maxRunning.Load())
}

func TestGracefulShutdownCommitsAndLeaksNothing(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 3, nil)
	produceSpread(t, kc, topic, 3, 300, nil)
	adm := kc.Admin(t)
	ignore := goleak.IgnoreCurrent()

	var h handled
	// A long commit interval: only the shutdown commit can store the offsets.
	c := newConsumer(t, kc, h.handler("c"), topic, consumer.Topics(topic), consumer.CommitInterval(time.Hour))
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	testkit.Eventually(t, 60*time.Second, func() error {
		if d := h.distinct(); d != 300 {
			return fmt.Errorf("handled %d of 300", d)
		}
		return nil
	})
	c.Close(context.Background())
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := committed(t, adm, topic, topic)
	if len(got) != 3 || sum(got) != 300 {
		t.Fatalf("committed after Close: %v (sum %d), want 100 on each of 3 partitions", got, sum(got))
	}
	// On kfake the broker runs in this process: its goroutines serving the
	// admin client's connections are the broker's, not the consumer's.
	goleak.VerifyNone(t, ignore,
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).read"),
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).read.func1"),
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).write"))
}

func TestPanickingHandlerDoesNotStopTheConsumer(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	produceSpread(t, kc, topic, 1, 50, nil)
	reg := prometheus.NewRegistry()
	var h handled
	var failures []error
	var mu sync.Mutex
	c := newConsumerConn(t, whippet.Connection{Brokers: kc.Brokers, Registerer: reg}, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if r.Offset == 7 || r.Offset == 30 {
			panic(fmt.Sprintf("boom at %d", r.Offset))
		}
		h.add("c", r)
		return nil
	}), topic, consumer.Topics(topic),
		consumer.OnError(func(_ context.Context, r *kgo.Record, err error) {
			mu.Lock()
			failures = append(failures, err)
			mu.Unlock()
		}))
	run(t, c)
	testkit.Eventually(t, 60*time.Second, func() error {
		if d := h.distinct(); d != 48 {
			return fmt.Errorf("handled %d of 48", d)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(failures) != 2 {
		t.Fatalf("OnError called %d times, want 2", len(failures))
	}
	for _, err := range failures {
		var pe *consumer.PanicError
		if !errors.Is(err, consumer.ErrHandlerPanic) || !errors.As(err, &pe) || !strings.Contains(err.Error(), "boom at") || len(pe.Stack) == 0 {
			t.Errorf("failure %v: want a *PanicError wrapping ErrHandlerPanic with the value and a stack", err)
		}
	}
	if got := testutil.ToFloat64(counterFor(t, reg, "whippet_consumer_records_failed_total")); got != 2 {
		t.Errorf("records_failed_total = %v, want 2", got)
	}
	if got := testutil.ToFloat64(counterFor(t, reg, "whippet_consumer_records_handled_total")); got != 48 {
		t.Errorf("records_handled_total = %v, want 48", got)
	}
}

// counterFor returns the single series of a metric family as a collector for testutil.
func counterFor(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	return gathered{reg, name}
}

type gathered struct {
	reg  *prometheus.Registry
	name string
}

func (g gathered) Describe(ch chan<- *prometheus.Desc) {}
func (g gathered) Collect(ch chan<- prometheus.Metric) {
	mfs, _ := g.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != g.name {
			continue
		}
		var v float64
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				v += m.Counter.GetValue()
			case m.Gauge != nil:
				v += m.Gauge.GetValue()
			case m.Histogram != nil:
				v += float64(m.Histogram.GetSampleCount())
			}
		}
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(g.name, "", nil, nil), prometheus.UntypedValue, v)
	}
}

func TestMetrics(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 2, nil)
	produceSpread(t, kc, topic, 2, 100, nil)
	reg := prometheus.NewRegistry()
	var h handled
	c := newConsumerConn(t, whippet.Connection{Brokers: kc.Brokers, Registerer: reg}, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		h.add("c", r)
		if r.Offset%10 == 0 {
			return errors.New("every tenth fails")
		}
		return nil
	}), topic, consumer.Topics(topic))
	run(t, c)
	testkit.Eventually(t, 60*time.Second, func() error {
		if d := h.distinct(); d != 100 {
			return fmt.Errorf("handled %d of 100", d)
		}
		if lag := testutil.ToFloat64(counterFor(t, reg, "whippet_consumer_partition_lag")); lag != 0 {
			return fmt.Errorf("lag %v, want 0 once all is handled", lag)
		}
		return nil
	})
	for name, want := range map[string]float64{
		"whippet_consumer_records_handled_total": 90,
		"whippet_consumer_records_failed_total":  10,
		"whippet_consumer_handler_seconds":       100,
		"whippet_consumer_in_flight":             0,
		"whippet_consumer_paused_partitions":     0,
	} {
		if got := testutil.ToFloat64(counterFor(t, reg, name)); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "whippet_consumer_partition_lag"); err != nil || n != 2 {
		t.Errorf("want a lag series per partition; got %d series (%v)", n, err)
	}
	// franz-go's client metrics, named as every component's are.
	if got := seriesLabels(t, reg, "whippet_kafka_fetch_bytes_total"); !slices.Contains(got, "component=consumer name="+topic) {
		t.Errorf("whippet_kafka_fetch_bytes_total series %v: none of component=consumer name=%s", got, topic)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := seriesLabels(t, reg, ""); len(got) != 0 {
		t.Errorf("after Close, series still registered: %v", got)
	}
}

// seriesLabels gathers reg and lists, for each series of the metric name
// (every metric if name is ""), its component and name labels.
func seriesLabels(t *testing.T, reg *prometheus.Registry, name string) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if name != "" && mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			ls := map[string]string{}
			for _, l := range m.GetLabel() {
				ls[l.GetName()] = l.GetValue()
			}
			out = append(out, "component="+ls["component"]+" name="+ls["name"])
		}
	}
	return out
}

func TestBackpressurePausesAndResumesFetching(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	const n, bound = 2000, 20
	// Tiny batches: a fetch returns whole batches, so one big batch would
	// arrive in one fetch whatever the bound.
	small := kc.Client(t, kgo.ProducerBatchMaxBytes(512), kgo.ProducerLinger(0))
	for i := 0; i < n; i++ {
		small.Produce(context.Background(), &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "%d", i)}, nil)
	}
	if err := small.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	gate := make(chan struct{})
	var h handled
	// Small fetches, so the overshoot past the bound is small and visible.
	conn := whippet.Connection{Brokers: kc.Brokers, Registerer: reg, ClientOptions: []kgo.Opt{kgo.FetchMaxPartitionBytes(1024), kgo.FetchMaxBytes(1024)}}
	c := newConsumerConn(t, conn, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		<-gate
		h.add("c", r)
		return nil
	}), topic, consumer.Topics(topic), consumer.PartitionBuffer(bound))
	run(t, c)
	testkit.Eventually(t, 30*time.Second, func() error {
		ps := c.Partitions()
		if len(ps) != 1 || !ps[0].Backpressure {
			return fmt.Errorf("partition not under backpressure: %+v", ps)
		}
		return nil
	})
	if got := testutil.ToFloat64(counterFor(t, reg, "whippet_consumer_paused_partitions")); got != 1 {
		t.Errorf("paused_partitions = %v, want 1", got)
	}
	first := c.Partitions()[0].Buffered
	time.Sleep(1500 * time.Millisecond) // fetching is paused: nothing more may arrive
	second := c.Partitions()[0].Buffered
	if first > 4*bound || second != first {
		t.Fatalf("buffered %d then %d records while paused; want a stable count near the bound %d", first, second, bound)
	}
	close(gate)
	testkit.Eventually(t, 60*time.Second, func() error {
		if d := h.distinct(); d != n {
			return fmt.Errorf("handled %d of %d", d, n)
		}
		ps := c.Partitions()
		if ps[0].Backpressure || ps[0].Buffered != 0 {
			return fmt.Errorf("still under backpressure: %+v", ps[0])
		}
		return nil
	})
	if got := testutil.ToFloat64(counterFor(t, reg, "whippet_consumer_paused_partitions")); got != 0 {
		t.Errorf("paused_partitions = %v after draining, want 0", got)
	}
	t.Logf("bound %d: %d buffered while paused; all %d handled after resume", bound, first, n)
}

func TestOperatorPauseAndResume(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 2, nil)
	var h handled
	c := newConsumer(t, kc, h.handler("c"), topic, consumer.Topics(topic))
	run(t, c)
	waitAssigned(t, c, 2)

	c.Pause()
	produceSpread(t, kc, topic, 2, 100, nil)
	time.Sleep(2 * time.Second)
	if d := h.distinct(); d != 0 {
		t.Fatalf("handled %d records while the consumer was paused", d)
	}
	for _, p := range c.Partitions() {
		if !p.Paused {
			t.Errorf("partition %d not reported paused", p.Partition)
		}
	}
	c.PausePartition(topic, 0)
	c.Resume()
	testkit.Eventually(t, 30*time.Second, func() error {
		if d := h.distinct(); d != 50 {
			return fmt.Errorf("handled %d, want partition 1's 50 only", d)
		}
		return nil
	})
	time.Sleep(time.Second)
	for _, e := range h.snapshot() {
		if e.partition == 0 {
			t.Fatalf("handled partition 0 offset %d while it was paused", e.offset)
		}
	}
	c.ResumePartition(topic, 0)
	testkit.Eventually(t, 30*time.Second, func() error {
		if d := h.distinct(); d != 100 {
			return fmt.Errorf("handled %d of 100 after resuming partition 0", d)
		}
		return nil
	})
}

func TestKeyParallelOrderPerKeyAndSafeCommits(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	const n, keys, limit = 3000, 50, 16
	cl := kc.Client(t)
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i%keys), Value: fmt.Appendf(nil, "%d", i/keys)}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	finished := map[int64]bool{}
	lastPerKey := map[string]int{}
	var orderErr error
	var running, maxRunning atomic.Int32
	h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		now := running.Add(1)
		for m := maxRunning.Load(); now > m && !maxRunning.CompareAndSwap(m, now); m = maxRunning.Load() {
		}
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		running.Add(-1)
		var seq int
		fmt.Sscan(string(r.Value), &seq)
		mu.Lock()
		defer mu.Unlock()
		if last, ok := lastPerKey[string(r.Key)]; ok && seq != last+1 && orderErr == nil {
			orderErr = fmt.Errorf("key %s: handled seq %d after %d", r.Key, seq, last)
		}
		lastPerKey[string(r.Key)] = seq
		finished[r.Offset] = true
		return nil
	})
	group := topic
	c := newConsumer(t, kc, h, group, consumer.Topics(topic), consumer.KeyParallel(limit),
		consumer.PartitionBuffer(500), consumer.CommitInterval(100*time.Millisecond))
	run(t, c)

	// Watch the committed offset while the consumer works: every record below
	// it must already be finished.
	adm := kc.Admin(t)
	var checks, unsafe int
	var firstUnsafe string
	for {
		offs, err := adm.FetchOffsets(context.Background(), group)
		if err != nil && !errors.Is(err, kerr.GroupIDNotFound) { // kfake, before the first commit
			t.Fatal(err)
		}
		o, _ := offs.Lookup(topic, 0)
		mu.Lock()
		done := len(finished)
		for off := int64(0); off < o.At; off++ {
			if !finished[off] {
				unsafe++
				if firstUnsafe == "" {
					firstUnsafe = fmt.Sprintf("committed %d while offset %d was unfinished", o.At, off)
				}
				break
			}
		}
		mu.Unlock()
		checks++
		if done == n && o.At == n {
			break
		}
		if checks > 3000 {
			t.Fatalf("not done: %d finished, committed %d", done, o.At)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if orderErr != nil {
		t.Fatal(orderErr)
	}
	if unsafe > 0 {
		t.Fatalf("%d of %d commit checks unsafe; first: %s", unsafe, checks, firstUnsafe)
	}
	if m := maxRunning.Load(); m < 2 || m > limit {
		t.Fatalf("max concurrent handlers %d, want 2..%d", m, limit)
	}
	t.Logf("%d records, %d keys: per-key order kept, %d commit checks all safe, up to %d handlers at once (limit %d)", n, keys, checks, maxRunning.Load(), limit)
}

func TestLatestCommitsStartPositionOnAssign(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	produceSpread(t, kc, topic, 1, 10, nil) // before the group exists: skipped by Latest

	var h1 handled
	c1 := newConsumer(t, kc, h1.handler("c1"), topic, consumer.Topics(topic), consumer.ResetOffset(consumer.Latest), consumer.CommitInterval(time.Hour))
	errc := make(chan error, 1)
	go func() { errc <- c1.Run(context.Background()) }()
	waitAssigned(t, c1, 1)
	// Committed once the partition's offsets are fetched, before it is
	// fetched from; the commit interval (1h) plays no part.
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := committed(t, kc.Admin(t), topic, topic); got[0] != 10 {
			return fmt.Errorf("committed on assignment: %v, want partition 0 at 10 (the end)", got)
		}
		return nil
	})
	c1.Close(context.Background())
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// Records produced while no consumer runs must not be skipped by the next one.
	produceSpread(t, kc, topic, 1, 5, nil)
	var h2 handled
	c2 := newConsumer(t, kc, h2.handler("c2"), topic, consumer.Topics(topic), consumer.ResetOffset(consumer.Latest))
	run(t, c2)
	testkit.Eventually(t, 30*time.Second, func() error {
		if d := h2.distinct(); d != 5 {
			return fmt.Errorf("second consumer handled %d, want the 5 new records", d)
		}
		return nil
	})
	for _, e := range h2.snapshot() {
		if e.offset < 10 {
			t.Fatalf("handled offset %d from before the group started", e.offset)
		}
	}
	if d := h1.distinct(); d != 0 {
		t.Fatalf("first consumer handled %d old records with Latest", d)
	}
}

// Group and Topics give what the consumer was created with, Topics sorted;
// with TopicRegex, nothing is matched before Run.
func TestGroupAndTopics(t *testing.T) {
	conn := whippet.Connection{Brokers: []string{"127.0.0.1:1"}}
	c, err := consumer.New(conn, okHandler, consumer.Group("billing"), consumer.Topics("renewals", "orders"))
	if err != nil {
		t.Fatal(err)
	}
	if g, ts := c.Group(), c.Topics(); g != "billing" || !slices.Equal(ts, []string{"orders", "renewals"}) {
		t.Errorf("Group() %q, Topics() %v, want billing, [orders renewals]", g, ts)
	}
	c, err = consumer.New(conn, okHandler, consumer.Group("billing"), consumer.TopicRegex("^orders"))
	if err != nil {
		t.Fatal(err)
	}
	if ts := c.Topics(); ts != nil {
		t.Errorf("TopicRegex before Run: Topics() %v, want nil", ts)
	}
}

func TestTopicRegexSubscription(t *testing.T) {
	kc := testkit.Shared(t)
	prefix := fmt.Sprintf("rx%d", time.Now().UnixNano())
	a, b := prefix+"-a", prefix+"-b"
	kc.CreateTopic(t, a, 1, nil)
	kc.CreateTopic(t, b, 1, nil)
	produceSpread(t, kc, a, 1, 20, nil)
	produceSpread(t, kc, b, 1, 30, nil)
	var mu sync.Mutex
	perTopic := map[string]int{}
	c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		mu.Lock()
		perTopic[r.Topic]++
		mu.Unlock()
		return nil
	}), prefix, consumer.TopicRegex("^"+prefix+"-.*"))
	run(t, c)
	testkit.Eventually(t, 60*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if perTopic[a] != 20 || perTopic[b] != 30 {
			return fmt.Errorf("handled %v, want %s:20 %s:30", perTopic, a, b)
		}
		return nil
	})
}

func TestRebalanceHandsOverWithoutLossOrDoubleHandling(t *testing.T) {
	kc := testkit.Shared(t)
	const parts, n = 6, 3000
	topic := kc.NewTopic(t, parts, nil)
	produceSpread(t, kc, topic, parts, n, nil)
	var h handled
	slow := func(who string) consumer.Handler {
		return consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
			time.Sleep(2 * time.Millisecond)
			h.add(who, r)
			return nil
		})
	}
	a := newConsumer(t, kc, slow("a"), topic, consumer.Topics(topic))
	errA := make(chan error, 1)
	go func() { errA <- a.Run(context.Background()) }()
	testkit.Eventually(t, 60*time.Second, func() error {
		if d := h.distinct(); d < 300 {
			return fmt.Errorf("a handled %d, waiting for 300", d)
		}
		return nil
	})
	b := newConsumer(t, kc, slow("b"), topic, consumer.Topics(topic))
	run(t, b)
	testkit.Eventually(t, 60*time.Second, func() error {
		if got := len(b.Partitions()); got == 0 {
			return errors.New("b has no partition yet")
		}
		return nil
	})
	testkit.Eventually(t, 120*time.Second, func() error {
		if d := h.distinct(); d != n {
			return fmt.Errorf("handled %d of %d", d, n)
		}
		return nil
	})
	a.Close(context.Background())
	if err := <-errA; err != nil {
		t.Fatal(err)
	}
	// After a leaves, b takes every partition; new records reach b only.
	produceSpread(t, kc, topic, parts, 600, nil)
	testkit.Eventually(t, 60*time.Second, func() error {
		if d := h.distinct(); d != n+600 {
			return fmt.Errorf("handled %d of %d", d, n+600)
		}
		return nil
	})

	// No record may be handled twice: a drained and committed every revoked
	// partition before b could start it. And b's first record of a partition
	// comes after a's last record of it.
	byRecord := map[[2]int64][]event{}
	firstB := map[int32]time.Time{}
	lastA := map[int32]time.Time{}
	for _, e := range h.snapshot() {
		k := [2]int64{int64(e.partition), e.offset}
		byRecord[k] = append(byRecord[k], e)
		if e.who == "b" && (firstB[e.partition].IsZero() || e.at.Before(firstB[e.partition])) {
			firstB[e.partition] = e.at
		}
		if e.who == "a" && e.at.After(lastA[e.partition]) {
			lastA[e.partition] = e.at
		}
	}
	for k, es := range byRecord {
		if len(es) > 1 {
			t.Errorf("partition %d offset %d handled %d times: %+v", k[0], k[1], len(es), es)
		}
	}
	moved := 0
	for p, fb := range firstB {
		if la, ok := lastA[p]; ok {
			moved++
			if !la.Before(fb) {
				t.Errorf("partition %d: a handled it at %v, after b started it at %v", p, la, fb)
			}
		}
	}
	if moved == 0 {
		t.Fatal("no partition moved from a to b")
	}
	t.Logf("%d partitions moved from a to b; %d records handled once each", moved, len(byRecord))
}

const childEnv = "WHIPPET_TEST_CHILD"

// startChild starts this test binary again as a consumer process of the given
// mode (see TestMain), for a test to SIGKILL: the child reads its brokers,
// group and topic, and whatever env adds, from the environment.
func startChild(t *testing.T, kc *testkit.Cluster, mode, group, topic string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"="+mode, "WHIPPET_TEST_BROKERS="+strings.Join(kc.Brokers, ","),
		"WHIPPET_TEST_GROUP="+group, "WHIPPET_TEST_TOPIC="+topic), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// runChildConsumer runs c, the consumer of a child process, until SIGTERM;
// it exits 2 if err (New's) is set, 1 if Run fails.
func runChildConsumer(c *consumer.Consumer, err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := c.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// runChild is a consumer process for TestAtLeastOnceAcrossKill: it appends
// "partition offset" for every handled record to the file $WHIPPET_TEST_OUT.
func runChild() {
	f, err := os.OpenFile(os.Getenv("WHIPPET_TEST_OUT"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	opts := []consumer.Option{consumer.Group(os.Getenv("WHIPPET_TEST_GROUP")), consumer.Topics(os.Getenv("WHIPPET_TEST_TOPIC")),
		consumer.CommitInterval(100 * time.Millisecond)}
	if os.Getenv("WHIPPET_TEST_DEFAULT_SESSION") == "" {
		// The broker's minimum, so a killed process leaves the group soon.
		opts = append(opts, consumer.SessionTimeout(6*time.Second))
	}
	c, err := consumer.New(whippet.Connection{Brokers: strings.Split(os.Getenv("WHIPPET_TEST_BROKERS"), ",")}, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		time.Sleep(time.Millisecond)
		_, err := fmt.Fprintf(f, "%d %d\n", r.Partition, r.Offset)
		return err
	}), opts...)
	runChildConsumer(c, err)
}

func TestAtLeastOnceAcrossKill(t *testing.T) {
	kc := testkit.Shared(t)
	const parts, n = 3, 3000
	topic := kc.NewTopic(t, parts, nil)
	produceSpread(t, kc, topic, parts, n, nil)
	out := filepath.Join(t.TempDir(), "handled.txt")
	start := func() *exec.Cmd { return startChild(t, kc, "1", topic, topic, "WHIPPET_TEST_OUT="+out) }
	read := func() (lines int, distinct map[string]bool) {
		distinct = map[string]bool{}
		f, err := os.Open(out)
		if errors.Is(err, os.ErrNotExist) {
			return 0, distinct
		}
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			lines++
			distinct[s.Text()] = true
		}
		return lines, distinct
	}

	kills := 0
	for _, at := range []int{600, 1500} { // kill twice, mid-stream
		cmd := start()
		testkit.Eventually(t, 60*time.Second, func() error {
			if l, _ := read(); l < at {
				return fmt.Errorf("%d handled, waiting for %d", l, at)
			}
			return nil
		})
		if err := cmd.Process.Kill(); err != nil { // SIGKILL: no Close, no final commit
			t.Fatal(err)
		}
		_ = cmd.Wait()
		kills++
	}
	cmd := start()
	testkit.Eventually(t, 120*time.Second, func() error {
		if _, d := read(); len(d) != n {
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
	lines, d := read()
	for p := 0; p < parts; p++ {
		for off := 0; off < n/parts; off++ {
			if !d[fmt.Sprintf("%d %d", p, off)] {
				t.Fatalf("record %d/%d lost", p, off)
			}
		}
	}
	if got := committed(t, kc.Admin(t), topic, topic); sum(got) != n {
		t.Fatalf("committed %v after graceful stop, want all %d", got, n)
	}
	t.Logf("%d kills with SIGKILL: none of %d lost, %d duplicates (handled again after a kill)", kills, n, lines-n)
}

// A member killed with SIGKILL never leaves the group: its partitions wait
// for the group to evict it, a session timeout after its last heartbeat. With
// the consumer's default session (10s, not franz-go's 45s), a surviving
// member takes them over within seconds of that.
func TestKilledMemberPartitionsMoveAfterTheDefaultSession(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 2, nil)
	produceSpread(t, kc, topic, 2, 2, nil)
	var h handled
	b := newConsumer(t, kc, h.handler("b"), topic, consumer.Topics(topic))
	run(t, b)
	waitAssigned(t, b, 2)
	out := filepath.Join(t.TempDir(), "handled.txt")
	child := startChild(t, kc, "1", topic, topic, "WHIPPET_TEST_OUT="+out, "WHIPPET_TEST_DEFAULT_SESSION=1")
	t.Cleanup(func() { _ = child.Process.Kill(); _ = child.Wait() })
	waitAssigned(t, b, 1) // the child, with default options, holds the other partition
	var theirs int32 = 1 - b.Partitions()[0].Partition
	if err := child.Process.Kill(); err != nil { // SIGKILL: no leave, no last heartbeat
		t.Fatal(err)
	}
	_ = child.Wait()
	killed := time.Now()
	produceSpread(t, kc, topic, 2, 2, nil) // offset 1 of each partition
	testkit.Eventually(t, 30*time.Second, func() error {
		for _, e := range h.snapshot() {
			if e.who == "b" && e.partition == theirs && e.offset == 1 {
				return nil
			}
		}
		return fmt.Errorf("the killed member's partition %d has not moved to b", theirs)
	})
	t.Logf("the killed member's partition moved %v after the SIGKILL", time.Since(killed).Round(100*time.Millisecond))
}

func TestDrainTimeoutCancelsStuckHandlerAndDoesNotCommitIt(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	produceSpread(t, kc, topic, 1, 10, nil)
	started := make(chan struct{})
	var canceled atomic.Bool
	c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if r.Offset < 5 {
			return nil
		}
		close(started)
		<-ctx.Done() // stuck until the drain gives up on it
		canceled.Store(true)
		return ctx.Err()
	}), topic, consumer.Topics(topic), consumer.DrainTimeout(time.Second))
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	<-started
	begin := time.Now()
	c.Close(context.Background())
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	took := time.Since(begin)
	if !canceled.Load() {
		t.Fatal("the stuck handler's context was not canceled")
	}
	if took < time.Second || took > 10*time.Second {
		t.Fatalf("Close took %v; want about the 1s drain timeout", took)
	}
	if got := committed(t, kc.Admin(t), topic, topic); got[0] != 5 {
		t.Fatalf("committed %v, want offset 5: the unfinished record must be handled again", got)
	}
}

// Close's ctx bounds how long Close waits for Run to stop, not the stop
// itself: Run goes on draining and returns nil once the handler finishes.
func TestCloseContextBoundsTheWait(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	produceSpread(t, kc, topic, 1, 1, nil)
	started, release := make(chan struct{}), make(chan struct{})
	c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		close(started)
		<-release
		return nil
	}), topic, consumer.Topics(topic), consumer.DrainTimeout(time.Minute))
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := c.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with the handler still running = %v, want context.DeadlineExceeded", err)
	}
	select {
	case err := <-errc:
		t.Fatalf("Run returned %v while its handler was still running", err)
	default:
	}
	close(release)
	if err := c.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := committed(t, kc.Admin(t), topic, topic); got[0] != 1 {
		t.Fatalf("committed %v, want offset 1: the record finished during the drain", got)
	}
}

func TestAssignmentNumbersEachAssignment(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	produceSpread(t, kc, topic, 1, 5, nil)
	if _, ok := consumer.Assignment(context.Background()); ok {
		t.Fatal("a plain context has no assignment")
	}
	var mu sync.Mutex
	seen := map[uint64]int{}
	h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		n, ok := consumer.Assignment(ctx)
		if !ok {
			return errors.New("no assignment in the handler's context")
		}
		mu.Lock()
		seen[n]++
		mu.Unlock()
		return nil
	})
	for round := 1; round <= 2; round++ {
		c := newConsumer(t, kc, h, fmt.Sprintf("%s-%d", topic, round), consumer.Topics(topic))
		errc := make(chan error, 1)
		go func() { errc <- c.Run(context.Background()) }()
		testkit.Eventually(t, 30*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			total := 0
			for _, n := range seen {
				total += n
			}
			if total != 5*round {
				return fmt.Errorf("handled %d", total)
			}
			return nil
		})
		c.Close(context.Background())
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("assignments seen %v: want two, one per assignment, each with its 5 records", seen)
	}
}

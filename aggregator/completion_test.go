package aggregator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/aggregator"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/testkit"
)

// runProcessor runs the aggregator's processor until the test ends.
func runProcessor(t *testing.T, conn whippet.Connection, name string) {
	t.Helper()
	p, err := aggregator.NewProcessor(conn, name, atomicstore.Partitions(1), atomicstore.TransactionalID(name+"-p"),
		atomicstore.TransactionBatch(100, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background()) }()
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-done; err != nil {
			t.Errorf("processor: %v", err)
		}
	})
}

// complete runs batch from start to completion, with a task reported twice.
func complete(t *testing.T, a *aggregator.Aggregator, batch string) {
	t.Helper()
	ctx := context.Background()
	if _, err := a.Start(ctx, batch, 2); err != nil {
		t.Fatal(err)
	}
	for _, task := range []int{0, 1, 1} {
		if _, err := a.Done(ctx, batch, task); err != nil {
			t.Fatal(err)
		}
	}
}

// A service consumes the completion events with a whippet consumer in
// read_committed mode and DecodeCompletion: it handles each completion
// exactly once, across a restart of the consumer, including completions
// made while it was down, and never those of an aborted transaction (a
// processor that died before committing leaves such records in the topic).
func TestCompletionsHandledOnceByAReadCommittedConsumer(t *testing.T) {
	kc := testkit.Shared(t)
	name := testkit.TopicName(t.Name())
	conn := whippet.Connection{Brokers: kc.Brokers}
	ctx := context.Background()
	runProcessor(t, conn, name)
	// One partition: the completion topic's records are in one order, so
	// handling the last batch means every earlier record was delivered.
	a, err := aggregator.Open(ctx, conn, name, atomicstore.Partitions(1))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	topic := aggregator.CompletedTopic(name)
	if topic != name+"-completed" {
		t.Fatalf("CompletedTopic = %q", topic)
	}

	for i := range 3 {
		complete(t, a, fmt.Sprintf("b%d", i))
	}
	// A transaction that aborts with completion records in it: b0 again
	// and a batch that never completed.
	zombie := kc.Client(t, kgo.TransactionalID(name+"-zombie"))
	if err := zombie.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"b0", "ghost"} {
		v, _ := json.Marshal(aggregator.Completion{Batch: b, Total: 2})
		if err := zombie.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(b), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := zombie.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	// They are in the topic: a read_uncommitted reader gets them.
	kc.ConsumeUntil(ctx, t, topic, func(all []*kgo.Record) bool {
		return slices.ContainsFunc(all, func(r *kgo.Record) bool { return string(r.Key) == "ghost" })
	})

	var mu sync.Mutex
	handled := map[string]int{}
	count := func(b string) int { mu.Lock(); defer mu.Unlock(); return handled[b] }
	start := func() (stop func()) {
		c, err := consumer.New(whippet.Connection{Brokers: kc.Brokers}, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
			done, err := aggregator.DecodeCompletion(r)
			if err != nil {
				return err
			}
			mu.Lock()
			handled[done.Batch]++
			mu.Unlock()
			return nil
		}), consumer.Group(name+"-notifier"), consumer.Topics(topic), consumer.ReadCommitted(true),
			consumer.CommitInterval(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		return func() {
			c.Close(context.Background())
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor := func(b string) {
		t.Helper()
		testkit.Eventually(t, 30*time.Second, func() error {
			if count(b) == 0 {
				return fmt.Errorf("%s not handled yet", b)
			}
			return nil
		})
	}

	stop := start()
	waitFor("b2")
	complete(t, a, "b3") // while the consumer runs
	waitFor("b3")
	stop()
	complete(t, a, "b4") // while it is down
	stop = start()
	complete(t, a, "b5")
	waitFor("b5") // the last record: every earlier one was delivered
	stop()

	mu.Lock()
	defer mu.Unlock()
	for i := range 6 {
		if b := fmt.Sprintf("b%d", i); handled[b] != 1 {
			t.Errorf("%s handled %d times, want once (all: %v)", b, handled[b], handled)
		}
	}
	if len(handled) != 6 {
		t.Errorf("handled %v, want b0 to b5 only: a record of an aborted transaction was delivered", handled)
	}
}

func TestDecodeCompletion(t *testing.T) {
	c, err := aggregator.DecodeCompletion(&kgo.Record{Key: []byte("b"), Value: []byte(`{"batch":"b","total":3}`)})
	if err != nil || c != (aggregator.Completion{Batch: "b", Total: 3}) {
		t.Fatalf("%+v, %v", c, err)
	}
	for _, r := range []*kgo.Record{
		{Key: []byte("b"), Value: []byte(`not json`)},
		{Key: []byte("b"), Value: []byte(`{"total":3}`)},
		{Key: []byte("b"), Value: []byte(`{"batch":"b","total":0}`)},
		{Key: []byte("other"), Value: []byte(`{"batch":"b","total":3}`)},
		{Key: []byte("b")},
	} {
		if _, err := aggregator.DecodeCompletion(r); !errors.Is(err, codec.ErrDecode) || !strings.Contains(err.Error(), "aggregator completion") {
			t.Errorf("key %q value %q: %v, want codec.ErrDecode", r.Key, r.Value, err)
		}
	}
}

// gauge returns the value of the aggregator metric name for aggregator
// agg in reg.
func aggMetric(t *testing.T, reg *prometheus.Registry, name, agg string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "aggregator" && l.GetValue() == agg {
					if m.Gauge != nil {
						return m.Gauge.GetValue(), true
					}
					return m.Counter.GetValue(), true
				}
			}
		}
	}
	return 0, false
}

// The aggregator's metrics follow its replica: batches open, batches
// completed from the end of the initial load (a client opened later does
// not count earlier completions); a second client of one name on one
// Registerer is refused; Close releases the metrics.
func TestMetrics(t *testing.T) {
	kc := testkit.Shared(t)
	name := testkit.TopicName(t.Name())
	ctx := context.Background()
	runProcessor(t, whippet.Connection{Brokers: kc.Brokers}, name)
	reg := prometheus.NewRegistry()
	conn := whippet.Connection{Brokers: kc.Brokers, Registerer: reg}
	a, err := aggregator.Open(ctx, conn, name, atomicstore.Partitions(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := aggregator.Open(ctx, conn, name, atomicstore.Partitions(1)); !errors.Is(err, atomicstore.ErrInvalidConfig) ||
		!strings.Contains(err.Error(), "Connection.Registerer") {
		t.Fatalf("a second client of one name on one Registerer: %v", err)
	}
	want := func(reg *prometheus.Registry, open, completed float64) {
		t.Helper()
		testkit.Eventually(t, 10*time.Second, func() error {
			o, ok1 := aggMetric(t, reg, "whippet_aggregator_batches_open", name)
			c, ok2 := aggMetric(t, reg, "whippet_aggregator_batches_completed_total", name)
			if !ok1 || !ok2 || o != open || c != completed {
				return fmt.Errorf("batches_open %v (%v), batches_completed_total %v (%v); want %v and %v", o, ok1, c, ok2, open, completed)
			}
			return nil
		})
	}
	want(reg, 0, 0)
	if _, err := a.Start(ctx, "x", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Done(ctx, "y", 0); err != nil { // reported before it started
		t.Fatal(err)
	}
	want(reg, 2, 0)
	complete(t, a, "z")
	for _, task := range []int{0, 1} {
		if _, err := a.Done(ctx, "x", task); err != nil {
			t.Fatal(err)
		}
	}
	want(reg, 1, 2)

	// A client opened now loads x and z completed, y open: it counts no
	// completion, until y completes.
	reg2 := prometheus.NewRegistry()
	b, err := aggregator.Open(ctx, whippet.Connection{Brokers: kc.Brokers, Registerer: reg2}, name, atomicstore.Partitions(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	want(reg2, 1, 0)
	if _, err := b.Start(ctx, "y", 1); err != nil {
		t.Fatal(err)
	}
	want(reg2, 0, 1)
	want(reg, 0, 3)

	for _, c := range []*aggregator.Aggregator{a, b} {
		if err := c.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if mfs, _ := reg.Gather(); len(mfs) != 0 {
		t.Errorf("after Close, %d metric families still registered", len(mfs))
	}
}

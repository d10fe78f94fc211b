package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// Run with: make bench-consumer (real Kafka), or
// go test ./consumer -run '^$' -bench . -benchtime 1x

// throughput measures records/s between the first and the last record
// handled, so the group join, which both sides pay alike, does not hide the
// consume speed. Its per-record work is a read-mostly flag and a comparison,
// with no write shared between partitions, so it does not slow down the side
// that handles partitions in parallel.
type throughput struct {
	topic      string
	lastOffset map[int32]int64 // per partition, the offset of its last record
	n          int64
	started    atomic.Bool
	first      time.Duration
	mu         sync.Mutex
	finished   int
	last       time.Duration
	done       chan struct{}
}

// benchStart anchors timestamps; time.Since reads only the monotonic clock.
var benchStart = time.Now()

func newThroughput(b *testing.B, kc *testkit.Cluster, topic string) *throughput {
	ends, err := kc.Admin(b).ListEndOffsets(context.Background(), topic)
	if err != nil {
		b.Fatal(err)
	}
	tp := &throughput{topic: topic, lastOffset: map[int32]int64{}, done: make(chan struct{})}
	ends.Each(func(o kadm.ListedOffset) {
		tp.lastOffset[o.Partition] = o.Offset - 1
		tp.n += o.Offset
	})
	return tp
}

func (tp *throughput) record(r *kgo.Record) {
	if _, ok := tp.lastOffset[r.Partition]; !ok || r.Topic != tp.topic {
		return // a retry topic's record
	}
	if !tp.started.Load() && tp.started.CompareAndSwap(false, true) {
		tp.first = time.Since(benchStart)
	}
	if r.Offset == tp.lastOffset[r.Partition] {
		now := time.Since(benchStart)
		tp.mu.Lock()
		defer tp.mu.Unlock()
		tp.last = max(tp.last, now)
		if tp.finished++; tp.finished == len(tp.lastOffset) {
			close(tp.done)
		}
	}
}

func (tp *throughput) wait(b *testing.B, who string) {
	select {
	case <-tp.done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("%s: %d of %d partitions finished", who, tp.finished, len(tp.lastOffset))
	}
}

func (tp *throughput) rate() float64 {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return float64(tp.n) / (tp.last - tp.first).Seconds()
}

// benchWhippet consumes topic with whippet; work, if not nil, is the
// handler's work per record, and its error the handler's.
func benchWhippet(b *testing.B, kc *testkit.Cluster, topic string, work func(*kgo.Record) error, opts ...consumer.Option) float64 {
	tp := newThroughput(b, kc, topic)
	h := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) (err error) {
		if work != nil {
			err = work(r)
		}
		tp.record(r)
		return err
	})
	group := fmt.Sprintf("%s-whippet-%d", topic, time.Now().UnixNano())
	opts = append([]consumer.Option{consumer.Group(group), consumer.Topics(topic)}, opts...)
	c, err := consumer.New(whippet.Connection{Brokers: kc.Brokers}, h, opts...)
	if err != nil {
		b.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	tp.wait(b, "whippet")
	c.Close(context.Background())
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	return tp.rate()
}

func benchFranz(b *testing.B, kc *testkit.Cluster, topic string) float64 {
	tp := newThroughput(b, kc, topic)
	group := fmt.Sprintf("%s-franz-%d", topic, time.Now().UnixNano())
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(tp.record)
		}
	}()
	tp.wait(b, "franz-go")
	return tp.rate()
}

// BenchmarkConsumeVsFranzGo consumes the same 1,000,000 records of 100 bytes
// with whippet (no-op handler) and with a plain franz-go PollFetches loop,
// alternating, five rounds each, and reports the medians and their ratio.
func BenchmarkConsumeVsFranzGo(b *testing.B) {
	kc := testkit.Shared(b)
	const n, parts, rounds = 1_000_000, 4, 5
	topic := kc.NewTopic(b, parts, nil)
	cl := kc.Client(b, kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(1<<20))
	value := make([]byte, 100)
	var perr atomic.Value
	for i := 0; i < n; i++ {
		cl.Produce(context.Background(), &kgo.Record{Topic: topic, Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				perr.Store(err)
			}
		})
	}
	if err := cl.Flush(context.Background()); err != nil || perr.Load() != nil {
		b.Fatal(err, perr.Load())
	}
	b.ResetTimer()
	for range b.N {
		var w, f []float64
		for range rounds {
			f = append(f, benchFranz(b, kc, topic))
			w = append(w, benchWhippet(b, kc, topic, nil))
		}
		slices.Sort(w)
		slices.Sort(f)
		wm, fm := w[rounds/2], f[rounds/2]
		b.ReportMetric(wm, "whippet-rec/s")
		b.ReportMetric(fm, "franz-go-rec/s")
		b.ReportMetric(wm/fm, "ratio")
		fmt.Printf("consume %d x 100 B over %d partitions: whippet %.0f rec/s, franz-go %.0f rec/s, ratio %.3f (medians of %d rounds; whippet %v franz-go %v)\n",
			n, parts, wm, fm, wm/fm, rounds, rounded(w), rounded(f))
	}
}

// BenchmarkKeyParallel: 1 partition, 1,000 keys, a 5 ms handler and
// concurrency 100, whose ideal is 100 / 5 ms = 20,000 records/s.
func BenchmarkKeyParallel(b *testing.B) {
	kc := testkit.Shared(b)
	const n, keys, conc = 60_000, 1000, 100
	topic := kc.NewTopic(b, 1, nil)
	cl := kc.Client(b)
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "key-%d", i%keys), Value: make([]byte, 100)}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		rate := benchWhippet(b, kc, topic, func(*kgo.Record) error { time.Sleep(5 * time.Millisecond); return nil },
			consumer.KeyParallel(conc), consumer.PartitionBuffer(4*conc))
		const ideal = conc / 0.005
		b.ReportMetric(rate, "rec/s")
		b.ReportMetric(rate/ideal, "of-ideal")
		fmt.Printf("key-parallel: %d records, 1 partition, %d keys, 5 ms handler, concurrency %d: %.0f rec/s = %.3f of the ideal %.0f\n",
			n, keys, conc, rate, rate/ideal, ideal)
	}
}

// BenchmarkNonBlockingFailures: main-topic throughput under non-blocking
// retries with 10% of the records failing (each forwarded to the retry topic,
// acknowledged before its offset is committed) against 0% failing, same
// records, same run, three rounds each alternating. Two handlers: a no-op, where
// the ratio is the broker's cost of storing the forwards against that of
// serving the fetches, on the same 2 cores; and one that waits 1ms per record,
// as a handler calling a database or a service does.
func BenchmarkNonBlockingFailures(b *testing.B) {
	kc := testkit.Shared(b)
	for _, bc := range []struct {
		name    string
		n       int
		handler time.Duration
	}{{"no-op", 1_000_000, 0}, {"1ms", 20_000, time.Millisecond}} {
		b.Run(bc.name, func(b *testing.B) {
			const parts, rounds = 4, 3
			topic := kc.NewTopic(b, parts, nil)
			cl := kc.Client(b, kgo.ProducerLinger(5*time.Millisecond))
			value := make([]byte, 100)
			for i := 0; i < bc.n; i++ {
				key := fmt.Appendf(nil, "ok-%d", i)
				if i%10 == 0 {
					key[0] = 'f' // "fk-…": fails in the failing rounds
				}
				cl.Produce(context.Background(), &kgo.Record{Topic: topic, Key: key, Value: value}, nil)
			}
			if err := cl.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			errFail := errors.New("fails")
			work := func(fail bool) func(r *kgo.Record) error {
				return func(r *kgo.Record) error {
					if bc.handler > 0 {
						time.Sleep(bc.handler)
					}
					if fail && r.Key[0] == 'f' {
						return errFail
					}
					return nil
				}
			}
			policy := consumer.Retry(retry.NonBlocking(time.Hour)) // not due during the run
			b.ResetTimer()
			for range b.N {
				var ok, bad []float64
				for range rounds {
					ok = append(ok, benchWhippet(b, kc, topic, work(false), policy))
					bad = append(bad, benchWhippet(b, kc, topic, work(true), policy))
				}
				slices.Sort(ok)
				slices.Sort(bad)
				okm, badm := ok[rounds/2], bad[rounds/2]
				b.ReportMetric(okm, "0%-failing-rec/s")
				b.ReportMetric(badm, "10%-failing-rec/s")
				b.ReportMetric(badm/okm, "ratio")
				fmt.Printf("non-blocking retries, %s handler, %d records over %d partitions: 0%% failing %.0f rec/s, 10%% failing %.0f rec/s, ratio %.3f (medians of %d; 0%% %v, 10%% %v)\n",
					bc.name, bc.n, parts, okm, badm, badm/okm, rounds, rounded(ok), rounded(bad))
			}
		})
	}
}

func rounded(xs []float64) []int {
	out := make([]int, len(xs))
	for i, x := range xs {
		out[i] = int(x)
	}
	return out
}

// benchTransform transforms topic in into out, one output per input emitted
// with consumer.Emit, at-least-once or transactionally, and returns the
// records/s from the first handler call until every input offset is
// committed: both modes pay their commits (at-least-once every 100ms, a
// transaction every TransactionBatch, 1000 records or 100ms by default).
func benchTransform(b *testing.B, kc *testkit.Cluster, in, out string, n int64, transactional bool) float64 {
	mode := "alo"
	if transactional {
		mode = "txn"
	}
	group := fmt.Sprintf("%s-%s-%d", in, mode, time.Now().UnixNano())
	var first atomic.Int64
	h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if first.Load() == 0 {
			first.CompareAndSwap(0, int64(time.Since(benchStart)))
		}
		return consumer.Emit(ctx, &kgo.Record{Topic: out, Key: r.Key, Value: r.Value})
	})
	opts := []consumer.Option{consumer.Group(group), consumer.Topics(in)}
	if transactional {
		opts = append(opts, consumer.Transactional(group))
	} else {
		opts = append(opts, consumer.CommitInterval(100*time.Millisecond))
	}
	c, err := consumer.New(whippet.Connection{Brokers: kc.Brokers}, h, opts...)
	if err != nil {
		b.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	adm := kc.Admin(b)
	var last time.Duration
	for deadline := time.Now().Add(5 * time.Minute); ; {
		offs, err := adm.FetchOffsets(context.Background(), group)
		var done int64
		if err == nil {
			offs.Each(func(o kadm.OffsetResponse) {
				if o.Topic == in && o.Err == nil {
					done += o.At
				}
			})
		}
		if done == n {
			last = time.Since(benchStart)
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: committed %d of %d", mode, done, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.Close(context.Background())
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	return float64(n) / (last - time.Duration(first.Load())).Seconds()
}

// BenchmarkTransform: the same 200,000 records of 100 bytes over 4
// partitions transformed into an output topic (one output per input, with
// consumer.Emit) at-least-once and transactionally, alternating, three
// rounds each; it reports the medians and their ratio.
func BenchmarkTransform(b *testing.B) {
	kc := testkit.Shared(b)
	const n, parts, rounds = 200_000, 4, 3
	in := kc.NewTopic(b, parts, nil)
	cl := kc.Client(b, kgo.ProducerLinger(5*time.Millisecond))
	value := make([]byte, 100)
	for i := 0; i < n; i++ {
		cl.Produce(context.Background(), &kgo.Record{Topic: in, Key: fmt.Appendf(nil, "order-%d", i), Value: value}, nil)
	}
	if err := cl.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		var alo, txn []float64
		for range rounds {
			alo = append(alo, benchTransform(b, kc, in, kc.NewTopic(b, parts, nil), n, false))
			txn = append(txn, benchTransform(b, kc, in, kc.NewTopic(b, parts, nil), n, true))
		}
		slices.Sort(alo)
		slices.Sort(txn)
		am, tm := alo[rounds/2], txn[rounds/2]
		b.ReportMetric(am, "at-least-once-rec/s")
		b.ReportMetric(tm, "transactional-rec/s")
		b.ReportMetric(tm/am, "ratio")
		fmt.Printf("transform %d x 100 B over %d partitions, one output each: at-least-once %.0f rec/s, transactional %.0f rec/s, ratio %.3f (medians of %d; at-least-once %v, transactional %v)\n",
			n, parts, am, tm, tm/am, rounds, rounded(alo), rounded(txn))
	}
}

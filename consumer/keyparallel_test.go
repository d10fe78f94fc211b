package consumer_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/testkit"
)

// Records of produceDistinctKeys: keys "k%07d" and value "v", produced
// uncompressed in batches of at most manyKeysBatch bytes, so that the
// records one fetch can hold are known: a fetch returns whole batches up to
// franz-go's FetchMaxPartitionBytes (1 MiB), or one batch if it is larger,
// and a record takes at least manyKeysMinRecord bytes of a batch (length,
// attributes, timestamp and offset deltas, key and value with their lengths,
// header count).
const (
	manyKeysBatch     = 64 << 10
	manyKeysMinRecord = 1 + 1 + 1 + 1 + 1 + 8 + 1 + 1 + 1
	manyKeysOneFetch  = (1<<20 + manyKeysBatch) / manyKeysMinRecord
)

// produceDistinctKeys fills topic (one partition) with n records, each with
// a key of its own.
func produceDistinctKeys(tb testing.TB, kc *testkit.Cluster, topic string, n int) {
	tb.Helper()
	cl := kc.Client(tb, kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerBatchMaxBytes(manyKeysBatch),
		kgo.ProducerLinger(5*time.Millisecond))
	var perr atomic.Value
	for i := range n {
		cl.Produce(context.Background(), &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%07d", i), Value: []byte("v")},
			func(_ *kgo.Record, err error) {
				if err != nil {
					perr.Store(err)
				}
			})
	}
	if err := cl.Flush(context.Background()); err != nil || perr.Load() != nil {
		tb.Fatal(err, perr.Load())
	}
}

// manyKeysPeak is what a key-parallel consumer held at most while its
// handlers were blocked.
type manyKeysPeak struct {
	goroutines int    // runtime.NumGoroutine, less the count before the consumer started
	buffered   int    // Partitions()[0].Buffered
	heapInuse  uint64 // runtime.MemStats.HeapInuse, less the figure before the consumer started
}

// blockKeyParallel starts a KeyParallel(concurrency) consumer (default
// PartitionBuffer) on topic whose handlers block until release is closed,
// in group, and samples goroutines, buffered records and heap until the partition is
// under backpressure (fetching paused: nothing more arrives) with every
// handler slot taken, and for a further 20 samples. handled counts the
// records handled.
func blockKeyParallel(tb testing.TB, kc *testkit.Cluster, topic, group string, concurrency int, release chan struct{}, handled *atomic.Int64) (*consumer.Consumer, manyKeysPeak, func()) {
	tb.Helper()
	var running atomic.Int32
	h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		running.Add(1)
		defer running.Add(-1)
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		handled.Add(1)
		return nil
	})
	c, err := consumer.New(whippet.Connection{Brokers: kc.Brokers}, h, consumer.Group(group), consumer.Topics(topic),
		consumer.KeyParallel(concurrency), consumer.CommitInterval(100*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseHeap, baseG := ms.HeapInuse, runtime.NumGoroutine()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	stop := func() {
		c.Close(context.Background())
		if err := <-errc; err != nil {
			tb.Errorf("Run: %v", err)
		}
	}
	var peak manyKeysPeak
	settled := 0
	deadline := time.Now().Add(60 * time.Second)
	for settled < 20 {
		if time.Now().After(deadline) {
			stop()
			tb.Fatalf("no backpressure with %d handlers blocked after 60s: %+v (peak %+v)", concurrency, c.Partitions(), peak)
		}
		peak.goroutines = max(peak.goroutines, runtime.NumGoroutine()-baseG)
		runtime.ReadMemStats(&ms)
		peak.heapInuse = max(peak.heapInuse, ms.HeapInuse-min(ms.HeapInuse, baseHeap))
		if ps := c.Partitions(); len(ps) == 1 {
			peak.buffered = max(peak.buffered, ps[0].Buffered)
			if ps[0].Backpressure && running.Load() == int32(concurrency) {
				settled++
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return c, peak, stop
}

// TestKeyParallelBoundsGoroutinesAndBuffer checks, on real Kafka, that a
// key-parallel consumer whose handlers are blocked holds a bounded number of
// goroutines and of buffered records whatever the number of keys in a fetch:
// 100,000 records with distinct keys, 1 partition, KeyParallel(4), the
// default PartitionBuffer (256). Goroutines are bounded by the handler slots
// plus the clients' own, not by keys; buffered records by PartitionBuffer
// plus one fetch, as README promises. Released, every record is handled and
// committed.
func TestKeyParallelBoundsGoroutinesAndBuffer(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	const n, concurrency = 100_000, 4
	produceDistinctKeys(t, kc, topic, n)
	release := make(chan struct{})
	var handled atomic.Int64
	c, peak, stop := blockKeyParallel(t, kc, topic, topic, concurrency, release, &handled)
	defer stop()
	t.Logf("%d distinct keys, KeyParallel(%d), handlers blocked: peak %d goroutines, %d buffered, HeapInuse +%.1f MiB",
		n, concurrency, peak.goroutines, peak.buffered, float64(peak.heapInuse)/(1<<20))
	// The two franz-go clients (consumer and forwarder) and the consumer's
	// own loops use a few dozen goroutines; 100 leaves room for that.
	if limit := concurrency + 100; peak.goroutines > limit {
		t.Errorf("peak %d goroutines with %d handler slots, want at most %d: goroutines grow with the keys", peak.goroutines, concurrency, limit)
	}
	if limit := 256 + manyKeysOneFetch; peak.buffered > limit {
		t.Errorf("peak %d buffered records, want at most PartitionBuffer + one fetch = %d", peak.buffered, limit)
	}
	close(release)
	testkit.Eventually(t, 120*time.Second, func() error {
		if got := committed(t, kc.Admin(t), topic, topic); handled.Load() < n || got[0] != n {
			return fmt.Errorf("handled %d of %d, committed %v", handled.Load(), n, got)
		}
		return nil
	})
	if ps := c.Partitions(); len(ps) != 1 || ps[0].Buffered != 0 || ps[0].Backpressure {
		t.Fatalf("after draining: %+v", ps)
	}
}

// BenchmarkKeyParallelManyKeys: 200,000 records with distinct keys, 1
// partition, KeyParallel(4), default PartitionBuffer, handlers blocked until
// the partition is under backpressure: the peak goroutines (less those before
// the consumer started), buffered records and HeapInuse growth; then the
// handlers are released and the rate of handling all the records is
// reported.
func BenchmarkKeyParallelManyKeys(b *testing.B) {
	kc := testkit.Shared(b)
	const n, concurrency = 200_000, 4
	topic := kc.NewTopic(b, 1, nil)
	produceDistinctKeys(b, kc, topic, n)
	b.ResetTimer()
	for range b.N {
		group := fmt.Sprintf("%s-%d", topic, time.Now().UnixNano())
		release := make(chan struct{})
		var handled atomic.Int64
		_, peak, stop := blockKeyParallel(b, kc, topic, group, concurrency, release, &handled)
		start := time.Now()
		close(release)
		for handled.Load() < n {
			time.Sleep(10 * time.Millisecond)
		}
		rate := float64(n) / time.Since(start).Seconds()
		stop()
		b.ReportMetric(float64(peak.goroutines), "peak-goroutines")
		b.ReportMetric(float64(peak.buffered), "peak-buffered")
		b.ReportMetric(float64(peak.heapInuse)/(1<<20), "peak-heap-MiB")
		b.ReportMetric(rate, "rec/s")
		fmt.Printf("key-parallel, %d distinct keys, 1 partition, KeyParallel(%d), handlers blocked: peak %d goroutines, %d buffered, HeapInuse +%.1f MiB; released: %.0f rec/s\n",
			n, concurrency, peak.goroutines, peak.buffered, float64(peak.heapInuse)/(1<<20), rate)
	}
}

package kvstore_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/kvstore"
	"github.com/whippet-go/whippet/testkit"
)

// Run with: make bench-kvstore (real Kafka), or
// go test ./kvstore -run '^$' -bench . -benchtime 1x   (BenchmarkLoad)
// go test ./kvstore -run '^$' -bench Get                (BenchmarkGet)

const benchValueSize = 100

func benchKey(i int) []byte { return fmt.Appendf(nil, "key-%07d", i) }

// benchValue is every key's value.
func benchValue() string {
	value := make([]byte, benchValueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	return string(value)
}

// fillTopic creates a compacted topic with n distinct keys, each with a
// benchValueSize-byte value, and returns it.
func fillTopic(b *testing.B, kc *testkit.Cluster, partitions int32, n int) string {
	b.Helper()
	topic := kc.NewTopic(b, partitions, map[string]*string{"cleanup.policy": new("compact")})
	cl := kc.Client(b, kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(1<<20))
	value := []byte(benchValue())
	var perr atomic.Value
	for i := range n {
		cl.Produce(context.Background(), &kgo.Record{Topic: topic, Key: benchKey(i), Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				perr.Store(err)
			}
		})
	}
	if err := cl.Flush(context.Background()); err != nil || perr.Load() != nil {
		b.Fatal(err, perr.Load())
	}
	return topic
}

// consumeToEnd reads topic from the start with a plain franz-go direct
// consumer until every partition reached the end offset listed at start,
// handing each fetched partition's records to each, and returns the
// records/s from client creation on and the time it took.
func consumeToEnd(b *testing.B, kc *testkit.Cluster, topic, who string, each func([]*kgo.Record), opts ...kgo.Opt) (float64, time.Duration) {
	start := time.Now()
	opts = append([]kgo.Opt{kgo.SeedBrokers(kc.Brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		b.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset - 1
		}
	})
	var n int64
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			b.Fatal(who + ": timed out")
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			n += int64(len(p.Records))
			each(p.Records)
			if len(p.Records) > 0 && p.Records[len(p.Records)-1].Offset >= left[p.Partition] {
				delete(left, p.Partition)
			}
		})
	}
	d := time.Since(start)
	return float64(n) / d.Seconds(), d
}

// loadFranz is a plain franz-go consume that only counts records, with
// franz-go's defaults plus opts.
func loadFranz(b *testing.B, kc *testkit.Cluster, topic string, opts ...kgo.Opt) (float64, time.Duration) {
	return consumeToEnd(b, kc, topic, "franz-go", func([]*kgo.Record) {}, opts...)
}

// storeFetchBytes is the FetchMaxPartitionBytes of the store's client
// (franz-go's default is 1 MiB).
const storeFetchBytes = 256 << 10

// loadFranzMap is a hand-written franz-go loader that also keeps what it
// reads: it decodes each key and value into a string and stores them in a
// plain map[string]string (deleting on tombstones). It returns the records/s
// and the map.
func loadFranzMap(b *testing.B, kc *testkit.Cluster, topic string) (float64, time.Duration, map[string]string) {
	m := map[string]string{}
	rate, d := consumeToEnd(b, kc, topic, "franz-go+map", func(recs []*kgo.Record) {
		for _, r := range recs {
			if r.Value == nil {
				delete(m, string(r.Key))
			} else {
				m[string(r.Key)] = string(r.Value)
			}
		}
	})
	return rate, d, m
}

// loadStore opens a store on topic and waits until it is ready; it returns
// the records/s from Open on, and the store (still open).
func loadStore(b *testing.B, kc *testkit.Cluster, topic string, records int) (float64, time.Duration, *kvstore.Store[string, string]) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	s, err := kvstore.Open(ctx, whippet.Connection{Brokers: kc.Brokers}, topic, codec.String(), codec.String())
	if err != nil {
		b.Fatal(err)
	}
	if err := s.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	d := time.Since(start)
	return float64(records) / d.Seconds(), d, s
}

// coldStart collects the heap and returns its free memory to the operating
// system, so that what runs next starts as in a new process: with a small
// GC target, and taking a page fault the first time it touches each page of
// its heap.
func coldStart() {
	runtime.GC()
	debug.FreeOSMemory()
}

// heap returns the bytes of live heap objects (HeapAlloc) and of heap spans
// in use (HeapInuse, which adds their unused room) after a full GC.
func heap() (alloc, inUse int64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc), int64(ms.HeapInuse)
}

// checkGets checks, after the timed part, that the store is complete and
// usable: its length, and the values of 10,000 keys spread over the topic.
func checkGets(b *testing.B, s *kvstore.Store[string, string], n int, value string) {
	b.Helper()
	if s.Len() != n {
		b.Fatalf("store has %d entries, want %d", s.Len(), n)
	}
	for i := 0; i < n; i += n / 10_000 {
		if v, ok := s.Get(string(benchKey(i))); !ok || v != value {
			b.Fatalf("Get(%s) = %q, %v; want the %d-byte value", benchKey(i), v, ok, len(value))
		}
	}
	if _, ok := s.Get("missing"); ok {
		b.Fatal("Get of a missing key found it")
	}
}

// BenchmarkLoad: a cold load of a compacted topic of 1,000,000 distinct keys
// (11-byte keys, 100-byte values, 4 partitions) into a Store[string,
// string], against a plain franz-go direct consumer of the same topic that
// only counts the records (with franz-go's defaults, and with the store's
// smaller partition fetch size), and a hand-written franz-go loader into a
// map[string]string; alternating (franz-go, franz-go 256K, kvstore,
// franz-go+map), five rounds each. Each starts as in a process starting up
// (coldStart): otherwise a contender would inherit the GC target that the
// previous one's big heap left (and collect less often for it), and reuse
// the memory it freed (and take fewer page faults for it). Each is timed from start (client creation /
// Open) until the end offsets listed at start are reached (WaitReady); after the timed part,
// the store's length and 10,000 Gets are checked. It reports the medians,
// their ratios, the median of each round's kvstore/franz-go ratio, and the
// heap per entry (live heap after a GC, minus before) against the raw key +
// value bytes.
func BenchmarkLoad(b *testing.B) {
	kc := testkit.Shared(b)
	const n, parts, rounds = 1_000_000, 4, 5
	t0 := time.Now()
	topic := fillTopic(b, kc, parts, n)
	fmt.Printf("produced %d records in %v\n", n, time.Since(t0).Round(time.Millisecond))
	raw := float64(len(benchKey(0)) + benchValueSize)
	value := benchValue()
	b.ResetTimer()
	for range b.N {
		var fr, f2r, mr, sr, ratios, ratios2, perEntry, inUse, mapPerEntry []float64
		for range rounds {
			coldStart()
			r, d := loadFranz(b, kc, topic)
			fr = append(fr, r)
			fmt.Printf("  franz-go:     %d records in %v, %.0f rec/s\n", n, d.Round(time.Millisecond), r)
			coldStart()
			r, d = loadFranz(b, kc, topic, kgo.FetchMaxPartitionBytes(storeFetchBytes))
			f2r = append(f2r, r)
			fmt.Printf("  franz-go 256K:%d records in %v, %.0f rec/s\n", n, d.Round(time.Millisecond), r)

			coldStart()
			before, beforeInUse := heap()
			r, d, s := loadStore(b, kc, topic, n)
			after, afterInUse := heap()
			checkGets(b, s, n, value)
			per := float64(after-before) / n
			perEntry = append(perEntry, per)
			inUse = append(inUse, float64(afterInUse-beforeInUse)/n)
			sr = append(sr, r)
			fmt.Printf("  kvstore:      %d records in %v, %.0f rec/s, heap +%.0f MiB = %.0f B/entry (spans in use %.0f B/entry)\n",
				n, d.Round(time.Millisecond), r, float64(after-before)/(1<<20), per, inUse[len(inUse)-1])
			_ = s.Close(context.Background())
			ratios = append(ratios, r/fr[len(fr)-1])
			ratios2 = append(ratios2, r/f2r[len(f2r)-1])

			coldStart() // s is closed and dead: collected
			before, _ = heap()
			r, d, m := loadFranzMap(b, kc, topic)
			after, _ = heap()
			if len(m) != n || m[string(benchKey(n/2))] != value {
				b.Fatalf("map has %d entries, want %d", len(m), n)
			}
			mr = append(mr, r)
			mapPerEntry = append(mapPerEntry, float64(after-before)/n)
			fmt.Printf("  franz-go+map: %d records in %v, %.0f rec/s, heap +%.0f MiB = %.0f B/entry\n",
				n, d.Round(time.Millisecond), r, float64(after-before)/(1<<20), float64(after-before)/n)
		}
		med := func(xs []float64) float64 { slices.Sort(xs); return xs[len(xs)/2] }
		rm, rm2, f2m := med(ratios), med(ratios2), med(f2r)
		fm, mm, sm, pm, im, mpm := med(fr), med(mr), med(sr), med(perEntry), med(inUse), med(mapPerEntry)
		b.ReportMetric(sm, "kvstore-rec/s")
		b.ReportMetric(fm, "franz-go-rec/s")
		b.ReportMetric(mm, "franz-go+map-rec/s")
		b.ReportMetric(sm/fm, "ratio")
		b.ReportMetric(rm, "round-ratio")
		b.ReportMetric(sm/f2m, "ratio-vs-256K")
		b.ReportMetric(sm/mm, "ratio-vs-map")
		b.ReportMetric(pm, "B/entry")
		fmt.Printf("cold load of %d keys (%d B key + %d B value) over %d partitions, start to end offsets (medians of %d rounds):\n"+
			"  kvstore %.0f rec/s, franz-go %.0f rec/s: ratio %.3f; franz-go+map %.0f rec/s: ratio %.3f\n",
			n, len(benchKey(0)), benchValueSize, parts, rounds, sm, fm, sm/fm, mm, sm/mm)
		fmt.Printf("  franz-go with the store's fetch size (256 KiB a partition) %.0f rec/s: ratio %.3f\n", f2m, sm/f2m)
		fmt.Printf("  medians of the rounds' ratios (each round: franz-go, franz-go 256K, kvstore): vs franz-go %.3f, vs franz-go 256K %.3f\n", rm, rm2)
		fmt.Printf("memory: kvstore %.0f B/entry (%.0f in heap spans) for %.0f B of raw key + value (%.2fx); franz-go+map %.0f B/entry (%.2fx)\n",
			pm, im, raw, pm/raw, mpm, mpm/raw)
	}
}

// BenchmarkGet: Get of a present key, from a store of 250 keys (a countries
// table, cache-resident) and of 100,000 keys (keys visited in a scattered
// order, so mostly cache misses); serial and with all Ps reading in
// parallel; and the same reads on a plain map behind one sync.RWMutex, for
// reference.
func BenchmarkGet(b *testing.B) {
	kc := testkit.Shared(b)
	for _, n := range []int{250, 100_000} {
		topic := fillTopic(b, kc, 1, n)
		_, _, s := loadStore(b, kc, topic, n)
		b.Cleanup(func() { _ = s.Close(context.Background()) })
		keys := make([]string, n)
		for i := range keys {
			keys[i] = string(benchKey(i))
		}
		stride := 7919 % n // a prime: visits every key, scattered
		ref := s.Snapshot()
		var mu sync.RWMutex
		get := func(k string) (string, bool) {
			mu.RLock()
			v, ok := ref[k]
			mu.RUnlock()
			return v, ok
		}
		for _, c := range []struct {
			name string
			get  func(string) (string, bool)
		}{{"kvstore", s.Get}, {"map+RWMutex", get}} {
			b.Run(fmt.Sprintf("keys=%d/%s", n, c.name), func(b *testing.B) {
				i := 0
				for b.Loop() {
					if _, ok := c.get(keys[i]); !ok {
						b.Fatal("missing key")
					}
					if i += stride; i >= n {
						i -= n
					}
				}
			})
			b.Run(fmt.Sprintf("keys=%d/%s/parallel", n, c.name), func(b *testing.B) {
				var seed atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					i := int(seed.Add(12345)) % n
					for pb.Next() {
						if _, ok := c.get(keys[i]); !ok {
							b.Fatal("missing key")
						}
						if i += stride; i >= n {
							i -= n
						}
					}
				})
			})
		}
	}
}

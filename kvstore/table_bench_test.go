package kvstore

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkTableLoad: the in-memory part of a load, with no Kafka: 1,000,000
// records (11-byte keys, 100-byte values, in polls of 50,000) added to and
// flushed into a presized table, for the arenaTable (string keys and
// values, as the String codecs give) and the mapTable (what any other key
// type gets; here with string keys and values). It reports ns per record
// and the live heap per entry against the raw 111 bytes.
//
//	go test ./kvstore -run '^$' -bench TableLoad
func BenchmarkTableLoad(b *testing.B) {
	const n, poll = 1_000_000, 50_000
	value := make([]byte, 100)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	// One poll's records, their keys rewritten for each poll (as fetch
	// buffers are reused): 1M live records would make every GC cycle of
	// the benchmark scan them.
	recs := make([]*kgo.Record, poll)
	keys := make([]byte, 11*poll)
	for i := range recs {
		recs[i] = &kgo.Record{Key: keys[11*i : 11*i+11 : 11*i+11], Value: value}
	}
	setKeys := func(lo int) {
		for i, r := range recs {
			_ = fmt.Appendf(r.Key[:0], "key-%07d", lo+i) // in place: cap is 11
		}
	}
	decode := func(r *kgo.Record) (string, string, error) {
		if !utf8.Valid(r.Key) || !utf8.Valid(r.Value) {
			return "", "", fmt.Errorf("invalid UTF-8")
		}
		return string(r.Key), string(r.Value), nil
	}
	for _, c := range []struct {
		name string
		new  func() table[string, string]
	}{
		{"arena", func() table[string, string] { return newArenaTable[string, string](stringValues, nil, nil, nil) }},
		{"map", func() table[string, string] { return newMapTable(decode) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			var perEntry float64
			for b.Loop() {
				b.StopTimer()
				before := liveHeap()
				b.StartTimer()
				tab := c.new()
				tab.presize(n)
				for lo := 0; lo < n; lo += poll {
					b.StopTimer()
					setKeys(lo)
					b.StartTimer()
					tab.begin(poll)
					for _, r := range recs {
						if err := tab.add(r); err != nil {
							b.Fatal(err)
						}
					}
					tab.flush(nil)
				}
				tab.rightSize()
				b.StopTimer()
				perEntry = float64(liveHeap()-before) / n
				if v, ok := tab.get("key-0500000"); !ok || v != string(value) {
					b.Fatalf("get = %q %v", v, ok)
				}
				runtime.KeepAlive(tab)
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed())/float64(b.N)/n, "ns/record")
			b.ReportMetric(perEntry, "B/entry")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// BenchmarkTableGet: a table's get of present keys (11-byte keys, 100-byte
// values), 250 keys and 100,000 keys visited in a scattered order, serial
// and with all Ps reading, for the arenaTable and the mapTable (the
// store's table before the arenaTable), in one run.
//
//	go test ./kvstore -run '^$' -bench TableGet
func BenchmarkTableGet(b *testing.B) {
	value := make([]byte, 100)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	decode := func(r *kgo.Record) (string, string, error) { return string(r.Key), string(r.Value), nil }
	for _, n := range []int{250, 100_000} {
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("key-%07d", i)
		}
		for _, c := range []struct {
			name string
			tab  table[string, string]
		}{
			{"arena", newArenaTable[string, string](stringValues, nil, nil, nil)},
			{"map", newMapTable(decode)},
		} {
			for _, k := range keys {
				if err := c.tab.add(&kgo.Record{Key: []byte(k), Value: value}); err != nil {
					b.Fatal(err)
				}
			}
			c.tab.flush(nil)
			b.Run(fmt.Sprintf("keys=%d/%s", n, c.name), func(b *testing.B) {
				stride := 7919 % n
				i := 0
				for b.Loop() {
					if v, ok := c.tab.get(keys[i]); !ok || len(v) != len(value) {
						b.Fatal("missing key")
					}
					if i += stride; i >= n {
						i -= n
					}
				}
			})
			b.Run(fmt.Sprintf("keys=%d/%s/parallel", n, c.name), func(b *testing.B) {
				stride := 7919 % n
				var seed atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					i := int(seed.Add(12345)) % n
					for pb.Next() {
						if v, ok := c.tab.get(keys[i]); !ok || len(v) != len(value) {
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

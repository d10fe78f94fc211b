package kvstore

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/testkit"
)

// A store of strings loads a topic written with each of Kafka's compression
// codecs, and with none, to the same contents, on real Kafka. While it
// loads, the values of uncompressed batches stay in the fetch responses
// franz-go read, and those of compressed batches whose decompressed size
// their format gives (all of franz-go's but lz4, which writes no content
// size) where franz-go decompressed them; the others, and values written
// after the load, are copied. Records handed to OnDecodeError are left
// intact though the load reuses record memory. The store fetches more bytes
// at a time from a topic of uncompressed batches (see fetchBytes).
func TestLoadsEveryCompressionCodec(t *testing.T) {
	kc := testkit.Shared(t)
	for _, c := range []struct {
		name  string
		codec kgo.CompressionCodec
		pins  bool
	}{
		{"none", kgo.NoCompression(), true},
		{"gzip", kgo.GzipCompression(), true},
		{"snappy", kgo.SnappyCompression(), true},
		{"lz4", kgo.Lz4Compression(), false},
		{"zstd", kgo.ZstdCompression(), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			topic := kc.NewTopic(t, 3, map[string]*string{"cleanup.policy": new("compact")})
			cl := kc.Client(t, kgo.ProducerBatchCompression(c.codec), kgo.ProducerLinger(5*time.Millisecond))
			model := map[string]string{}
			var recs []*kgo.Record
			undecodable := 0
			for i := range 20_000 {
				key := fmt.Sprintf("key-%d", i%7_000)
				r := &kgo.Record{Topic: topic, Key: []byte(key)}
				switch {
				case i%97 == 0: // a tombstone
					delete(model, key)
				case i%211 == 0: // not UTF-8: skipped, the key keeps its value
					r.Value = []byte{'x', 0xff, byte(i)}
					undecodable++
				default:
					v := fmt.Sprintf(`{"id":%d,"name":"record %d","tags":[%q]}`, i, i*31, strings.Repeat("t", i%50))
					if i%101 == 0 {
						v = "" // an empty value is a value
					}
					r.Value = []byte(v)
					model[key] = v
				}
				recs = append(recs, r)
			}
			if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}

			var (
				mu      sync.Mutex
				skipped []*kgo.Record
			)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := Open(ctx, whippet.Connection{Brokers: kc.Brokers}, topic, codec.String(), codec.String(), AwaitApplied(true),
				OnDecodeError(func(r *kgo.Record, _ error) {
					mu.Lock()
					skipped = append(skipped, r)
					mu.Unlock()
				}))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(context.Background())
			if err := s.WaitReady(ctx); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int32{true: compressedFetchBytes, false: uncompressedFetchBytes}[c.name != "none"]; s.fetchSize != want {
				t.Fatalf("fetch size %d, want %d", s.fetchSize, want)
			}
			if got := s.Snapshot(); !maps.Equal(got, model) {
				t.Fatalf("loaded %d keys, want %d (or different values)", len(got), len(model))
			}
			mu.Lock()
			for _, r := range skipped {
				if !strings.HasPrefix(string(r.Key), "key-") || len(r.Value) != 3 || r.Value[1] != 0xff || r.Topic != topic {
					t.Fatalf("a record given to OnDecodeError changed: %+v", *r)
				}
			}
			if len(skipped) != undecodable {
				t.Fatalf("OnDecodeError saw %d records, want %d", len(skipped), undecodable)
			}
			mu.Unlock()

			at := s.tab.(*arenaTable[string, string])
			pinned := 0
			for k := range model {
				if v, _ := s.Get(k); len(v) > 0 && pinnedValue(at, v) {
					pinned++
				}
			}
			if c.pins && pinned < len(model)/2 || !c.pins && pinned > 0 {
				t.Fatalf("%d of %d values were kept where franz-go decompressed them", pinned, len(model))
			}
			t.Logf("%s: %d of %d values pinned", c.name, pinned, len(model))
			if err := s.Put(ctx, "key-1", "written after the load"); err != nil {
				t.Fatal(err)
			}
			if v, _ := s.Get("key-1"); v != "written after the load" || pinnedValue(at, v) {
				t.Fatalf("key-1 = %q (pinned: %v), want the value written after the load, copied", v, pinnedValue(at, v))
			}
			for i := range at.shards {
				at.shards[i].mu.RLock()
			}
			checkPins(t, at)
			for i := range at.shards {
				at.shards[i].mu.RUnlock()
			}
		})
	}
}

// pinnedValue reports whether v lies in a pool buffer that at holds.
func pinnedValue(at *arenaTable[string, string], v string) bool {
	lo := uintptr(unsafe.Pointer(unsafe.StringData(v)))
	for i := range at.shards {
		s := &at.shards[i]
		s.mu.RLock()
		for _, b := range s.raw.pins {
			if b != nil && lo >= b.lo && lo+uintptr(len(v)) <= b.hi {
				s.mu.RUnlock()
				return true
			}
		}
		s.mu.RUnlock()
	}
	return false
}

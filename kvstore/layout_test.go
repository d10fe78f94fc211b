package kvstore_test

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/kvstore"
	"github.com/whippet-go/whippet/testkit"
)

// The store keeps string keys with String or Bytes values as raw bytes in
// arenas, string keys with other values as decoded values, and other keys
// in Go maps: each layout loads, skips undecodable records, deletes on
// tombstones, keeps the bytes metric, and reports changes the same way.
func TestLayouts(t *testing.T) {
	kc := testkit.Shared(t)
	t.Run("String/String", func(t *testing.T) {
		checkLayout(t, kc, codec.String(), codec.String(),
			func(i int) string { return fmt.Sprintf("key-%d", i) },
			func(i int) string {
				if i == 107 {
					return "" // an empty value is a value
				}
				return fmt.Sprintf("value %d ✓", i)
			},
			func(a, b string) bool { return a == b },
			[][2][]byte{{[]byte("key-5"), []byte("bad \xff")}, {[]byte("key-\xff"), []byte("x")}})
	})
	t.Run("String/Bytes", func(t *testing.T) {
		checkLayout(t, kc, codec.String(), codec.Bytes(),
			func(i int) string { return fmt.Sprintf("key-%d", i) },
			func(i int) []byte {
				if i == 107 {
					return []byte{}
				}
				return fmt.Appendf(nil, "\xff\x00%d", i) // any bytes
			},
			func(a, b []byte) bool { return bytes.Equal(a, b) && (a == nil) == (b == nil) },
			[][2][]byte{{[]byte("key-\xff"), []byte("x")}})
	})
	t.Run("String/JSON", func(t *testing.T) {
		checkLayout(t, kc, codec.String(), codec.JSON[Value](),
			func(i int) string { return fmt.Sprintf("key-%d", i) },
			func(i int) Value { return Value{Version: i, Text: "t"} },
			func(a, b Value) bool { return a == b },
			[][2][]byte{{[]byte("key-5"), []byte("not json")}, {[]byte("key-\xff"), []byte("{}")}})
	})
	t.Run("JSON/String", func(t *testing.T) {
		checkLayout(t, kc, codec.JSON[int](), codec.String(),
			func(i int) int { return i },
			func(i int) string { return fmt.Sprint("v", i) },
			func(a, b string) bool { return a == b },
			[][2][]byte{{[]byte("not json"), []byte("x")}, {[]byte("5"), []byte("\xff")}})
	})
}

// checkLayout loads a topic of 100 keys written twice, a tombstone for
// key(6) and then the bad records (which must be skipped), and checks the
// store's contents, metrics and changes.
func checkLayout[K comparable, V any](t *testing.T, kc *testkit.Cluster, keys codec.Codec[K], values codec.Codec[V],
	key func(int) K, val func(int) V, eq func(a, b V) bool, bad [][2][]byte) {
	topic := newCompactedTopic(t, kc, 2)
	enc := func(k K, v *V) *kgo.Record {
		kb, err := keys.Encode(k)
		if err != nil {
			t.Fatal(err)
		}
		r := &kgo.Record{Topic: topic, Key: kb}
		if v != nil {
			if r.Value, err = values.Encode(*v); err != nil {
				t.Fatal(err)
			}
			if r.Value == nil {
				r.Value = []byte{}
			}
		}
		return r
	}
	var recs []*kgo.Record
	for i := range 200 {
		v := val(i)
		recs = append(recs, enc(key(i%100), &v))
	}
	recs = append(recs, enc(key(6), nil))
	for _, b := range bad {
		recs = append(recs, &kgo.Record{Topic: topic, Key: b[0], Value: b[1]})
	}
	kc.Produce(t, recs...)

	reg := prometheus.NewRegistry()
	var decodeErrors atomic.Int64
	ctx := ctxT(t, 60*time.Second)
	s, err := kvstore.Open(ctx, whippet.Connection{Brokers: kc.Brokers, Registerer: reg}, topic, keys, values,
		kvstore.OnDecodeError(func(*kgo.Record, error) { decodeErrors.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if n := decodeErrors.Load(); n != int64(len(bad)) {
		t.Fatalf("%d records skipped, want %d", n, len(bad))
	}
	if s.Len() != 99 {
		t.Fatalf("Len = %d, want 99", s.Len())
	}
	var size int
	for i := range 100 {
		v, ok := s.Get(key(i))
		if i == 6 {
			if ok {
				t.Fatalf("key(6) = %v after its tombstone", v)
			}
			continue
		}
		if !ok || !eq(v, val(100+i)) {
			t.Fatalf("Get(key(%d)) = %#v %v, want %#v", i, v, ok, val(100+i))
		}
		w := val(100 + i)
		r := enc(key(i), &w)
		size += len(r.Key) + len(r.Value)
	}
	if got := testutil.ToFloat64(gaugeOf(t, reg, "whippet_kvstore_bytes")); got != float64(size) {
		t.Fatalf("bytes metric %v, want %d", got, size)
	}

	changes := make(chan kvstore.Change[K, V], 10)
	if err := s.Subscribe(ctx, func(c kvstore.Change[K, V]) { changes <- c }, kvstore.SkipExisting()); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, key(1), val(1000)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, key(2)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []kvstore.Change[K, V]{
		{Key: key(1), Old: val(101), New: val(1000), Existed: true},
		{Key: key(2), Old: val(102), Existed: true, Deleted: true},
	} {
		select {
		case c := <-changes:
			if c.Key != want.Key || !eq(c.Old, want.Old) || (!c.Deleted && !eq(c.New, want.New)) || c.Existed != want.Existed || c.Deleted != want.Deleted {
				t.Fatalf("change %+v, want %+v", c, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no change, want %+v", want)
		}
	}
	snap := s.Snapshot()
	n := 0
	for k, v := range s.All() {
		n++
		if w, ok := snap[k]; !ok || !eq(v, w) {
			t.Fatalf("All gives %v=%v, Snapshot %v", k, v, snap[k])
		}
	}
	if n != 98 || len(snap) != 98 || !eq(snap[key(1)], val(1000)) {
		t.Fatalf("All %d entries, Snapshot %d, key(1) = %v", n, len(snap), snap[key(1)])
	}
}

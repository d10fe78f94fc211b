package kvstore

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"testing"
	"unsafe"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/twmb/franz-go/pkg/kgo"
)

// franz-go's own decompressor, given the store's pool, decompresses every
// batch whose format says how big it decompresses into a buffer the pool
// made (so that the store can keep its values where they are), and the
// others as without a pool.
func TestLoadPoolDecompressesIntoItsBuffers(t *testing.T) {
	var data []byte // about 40 kB, compressing 2-5 times (repeated text would be over maxPinRatio)
	for i := range 4000 {
		data = fmt.Appendf(data, "value %d, ", i*i*7919)
	}
	gz := func() []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		_, _ = w.Write(data)
		_ = w.Close()
		return b.Bytes()
	}
	zs := func() []byte {
		enc, err := zstd.NewWriter(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer enc.Close()
		return enc.EncodeAll(data, nil)
	}
	lz := func(opts ...lz4.Option) []byte {
		var b bytes.Buffer
		w := lz4.NewWriter(&b)
		if err := w.Apply(opts...); err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write(data)
		_ = w.Close()
		return b.Bytes()
	}
	xerial := func() []byte { // the Java client's framing: 32 KiB blocks
		out := append(append([]byte{}, xerialPrefix...), 0, 0, 0, 1, 0, 0, 0, 1)
		for rem := data; len(rem) > 0; {
			n := min(len(rem), 32<<10)
			block := s2.EncodeSnappy(nil, rem[:n])
			out = binary.BigEndian.AppendUint32(out, uint32(len(block)))
			out = append(out, block...)
			rem = rem[n:]
		}
		return out
	}
	for _, c := range []struct {
		name       string
		codec      kgo.CompressionCodecType
		compressed []byte
		pinned     bool
	}{
		{"snappy", kgo.CodecSnappy, s2.EncodeSnappy(nil, data), true},
		{"snappy xerial", kgo.CodecSnappy, xerial(), true},
		{"gzip", kgo.CodecGzip, gz(), true},
		{"zstd", kgo.CodecZstd, zs(), true},
		{"lz4 with content size", kgo.CodecLz4, lz(lz4.SizeOption(uint64(len(data)))), true},
		{"lz4 without content size", kgo.CodecLz4, lz(), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			pool := &loadPool{}
			out, err := kgo.DefaultDecompressor(pool).Decompress(c.compressed, c.codec)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, data) {
				t.Fatalf("decompressed %d bytes, not the %d compressed", len(out), len(data))
			}
			p := &pinned{pool: pool}
			p.poll()
			buf := p.find(out)
			if pinnedHere := buf != nil; pinnedHere != c.pinned {
				t.Fatalf("decompressed into a pool buffer: %v, want %v (%d buffers made)", pinnedHere, c.pinned, len(p.bufs))
			}
			if buf != nil && len(buf.b)-len(data) > readSlack {
				t.Fatalf("buffer of %d bytes for %d", len(buf.b), len(data))
			}
		})
	}
}

// A batch claiming more than the pool's limits (a corrupt or hostile
// size), or whose format says nothing, gets no buffer: franz-go then
// decompresses, or rejects, it as without a pool.
func TestLoadPoolRefusesImplausibleSizes(t *testing.T) {
	hugeSnappy := binary.AppendUvarint(nil, maxPinBuffer+1)
	hugeRatio := binary.AppendUvarint(nil, 1<<20) // 1 MiB from 3 bytes
	gzipClaim := append(make([]byte, 20), 0, 0, 0, 0x40)
	for _, c := range []struct {
		name  string
		codec kgo.CompressionCodecType
		data  []byte
	}{
		{"snappy over the maximum", kgo.CodecSnappy, hugeSnappy},
		{"snappy at a ratio over 256", kgo.CodecSnappy, hugeRatio},
		{"gzip claiming 1 GiB", kgo.CodecGzip, gzipClaim},
		{"gzip too short", kgo.CodecGzip, []byte{1, 2, 3}},
		{"not zstd", kgo.CodecZstd, []byte("definitely not a frame")},
		{"not lz4", kgo.CodecLz4, []byte("definitely not a frame")},
		{"broken xerial", kgo.CodecSnappy, append(append([]byte{}, xerialPrefix...), 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 9)},
		{"no codec", kgo.CodecNone, []byte("plain")},
	} {
		pool := &loadPool{}
		if b := pool.GetDecompressBytes(c.data, c.codec); b != nil || len(pool.made) != 0 {
			t.Errorf("%s: got a buffer of %d bytes", c.name, cap(b))
		}
	}
}

// pinnedBatch returns records of n keys (prefix + i) whose values (value(i))
// lie in one buffer of the table's pool, each after gap bytes (a batch's
// framing and key).
func pinnedBatch(t *testing.T, tab *arenaTable[string, string], prefix string, n, gap int, value func(int) string) []*kgo.Record {
	t.Helper()
	size := 0
	for i := range n {
		size += gap + len(value(i))
	}
	buf := tab.pin.pool.newBuffer(size)
	if buf == nil {
		t.Fatal("the pool made no buffer")
	}
	buf = buf[:size]
	recs := make([]*kgo.Record, n)
	off := 0
	for i := range n {
		off += gap
		v := value(i)
		recs[i] = &kgo.Record{Key: fmt.Appendf(nil, "%s%d", prefix, i), Value: buf[off : off+copy(buf[off:], v) : off+len(v)]}
		off += len(v)
	}
	return recs
}

func apply(t *testing.T, tab *arenaTable[string, string], recs []*kgo.Record) {
	t.Helper()
	tab.begin(len(recs))
	for _, r := range recs {
		if err := tab.add(r); err != nil {
			t.Fatal(err)
		}
	}
	tab.flush(nil)
}

// Values that lie in the pool's buffers are kept there (no copy) and the
// store counts the buffers' bytes once; once every value in them is
// overwritten, the shards' compactions let go of them.
func TestPinnedValuesAndTheirRelease(t *testing.T) {
	tab := newArenaTable[string, string](stringValues, nil, nil, nil)
	tab.pin = &pinned{pool: &loadPool{}}
	const n = 50_000
	value := func(i int) string { return fmt.Sprintf("%0100d", i) }
	big := pinnedBatch(t, tab, "k", n, 12, value)
	apply(t, tab, big)
	one := pinnedBatch(t, tab, "single", 1, 12, value) // a buffer one shard holds
	apply(t, tab, one)
	for i := range n {
		v, ok := tab.get(fmt.Sprint("k", i))
		if !ok || v != value(i) || !pinnedValue(tab, v) {
			t.Fatalf("k%d = %.20q… %v (in a pool buffer: %v)", i, v, ok, pinnedValue(tab, v))
		}
	}
	wantPinned := int64(n*(12+100) + 12 + 100)
	if got := tab.pinnedBytes.Load(); got != wantPinned {
		t.Fatalf("pinnedBytes %d, want the two buffers' %d", got, wantPinned)
	}
	checkPins(t, tab)

	// Overwrite every key with a copied value (as from an uncompressed
	// batch): each shard's garbage reaches its live bytes, it compacts,
	// and lets go of the buffers.
	over := make([]*kgo.Record, 0, n+1)
	for i := range n {
		over = append(over, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: []byte(value(i + 1))})
	}
	over = append(over, &kgo.Record{Key: []byte("single0"), Value: []byte("new")})
	apply(t, tab, over)
	if got := tab.pinnedBytes.Load(); got != 0 {
		t.Fatalf("pinnedBytes %d after every pinned value was overwritten", got)
	}
	for i := range n {
		if v, _ := tab.get(fmt.Sprint("k", i)); v != value(i+1) || pinnedValue(tab, v) {
			t.Fatalf("k%d = %.20q… after the overwrite", i, v)
		}
	}
	checkPins(t, tab)
}

// Batches whose framing outweighs their values (tiny values, big keys or
// headers) would keep more memory pinned than they hold: the table copies
// the values out and pins no more.
func TestWastefulPinningStops(t *testing.T) {
	tab := newArenaTable[string, string](stringValues, nil, nil, nil)
	tab.pin = &pinned{pool: &loadPool{}}
	const n = 50_000
	value := func(i int) string { return string(rune('a' + i%26)) }
	apply(t, tab, pinnedBatch(t, tab, "k", n, 100, value)) // 5 MB for 50 kB of values
	if got := tab.pinnedBytes.Load(); got != 0 {
		t.Fatalf("pinnedBytes %d: the values were not copied out", got)
	}
	for i := range n {
		if v, ok := tab.get(fmt.Sprint("k", i)); !ok || v != value(i) || pinnedValue(tab, v) {
			t.Fatalf("k%d = %q %v", i, v, ok)
		}
	}
	if b := tab.pin.pool.newBuffer(100); b != nil {
		t.Fatal("the pool still makes buffers")
	}
	checkPins(t, tab)
}

// The pool's record slices: a poll's slices are reused once the poll is
// applied, never those of records given to OnDecodeError, and a slice whose
// records reach no poll is forgotten after two polls.
func TestRecordSlicesReuse(t *testing.T) {
	pool := &loadPool{}
	fill := func(recs []kgo.Record, n int) []*kgo.Record {
		recs = recs[:n]
		ptrs := make([]*kgo.Record, n)
		for i := range recs {
			recs[i] = kgo.Record{Key: []byte("k"), Offset: int64(i)}
			ptrs[i] = &recs[i]
		}
		return ptrs
	}
	poll := func(ptrs ...[]*kgo.Record) kgo.Fetches {
		var parts []kgo.FetchPartition
		for i, p := range ptrs {
			parts = append(parts, kgo.FetchPartition{Partition: int32(i), Records: p})
		}
		return kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "t", Partitions: parts}}}}
	}
	a, b, c := pool.GetRecords(100), pool.GetRecords(1000), pool.GetRecords(10)
	if cap(a) < 100 || cap(b) < 1000 || cap(c) < 10 || len(a)+len(b)+len(c) != 0 {
		t.Fatalf("capacities %d %d %d", cap(a), cap(b), cap(c))
	}
	ra, rb := fill(a, 100), fill(b, 1000)
	fill(c, 10)                                      // its batch reaches no poll
	pool.reuse(poll(ra, rb), []*kgo.Record{rb[500]}) // b's record 500 went to OnDecodeError
	if string(rb[500].Key) != "k" || rb[500].Offset != 500 {
		t.Fatalf("the record given to OnDecodeError changed: %+v", *rb[500])
	}
	if got := pool.GetRecords(90); unsafe.SliceData(got[:1]) != unsafe.SliceData(a[:1]) {
		t.Fatal("a's slice was not reused")
	}
	if got := pool.GetRecords(700); unsafe.SliceData(got[:1]) == unsafe.SliceData(b[:1]) {
		t.Fatal("b's slice was reused though one of its records went to OnDecodeError")
	}
	isLent := func(s []kgo.Record) bool {
		for _, l := range pool.lent {
			if unsafe.SliceData(l.recs) == unsafe.SliceData(s[:1]) {
				return true
			}
		}
		return false
	}
	if !isLent(c) {
		t.Fatal("c was forgotten at the first poll")
	}
	pool.reuse(poll(), nil)
	pool.reuse(poll(), nil)
	if isLent(c) || isLent(b) {
		t.Fatalf("after two more polls: c lent %v, b lent %v", isLent(c), isLent(b))
	}
	pool.stop()
	if got := pool.GetRecords(10); got != nil || pool.free != nil {
		t.Fatal("a stopped pool still gives out record slices")
	}
}

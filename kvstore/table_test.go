package kvstore

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
)

// testTables returns a table of each kind for string keys, with values V
// encoded from an int by enc: mapTable and arenaTable with the given value
// kind.
func testTables[V any](kind valueKind, dec func([]byte) (V, error)) map[string]table[string, V] {
	decode := func(r *kgo.Record) (string, V, error) {
		var v V
		if !utf8.Valid(r.Key) {
			return "", v, errors.New("key: invalid UTF-8")
		}
		if r.Value == nil {
			return string(r.Key), v, nil
		}
		v, err := dec(bytes.Clone(r.Value))
		return string(r.Key), v, err
	}
	utf8Err := func([]byte) error { return errors.New("invalid UTF-8") }
	tables := map[string]table[string, V]{
		"map":   newMapTable(decode),
		"arena": newArenaTable[string](kind, utf8Err, utf8Err, dec),
	}
	if kind != decodedValues {
		pinning := newArenaTable[string](kind, utf8Err, utf8Err, dec)
		pinning.pin = &pinned{pool: &loadPool{}}
		tables["arena-pinning"] = pinning
	}
	return tables
}

// records returns the records of ops. For a table that pins values (see
// loadPool), the values lie in one buffer of its pool (each after its key,
// as in a decompressed batch), except every fifth batch's, which lie in
// none (as an uncompressed batch's).
func records[V any](tab table[string, V], batch int, ops []modelOp) []*kgo.Record {
	recs := make([]*kgo.Record, len(ops))
	for i, o := range ops {
		recs[i] = &kgo.Record{Key: []byte(o.key), Value: o.value}
	}
	at, ok := tab.(*arenaTable[string, V])
	if !ok || at.pin == nil || batch%5 == 4 {
		return recs
	}
	size := 0
	for _, o := range ops {
		size += len(o.key) + len(o.value)
	}
	buf := at.pin.pool.newBuffer(size)
	if buf == nil {
		return recs // the table stopped pinning (see unpinIfWasteful)
	}
	buf = buf[:size]
	off := 0
	for i, o := range ops {
		off += copy(buf[off:], o.key)
		if o.value != nil {
			recs[i].Value = buf[off : off+copy(buf[off:], o.value) : off+len(o.value)]
			off += len(o.value)
		}
	}
	return recs
}

// modelOp is one record of the model test.
type modelOp struct {
	key   string
	value []byte // nil: tombstone
}

// randomOps returns n records over a small key space (including the empty
// key), with values of varied sizes (empty, small, some bigger than
// ownChunk), about one in six a tombstone.
func randomOps(rng *rand.Rand, n, keys int, num bool) []modelOp {
	ops := make([]modelOp, n)
	for i := range ops {
		k := rng.IntN(keys)
		key := ""
		if k > 0 {
			key = fmt.Sprintf("key-%d", k)
		}
		ops[i].key = key
		switch r := rng.IntN(100); {
		case r < 16:
		case num:
			ops[i].value = strconv.AppendInt([]byte{}, rng.Int64N(1e9), 10)
		case r < 20:
			ops[i].value = []byte{}
		case r < 21:
			ops[i].value = bytes.Repeat([]byte{'x', byte('a' + i%26)}, ownChunk/2+rng.IntN(100))
		default:
			ops[i].value = []byte(strings.Repeat(strconv.Itoa(i), 1+rng.IntN(40)))
		}
	}
	return ops
}

// checkTable applies random batches of records to tab and, after each
// flush, checks the entry count, the bytes, every key's value, the shards'
// contents and the changes flush emits against a plain map replaying the
// same records one by one.
func checkTable[V any](t *testing.T, tab table[string, V], num bool, enc func(V) []byte) {
	rng := rand.New(rand.NewPCG(1, 2))
	model := map[string][]byte{}
	var entries, size int64
	type held struct {
		v    V
		want []byte
	}
	var kept []held // values handed out earlier: they must never change
	pinnedSeen := 0 // entries found pinned after a batch
	for batch := range 40 {
		n := 1 + rng.IntN(50)
		if batch%5 == 0 {
			n = parallelApplyMin + rng.IntN(3000) // split between goroutines
		}
		ops := randomOps(rng, n, 300, num)
		recs := records(tab, batch, ops)
		tab.begin(len(ops))
		var want []Change[string, []byte]
		for i, o := range ops {
			old, existed := model[o.key]
			if o.value == nil {
				delete(model, o.key)
				if existed {
					want = append(want, Change[string, []byte]{Key: o.key, Old: old, Existed: true, Deleted: true})
				}
			} else {
				model[o.key] = o.value
				want = append(want, Change[string, []byte]{Key: o.key, Old: old, New: o.value, Existed: existed})
			}
			if err := tab.add(recs[i]); err != nil {
				t.Fatal(err)
			}
		}
		var got []Change[string, V]
		var emit func(Change[string, V])
		if batch%2 == 0 {
			emit = func(c Change[string, V]) { got = append(got, c) }
		}
		e, b, applied := tab.flush(emit)
		entries += e
		size += b
		if applied != int64(len(ops)) {
			t.Fatalf("batch %d: applied %d of %d", batch, applied, len(ops))
		}
		if emit != nil {
			if len(got) != len(want) {
				t.Fatalf("batch %d: %d changes, want %d", batch, len(got), len(want))
			}
			for i, c := range got {
				w := want[i]
				if c.Key != w.Key || c.Existed != w.Existed || c.Deleted != w.Deleted ||
					w.Existed && !bytes.Equal(enc(c.Old), w.Old) || !w.Deleted && !bytes.Equal(enc(c.New), w.New) {
					t.Fatalf("batch %d change %d: %q existed %v deleted %v old %q new %q; want %q %v %v %q %q",
						batch, i, c.Key, c.Existed, c.Deleted, enc(c.Old), enc(c.New), w.Key, w.Existed, w.Deleted, w.Old, w.New)
				}
			}
		}
		var wantSize int64
		for k, v := range model {
			wantSize += int64(len(k) + len(v))
		}
		if entries != int64(len(model)) || size != wantSize {
			t.Fatalf("batch %d: entries %d bytes %d, want %d and %d", batch, entries, size, len(model), wantSize)
		}
		for k := range 300 {
			key := ""
			if k > 0 {
				key = fmt.Sprintf("key-%d", k)
			}
			v, ok := tab.get(key)
			w, wok := model[key]
			if ok != wok || ok && !bytes.Equal(enc(v), w) {
				t.Fatalf("batch %d: get(%q) = %q %v, want %q %v", batch, key, enc(v), ok, w, wok)
			}
			if ok && k%7 == 0 {
				kept = append(kept, held{v, bytes.Clone(w)})
			}
		}
		seen := map[string]bool{}
		for sh := range shardCount {
			for _, p := range tab.appendShard(sh, nil) {
				if seen[p.k] || !bytes.Equal(enc(p.v), model[p.k]) {
					t.Fatalf("batch %d: shard %d has %q = %q (seen %v), want %q", batch, sh, p.k, enc(p.v), seen[p.k], model[p.k])
				}
				seen[p.k] = true
			}
		}
		if len(seen) != len(model) {
			t.Fatalf("batch %d: shards hold %d keys, want %d", batch, len(seen), len(model))
		}
		if at, ok := tab.(*arenaTable[string, V]); ok && at.pin != nil {
			pinnedSeen += checkPins(t, at)
		}
	}
	for _, h := range kept {
		if !bytes.Equal(enc(h.v), h.want) {
			t.Fatalf("a value handed out earlier changed to %q, want %q", enc(h.v), h.want)
		}
	}
	if at, ok := tab.(*arenaTable[string, V]); ok {
		compactions := 0
		for i := range at.shards {
			for _, a := range []*arena{&at.shards[i].keys, &at.shards[i].raw} {
				if a.full() {
					t.Fatalf("shard %d: %d garbage bytes for %d live: not compacted", i, a.garbage, a.live)
				}
				compactions += a.compactions
			}
		}
		if compactions == 0 && at.values != decodedValues { // decoded: keys only, too few bytes
			t.Fatal("no shard was compacted")
		}
		if at.pin != nil && pinnedSeen == 0 {
			t.Fatal("no entry's value was ever pinned")
		}
	}
}

// checkPins checks that a pinning table's count of pinned bytes and its
// buffers' reference counts match the buffers its shards hold, and returns
// the number of entries whose value is pinned.
func checkPins[V any](t *testing.T, at *arenaTable[string, V]) int {
	t.Helper()
	holders := map[*pinBuf]int32{}
	pinnedEntries := 0
	for i := range at.shards {
		s := &at.shards[i]
		held := map[*pinBuf]bool{}
		for _, b := range s.raw.pins {
			if b != nil && !held[b] {
				held[b] = true
				holders[b]++
			}
		}
		live := 0
		for _, e := range s.idx {
			if e != 0 {
				if sl := s.slots[uint32(e)-1]; s.raw.pinned(sl.vc) {
					pinnedEntries++
					live += int(sl.vlen)
				}
			}
		}
		if live != s.raw.pinLive {
			t.Fatalf("shard %d: pinLive %d, its entries hold %d bytes in pinned buffers", i, s.raw.pinLive, live)
		}
	}
	var total int64
	for b, n := range holders {
		total += int64(len(b.b))
		if b.refs.Load() != n {
			t.Fatalf("buffer %d: refs %d, held by %d shards", b.id, b.refs.Load(), n)
		}
	}
	if got := at.pinnedBytes.Load(); got != total {
		t.Fatalf("pinnedBytes %d, the buffers held add up to %d", got, total)
	}
	return pinnedEntries
}

// Every table applies each key's records in order, whichever shards and
// goroutines they land on, reports what each key held before, and keeps
// the counts; the arenaTable also compacts its arenas without changing the
// values it handed out.
func TestTablesAgainstModel(t *testing.T) {
	// Big batches are split between GOMAXPROCS/2 goroutines: make that
	// two, also on a 2-core machine.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	t.Run("string", func(t *testing.T) {
		dec := func(b []byte) (string, error) { return string(b), nil }
		for name, tab := range testTables(stringValues, dec) {
			t.Run(name, func(t *testing.T) { checkTable(t, tab, false, func(v string) []byte { return []byte(v) }) })
		}
	})
	t.Run("bytes", func(t *testing.T) {
		dec := func(b []byte) ([]byte, error) { return b, nil }
		for name, tab := range testTables(bytesValues, dec) {
			t.Run(name, func(t *testing.T) {
				checkTable(t, tab, false, func(v []byte) []byte {
					if v == nil {
						return nil
					}
					return append([]byte{}, v...) // keep empty non-nil
				})
			})
		}
	})
	t.Run("decoded", func(t *testing.T) {
		dec := func(b []byte) (int64, error) { return strconv.ParseInt(string(b), 10, 64) }
		for name, tab := range testTables(decodedValues, dec) {
			t.Run(name, func(t *testing.T) {
				checkTable(t, tab, true, func(v int64) []byte { return strconv.AppendInt(nil, v, 10) })
			})
		}
	})
}

// A []byte value of the arenaTable is non-nil even when empty, as the Bytes
// codec's would be.
func TestArenaEmptyBytesValue(t *testing.T) {
	tab := newArenaTable[string, []byte](bytesValues, nil, nil, nil)
	if err := tab.add(&kgo.Record{Key: []byte("k"), Value: []byte{}}); err != nil {
		t.Fatal(err)
	}
	tab.flush(nil)
	if v, ok := tab.get("k"); !ok || v == nil || len(v) != 0 {
		t.Fatalf("get = %#v %v, want an empty non-nil slice", v, ok)
	}
}

// The arenaTable reports a key or value that is not UTF-8 with the codec's
// error, and skips the record.
func TestArenaRejectsInvalidUTF8(t *testing.T) {
	keyErr := func([]byte) error { return errors.New("bad key bytes") }
	valueErr := func([]byte) error { return errors.New("bad value bytes") }
	tab := newArenaTable[string, string](stringValues, keyErr, valueErr, nil)
	if err := tab.add(&kgo.Record{Key: []byte{'a', 0xff}, Value: []byte("v")}); err == nil || err.Error() != "key: bad key bytes" {
		t.Fatalf("invalid key: %v", err)
	}
	if err := tab.add(&kgo.Record{Key: []byte("k"), Value: []byte{0xff}}); err == nil || err.Error() != "value: bad value bytes" {
		t.Fatalf("invalid value: %v", err)
	}
	if e, _, applied := tab.flush(nil); e != 0 || applied != 0 {
		t.Fatalf("skipped records were applied: %d entries, %d records", e, applied)
	}
}

// Keys whose hashes collide (here: forced to three values, so long probe
// chains of equal hash bits) are told apart by their bytes, and deleting
// from the middle of a chain keeps the rest reachable.
func TestArenaHashCollisions(t *testing.T) {
	tab := newArenaTable[string, string](stringValues, nil, nil, nil)
	const n = 2000
	model := map[string]string{}
	forced := func(i int) uint64 { return uint64(0xdead0000+i%3) << 32 } // shard 0
	for round := range 3 {
		for i := range n {
			key := fmt.Sprint("k", i)
			var value []byte
			if round == 0 || i%3 != 0 {
				value = fmt.Appendf(nil, "v%d-%d", round, i)
				model[key] = string(value)
			} else {
				delete(model, key)
			}
			if err := tab.add(&kgo.Record{Key: []byte(key), Value: value}); err != nil {
				t.Fatal(err)
			}
			// Move it to shard 0, with the forced hash.
			for sh := range tab.ops {
				if l := len(tab.ops[sh]); l > 0 && tab.ops[sh][l-1].index() == int32(tab.n-1) {
					o := tab.ops[sh][l-1]
					tab.ops[sh] = tab.ops[sh][:l-1]
					from, to := &tab.shards[sh], &tab.shards[0]
					var dst []byte
					k := from.keys.at(o.at.kc, o.at.ko, o.at.klen)
					o.at.kc, o.at.ko, dst = to.keys.alloc(len(k), &to.mu, false)
					copy(dst, k)
					if value != nil {
						v := from.raw.at(o.at.vc, o.at.vo, o.at.vlen)
						o.at.vc, o.at.vo, dst = to.raw.alloc(len(v), &to.mu, false)
						copy(dst, v)
					}
					o.h32 = uint32(forced(i) >> 32)
					tab.ops[0] = append(tab.ops[0], o)
					break
				}
			}
		}
		tab.flush(nil)
		s := &tab.shards[0]
		for i := range n {
			key := fmt.Sprint("k", i)
			_, si, ok := s.find(uint32(forced(i)>>32), key)
			want, wok := model[key]
			if ok != wok || ok && tab.value(s, &s.slots[si], si) != want {
				t.Fatalf("round %d: %s found %v, want %q %v", round, key, ok, want, wok)
			}
		}
		if s.n != len(model) {
			t.Fatalf("round %d: %d entries, want %d", round, s.n, len(model))
		}
	}
}

// presize makes room for the record count; rightSize gives it back when the
// keys turned out far fewer (a topic full of duplicates).
func TestPresizeAndRightSize(t *testing.T) {
	t.Run("map", func(t *testing.T) {
		tab := newMapTable(func(r *kgo.Record) (int, int, error) {
			v, err := strconv.Atoi(string(r.Key))
			return v, v, err
		})
		tab.presize(1 << 20)
		if h := tab.shards[0].hint; h != (1<<20)/shardCount {
			t.Fatalf("hint %d", h)
		}
		for i := range 1000 {
			if err := tab.add(&kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte{}}); err != nil {
				t.Fatal(err)
			}
		}
		tab.flush(nil)
		old := tab.shards[0].m
		tab.rightSize()
		if tab.shards[0].hint != 0 {
			t.Fatal("hint not reset")
		}
		if reflect.ValueOf(old).UnsafePointer() == reflect.ValueOf(tab.shards[0].m).UnsafePointer() {
			t.Fatal("an oversized shard was not rebuilt")
		}
		for i := range 1000 {
			if v, ok := tab.get(i); !ok || v != i {
				t.Fatalf("%d lost in rightSize", i)
			}
		}
		tab.presize(1 << 20) // not empty any more: left alone
		if tab.shards[0].hint != 0 {
			t.Fatal("presize resized a map in use")
		}
	})
	t.Run("arena", func(t *testing.T) {
		tab := newArenaTable[string, string](stringValues, nil, nil, nil)
		tab.presize(1 << 20)
		s := &tab.shards[0]
		if s.hint < (1<<20)/shardCount || len(s.idx)*3 < s.hint*4 || cap(s.slots) < s.hint {
			t.Fatalf("hint %d, index %d, slots %d", s.hint, len(s.idx), cap(s.slots))
		}
		for i := range 1000 {
			if err := tab.add(&kgo.Record{Key: []byte(strconv.Itoa(i)), Value: []byte("v" + strconv.Itoa(i))}); err != nil {
				t.Fatal(err)
			}
		}
		tab.flush(nil)
		tab.rightSize()
		if s.hint != 0 || len(s.idx) > indexSize(2*s.n) || cap(s.slots) > 2*len(s.slots) {
			t.Fatalf("not right-sized: hint %d, index %d, slots %d/%d for %d entries", s.hint, len(s.idx), len(s.slots), cap(s.slots), s.n)
		}
		for i := range 1000 {
			if v, ok := tab.get(strconv.Itoa(i)); !ok || v != "v"+strconv.Itoa(i) {
				t.Fatalf("%d lost in rightSize: %q %v", i, v, ok)
			}
		}
		tab.presize(1 << 20)
		if s.hint != 0 {
			t.Fatal("presize resized a shard in use")
		}
	})
}

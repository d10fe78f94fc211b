package kvstore

import (
	"fmt"
	"hash/maphash"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"unicode/utf8"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"
)

// arenaTable is the table for string keys (the String codec). It holds no
// Go pointer per entry, so that the garbage collector has nothing to scan in
// it however many entries it holds (with a map of strings, each GC cycle of
// a load rescans every key and value loaded so far). Each shard has:
//
//   - two arenas: key bytes, and (for string and []byte values) value bytes,
//     appended to large byte chunks; keys apart from values, so that the
//     key comparisons of lookups stay within dense, mostly cached memory.
//     add copies a record's bytes there while they are still in the CPU
//     cache from the checks; flush then only updates the index, shard by
//     shard. While the store loads, a value chunk can also be a buffer
//     franz-go decompressed a record batch into, or part of a fetch
//     response: the values that lie in one are kept there, not copied
//     (see loadPool); the arena's own chunks and such pinned ones are used
//     alike. A chunk's bytes are never modified once written: an update
//     appends new bytes and leaves the old ones as garbage, and compaction
//     copies the live bytes to new chunks. So Get can return strings and
//     slices that point into a chunk, with no copy: the old chunk stays
//     alive as long as a caller holds such a value.
//   - slots: per entry, where its bytes are (24 bytes, pointer-free).
//   - an open-addressing index (linear probing, 8 bytes a bucket,
//     pointer-free): 32 bits of the key's hash and the slot number. Lookups
//     compare the hash bits, then the key bytes, so hash collisions are
//     harmless.
//   - for other value types, the decoded values in a column by slot.
type arenaTable[K comparable, V any] struct {
	seed   maphash.Seed
	values valueKind
	// keyErr and valueErr return the codec's error for an invalid key or
	// (stringValues) value; decodeValue decodes a value (decodedValues).
	keyErr, valueErr func([]byte) error
	decodeValue      func([]byte) (V, error)
	shards           [shardCount]arenaShard[V]

	// pin: while the store loads, the buffers of decompressed batches and
	// fetch responses, whose values add keeps in place (see loadPool);
	// nil otherwise.
	pin *pinned
	// pinnedBytes: the bytes of the loadPool buffers some shard holds.
	pinnedBytes atomic.Int64

	// The batch being added (the loader's): per shard, its ops in the order
	// added, so that flush reads them in sequence.
	ops  [shardCount][]rawOp
	n    int            // ops in the batch
	vals []V            // decodedValues: the ops' values, by seq
	chg  []Change[K, V] // with subscribers: the ops' changes, by seq
	skip []bool         // with subscribers: the op changed nothing, by seq
}

// rawOp is one record for an arenaTable: the upper half of its key's hash
// (the lower bits picked the shard), where add put its bytes in its
// shard's arenas, and its place in the batch, as ^seq for a tombstone. 32
// bytes: a load writes one per record.
type rawOp struct {
	h32 uint32
	seq int32
	at  slot
}

// del reports whether o is a tombstone.
func (o *rawOp) del() bool { return o.seq < 0 }

// index returns o's place in the batch.
func (o *rawOp) index() int32 { return max(o.seq, ^o.seq) }

// valueKind says how an arenaTable keeps values.
type valueKind uint8

const (
	decodedValues valueKind = iota // as decoded by the codec, in a column
	stringValues                   // V is string (String codec): raw bytes in the arena
	bytesValues                    // V is []byte (Bytes codec): raw bytes in the arena
)

const (
	// minChunk and maxChunk bound the size of a shard's arena chunks: a
	// shard's chunks double from minChunk as it grows.
	minChunk = 1 << 10
	maxChunk = 1 << 18
	// ownChunk: a record bigger than this gets a chunk of its own, so that
	// it does not waste the rest of the chunk being filled.
	ownChunk = maxChunk / 8
	// minCompact: a shard's arena is compacted once its garbage (bytes of
	// overwritten and deleted entries and of tombstones' keys, and unused
	// chunk tails) is at least this and at least its live bytes. Compaction
	// copies the live bytes, so its cost is amortized over at least as many
	// bytes written.
	minCompact = 64 << 10
)

// slot says where an entry's bytes are: the key at
// keys.chunks[kc][ko:ko+klen], the value (raw values) at
// vals.chunks[vc][vo:vo+vlen]. vlen is the raw value's length, also for
// decoded values (for the bytes metric).
type slot struct {
	kc, ko, klen uint32
	vc, vo, vlen uint32
}

type arenaShard[V any] struct {
	mu    sync.RWMutex
	idx   []uint64 // hash32<<32 | slot+1; 0: empty. len is 0 or a power of two.
	n     int      // entries
	slots []slot
	vals  []V // decodedValues: the values, by slot
	free  []uint32
	keys  arena
	raw   arena // raw values
	hint  int   // the entries presize made room for
	_     [64]byte
}

// arena is a shard's chunks of key or value bytes.
type arena struct {
	chunks [][]byte // written under the shard's mu (readers index it), full length
	// pins: for each chunk, the loadPool buffer it is, or nil for the
	// arena's own chunks.
	pins []*pinBuf

	// The loader's (add and flush never run at the same time).
	cur         int // 1 + the chunk being filled; 0: none
	used        int // bytes of it used
	next        int // the size of the next chunk
	live        int // bytes of the entries
	garbage     int // bytes of nothing
	compactions int
	pinID       uint64 // the pinned buffer last added as a chunk, and which
	pinChunk    uint32
	pinLive     int // bytes of the entries in pinned buffers
}

// pinned reports whether chunk c is a loadPool buffer.
func (a *arena) pinned(c uint32) bool { return a.pins[c] != nil }

// pin returns where v, which lies in buf, is as a chunk of a, adding buf
// to a's chunks if it is not the last one added. The bytes of buf that are
// not v are not counted as garbage: they belong to other shards' entries,
// or to the batch's framing; pinnedBytes counts buffers as a whole.
func (a *arena) pin(buf *pinBuf, v []byte, mu *sync.RWMutex, pinnedBytes *atomic.Int64) (chunk, off uint32) {
	if a.pinID != buf.id {
		mu.Lock()
		a.chunks = append(a.chunks, buf.b)
		a.pins = append(a.pins, buf)
		mu.Unlock()
		a.pinID, a.pinChunk = buf.id, uint32(len(a.chunks)-1)
		if buf.refs.Add(1) == 1 {
			pinnedBytes.Add(int64(len(buf.b)))
		}
	}
	return a.pinChunk, uint32(uintptr(unsafe.Pointer(unsafe.SliceData(v))) - buf.lo)
}

// unpin lets go of the pinned buffers among chunks (whose entries were
// just copied out of them).
func unpin(pins []*pinBuf, pinnedBytes *atomic.Int64) {
	for _, b := range pins {
		if b != nil && b.refs.Add(-1) == 0 {
			pinnedBytes.Add(-int64(len(b.b)))
		}
	}
}

// at returns n bytes at chunk c, offset off.
func (a *arena) at(c, off, n uint32) []byte {
	return a.chunks[c][off : off+n : off+n]
}

// drop counts n live bytes as garbage.
func (a *arena) drop(n uint32) {
	a.live -= int(n)
	a.garbage += int(n)
}

// full reports whether the arena is due for compaction.
func (a *arena) full() bool { return a.garbage >= minCompact && a.garbage >= a.live }

// newArenaTable returns an arenaTable. K must be string.
func newArenaTable[K comparable, V any](values valueKind, keyErr, valueErr func([]byte) error, decodeValue func([]byte) (V, error)) *arenaTable[K, V] {
	if reflect.TypeFor[K]() != reflect.TypeFor[string]() {
		panic("kvstore: arenaTable needs string keys")
	}
	return &arenaTable[K, V]{seed: maphash.MakeSeed(), values: values, keyErr: keyErr, valueErr: valueErr, decodeValue: decodeValue}
}

func (t *arenaTable[K, V]) get(k K) (V, bool) {
	key := *(*string)(unsafe.Pointer(&k))
	h := maphash.String(t.seed, key)
	s := &t.shards[h&(shardCount-1)]
	s.mu.RLock()
	_, si, ok := s.find(uint32(h>>32), key)
	var v V
	if ok {
		v = t.value(s, &s.slots[si], si)
	}
	s.mu.RUnlock()
	return v, ok
}

// find returns the index position of key (whose hash's upper half is h32)
// and its slot; or, if it is missing, the empty position where it would go
// (-1 if the index is empty).
func (s *arenaShard[V]) find(h32 uint32, key string) (pos int, si uint32, ok bool) {
	if len(s.idx) == 0 {
		return -1, 0, false
	}
	mask := uint32(len(s.idx) - 1)
	for i := h32 & mask; ; i = (i + 1) & mask {
		e := s.idx[i]
		if e == 0 {
			return int(i), 0, false
		}
		if uint32(e>>32) == h32 {
			si := uint32(e) - 1
			sl := &s.slots[si]
			if int(sl.klen) == len(key) && string(s.keys.chunks[sl.kc][sl.ko:sl.ko+sl.klen]) == key {
				return int(i), si, true
			}
		}
	}
}

// key returns the key at sl. It points into the arena.
func (s *arenaShard[V]) key(sl *slot) string {
	b := s.keys.at(sl.kc, sl.ko, sl.klen)
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// keyK returns the key at sl as a K.
func (t *arenaTable[K, V]) keyK(s *arenaShard[V], sl *slot) K {
	str := s.key(sl)
	return *(*K)(unsafe.Pointer(&str))
}

// value returns the value of the entry at sl (in slot si, for decoded
// values); a string or []byte points into the arena.
func (t *arenaTable[K, V]) value(s *arenaShard[V], sl *slot, si uint32) V {
	if t.values == decodedValues {
		return s.vals[si]
	}
	b := s.raw.at(sl.vc, sl.vo, sl.vlen) // non-nil even if empty
	if t.values == stringValues {
		str := unsafe.String(unsafe.SliceData(b), len(b))
		return *(*V)(unsafe.Pointer(&str))
	}
	return *(*V)(unsafe.Pointer(&b))
}

// alloc returns n bytes of a to write, and where they are. mu is the
// shard's lock, to add a chunk; locked says whether the caller holds it.
func (a *arena) alloc(n int, mu *sync.RWMutex, locked bool) (chunk, off uint32, b []byte) {
	if a.cur > 0 {
		if c := a.chunks[a.cur-1]; len(c)-a.used >= n {
			o := a.used
			a.used += n
			return uint32(a.cur - 1), uint32(o), c[o : o+n : o+n]
		}
	}
	if n > ownChunk {
		c := a.addChunk(n, mu, locked)
		return c, 0, a.chunks[c]
	}
	if a.cur > 0 {
		a.garbage += len(a.chunks[a.cur-1]) - a.used // the tail is never used
	}
	size := max(a.next, minChunk, n)
	a.next = min(2*size, maxChunk)
	c := a.addChunk(size, mu, locked)
	a.cur, a.used = int(c)+1, n
	return c, 0, a.chunks[c][:n:n]
}

func (a *arena) addChunk(size int, mu *sync.RWMutex, locked bool) uint32 {
	c := make([]byte, size)
	if !locked {
		mu.Lock()
		defer mu.Unlock()
	}
	a.chunks = append(a.chunks, c)
	a.pins = append(a.pins, nil)
	return uint32(len(a.chunks) - 1)
}

func (t *arenaTable[K, V]) begin(n int) {
	if t.pin != nil {
		t.pin.poll()
	}
	if t.values == decodedValues {
		t.vals = slices.Grow(t.vals, n)
	}
}

// partition lets the values of recs that lie in their fetch response be
// kept there (see pinned.region), while the store loads.
func (t *arenaTable[K, V]) partition(recs []*kgo.Record) {
	if t.pin != nil {
		t.pin.region(recs)
	}
}

func (t *arenaTable[K, V]) add(r *kgo.Record) error {
	if !utf8.Valid(r.Key) {
		return fmt.Errorf("key: %w", t.keyErr(r.Key))
	}
	var v V
	raw := false
	switch {
	case r.Value == nil:
	case t.values == decodedValues:
		var err error
		if v, err = t.decodeValue(r.Value); err != nil {
			return err
		}
	case t.values == stringValues && !utf8.Valid(r.Value):
		return fmt.Errorf("value: %w", t.valueErr(r.Value))
	default:
		raw = true
	}
	h := maphash.Bytes(t.seed, r.Key)
	sh := uint8(h & (shardCount - 1))
	s := &t.shards[sh]
	at := slot{klen: uint32(len(r.Key)), vlen: uint32(len(r.Value))}
	var b []byte
	// Keys are copied also from a pinned buffer: in the arena they are
	// dense, and a Get's key comparison stays in the CPU caches (Get of
	// 100,000 keys took 110 ns with keys copied, 160-180 ns pinned).
	at.kc, at.ko, b = s.keys.alloc(len(r.Key), &s.mu, false)
	copy(b, r.Key)
	if raw {
		if buf := t.pin.find(r.Value); buf != nil {
			at.vc, at.vo = s.raw.pin(buf, r.Value, &s.mu, &t.pinnedBytes)
		} else {
			at.vc, at.vo, b = s.raw.alloc(len(r.Value), &s.mu, false)
			copy(b, r.Value)
		}
	}
	seq := int32(t.n)
	if r.Value == nil {
		seq = ^seq
	}
	t.ops[sh] = append(t.ops[sh], rawOp{h32: uint32(h >> 32), seq: seq, at: at})
	t.n++
	if t.values == decodedValues {
		t.vals = append(t.vals, v)
	}
	return nil
}

func (t *arenaTable[K, V]) flush(emit func(Change[K, V])) (entries, bytes, applied int64) {
	n := t.n
	changes := emit != nil
	if changes {
		t.chg = append(t.chg[:0], make([]Change[K, V], n)...)
		t.skip = append(t.skip[:0], make([]bool, n)...)
	}
	entries, bytes = applyShards(n, func(sh int) (int64, int64) {
		if len(t.ops[sh]) == 0 {
			return 0, 0
		}
		return t.applyShard(sh, changes)
	})
	if changes {
		for i := range t.chg {
			if !t.skip[i] {
				emit(t.chg[i])
			}
		}
		clear(t.chg)
	}
	clear(t.vals)
	for sh := range t.ops {
		t.ops[sh] = t.ops[sh][:0]
	}
	t.vals, t.n = t.vals[:0], 0
	t.unpinIfWasteful()
	return entries, bytes, int64(n)
}

// applyShard applies the ops of shard sh (whose bytes add put in the
// shard's arena) to the shard's index; with changes, it fills in the ops'
// changes.
func (t *arenaTable[K, V]) applyShard(sh int, changes bool) (entries, bytes int64) {
	s := &t.shards[sh]
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.idx) > 0 {
		s.touch(t.ops[sh])
	}
	for j := range t.ops[sh] {
		o := &t.ops[sh][j]
		i, del := o.index(), o.del()
		if !del && (s.n+1)*4 > len(s.idx)*3 {
			s.growIndex(max(2*len(s.idx), 8))
		}
		h32 := o.h32
		pos, si, found := s.find(h32, s.key(&o.at))
		var c *Change[K, V]
		if changes {
			c = &t.chg[i]
			c.Key, c.Existed, c.Deleted = t.keyK(s, &o.at), found, del
			t.skip[i] = del && !found
		}
		if found {
			old := &s.slots[si]
			if changes {
				c.Old = t.value(s, old, si)
			}
			bytes -= int64(old.klen + old.vlen)
			s.keys.drop(old.klen)
			if t.values != decodedValues {
				s.raw.drop(old.vlen)
				if s.raw.pinned(old.vc) {
					s.raw.pinLive -= int(old.vlen)
				}
			}
		}
		switch {
		case del:
			s.keys.garbage += int(o.at.klen)
			if !found {
				continue
			}
			s.unindex(pos)
			s.slots[si] = slot{}
			if t.values == decodedValues {
				var zero V
				s.vals[si] = zero
			}
			s.free = append(s.free, si)
			s.n--
			entries--
			continue
		case !found:
			si = t.newSlot(s)
			s.idx[pos] = uint64(h32)<<32 | uint64(si+1)
			s.n++
			entries++
		}
		s.slots[si] = o.at
		if t.values == decodedValues {
			s.vals[si] = t.vals[i]
		} else {
			s.raw.live += int(o.at.vlen)
			if s.raw.pinned(o.at.vc) {
				s.raw.pinLive += int(o.at.vlen)
			}
		}
		s.keys.live += int(o.at.klen)
		bytes += int64(o.at.klen + o.at.vlen)
		if changes {
			c.New = t.value(s, &o.at, si)
		}
	}
	if s.keys.full() {
		t.compactKeys(s)
	}
	if s.raw.full() {
		t.compactValues(s)
	}
	return entries, bytes
}

// unpinIfWasteful copies every value out of the pinned buffers when they
// hold at least as many bytes that are no entry's value (the records'
// framing and keys, overwritten values) as values, and at least
// minPinWaste, and pins no more values. (A shard's compaction lets go of
// its pinned buffers, but a buffer stays as long as any shard holds it.)
func (t *arenaTable[K, V]) unpinIfWasteful() {
	pinnedBytes := t.pinnedBytes.Load()
	if pinnedBytes < minPinWaste {
		return
	}
	live := 0
	for i := range t.shards {
		live += t.shards[i].raw.pinLive // the shards' writers are done
	}
	if waste := int(pinnedBytes) - live; waste < minPinWaste || waste < live {
		return
	}
	if t.pin != nil {
		// The batches' framing and keys outweigh their values (small
		// values, or big headers): pinning saves no memory, and copying
		// everything out again and again would cost more than it saved.
		t.pin.pool.stopPinning()
	}
	for i := range t.shards {
		s := &t.shards[i]
		if slices.ContainsFunc(s.raw.pins, func(b *pinBuf) bool { return b != nil }) {
			s.mu.Lock()
			t.compactValues(s)
			s.mu.Unlock()
		}
	}
}

// minPinWaste is the least waste in pinned buffers that makes the store
// copy the values out of them (see unpinIfWasteful).
const minPinWaste = 4 << 20

func (t *arenaTable[K, V]) compactKeys(s *arenaShard[V]) {
	s.compact(&s.keys, func(sl *slot) (*uint32, *uint32, uint32) { return &sl.kc, &sl.ko, sl.klen }, &t.pinnedBytes)
}

func (t *arenaTable[K, V]) compactValues(s *arenaShard[V]) {
	s.compact(&s.raw, func(sl *slot) (*uint32, *uint32, uint32) { return &sl.vc, &sl.vo, sl.vlen }, &t.pinnedBytes)
}

// touch reads the index bucket each op's lookup starts at. The reads do not
// depend on each other, so the CPU has many of their cache misses in flight
// at once; the lookups that follow then find the buckets in the cache
// instead of waiting for one miss after another.
func (s *arenaShard[V]) touch(ops []rawOp) {
	mask := uint32(len(s.idx) - 1)
	var sum uint64
	for j := range ops {
		sum += s.idx[ops[j].h32&mask]
	}
	sink.Store(sum)
}

// sink takes touch's sum, so that the compiler keeps its reads.
var sink atomic.Uint64

func (t *arenaTable[K, V]) newSlot(s *arenaShard[V]) uint32 {
	if n := len(s.free); n > 0 {
		si := s.free[n-1]
		s.free = s.free[:n-1]
		return si
	}
	s.slots = append(s.slots, slot{})
	if t.values == decodedValues {
		var zero V
		s.vals = append(s.vals, zero)
	}
	return uint32(len(s.slots) - 1)
}

// growIndex makes the index size buckets (a power of two, big enough for
// the entries) and re-inserts the entries.
func (s *arenaShard[V]) growIndex(size int) {
	old := s.idx
	s.idx = make([]uint64, size)
	mask := uint32(size - 1)
	for _, e := range old {
		if e == 0 {
			continue
		}
		i := uint32(e>>32) & mask
		for s.idx[i] != 0 {
			i = (i + 1) & mask
		}
		s.idx[i] = e
	}
}

// indexSize is the index size for n entries: at most 3/4 full.
func indexSize(n int) int {
	size := 8
	for size*3 < n*4 {
		size *= 2
	}
	return size
}

// unindex removes the index entry at pos, shifting back the entries after it
// that probed past it (linear probing with no tombstones).
func (s *arenaShard[V]) unindex(pos int) {
	mask := len(s.idx) - 1
	i := pos
	s.idx[i] = 0
	for j := (i + 1) & mask; s.idx[j] != 0; j = (j + 1) & mask {
		e := s.idx[j]
		home := int(uint32(e>>32)) & mask
		if (j-home)&mask >= (j-i)&mask { // i is on e's probe path: move e there
			s.idx[i], s.idx[j] = e, 0
			i = j
		}
	}
}

// compact copies the live entries' bytes of a (s.keys or s.raw; where
// gives an entry's place and length in it) to new chunks and drops the old
// chunks (values handed out keep theirs alive until they are dropped too),
// letting go of the pinned buffers among them. The caller holds s.mu.
func (s *arenaShard[V]) compact(a *arena, where func(*slot) (chunk, off *uint32, n uint32), pinnedBytes *atomic.Int64) {
	a.compactions++
	old, oldPins := a.chunks, a.pins
	a.next = min(max(a.live, minChunk), maxChunk)
	a.chunks, a.pins, a.cur, a.used, a.garbage, a.live = nil, nil, 0, 0, 0, 0
	a.pinID, a.pinLive = 0, 0
	for _, e := range s.idx {
		if e == 0 {
			continue
		}
		c, off, n := where(&s.slots[uint32(e)-1])
		nc, noff, b := a.alloc(int(n), &s.mu, true)
		copy(b, old[*c][*off:*off+n])
		*c, *off = nc, noff
		a.live += int(n)
	}
	unpin(oldPins, pinnedBytes)
}

func (t *arenaTable[K, V]) appendShard(sh int, buf []kv[K, V]) []kv[K, V] {
	s := &t.shards[sh]
	s.mu.RLock()
	for _, e := range s.idx {
		if e != 0 {
			si := uint32(e) - 1
			sl := &s.slots[si]
			buf = append(buf, kv[K, V]{t.keyK(s, sl), t.value(s, sl, si)})
		}
	}
	s.mu.RUnlock()
	return buf
}

func (t *arenaTable[K, V]) presize(records int64) {
	per := int(min(records, maxPresize) / shardCount)
	if per < 64 {
		return
	}
	per += per/16 + 64 // the shards' share varies a little
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		if s.n == 0 && len(s.slots) == 0 {
			s.idx = make([]uint64, indexSize(per))
			s.slots = make([]slot, 0, per)
			if t.values == decodedValues {
				s.vals = make([]V, 0, per)
			}
			s.hint = per
		}
		s.mu.Unlock()
	}
}

func (t *arenaTable[K, V]) rightSize() {
	if t.pin != nil {
		t.pin.pool.stop() // live updates are copied
		t.pin = nil
	}
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		if s.hint > 1024 && s.n < s.hint/2 {
			if size := indexSize(s.n); size < len(s.idx) {
				s.growIndex(size)
			}
			s.slots = append([]slot(nil), s.slots...)
			if t.values == decodedValues {
				s.vals = append([]V(nil), s.vals...)
			}
		}
		s.hint = 0
		s.mu.Unlock()
	}
	for sh := range t.ops {
		if cap(t.ops[sh]) > 1<<12 {
			t.ops[sh] = nil
		}
	}
	if cap(t.vals) > 1<<16 || cap(t.chg) > 1<<16 {
		t.vals, t.chg, t.skip = nil, nil, nil
	}
}

package kvstore

import (
	"hash/maphash"
	"runtime"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// shardCount is the number of independently locked parts a store's entries
// are spread over, by a hash of the key. A power of two.
//
// Readers of different shards never touch the same lock word, so parallel
// Gets scale with cores instead of bouncing one RWMutex's reader count
// between them (BenchmarkGet compares the two). The loader applies a fetched
// batch shard by shard, so that its inserts stay within one shard's (cache
// sized) index at a time and it takes each lock once per batch.
const shardCount = 64

// maxPresize caps how many entries a load pre-sizes the shards for. The
// record count at start is an upper bound of the key count (a compacted
// topic still holds duplicates in its active segment); see table.presize and
// table.rightSize.
const maxPresize = 1 << 22

// table is the store's in-memory state: shardCount independently locked
// shards. Only the loader writes. Two implementations: arenaTable, for
// string keys (the String codec), keeps keys (and raw values) in
// pointer-free byte arenas; mapTable, for any other key type, keeps Go maps
// of decoded keys and values.
//
// The loader calls begin for each poll, then, for each fetched partition,
// partition and add for its records, one by one in offset order, then
// flush once, under the store's applyMu.
type table[K comparable, V any] interface {
	// get returns k's value.
	get(k K) (V, bool)
	// begin starts the batch of a poll of n records.
	begin(n int)
	// partition is given each fetched partition's records before they are
	// added.
	partition(recs []*kgo.Record)
	// add decodes (or checks) a record with a non-nil key and queues it
	// for the next flush. An error means the record is skipped.
	add(r *kgo.Record) error
	// flush applies the records added since the last flush, each key's in
	// order, and if emit is not nil calls it for every change in the order
	// the records were added (a tombstone of a missing key is none). It
	// returns the change of the entry count and of the raw bytes held, and
	// how many records it applied.
	flush(emit func(Change[K, V])) (entries, bytes, applied int64)
	// appendShard appends shard sh's entries to buf, under its read lock.
	appendShard(sh int, buf []kv[K, V]) []kv[K, V]
	// presize makes the (still empty) shards big enough for about records
	// keys, so that a large load does not rehash them as they grow. Called
	// by the loader before it adds anything.
	presize(records int64)
	// rightSize gives back what presize reserved beyond what the shards
	// hold (a topic full of duplicates), and the loader's batch buffers if
	// they are big. Called once the load is done.
	rightSize()
}

// kv is one entry, as appendShard returns it.
type kv[K comparable, V any] struct {
	k K
	v V
}

// shardSort is a stable counting sort of a batch's ops by shard, and the
// split of the shards between goroutines. Its buffers are reused from batch
// to batch.
type shardSort struct {
	counts [shardCount + 1]int
	order  []int32
}

// sort fills order with the indexes of the n ops, grouped by shard (shard
// gives op i's), in order within a shard; the ops of shard sh are then
// order[counts[sh]:counts[sh+1]].
func (a *shardSort) sort(n int, shard func(i int) uint8) {
	clear(a.counts[:])
	for i := range n {
		a.counts[shard(i)+1]++
	}
	for i := 1; i <= shardCount; i++ {
		a.counts[i] += a.counts[i-1]
	}
	if cap(a.order) < n {
		a.order = make([]int32, n)
	}
	a.order = a.order[:n]
	next := a.counts
	for i := range n {
		sh := shard(i)
		a.order[next[sh]] = int32(i)
		next[sh]++
	}
}

// run calls apply for every shard with ops, with the indexes of its ops
// (see applyShards).
func (a *shardSort) run(apply func(sh int, order []int32) (entries, bytes int64)) (entries, bytes int64) {
	return applyShards(len(a.order), func(sh int) (int64, int64) {
		if lo, hi := a.counts[sh], a.counts[sh+1]; lo < hi {
			return apply(sh, a.order[lo:hi])
		}
		return 0, 0
	})
}

// applyShards calls apply for every shard, splitting the shards between
// goroutines for a big batch (of ops records), and sums what apply returns.
func applyShards(ops int, apply func(sh int) (entries, bytes int64)) (entries, bytes int64) {
	shards := func(from, to int) (entries, bytes int64) {
		for sh := from; sh < to; sh++ {
			e, b := apply(sh)
			entries += e
			bytes += b
		}
		return entries, bytes
	}
	workers := 1
	if ops >= parallelApplyMin {
		workers = applyWorkers(runtime.GOMAXPROCS(0))
	}
	if workers == 1 {
		return shards(0, shardCount)
	}
	// Shards are disjoint: split them between goroutines.
	var (
		wg  sync.WaitGroup
		res [maxApplyWorkers][2]int64
	)
	per := shardCount / workers
	for w := range workers {
		hi := (w + 1) * per
		if w == workers-1 {
			hi = shardCount
		}
		wg.Go(func() { res[w][0], res[w][1] = shards(w*per, hi) })
	}
	wg.Wait()
	for _, r := range res {
		entries += r[0]
		bytes += r[1]
	}
	return entries, bytes
}

// trim drops a batch buffer that grew big during a load.
func (a *shardSort) trim() {
	if cap(a.order) > 1<<16 {
		a.order = nil
	}
}

// parallelApplyMin is the batch size from which a flush splits the shards
// between goroutines (see applyWorkers).
const (
	parallelApplyMin = 4096
	maxApplyWorkers  = 4
)

// applyWorkers is how many goroutines apply a big batch with procs Ps: half
// of them, up to maxApplyWorkers. The other half is left to franz-go, which
// fetches and decodes the next poll's records meanwhile: on 2 cores, a
// flush split in two took as long as one in a cold load, and held up the
// decoding of the next poll.
func applyWorkers(procs int) int { return max(1, min(procs/2, maxApplyWorkers)) }

// entry is a stored value and the size of the record it came from, for the
// bytes metric.
type entry[V any] struct {
	v    V
	size int32
}

// shard is one locked map. Only the loader writes.
type shard[K comparable, V any] struct {
	mu   sync.RWMutex
	m    map[K]entry[V]
	hint int      // the size the map was made for
	_    [64]byte // keep neighbouring shards' locks off one cache line
}

// mapTable is the table for any key type: sharded Go maps of decoded keys
// and values.
type mapTable[K comparable, V any] struct {
	seed   maphash.Seed
	decode func(*kgo.Record) (K, V, error)
	shards [shardCount]shard[K, V]

	ops    []op[K, V] // the batch being added
	sorter shardSort
}

// newMapTable returns a mapTable that decodes records with decode.
func newMapTable[K comparable, V any](decode func(*kgo.Record) (K, V, error)) *mapTable[K, V] {
	t := &mapTable[K, V]{seed: maphash.MakeSeed(), decode: decode}
	for i := range t.shards {
		t.shards[i].m = make(map[K]entry[V])
	}
	return t
}

func (t *mapTable[K, V]) index(k K) uint8 {
	return uint8(maphash.Comparable(t.seed, k) & (shardCount - 1))
}

func (t *mapTable[K, V]) get(k K) (V, bool) {
	s := &t.shards[t.index(k)]
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	return e.v, ok
}

func (t *mapTable[K, V]) presize(records int64) {
	per := int(min(records, maxPresize) / shardCount)
	if per < 64 {
		return
	}
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		if len(s.m) == 0 {
			s.m, s.hint = make(map[K]entry[V], per), per
		}
		s.mu.Unlock()
	}
}

// rightSize rebuilds the maps that presize made much bigger than what they
// hold, to give the memory back. Go maps never shrink.
func (t *mapTable[K, V]) rightSize() {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		if s.hint > 1024 && len(s.m) < s.hint/2 {
			m := make(map[K]entry[V], len(s.m))
			for k, e := range s.m {
				m[k] = e
			}
			s.m = m
		}
		s.hint = 0
		s.mu.Unlock()
	}
	t.sorter.trim()
	if cap(t.ops) > 1<<16 {
		t.ops = nil
	}
}

func (t *mapTable[K, V]) begin(n int) { t.ops = slices.Grow(t.ops, n) }

func (t *mapTable[K, V]) partition([]*kgo.Record) {}

func (t *mapTable[K, V]) add(r *kgo.Record) error {
	k, v, err := t.decode(r)
	if err != nil {
		return err
	}
	t.ops = append(t.ops, op[K, V]{k: k, v: v, size: int32(len(r.Key) + len(r.Value)), del: r.Value == nil, shard: t.index(k)})
	return nil
}

func (t *mapTable[K, V]) flush(emit func(Change[K, V])) (entries, bytes, applied int64) {
	ops := t.ops
	t.sorter.sort(len(ops), func(i int) uint8 { return ops[i].shard })
	entries, bytes = t.sorter.run(func(sh int, order []int32) (int64, int64) { return t.applyShard(sh, ops, order) })
	if emit != nil {
		for i := range ops {
			if o := &ops[i]; !o.del || o.existed {
				emit(Change[K, V]{Key: o.k, Old: o.old.v, New: o.v, Existed: o.existed, Deleted: o.del})
			}
		}
	}
	clear(ops) // drop the references to keys and values
	t.ops = ops[:0]
	return entries, bytes, int64(len(ops))
}

func (t *mapTable[K, V]) appendShard(sh int, buf []kv[K, V]) []kv[K, V] {
	s := &t.shards[sh]
	s.mu.RLock()
	for k, e := range s.m {
		buf = append(buf, kv[K, V]{k, e.v})
	}
	s.mu.RUnlock()
	return buf
}

// applyShard applies the ops of shard sh listed in order, filling in each
// op's old entry.
func (t *mapTable[K, V]) applyShard(sh int, ops []op[K, V], order []int32) (entries, bytes int64) {
	s := &t.shards[sh]
	s.mu.Lock()
	for _, i := range order {
		o := &ops[i]
		o.old, o.existed = s.m[o.k]
		switch {
		case o.del && o.existed:
			delete(s.m, o.k)
			entries--
			bytes -= int64(o.old.size)
		case o.del:
		default:
			s.m[o.k] = entry[V]{v: o.v, size: o.size}
			if !o.existed {
				entries++
			}
			bytes += int64(o.size) - int64(o.old.size)
		}
	}
	s.mu.Unlock()
	return entries, bytes
}

// op is one record for a mapTable: set k to v (or delete it, del) and, once
// applied, what k held before.
type op[K comparable, V any] struct {
	k       K
	v       V
	size    int32
	del     bool
	shard   uint8
	old     entry[V]
	existed bool
}

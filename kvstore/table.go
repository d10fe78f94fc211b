package kvstore

import (
	"hash/maphash"
	"runtime"
	"sync"
)

// shardCount is the number of independently locked maps a store's entries
// are spread over, by a hash of the key. A power of two.
//
// Readers of different shards never touch the same lock word, so parallel
// Gets scale with cores instead of bouncing one RWMutex's reader count
// between them (BenchmarkGet compares the two). The loader applies a fetched
// batch shard by shard, so that its inserts stay within one shard's (cache
// sized) map at a time and it takes each lock once per batch.
const shardCount = 64

// maxPresize caps how many entries a load pre-sizes the maps for. The record
// count at start is an upper bound of the key count (a compacted topic still
// holds duplicates in its active segment); see table.presize and
// table.rightSize.
const maxPresize = 1 << 22

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

// table is the store's in-memory state.
type table[K comparable, V any] struct {
	seed   maphash.Seed
	shards [shardCount]shard[K, V]
}

func newTable[K comparable, V any]() *table[K, V] {
	t := &table[K, V]{seed: maphash.MakeSeed()}
	for i := range t.shards {
		t.shards[i].m = make(map[K]entry[V])
	}
	return t
}

func (t *table[K, V]) index(k K) uint8 {
	return uint8(maphash.Comparable(t.seed, k) & (shardCount - 1))
}

func (t *table[K, V]) get(k K) (V, bool) {
	s := &t.shards[t.index(k)]
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	return e.v, ok
}

// presize makes the (still empty) maps big enough for about records keys,
// so that a large load does not rehash them as they grow. Called by the
// loader before it applies anything.
func (t *table[K, V]) presize(records int64) {
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
// hold (a topic with many duplicate keys), to give the memory back. Go maps
// never shrink.
func (t *table[K, V]) rightSize() {
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
}

// op is one record to apply: set k to v (or delete it, del) and, once
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

// applier applies batches of ops shard by shard. It is the loader's: its
// buffers are reused from batch to batch.
type applier[K comparable, V any] struct {
	counts [shardCount + 1]int
	order  []int32
}

// apply applies ops to t, in order for each key, shard by shard, filling in
// each op's old entry; it returns the change of the entry count and of the
// bytes held.
func (a *applier[K, V]) apply(t *table[K, V], ops []op[K, V]) (entries, bytes int64) {
	// A stable counting sort of the ops by shard.
	clear(a.counts[:])
	for i := range ops {
		a.counts[ops[i].shard+1]++
	}
	for i := 1; i <= shardCount; i++ {
		a.counts[i] += a.counts[i-1]
	}
	if cap(a.order) < len(ops) {
		a.order = make([]int32, len(ops))
	}
	order := a.order[:len(ops)]
	next := a.counts
	for i := range ops {
		sh := ops[i].shard
		order[next[sh]] = int32(i)
		next[sh]++
	}
	workers := 1
	if len(ops) >= parallelApplyMin {
		workers = min(runtime.GOMAXPROCS(0), maxApplyWorkers)
	}
	if workers == 1 {
		return a.applyShards(t, ops, order, 0, shardCount)
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
		wg.Go(func() { res[w][0], res[w][1] = a.applyShards(t, ops, order, w*per, hi) })
	}
	wg.Wait()
	for _, r := range res {
		entries += r[0]
		bytes += r[1]
	}
	return entries, bytes
}

// parallelApplyMin is the batch size from which apply splits the shards
// between goroutines (up to maxApplyWorkers, and GOMAXPROCS).
const (
	parallelApplyMin = 4096
	maxApplyWorkers  = 4
)

// applyShards applies the ops of shards [from, to).
func (a *applier[K, V]) applyShards(t *table[K, V], ops []op[K, V], order []int32, from, to int) (entries, bytes int64) {
	for sh := from; sh < to; sh++ {
		lo, hi := a.counts[sh], a.counts[sh+1]
		if lo == hi {
			continue
		}
		s := &t.shards[sh]
		s.mu.Lock()
		for _, i := range order[lo:hi] {
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
	}
	return entries, bytes
}

package kvstore

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kgo"
)

// loadPool is the memory pool (kgo.WithPools) of the client of a store that
// keeps raw values (string keys with String or Bytes values), while the
// store loads. It does two things, each to write less fresh memory in a
// cold load (on a machine where a page fault costs microseconds, the page
// faults of a load's new memory cost as much as the rest of the load):
//
//   - As a kgo.PoolDecompressBytes, it makes the buffers that franz-go
//     decompresses record batches into; the batch's records' keys and values
//     are slices of the buffer. franz-go takes a buffer back only once every
//     record decoded from it was recycled (kgo.Record.Recycle), which the
//     store never does, so a buffer is never written again once decoded. So
//     the store keeps the values that lie in such a buffer where they are
//     (pins them) instead of copying them into its arena: each is written
//     once, not twice. The buffer lives as long as an entry points into it
//     (see arena.pin, and unpinIfWasteful for the memory this keeps).
//     Values of uncompressed batches are kept the same way in the fetch
//     response franz-go read them into (see pinned.region).
//   - As a kgo.PoolRecords, it makes the slices of kgo.Record that franz-go
//     decodes a batch's records into, and takes back those of a poll once the
//     loader has applied it (reuse): without it, each record's 160-byte
//     Record is garbage, and a heap that grows with the store as it loads
//     gives the garbage fresh memory too.
//
// A value in no such buffer (a batch whose decompressed size the pool could
// not tell, a record of the old message formats) is copied, and so are
// keys (see arenaTable.add). Once the store is loaded, the pool stops
// (stop): a live update is a small batch, whose buffer would be mostly
// framing.
type loadPool struct {
	mu      sync.Mutex
	made    []*pinBuf // buffers made since the loader last took them
	next    uint64    // the id of the next buffer
	free    [][]kgo.Record
	lent    []*recSlab // record slices franz-go decodes or decoded into
	polls   int        // reuse calls
	stopped bool
	noPin   bool // GetDecompressBytes gives no buffer: see stopPinning
}

// pinBuf is a buffer values are kept in: one the pool made for a batch to
// be decompressed into, or the part of a fetch response that a fetched
// partition's uncompressed values lie in.
type pinBuf struct {
	b    []byte // its whole capacity
	id   uint64 // 1, 2, ...
	lo   uintptr
	hi   uintptr      // lo + len(b)
	refs atomic.Int32 // shards whose arenas hold it as a chunk
}

// recSlab is a slice of records given to franz-go.
type recSlab struct {
	recs   []kgo.Record // its whole capacity
	lo, hi uintptr
	poll   int   // the reuse call that first saw it not used (0: none yet)
	state  uint8 // in the poll being reused: see slabApplied
}

// The states of a recSlab in reuse: slabApplied if records of the poll lie
// in it, slabKept if one of them went to OnDecodeError.
const (
	slabApplied = 1 + iota
	slabKept
)

// Limits of the buffers the pool makes: a batch that claims to decompress
// to more (a corrupt or hostile size), or to more than maxPinRatio times
// its compressed size, gets no buffer from the pool and decompresses as
// without it (franz-go allocates, and the store copies its records' bytes).
const (
	maxPinBuffer = 64 << 20
	maxPinRatio  = 256
	// readSlack: gzip and lz4 decompress through a bytes.Buffer, which
	// grows (moving the data out of the pool's buffer) unless it has room
	// for another 512-byte read at the end.
	readSlack = 512
)

// GetDecompressBytes returns a buffer big enough for the batch if its
// compressed form says how big it decompresses (snappy, gzip, zstd and lz4
// frames with their content size), else nil (franz-go then allocates).
func (p *loadPool) GetDecompressBytes(compressed []byte, codec kgo.CompressionCodecType) []byte {
	n := decompressedSize(compressed, codec)
	if n <= 0 || n > maxPinBuffer || n > maxPinRatio*len(compressed)+readSlack {
		return nil
	}
	return p.newBuffer(n)
}

// newBuffer makes and remembers a buffer of capacity n, and returns it
// with length 0 (nil if the pool gives no buffers).
func (p *loadPool) newBuffer(n int) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || p.noPin {
		return nil
	}
	b := make([]byte, n)
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	p.next++
	p.made = append(p.made, &pinBuf{b: b, id: p.next, lo: lo, hi: lo + uintptr(n)})
	return b[:0]
}

// PutDecompressBytes does nothing: a buffer franz-go gives back (that of a
// batch none of whose records reached the store, zeroed) is left to the
// garbage collector.
func (p *loadPool) PutDecompressBytes([]byte) {}

// GetRecords returns a slice of at least n records: a free one, or a new
// one (nil once stopped: franz-go then allocates).
func (p *loadPool) GetRecords(n int) []kgo.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || n <= 0 {
		return nil
	}
	var recs []kgo.Record
	for i, f := range p.free {
		if cap(f) >= n {
			recs = f
			last := len(p.free) - 1
			p.free[i] = p.free[last]
			p.free[last] = nil
			p.free = p.free[:last]
			break
		}
	}
	if recs == nil {
		// Powers of two, so that a freed slice fits many later batches.
		recs = make([]kgo.Record, 0, max(64, 1<<bits.Len(uint(n-1))))
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(recs[:1])))
	p.lent = append(p.lent, &recSlab{recs: recs[:cap(recs)], lo: lo, hi: lo + uintptr(cap(recs))*unsafe.Sizeof(kgo.Record{})})
	return recs[:0]
}

// PutRecords does nothing: the slice of a batch none of whose records
// reached the store is left to the garbage collector (and to reuse, which
// forgets it after two polls). Taking it back here could put it in the
// free list twice.
func (p *loadPool) PutRecords([]kgo.Record) {}

// reuse takes back the record slices the records of fs lie in, once the
// loader applied fs: it holds no record of fs any more, and franz-go
// overwrites them. keep are records
// that went to OnDecodeError (whose callback may hold on to them): their
// slices are never reused. A slice whose records were in no poll for two
// polls (a fetch franz-go discarded) is forgotten.
func (p *loadPool) reuse(fs kgo.Fetches, keep []*kgo.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.polls++
	var hit *recSlab
	mark := func(r *kgo.Record, state uint8) {
		if a := uintptr(unsafe.Pointer(r)); hit == nil || a < hit.lo || a >= hit.hi {
			if hit = p.lentAt(a); hit == nil {
				return // franz-go's own
			}
		}
		hit.state = max(hit.state, state)
	}
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		for _, r := range fp.Records {
			mark(r, slabApplied)
		}
	})
	for _, r := range keep {
		mark(r, slabKept)
	}
	kept := p.lent[:0]
	for _, s := range p.lent {
		switch {
		case s.state == slabApplied:
			// Not cleared: franz-go sets every field of each record it
			// decodes into the slice, and until then the free slices keep
			// a few polls' buffers alive at most (stop drops them).
			p.free = append(p.free, s.recs[:0])
		case s.state == slabKept:
		case s.poll == 0:
			s.poll = p.polls
			kept = append(kept, s)
		case p.polls-s.poll < 2:
			kept = append(kept, s)
		}
	}
	clear(p.lent[len(kept):])
	p.lent = kept
}

// lentAt returns the lent record slice that address a lies in, if any. The
// caller holds p.mu.
func (p *loadPool) lentAt(a uintptr) *recSlab {
	for _, s := range p.lent {
		if a >= s.lo && a < s.hi {
			return s
		}
	}
	return nil
}

// take returns the buffers made since the last take, and forgets them.
func (p *loadPool) take(into []*pinBuf) []*pinBuf {
	p.mu.Lock()
	into = append(into, p.made...)
	clear(p.made)
	p.made = p.made[:0]
	p.mu.Unlock()
	return into
}

// stopPinning makes the pool give out no more decompression buffers.
func (p *loadPool) stopPinning() {
	p.mu.Lock()
	p.noPin = true
	p.mu.Unlock()
}

// stop makes the pool give out nothing more (franz-go then allocates as
// without a pool), and drops its free record slices.
func (p *loadPool) stop() {
	p.mu.Lock()
	p.stopped = true
	p.made, p.free, p.lent = nil, nil, nil
	p.mu.Unlock()
}

// decompressedSize returns the size compressed decompresses to (for gzip
// and lz4 plus readSlack), or 0 if its format does not say.
func decompressedSize(compressed []byte, codec kgo.CompressionCodecType) int {
	switch codec {
	case kgo.CodecSnappy:
		return snappySize(compressed)
	case kgo.CodecGzip:
		// The last four bytes (ISIZE) are the size of the (last)
		// member's data, mod 2^32. A batch of several members gets too
		// small a buffer: it is then decompressed elsewhere, and copied.
		if len(compressed) < 18 {
			return 0
		}
		return int(binary.LittleEndian.Uint32(compressed[len(compressed)-4:])) + readSlack
	case kgo.CodecZstd:
		var h zstd.Header
		if err := h.Decode(compressed); err != nil || !h.HasFCS || h.FrameContentSize > maxPinBuffer {
			return 0
		}
		return int(h.FrameContentSize)
	case kgo.CodecLz4:
		return lz4Size(compressed)
	}
	return 0
}

// xerialPrefix starts snappy data framed the way the Java client writes
// it: a 16-byte header, then blocks of a 4-byte big-endian length and a raw
// snappy block.
var xerialPrefix = []byte{130, 83, 78, 65, 80, 80, 89, 0}

func snappySize(src []byte) int {
	if len(src) <= 16 || !bytes.HasPrefix(src, xerialPrefix) {
		n, err := s2.DecodedLen(src)
		if err != nil {
			return 0
		}
		return n
	}
	total := 0
	for rem := src[16:]; len(rem) > 0; {
		if len(rem) < 4 {
			return 0
		}
		size := int(binary.BigEndian.Uint32(rem))
		rem = rem[4:]
		if size > len(rem) {
			return 0
		}
		n, err := s2.DecodedLen(rem[:size])
		if err != nil {
			return 0
		}
		if total += n; total > maxPinBuffer {
			return 0
		}
		rem = rem[size:]
	}
	return total
}

// lz4Size reads an LZ4 frame's content size, which the frame has if its
// descriptor's flag says so (Kafka's Java client does not write it).
func lz4Size(src []byte) int {
	const magic = 0x184D2204
	if len(src) < 15 || binary.LittleEndian.Uint32(src) != magic || src[4]&0x08 == 0 {
		return 0
	}
	size := binary.LittleEndian.Uint64(src[6:14])
	if size > maxPinBuffer {
		return 0
	}
	return int(size) + readSlack
}

// pinned is the loader's view of the pool's buffers: those the records of
// the current poll may lie in.
type pinned struct {
	pool *loadPool
	bufs []*pinBuf // those taken at this poll and at the one before
	prev int       // bufs[:prev] were taken at the poll before
	hit  *pinBuf   // the last buffer a record was found in
}

// poll is called for each poll, before its records are added. The buffers
// of a poll's records were all made before the poll returned: during it,
// or (a fetch decoded while the loader was applying the previous poll, or
// during the PollFetches that returned without it) during the one before.
// Older buffers are forgotten (the entries pinned in them keep them alive).
func (p *pinned) poll() {
	n := copy(p.bufs, p.bufs[p.prev:])
	clear(p.bufs[n:])
	p.bufs = p.pool.take(p.bufs[:n])
	p.prev = n
	p.hit = nil
}

// region makes the values of recs, the records of one fetched partition,
// that come from uncompressed record batches one more buffer for find: the
// part of the fetch response they lie in, from the lowest value to the end
// of the highest. franz-go reads each fetch response into a new buffer,
// never reused (as for decompressed batches, records keep pointing into
// it), and an uncompressed batch's records point into the response. Only
// records decoded into the pool's record slices count: those are from
// record batches (message format v2); records of the old formats (v0 and
// v1, whose compressed messages' inner messages say "uncompressed" though
// they lie in a decompressed buffer) are allocated one by one.
//
// The buffer is a slice from the lowest value on, so it keeps the response
// alive (with the other partitions' parts: pinnedBytes counts this part
// only).
func (p *pinned) region(recs []*kgo.Record) {
	p.pool.mu.Lock()
	defer p.pool.mu.Unlock()
	if p.pool.stopped || p.pool.noPin {
		return
	}
	// The records are in offset order, so their values in address order:
	// the first and the last such value bound them. (Were they not, the
	// values outside would just not be found, and be copied.)
	first := p.pool.firstRaw(recs, 1)
	if first < 0 {
		return
	}
	last := p.pool.firstRaw(recs, -1)
	lo := unsafe.Pointer(unsafe.SliceData(recs[first].Value))
	end := uintptr(unsafe.Pointer(unsafe.SliceData(recs[last].Value))) + uintptr(len(recs[last].Value))
	if end <= uintptr(lo) {
		return
	}
	p.pool.next++
	n := end - uintptr(lo)
	p.bufs = append(p.bufs, &pinBuf{b: unsafe.Slice((*byte)(lo), n), id: p.pool.next, lo: uintptr(lo), hi: end})
}

// firstRaw returns the index of the first (dir 1) or last (dir -1) record
// of recs with a non-empty value from an uncompressed record batch decoded
// into a lent record slice, or -1. The caller holds p.mu.
func (p *loadPool) firstRaw(recs []*kgo.Record, dir int) int {
	i := 0
	if dir < 0 {
		i = len(recs) - 1
	}
	for ; i >= 0 && i < len(recs); i += dir {
		if r := recs[i]; r.Attrs.CompressionType() == 0 && len(r.Value) > 0 && p.lentAt(uintptr(unsafe.Pointer(r))) != nil {
			return i
		}
	}
	return -1
}

// find returns the buffer b lies in, if it does (nil if p is nil).
func (p *pinned) find(b []byte) *pinBuf {
	if p == nil || len(b) == 0 {
		return nil
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	hi := lo + uintptr(len(b))
	if h := p.hit; h != nil && lo >= h.lo && hi <= h.hi {
		return h
	}
	for i := len(p.bufs) - 1; i >= 0; i-- {
		if h := p.bufs[i]; lo >= h.lo && hi <= h.hi {
			p.hit = h
			return h
		}
	}
	return nil
}

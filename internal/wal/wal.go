// Package wal is the durable spool's storage: an append-only log of
// numbered records in segment files, written with group commit (one
// fdatasync for every batch of concurrent appends) and recovered up to the
// last good record after a crash.
//
// A segment is named after the sequence number of its first record
// (%020d.seg) and holds frames:
//
//	length  uint32  little endian, length of payload
//	crc     uint32  CRC-32C (Castagnoli) of seq and payload
//	seq     uint64  little endian, one more than the previous record's
//	payload [length]byte
//
// A torn tail (a crash during a write) fails the length, CRC or sequence
// check; Open truncates the segment to the last good frame and reports what
// it dropped. Records are never rewritten: the caller frees them from the
// front with TruncateFront once it no longer needs them.
package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// HeaderSize is the bytes a frame adds to its payload.
const HeaderSize = 16

// MaxPayload bounds one record's payload; a larger length is a torn frame.
const MaxPayload = 64 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	// ErrFull is returned by Append when the record would take the log
	// past Options.MaxBytes or Options.MaxRecords.
	ErrFull = errors.New("wal: full")
	// ErrClosed is returned by Append after Close.
	ErrClosed = errors.New("wal: closed")
	// ErrBroken is matched by every Append error after a write or fsync
	// failed (wrapping the cause, e.g. syscall.ENOSPC for a full disk): the
	// failed batch is cut off the file, and the log accepts nothing more
	// (reopen it to recover what is durable).
	ErrBroken = errors.New("wal: broken by a failed write")
)

// Options configure a Log. Zero values mean the defaults.
type Options struct {
	// SegmentBytes is the size after which a new segment file starts.
	// Default 64 MiB.
	SegmentBytes int64
	// MaxBytes caps the bytes of the segment files (acknowledged frames
	// included until their segment is removed). 0: no cap.
	MaxBytes int64
	// MaxRecords caps the records not yet freed by TruncateFront. 0: no cap.
	MaxRecords int64
	// NextSeq is the lowest sequence number the next record may have: a
	// log whose segments were all removed starts there rather than at 1.
	NextSeq uint64
	// NoSync skips fdatasync: for tests of logic only, never for durability.
	NoSync bool
}

// Recovery says what Open found.
type Recovery struct {
	// Records is the number of good records in the segments.
	Records int64
	// FirstSeq and LastSeq are the sequence numbers of the first and last
	// good records (0 when there are none).
	FirstSeq, LastSeq uint64
	// Dropped lists each torn or corrupt part that Open cut off.
	Dropped []Dropped
}

// Dropped is a part of a segment that Open cut off.
type Dropped struct {
	Segment string // file name
	Offset  int64  // where the first bad frame starts
	Bytes   int64  // bytes cut off
	Reason  string
}

type segment struct {
	first, last uint64 // last == first-1 when empty
	size        int64  // durable bytes
	path        string
}

// Log is an append-only record log. Append is safe for concurrent use and
// batches concurrent appends into one write and one fdatasync.
type Log struct {
	dir  string
	opts Options

	mu      sync.Mutex // guards the fields below
	segs    []*segment
	nextSeq uint64
	freed   uint64 // TruncateFront(seq): records ≤ freed are no longer counted
	bytes   int64  // sum of segment sizes
	broken  error

	cmu    sync.RWMutex // read-held while enqueueing, held to close reqs
	closed bool
	queued atomic.Int64 // enqueued, not yet answered

	wmu    sync.Mutex // held while writing; guards active
	active *os.File   // the last segment, opened for append

	reqs chan *request
	done chan struct{} // closed when the writer exits
}

type request struct {
	payload []byte
	seq     uint64
	err     error
	ready   chan struct{}
}

// Pending is an enqueued append; Wait returns when it is durable or failed.
type Pending struct{ r *request }

// Wait blocks until the record is durable (fdatasync returned) and returns
// its sequence number, or returns why it was not written.
func (p Pending) Wait() (uint64, error) {
	<-p.r.ready
	return p.r.seq, p.r.err
}

// Done is closed when the append completed.
func (p Pending) Done() <-chan struct{} { return p.r.ready }

// Open opens (creating if needed) the log in dir, recovers its segments and
// starts the writer. Records after a torn or corrupt frame are cut off, as
// listed in the Recovery.
func Open(dir string, opts Options) (*Log, Recovery, error) {
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = 64 << 20
	}
	var rec Recovery
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, rec, fmt.Errorf("wal: %w", err)
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		return nil, rec, fmt.Errorf("wal: %w", err)
	}
	type named struct {
		first uint64
		path  string
	}
	var found []named
	for _, p := range names {
		n, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(p), ".seg"), 10, 64)
		if err != nil {
			continue // not ours
		}
		found = append(found, named{n, p})
	}
	sort.Slice(found, func(i, j int) bool { return found[i].first < found[j].first })

	l := &Log{dir: dir, opts: opts, nextSeq: 1, reqs: make(chan *request, 4096), done: make(chan struct{})}
	for i, f := range found {
		s, d, err := scan(f.path, f.first)
		if err != nil {
			return nil, rec, err
		}
		if d != nil {
			rec.Dropped = append(rec.Dropped, *d)
			if err := truncate(f.path, d.Offset); err != nil {
				return nil, rec, err
			}
		}
		if s.last < s.first && i < len(found)-1 {
			// An empty segment before others holds nothing: remove it.
			if err := os.Remove(f.path); err != nil {
				return nil, rec, fmt.Errorf("wal: %w", err)
			}
			continue
		}
		if n := len(l.segs); n > 0 && s.first <= l.segs[n-1].last {
			return nil, rec, fmt.Errorf("wal: segment %s overlaps the one before it", f.path)
		}
		l.segs = append(l.segs, s)
		l.bytes += s.size
		if s.last >= s.first {
			rec.Records += int64(s.last - s.first + 1)
			if rec.FirstSeq == 0 {
				rec.FirstSeq = s.first
			}
			rec.LastSeq = s.last
		}
		if s.last+1 > l.nextSeq {
			l.nextSeq = s.last + 1
		}
	}
	if opts.NextSeq > l.nextSeq {
		l.nextSeq = opts.NextSeq
	}
	if rec.FirstSeq > 0 {
		l.freed = rec.FirstSeq - 1
	} else {
		l.freed = l.nextSeq - 1
	}
	if n := len(l.segs); n > 0 {
		f, err := os.OpenFile(l.segs[n-1].path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return nil, rec, fmt.Errorf("wal: %w", err)
		}
		l.active = f
	}
	go l.writer()
	return l, rec, nil
}

// scan reads a segment's frames and returns it with its durable size, and
// what it found torn, if anything.
func scan(path string, first uint64) (*segment, *Dropped, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("wal: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("wal: %w", err)
	}
	s := &segment{first: first, last: first - 1, path: path}
	r := &frameReader{f: f, size: st.Size()}
	for {
		seq, _, err := r.next()
		if err == io.EOF {
			return s, nil, nil
		}
		if err == nil && seq != s.last+1 {
			err = fmt.Errorf("sequence %d where %d was expected", seq, s.last+1)
		}
		if err != nil {
			return s, &Dropped{Segment: filepath.Base(path), Offset: s.size, Bytes: st.Size() - s.size, Reason: err.Error()}, nil
		}
		s.last = seq
		s.size = r.off
	}
}

func truncate(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	return nil
}

// frameReader reads frames sequentially from a file, up to size.
type frameReader struct {
	f    *os.File
	off  int64
	size int64
	buf  []byte
}

// next returns the next frame's seq and payload (valid until the next call),
// io.EOF at a clean end, or an error describing a torn or corrupt frame.
func (r *frameReader) next() (uint64, []byte, error) {
	if r.off == r.size {
		return 0, nil, io.EOF
	}
	if r.size-r.off < HeaderSize {
		return 0, nil, fmt.Errorf("torn frame header: %d bytes", r.size-r.off)
	}
	var h [HeaderSize]byte
	if _, err := r.f.ReadAt(h[:], r.off); err != nil {
		return 0, nil, fmt.Errorf("read: %w", err)
	}
	n := binary.LittleEndian.Uint32(h[0:4])
	if n > MaxPayload {
		return 0, nil, fmt.Errorf("frame length %d is beyond the limit", n)
	}
	if r.size-r.off-HeaderSize < int64(n) {
		return 0, nil, fmt.Errorf("torn frame: %d payload bytes of %d", r.size-r.off-HeaderSize, n)
	}
	if cap(r.buf) < int(n) {
		r.buf = make([]byte, n)
	}
	p := r.buf[:n]
	if _, err := r.f.ReadAt(p, r.off+HeaderSize); err != nil {
		return 0, nil, fmt.Errorf("read: %w", err)
	}
	crc := crc32.Update(crc32.Checksum(h[8:16], castagnoli), castagnoli, p)
	if crc != binary.LittleEndian.Uint32(h[4:8]) {
		return 0, nil, errors.New("CRC mismatch")
	}
	r.off += HeaderSize + int64(n)
	return binary.LittleEndian.Uint64(h[8:16]), p, nil
}

// Enqueue queues payload for appending and returns at once (unless the
// queue is full); Wait on the result for durability. Appends are written in
// the order they were enqueued. The log keeps payload until written.
func (l *Log) Enqueue(payload []byte) Pending {
	r := &request{payload: payload, ready: make(chan struct{})}
	l.cmu.RLock()
	if l.closed {
		l.cmu.RUnlock()
		r.err = ErrClosed
		close(r.ready)
		return Pending{r}
	}
	l.queued.Add(1)
	l.reqs <- r // under cmu: Close cannot close reqs meanwhile
	l.cmu.RUnlock()
	return Pending{r}
}

// Append writes payload and returns its sequence number once it is durable.
func (l *Log) Append(payload []byte) (uint64, error) { return l.Enqueue(payload).Wait() }

// writer writes queued appends in batches: one write and one fdatasync per
// batch, then answers each.
func (l *Log) writer() {
	defer close(l.done)
	var batch []*request
	var buf []byte
	for r := range l.reqs {
		batch = append(batch[:0], r)
	drain:
		for len(batch) < 4096 {
			select {
			case r, ok := <-l.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		buf = l.writeBatch(batch, buf[:0])
	}
	l.wmu.Lock()
	if l.active != nil {
		_ = l.active.Close()
	}
	l.wmu.Unlock()
}

func (l *Log) writeBatch(batch []*request, buf []byte) []byte {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	err := l.broken
	seq := l.nextSeq
	bytes := l.bytes
	live := int64(l.nextSeq - 1 - l.freed)
	var active *segment
	if n := len(l.segs); n > 0 {
		active = l.segs[n-1]
	}
	l.mu.Unlock()

	answer := func(r *request, err error) {
		r.err = err
		l.queued.Add(-1)
		close(r.ready)
	}
	if err != nil {
		for _, r := range batch {
			answer(r, err)
		}
		return buf
	}
	// Start a new segment when the active one is full (or there is none).
	if l.active == nil || active == nil || active.size >= l.opts.SegmentBytes {
		if err := l.rotate(seq); err != nil {
			l.fail(err)
			for _, r := range batch {
				answer(r, err)
			}
			return buf
		}
		l.mu.Lock()
		active = l.segs[len(l.segs)-1]
		l.mu.Unlock()
	}
	var accepted []*request
	for _, r := range batch {
		size := int64(HeaderSize + len(r.payload))
		if len(r.payload) > MaxPayload {
			answer(r, fmt.Errorf("wal: payload of %d bytes is beyond the limit of %d", len(r.payload), MaxPayload))
			continue
		}
		if (l.opts.MaxBytes > 0 && bytes+size > l.opts.MaxBytes) || (l.opts.MaxRecords > 0 && live+1 > l.opts.MaxRecords) {
			answer(r, fmt.Errorf("%w: %d records and %d bytes held (MaxRecords %d, MaxBytes %d)", ErrFull, live, bytes, l.opts.MaxRecords, l.opts.MaxBytes))
			continue
		}
		var h [HeaderSize]byte
		binary.LittleEndian.PutUint32(h[0:4], uint32(len(r.payload)))
		binary.LittleEndian.PutUint64(h[8:16], seq)
		binary.LittleEndian.PutUint32(h[4:8], crc32.Update(crc32.Checksum(h[8:16], castagnoli), castagnoli, r.payload))
		buf = append(append(buf, h[:]...), r.payload...)
		r.seq = seq
		seq++
		bytes += size
		live++
		accepted = append(accepted, r)
	}
	if len(accepted) == 0 {
		return buf
	}
	_, err = l.active.Write(buf)
	if err == nil && !l.opts.NoSync {
		err = fdatasync(l.active)
	}
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrBroken, err)
		// Cut off what the failed batch left (a short write on a full
		// disk holds whole frames): its callers are told it failed, so
		// none of it may come back when the log is reopened.
		if terr := l.active.Truncate(active.size); terr != nil {
			err = fmt.Errorf("%w (and cutting off the failed write: %w)", err, terr)
		} else if !l.opts.NoSync {
			_ = fdatasync(l.active)
		}
		l.fail(err)
		for _, r := range accepted {
			answer(r, err)
		}
		return buf
	}
	l.mu.Lock()
	active.size += int64(len(buf))
	active.last = seq - 1
	l.bytes += int64(len(buf))
	l.nextSeq = seq
	l.mu.Unlock()
	for _, r := range accepted {
		answer(r, nil)
	}
	return buf
}

func (l *Log) fail(err error) {
	l.mu.Lock()
	if l.broken == nil {
		l.broken = err
	}
	l.mu.Unlock()
}

// rotate closes the active segment and starts one whose first record is
// seq, making its directory entry durable.
func (l *Log) rotate(seq uint64) error {
	if l.active != nil {
		if err := l.active.Close(); err != nil {
			return fmt.Errorf("%w: %w", ErrBroken, err)
		}
		l.active = nil
	}
	path := filepath.Join(l.dir, fmt.Sprintf("%020d.seg", seq))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBroken, err)
	}
	if !l.opts.NoSync {
		if err := syncDir(l.dir); err != nil {
			f.Close()
			return fmt.Errorf("%w: %w", ErrBroken, err)
		}
	}
	l.active = f
	l.mu.Lock()
	l.segs = append(l.segs, &segment{first: seq, last: seq - 1, path: path})
	l.mu.Unlock()
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// TruncateFront frees every record with a sequence number ≤ seq: they stop
// counting against MaxRecords, and each segment holding only such records
// is removed (the one being appended to too, once every record is freed:
// the next append starts a new one).
func (l *Log) TruncateFront(seq uint64) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	if seq > l.nextSeq-1 {
		seq = l.nextSeq - 1
	}
	if seq > l.freed {
		l.freed = seq
	}
	keep := 1
	if l.freed == l.nextSeq-1 {
		keep = 0
	}
	var remove []*segment
	for len(l.segs) > keep && l.segs[0].last <= l.freed {
		remove = append(remove, l.segs[0])
		l.bytes -= l.segs[0].size
		l.segs = l.segs[1:]
	}
	if len(l.segs) == 0 && l.active != nil {
		_ = l.active.Close()
		l.active = nil
	}
	l.mu.Unlock()
	for _, s := range remove {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("wal: %w", err)
		}
	}
	return nil
}

// Stats describes the records not yet freed.
type Stats struct {
	Records  int64  // records after the last TruncateFront
	Bytes    int64  // bytes of the segment files
	Segments int    // segment files
	FirstSeq uint64 // first record not freed (0 when none)
	LastSeq  uint64 // last record appended (0 when none)
	Queued   int64  // appends enqueued and not yet answered
}

// Stats returns the log's counts.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Stats{Records: int64(l.nextSeq - 1 - l.freed), Bytes: l.bytes, Segments: len(l.segs), LastSeq: l.nextSeq - 1, Queued: l.queued.Load()}
	if s.Records > 0 {
		s.FirstSeq = l.freed + 1
	}
	return s
}

// Err returns the error that broke the log, if any.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.broken
}

// Close stops the writer after the appends already enqueued and closes the
// files. Appends enqueued after Close fail with ErrClosed.
func (l *Log) Close() error {
	l.cmu.Lock()
	if !l.closed {
		l.closed = true
		close(l.reqs)
	}
	l.cmu.Unlock()
	<-l.done
	return l.Err()
}

// Entry is one record read back.
type Entry struct {
	Seq     uint64
	Payload []byte // owned by the caller
}

// Cursor reads records in sequence order from a position.
type Cursor struct {
	l    *Log
	next uint64 // seq of the next record to return
	seg  *segment
	r    *frameReader
}

// Cursor returns a cursor at the first record with a sequence number ≥ from.
func (l *Log) Cursor(from uint64) *Cursor { return &Cursor{l: l, next: from} }

// Seek moves c to the first record with a sequence number ≥ from.
func (c *Cursor) Seek(from uint64) {
	c.close()
	c.next = from
}

func (c *Cursor) close() {
	if c.r != nil {
		c.r.f.Close()
		c.r, c.seg = nil, nil
	}
}

// Close releases the cursor's file.
func (c *Cursor) Close() { c.close() }

// Next returns up to max durable records from the cursor's position (none
// when it is at the end) and moves past them.
func (c *Cursor) Next(max int) ([]Entry, error) {
	var out []Entry
	for len(out) < max {
		c.l.mu.Lock()
		var seg *segment
		for _, s := range c.l.segs {
			if s.last >= c.next && s.last >= s.first {
				seg = s
				break
			}
		}
		var size int64
		var last uint64
		if seg != nil {
			size, last = seg.size, seg.last // the writer changes them under mu
		}
		c.l.mu.Unlock()
		if seg == nil {
			return out, nil
		}
		if c.seg != seg {
			c.close()
			f, err := os.Open(seg.path)
			if err != nil {
				return out, fmt.Errorf("wal: %w", err)
			}
			c.seg, c.r = seg, &frameReader{f: f}
		}
		c.r.size = size
		for len(out) < max {
			seq, p, err := c.r.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return out, fmt.Errorf("wal: %s at offset %d: %s", filepath.Base(seg.path), c.r.off, err)
			}
			if seq < c.next {
				continue
			}
			out = append(out, Entry{Seq: seq, Payload: append([]byte(nil), p...)})
			c.next = seq + 1
		}
		if c.r.off == size && c.next <= last {
			return out, nil // appended meanwhile; read on the next call
		}
	}
	return out, nil
}

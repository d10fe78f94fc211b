package spool

import (
	"container/list"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/connect"
	"github.com/whippet-go/whippet/internal/inhandler"
	"github.com/whippet-go/whippet/internal/wal"
)

var (
	// ErrFull is matched by the error of a produce refused because the
	// spool holds MaxRecords records or MaxBytes bytes. The record was
	// neither spooled nor acknowledged by Kafka within Threshold (it may
	// still reach Kafka if it was sent: the error then also matches
	// ErrUnconfirmed).
	ErrFull = errors.New("spool: full")
	// ErrUnconfirmed is matched by the error of a produce whose outcome is
	// not known: ctx ended before the record was acknowledged by Kafka or
	// durable on disk, or spooling failed after the record was sent.
	ErrUnconfirmed = errors.New("spool: delivery unconfirmed, the record may still be written")
	// ErrClosed is returned for produces after Close.
	ErrClosed = errors.New("spool: closed")
	// ErrInvalidRecord is returned for a nil record, or one with no Topic
	// and no DefaultTopic.
	ErrInvalidRecord = errors.New("spool: invalid record")
	// ErrLocked is returned by New and Inspect when another process (or
	// Producer) has the spool directory open.
	ErrLocked = errors.New("spool: directory in use by another process")
	// ErrInHandler is returned by Produce called with a consumer handler's
	// context: the consumer would commit the input's offset while its
	// output is only on this machine's disk. Use consumer.Emit.
	ErrInHandler = errors.New("spool: refusing to produce from a consumer handler: the consumer would commit the input's offset while the output is only on local disk; emit outputs with consumer.Emit")
)

// Result is the outcome of a produce that succeeded.
type Result struct {
	// ID is the record's IDHeader value.
	ID string
	// Spooled is true when the record is durable in the spool (Kafka did
	// not acknowledge it within Threshold, or records were already
	// spooled); the relay will deliver it. Partition and Offset are then -1.
	Spooled bool
	// Topic, Partition and Offset say where Kafka wrote the record.
	Topic     string
	Partition int32
	Offset    int64
}

// Producer produces to Kafka, and to a local spool when Kafka does not
// acknowledge in time. It is safe for concurrent use. Create it with New,
// release it with Close.
type Producer struct {
	cfg     config
	cl      *kgo.Client
	log     *zap.Logger
	wal     *wal.Log
	dead    *wal.Log
	state   *state
	release func() // the directory lock
	unreg   func()

	idPrefix string
	idSeq    atomic.Uint64

	// mu orders decisions: a record goes to Kafka or to the spool, in the
	// order of the calls, and the switch to the spool moves every record
	// still waiting for Kafka to the spool first.
	mu       sync.Mutex
	closed   bool
	spooling bool
	waiting  list.List // *direct, in produce order
	calls    sync.WaitGroup
	// gate, while not nil, holds new produces (up to Threshold): the relay
	// has caught up and hands the last spooled records to Kafka, after
	// which produces go to Kafka directly. Without it a steady load keeps
	// the spool from ever being empty. Closed (and set to nil) by the relay.
	gate chan struct{}

	// copies are records spooled while their first attempt was still
	// with franz-go; the relay skips those whose first attempt was
	// acknowledged.
	cmu    sync.Mutex
	copies map[string]*direct

	wake      chan struct{} // nudges the relay
	stop      chan struct{} // closed by Close
	relayDone chan struct{}
	relayCtx  context.Context
	cancel    context.CancelFunc

	// statistics
	spooled, relayed, deadN, skipped, dups atomic.Uint64
	oldest                                 atomic.Int64 // created (unix ns) of the oldest spooled record, 0 if none
	deadRecords                            atomic.Int64
	lastRelayErr                           atomic.Pointer[string]
	recovered                              Recovery

	closeOnce sync.Once
	closeErr  error
}

// direct is a record produced to Kafka whose caller waits for the
// acknowledgement, up to Threshold.
type direct struct {
	s     stored
	id    string
	elem  *list.Element
	ack   chan outcome  // the first attempt's outcome (buffered)
	res   atomic.Value  // outcome, once known
	moved chan struct{} // closed when a copy was enqueued (copy set)
	copy  wal.Pending
	// cancel fails the first attempt once the copy is durable, if franz-go
	// has not sent it: a record waiting for metadata holds back the
	// records of its topic behind it, the relay's included.
	cancel context.CancelFunc
}

type outcome struct {
	r   *kgo.Record
	err error
}

// Recovery says what New found in the spool directory.
type Recovery struct {
	// Records were spooled by an earlier process and are relayed now.
	Records int64
	// PossibleDuplicates of them may already be in Kafka: the relay had
	// sent them, or their first direct attempt was under way, when the
	// earlier process stopped. Each carries its IDHeader.
	PossibleDuplicates int64
	// Dropped lists the torn or corrupt parts of files that were cut off
	// (logged at Error level).
	Dropped []wal.Dropped
}

// New opens (creating it if needed) the spool in dir, recovers what an
// earlier process left there, and starts the relay. conn is validated
// before any network I/O; a bad option is reported as a *ConfigError
// matching ErrInvalidConfig. One process at a time may open dir (ErrLocked).
//
// The spool has its own idempotent franz-go client (acks=all, in order per
// partition, retries without limit). Records of one key go to one partition
// (by key hash), so the relay keeps their order.
//
// With conn.Registerer, the metrics are whippet_spool_records_spooled_total,
// whippet_spool_records_relayed_total, whippet_spool_records_dead_total,
// whippet_spool_records_skipped_total (spooled, then acknowledged by their
// first attempt), whippet_spool_possible_duplicates_total,
// whippet_spool_records (held now), whippet_spool_bytes (on disk),
// whippet_spool_oldest_age_seconds and whippet_spool_ready, with a constant
// client_id label, plus franz-go's whippet_kafka_*{component="spool"}.
func New(conn whippet.Connection, dir string, opts ...Option) (*Producer, error) {
	cfg := newConfig(conn, dir, opts)
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	release, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	p := &Producer{cfg: cfg, log: connect.Logger(conn), release: release, unreg: func() {},
		copies: map[string]*direct{}, wake: make(chan struct{}, 1), stop: make(chan struct{}), relayDone: make(chan struct{})}
	if err := p.open(); err != nil {
		release()
		return nil, err
	}
	id := connect.ClientID(conn, "spool")
	kc := connect.New(conn, "spool", id)
	p.cl, err = kgo.NewClient(kc.All()...)
	if err != nil {
		p.closeFiles()
		return nil, &ConfigError{Pkg: "spool", Sentinel: ErrInvalidConfig, Field: "Connection.ClientOptions", Rule: "franz-go rejected the client configuration", Err: err}
	}
	if p.unreg, err = kc.Register(); err != nil {
		p.cl.Close()
		p.closeFiles()
		return nil, &ConfigError{Pkg: "spool", Sentinel: ErrInvalidConfig, Field: "Connection.Registerer", Rule: "cannot register the Kafka client metrics", Err: err}
	}
	if conn.Registerer != nil {
		unreg, err := registerMetrics(conn.Registerer, id, p)
		if err != nil {
			p.unreg()
			p.cl.Close()
			p.closeFiles()
			return nil, &ConfigError{Pkg: "spool", Sentinel: ErrInvalidConfig, Field: "Connection.Registerer", Rule: "cannot register spool metrics", Err: err}
		}
		prev := p.unreg
		p.unreg = func() { unreg(); prev() }
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	p.idPrefix = hex.EncodeToString(b[:]) + "-"
	p.relayCtx, p.cancel = context.WithCancel(context.Background())
	go p.relay()
	return p, nil
}

// open recovers the spool's files.
func (p *Producer) open() error {
	st, err := openState(filepath.Join(p.cfg.dir, "state"))
	if err != nil {
		return err
	}
	p.state = st
	l, rec, err := wal.Open(filepath.Join(p.cfg.dir, "log"), wal.Options{
		SegmentBytes: p.cfg.segmentBytes, MaxBytes: p.cfg.maxBytes, MaxRecords: p.cfg.maxRecords, NextSeq: st.acked + 1,
	})
	if err != nil {
		st.close()
		return fmt.Errorf("spool: %w", err)
	}
	p.wal = l
	dead, drec, err := wal.Open(filepath.Join(p.cfg.dir, "dead"), wal.Options{})
	if err != nil {
		l.Close()
		st.close()
		return fmt.Errorf("spool: dead records: %w", err)
	}
	p.dead = dead
	p.deadRecords.Store(drec.Records)
	for _, d := range append(rec.Dropped, drec.Dropped...) {
		p.log.Error("spool: cut off a torn or corrupt part of a spool file (records in it were never acknowledged to a caller if the tear is the crash's last write)",
			zap.String("dir", p.cfg.dir), zap.String("segment", d.Segment), zap.Int64("offset", d.Offset), zap.Int64("bytes", d.Bytes), zap.String("reason", d.Reason))
	}
	if err := l.TruncateFront(st.acked); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	ws := l.Stats()
	p.recovered = Recovery{Records: ws.Records, Dropped: append(rec.Dropped, drec.Dropped...)}
	if ws.Records > 0 {
		// Count the possible duplicates: sent by the relay, or first
		// attempted directly.
		c := l.Cursor(st.acked + 1)
		defer c.Close()
		for {
			es, err := c.Next(1000)
			if err != nil {
				return fmt.Errorf("spool: %w", err)
			}
			if len(es) == 0 {
				break
			}
			for _, e := range es {
				s, err := decode(e.Payload)
				if e.Seq <= st.sending || (err == nil && s.flags&flagAttempted != 0) {
					p.recovered.PossibleDuplicates++
				}
			}
		}
		p.dups.Add(uint64(p.recovered.PossibleDuplicates))
		p.spooling = true
		p.log.Info("spool: relaying records left by an earlier process", zap.String("dir", p.cfg.dir),
			zap.Int64("records", ws.Records), zap.Int64("possible_duplicates", p.recovered.PossibleDuplicates))
	}
	return nil
}

// Recovered says what New found in the directory.
func (p *Producer) Recovered() Recovery { return p.recovered }

// Client returns the spool's franz-go client. Do not close it; call Close.
func (p *Producer) Client() *kgo.Client { return p.cl }

func (p *Producer) nudge() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Produce produces r and returns once Kafka acknowledged it, or once it is
// durable in the spool: when Kafka does not acknowledge within Threshold
// (or franz-go's buffer is full), or at once while the spool holds records,
// so that no record overtakes one spooled before it. When the relay has
// caught up, a produce waits (up to Threshold) while it hands the last
// spooled records to Kafka, then goes to Kafka directly. The relay then
// delivers spooled records in order and removes each only after Kafka
// acknowledged it. The record gets an IDHeader (unless it has one); if r.Topic
// is empty the DefaultTopic is used.
//
// A record spooled after its first attempt was sent may reach Kafka twice;
// consumers drop duplicates by IDHeader (see the metrics for the count).
//
// Errors: ErrFull when the spool is full (nothing is acknowledged that is
// not durable); the spool's write or fsync error (a full disk matches
// syscall.ENOSPC) for this produce and every later one, the failed write
// cut off the file so that the record is not relayed later; ErrUnconfirmed (with ctx's error) when ctx ends first,
// Kafka's error for a record it refuses (too large, unauthorized) within
// Threshold, ErrInHandler for a consumer handler's context, ErrClosed after
// Close, ErrInvalidRecord.
func (p *Producer) Produce(ctx context.Context, r *kgo.Record) (Result, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if ctx.Value(inhandler.Key{}) != nil {
		return Result{}, ErrInHandler
	}
	if r == nil {
		return Result{}, fmt.Errorf("%w: nil record", ErrInvalidRecord)
	}
	if r.Topic == "" {
		if r.Topic = p.cfg.defaultTopic; r.Topic == "" {
			return Result{}, fmt.Errorf("%w: record has no Topic and there is no DefaultTopic", ErrInvalidRecord)
		}
	}
	id := RecordID(r)
	if id == "" {
		id = p.idPrefix + strconv.FormatUint(p.idSeq.Add(1), 36)
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: IDHeader, Value: []byte(id)})
	}
	s := stored{created: time.Now(), rec: r}
	spooledResult := Result{ID: id, Spooled: true, Topic: r.Topic, Partition: -1, Offset: -1}

	p.mu.Lock()
	if g := p.gate; g != nil {
		// The relay hands the last spooled records to Kafka: wait for it
		// (up to Threshold, as for Kafka's acknowledgement) to produce
		// directly after them, rather than spool.
		p.mu.Unlock()
		t := time.NewTimer(p.cfg.threshold)
		select {
		case <-g:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return Result{ID: id, Topic: r.Topic, Partition: -1, Offset: -1}, fmt.Errorf("spool: produce to topic %q: %w", r.Topic, context.Cause(ctx))
		}
		t.Stop()
		p.mu.Lock()
	}
	if p.closed {
		p.mu.Unlock()
		return Result{}, fmt.Errorf("%w: produce to topic %q", ErrClosed, r.Topic)
	}
	p.calls.Add(1)
	defer p.calls.Done()
	if p.spooling {
		pend := p.wal.Enqueue(encode(s))
		p.mu.Unlock()
		p.nudge()
		return p.waitSpooled(ctx, pend, spooledResult, false)
	}
	d := &direct{s: s, id: id, ack: make(chan outcome, 1), moved: make(chan struct{})}
	d.elem = p.waiting.PushBack(d)
	if r.Timestamp.IsZero() {
		r.Timestamp = s.created // the same on the first attempt and the copy
	}
	// TryProduce fails at once (ErrMaxBuffered) rather than wait while
	// franz-go's buffer is full; its callback never takes mu.
	var rctx context.Context
	rctx, d.cancel = context.WithCancel(context.Background())
	p.cl.TryProduce(rctx, r, func(r *kgo.Record, err error) {
		d.cancel()
		o := outcome{r, err}
		d.res.Store(o)
		d.ack <- o
	})
	p.mu.Unlock()

	timer := time.NewTimer(p.cfg.threshold)
	defer timer.Stop()
	for {
		select {
		case o := <-d.ack:
			if o.err == nil {
				p.forget(d)
				p.cmu.Lock()
				_, copied := p.copies[d.id]
				p.cmu.Unlock()
				if copied {
					p.nudge() // the relay may skip the copy
				}
				return Result{ID: id, Topic: o.r.Topic, Partition: o.r.Partition, Offset: o.r.Offset}, nil
			}
			if !retriable(o.err) {
				select {
				case <-d.moved: // already spooled: the relay will set it aside as dead
					return p.waitSpooled(ctx, d.copy, spooledResult, true)
				default:
				}
				p.forget(d)
				return Result{ID: id, Topic: r.Topic, Partition: -1, Offset: -1}, fmt.Errorf("spool: produce to topic %q: %w", r.Topic, o.err)
			}
			p.toSpool()
		case <-timer.C:
			p.toSpool()
		case <-d.moved:
			return p.waitSpooled(ctx, d.copy, spooledResult, true)
		case <-ctx.Done():
			return Result{ID: id, Topic: r.Topic, Partition: -1, Offset: -1},
				fmt.Errorf("%w: produce to topic %q: %w", ErrUnconfirmed, r.Topic, context.Cause(ctx))
		}
	}
}

// retriable reports whether a failed first attempt should be spooled (Kafka
// unreachable or slow) rather than reported (Kafka refused the record).
func retriable(err error) bool {
	var ke *kerr.Error
	switch {
	case errors.Is(err, kgo.ErrMaxBuffered), errors.Is(err, kgo.ErrRecordTimeout), errors.Is(err, kgo.ErrRecordRetries),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.As(err, &ke):
		return ke.Retriable
	}
	return false
}

func (p *Producer) waitSpooled(ctx context.Context, pend wal.Pending, res Result, sent bool) (Result, error) {
	select {
	case <-pend.Done():
	case <-ctx.Done():
		return Result{ID: res.ID, Topic: res.Topic, Partition: -1, Offset: -1},
			fmt.Errorf("%w: spooling to %s: %w", ErrUnconfirmed, p.cfg.dir, context.Cause(ctx))
	}
	if _, err := pend.Wait(); err != nil {
		res.Spooled = false
		if errors.Is(err, wal.ErrFull) {
			err = fmt.Errorf("%w: %s holds %s", ErrFull, p.cfg.dir, strings.TrimPrefix(err.Error(), wal.ErrFull.Error()+": "))
		}
		if sent {
			err = fmt.Errorf("%w: Kafka did not acknowledge within %v and spooling failed: %w", ErrUnconfirmed, p.cfg.threshold, err)
		}
		return res, fmt.Errorf("spool: produce to topic %q: %w", res.Topic, err)
	}
	p.spooled.Add(1)
	p.nudge() // durable now: the relay may be waiting for it
	return res, nil
}

// forget removes d from the records waiting for Kafka.
func (p *Producer) forget(d *direct) {
	p.mu.Lock()
	if d.elem != nil {
		p.waiting.Remove(d.elem)
		d.elem = nil
	}
	p.mu.Unlock()
}

// toSpool switches to spooling: every record still waiting for its first
// attempt is spooled, in produce order, and every later produce goes to the
// spool until the relay has emptied it.
func (p *Producer) toSpool() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.spooling {
		p.log.Warn("spool: Kafka did not acknowledge in time; spooling records to disk", zap.String("dir", p.cfg.dir), zap.Duration("threshold", p.cfg.threshold))
	}
	p.spooling = true
	for e := p.waiting.Front(); e != nil; e = p.waiting.Front() {
		d := p.waiting.Remove(e).(*direct)
		d.elem = nil
		if o, ok := d.res.Load().(outcome); ok && o.err == nil {
			continue // acknowledged meanwhile
		}
		d.s.flags |= flagAttempted
		p.cmu.Lock()
		p.copies[d.id] = d
		p.cmu.Unlock()
		d.copy = p.wal.Enqueue(encode(d.s))
		close(d.moved)
		go func() {
			if _, err := d.copy.Wait(); err == nil {
				d.cancel()
				p.nudge()
			}
		}()
	}
	p.nudge()
}

// Stats is a snapshot of the spool.
type Stats struct {
	// Records held in the spool, not yet relayed; Bytes of its files.
	Records int64
	Bytes   int64
	// OldestAge is the age of the oldest record held (0 when none).
	OldestAge time.Duration
	// Spooling is true while produces go to the spool.
	Spooling bool
	// Totals since New.
	Spooled, Relayed, Dead, Skipped, PossibleDuplicates uint64
	// DeadRecords are the records set aside as dead in the directory
	// (whatever process did it); see Dead.
	DeadRecords int64
	// LastRelayError is the relay's last failure ("" after a success).
	LastRelayError string
}

// Stats returns a snapshot of the spool's state and counters.
func (p *Producer) Stats() Stats {
	ws := p.wal.Stats()
	s := Stats{
		Records: ws.Records, Bytes: ws.Bytes,
		Spooled: p.spooled.Load(), Relayed: p.relayed.Load(), Dead: p.deadN.Load(), Skipped: p.skipped.Load(),
		PossibleDuplicates: p.dups.Load(), DeadRecords: p.deadRecords.Load(),
	}
	if o := p.oldest.Load(); o != 0 && ws.Records > 0 {
		s.OldestAge = time.Since(time.Unix(0, o))
	}
	p.mu.Lock()
	s.Spooling = p.spooling
	p.mu.Unlock()
	if e := p.lastRelayErr.Load(); e != nil {
		s.LastRelayError = *e
	}
	return s
}

// Ready returns nil while produces are accepted: not closed, the spool's
// files writable, and room for at least one more record. Use it for a
// readiness probe: a service that cannot spool should stop taking work it
// cannot hand on.
func (p *Producer) Ready() error {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if err := p.wal.Err(); err != nil {
		return fmt.Errorf("spool: %s: %w", p.cfg.dir, err)
	}
	ws := p.wal.Stats()
	if ws.Records >= p.cfg.maxRecords || ws.Bytes+wal.HeaderSize+64 > p.cfg.maxBytes {
		return fmt.Errorf("%w: %d records, %d bytes held (MaxRecords %d, MaxBytes %d)", ErrFull, ws.Records, ws.Bytes, p.cfg.maxRecords, p.cfg.maxBytes)
	}
	return nil
}

// Close stops accepting records (later produces fail with ErrClosed), waits
// for the produces under way (each ends by Threshold at the latest) unless
// ctx ends first, stops the relay (records it has not sent yet stay
// spooled), and closes the client and the files. Records still spooled stay on disk: the next
// New on the directory relays them. Close returns an error only if a file
// could not be closed cleanly; it logs how many records stay spooled.
func (p *Producer) Close(ctx context.Context) error {
	p.closeOnce.Do(func() { p.closeErr = p.close(ctx) })
	return p.closeErr
}

func (p *Producer) close(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	calls := make(chan struct{})
	go func() { p.calls.Wait(); close(calls) }()
	select {
	case <-calls:
	case <-ctx.Done():
	}
	// Stop the relay: records it has not sent yet fail at once and stay
	// spooled; those Kafka is answering for complete as usual.
	close(p.stop)
	p.cancel()
	// Delivers what franz-go still holds if Kafka answers (first attempts
	// of records the relay also has), then fails the rest.
	if p.wal.Stats().Records == 0 {
		_ = p.cl.Flush(ctx)
	}
	p.cl.Close()
	<-calls
	<-p.relayDone
	p.unreg()
	if n := p.wal.Stats().Records; n > 0 {
		p.log.Info("spool: closed with records still spooled; the next New on this directory relays them", zap.String("dir", p.cfg.dir), zap.Int64("records", n))
	}
	return p.closeFiles()
}

func (p *Producer) closeFiles() error {
	err := errors.Join(p.wal.Close(), p.dead.Close(), p.state.close())
	p.release()
	if err != nil {
		return fmt.Errorf("spool: close: %w", err)
	}
	return nil
}

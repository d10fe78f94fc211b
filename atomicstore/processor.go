package atomicstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/internal/connect"
)

// Processor applies the commands of an atomic store: a consumer group on
// "<name>-commands" in the consumer's Transactional mode. Run any number of
// instances, each with its own TransactionalID; each commands partition is
// applied by one of them at a time. Create it with NewProcessor, add update
// functions with Register, then Run; Close stops it and releases its
// metrics.
type Processor[K comparable, V any] struct {
	name   string
	cfg    config
	keys   codec.Codec[K]
	values codec.Codec[V]
	funcs  map[string]UpdateFunc[K, V]
	log    *zap.Logger

	m *processorMetrics

	parts int32 // set by Run
	adm   *kadm.Client
	cl    *kgo.Client

	mu    sync.Mutex
	state map[int32]*partState

	runMu    sync.Mutex
	closed   bool           // set by Close: no new Run
	runs     sync.WaitGroup // Runs under way
	closeCtx context.Context
	stopRuns context.CancelFunc // called by Close: ends the Runs under way
}

// partState is the processor's copy of one store partition: the values of
// its keys and the dedup window as of the last command applied.
type partState struct {
	mu       sync.Mutex
	assigned uint64 // consumer.Assignment of the handler context the state was built in
	last     int64  // offset of the last command applied
	vals     map[string][]byte
	win      *window
}

// NewProcessor validates conn and the options (TransactionalID is
// required), registers the processor's metrics on conn.Registerer, and
// returns a processor; it does no network I/O. A bad option, or metrics of
// another Processor of this name on conn.Registerer, is an error matching
// ErrInvalidConfig. Built-in operations: Add (int64 values only), Set,
// CompareAndSet.
//
// Its clients: the consumer (group "<name>-processor", with its metrics and
// its Kafka client's; see package consumer) and short-lived ones that
// create the topics and rebuild store partitions (no metrics).
func NewProcessor[K comparable, V any](conn whippet.Connection, name string, keys codec.Codec[K], values codec.Codec[V], opts ...Option) (*Processor[K, V], error) {
	cfg := defaultConfig()
	cfg.conn = conn
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if err := cfg.validate(name, keys == nil, values == nil, true); err != nil {
		return nil, err
	}
	m, err := newProcessorMetrics(name, conn.Registerer)
	if err != nil {
		return nil, err
	}
	p := &Processor[K, V]{name: name, cfg: cfg, keys: keys, values: values, log: cfg.logger, m: m,
		funcs: make(map[string]UpdateFunc[K, V]), state: make(map[int32]*partState)}
	p.closeCtx, p.stopRuns = context.WithCancel(context.Background())
	return p, nil
}

// Register adds the update function fn under op, for commands made with
// Call(op, arg). Call it before Run. op must not be empty nor start with
// "whippet.".
func (p *Processor[K, V]) Register(op string, fn UpdateFunc[K, V]) error {
	if op == "" || strings.HasPrefix(op, "whippet.") || fn == nil {
		return &ConfigError{Pkg: "atomicstore", Sentinel: ErrInvalidConfig, Field: "Register",
			Rule: fmt.Sprintf("op %q must be non-empty without the whippet. prefix, and fn non-nil", op)}
	}
	p.funcs[op] = fn
	return nil
}

// Run creates the topics if missing and applies commands until ctx is
// canceled or Close is called (then it returns nil) or the consumer fails
// (for example consumer.ErrFenced when another instance took its
// TransactionalID). After Close it returns ErrClosed.
func (p *Processor[K, V]) Run(ctx context.Context) error {
	p.runMu.Lock()
	if p.closed {
		p.runMu.Unlock()
		return ErrClosed
	}
	p.runs.Add(1)
	p.runMu.Unlock()
	defer p.runs.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(p.closeCtx, cancel)()

	cl, err := kgo.NewClient(p.kafka().Plain()...)
	if err != nil {
		return &ConfigError{Pkg: "atomicstore", Sentinel: ErrInvalidConfig, Field: "Connection.ClientOptions", Rule: "franz-go rejected the client configuration", Err: err}
	}
	defer cl.Close()
	p.cl, p.adm = cl, kadm.NewClient(cl)
	if p.parts, err = ensureTopics(ctx, p.adm, p.name, &p.cfg); err != nil {
		return err
	}
	if err := ensureOutputs(ctx, p.adm, &p.cfg); err != nil {
		return err
	}
	// After the user's options: store records must go to their key's
	// partition (Kafka's default key hash), the one a rebuild reads, whatever
	// partitioner those name.
	conn := p.cfg.conn
	conn.ClientOptions = append(slices.Clone(conn.ClientOptions), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	opts := []consumer.Option{
		consumer.Group(p.name + "-processor"),
		consumer.Topics(CommandsTopic(p.name)),
		consumer.Transactional(p.cfg.txnID),
	}
	if p.cfg.batchRecords > 0 {
		opts = append(opts, consumer.TransactionBatch(p.cfg.batchRecords, p.cfg.batchInterval))
	}
	c, err := consumer.New(conn, consumer.HandlerFunc(p.handle), opts...)
	if err != nil {
		return fmt.Errorf("atomicstore: %w", err)
	}
	return c.Run(ctx)
}

// Close stops the Runs under way as canceling their context does, waits for
// them to return (or ctx to end: then it returns ctx's error), and
// unregisters the processor's metrics. Run then returns ErrClosed. It is
// safe to call more than once.
func (p *Processor[K, V]) Close(ctx context.Context) error {
	p.runMu.Lock()
	p.closed = true
	p.runMu.Unlock()
	p.stopRuns()
	defer p.m.reg.unregister()
	done := make(chan struct{})
	go func() {
		p.runs.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("atomicstore: closing the processor: %w", ctx.Err())
	}
}

// kafka describes the processor's own clients (the consumer makes its
// own): secondary ones, without metrics.
func (p *Processor[K, V]) kafka() *connect.Client {
	return connect.New(p.cfg.conn, "atomicstore", p.name)
}

// handle applies one command in the consumer's transaction.
func (p *Processor[K, V]) handle(ctx context.Context, rec *kgo.Record) error {
	if want := partitionOf(rec.Key, p.parts); rec.Partition != want {
		// Its result would land on another store partition than the
		// one this partition's state covers: refuse it (dead letter).
		return fmt.Errorf("atomicstore: command on partition %d, but its key hashes to %d: produce commands with Kafka's default partitioner", rec.Partition, want)
	}
	st, err := p.partition(ctx, rec)
	if err != nil {
		// Abort the transaction: its records come again, and the
		// rebuild is tried again.
		return fmt.Errorf("%w: %w", consumer.ErrAbort, err)
	}
	defer st.mu.Unlock()

	cur, exists := st.vals[string(rec.Key)]
	op, _ := header(rec, HeaderOp)
	id, _ := header(rec, HeaderCommandID)
	if id != "" {
		if seen, ok := st.win.get(id); ok || op == OpQuery {
			// Applied before (or a query): answer, do not apply.
			if err := consumer.Emit(ctx, p.answer(rec, id, cur, seen, ok)); err != nil {
				return err
			}
			if ok && op != OpQuery {
				p.m.duplicates.Inc()
			}
			st.last = rec.Offset
			return nil
		}
	}
	eff := &effects{}
	next, applyErr := p.apply(context.WithValue(ctx, effectsKey{}, eff), op, rec, cur, exists)
	out := &kgo.Record{Topic: StoreTopic(p.name), Key: rec.Key, Value: cur}
	if id != "" {
		out.Headers = append(out.Headers, kgo.RecordHeader{Key: HeaderCommandID, Value: []byte(id)})
	}
	if applyErr != nil {
		out.Headers = append(out.Headers, kgo.RecordHeader{Key: HeaderError, Value: []byte(applyErr.Error())})
		eff.recs = nil
	} else {
		out.Value = next
	}
	if err := consumer.Emit(ctx, out); err != nil {
		return err
	}
	for _, r := range eff.recs {
		if err := consumer.Emit(ctx, r); err != nil {
			return err
		}
	}
	if applyErr != nil {
		p.m.rejected.Inc()
	} else {
		p.m.applied.Inc()
		if next == nil {
			delete(st.vals, string(rec.Key))
		} else {
			st.vals[string(rec.Key)] = next
		}
	}
	if id != "" {
		o := outcome{key: keyHash(rec.Key), value: out.Value, rejected: applyErr != nil}
		if applyErr != nil {
			o.reason = applyErr.Error()
		}
		st.win.add(id, o)
	}
	st.last = rec.Offset
	return nil
}

// answer returns the store record answering command rec, whose id was
// applied before (seen, if known) or which is a result query: the key's
// current value, unchanged, with the original result, or with the reason
// there is none.
func (p *Processor[K, V]) answer(rec *kgo.Record, id string, cur []byte, seen outcome, known bool) *kgo.Record {
	out := &kgo.Record{Topic: StoreTopic(p.name), Key: rec.Key, Value: cur,
		Headers: []kgo.RecordHeader{{Key: HeaderCommandID, Value: []byte(id)}}}
	var reason string
	switch {
	case !known:
		// A query follows its command in the partition: the command
		// was applied, but its id left the window since.
		reason = ErrResultUnknown.Error()
	case seen.key != keyHash(rec.Key):
		reason = fmt.Sprintf("command id %q was already used for another key", id)
	default:
		out.Headers = append(out.Headers, kgo.RecordHeader{Key: HeaderDuplicate, Value: duplicateValue(seen.value)})
		if seen.rejected {
			out.Headers = append(out.Headers, kgo.RecordHeader{Key: HeaderError, Value: []byte(seen.reason)})
		}
		p.log.Debug("command applied before: answered with its result", zap.Int32("partition", rec.Partition), zap.Int64("offset", rec.Offset), zap.String("id", id))
		return out
	}
	p.log.Debug("command not applied", zap.Int32("partition", rec.Partition), zap.Int64("offset", rec.Offset), zap.String("id", id), zap.String("reason", reason))
	// An empty HeaderDuplicate: an answer without an original result,
	// which a rebuild does not take into the window.
	out.Headers = append(out.Headers, kgo.RecordHeader{Key: HeaderDuplicate, Value: []byte{}},
		kgo.RecordHeader{Key: HeaderError, Value: []byte(reason)})
	return out
}

// apply computes the new encoded value; an error rejects the command.
func (p *Processor[K, V]) apply(ctx context.Context, op string, rec *kgo.Record, cur []byte, exists bool) ([]byte, error) {
	switch op {
	case OpSet:
		if _, err := p.values.Decode(rec.Value); err != nil {
			return nil, fmt.Errorf("set: %w", err)
		}
		return rec.Value, nil
	case OpCAS:
		old, v, err := splitCAS(rec.Value)
		if err != nil {
			return nil, err
		}
		if !exists || string(old) != string(cur) {
			return nil, ErrCASMismatch
		}
		// As for Set: never store a value that readers cannot decode.
		if _, err := p.values.Decode(v); err != nil {
			return nil, fmt.Errorf("compare-and-set: %w", err)
		}
		return v, nil
	}
	var curV V
	if exists {
		var err error
		if curV, err = p.values.Decode(cur); err != nil {
			return nil, fmt.Errorf("decoding the current value: %w", err)
		}
	}
	var next V
	switch op {
	case OpAdd:
		n, err := strconv.ParseInt(string(rec.Value), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("add: %w", err)
		}
		c, ok := any(curV).(int64)
		if !ok {
			return nil, fmt.Errorf("add: the store's values are %T, not int64", curV)
		}
		if (n > 0 && c > math.MaxInt64-n) || (n < 0 && c < math.MinInt64-n) {
			return nil, fmt.Errorf("add: %d + %d overflows int64", c, n)
		}
		next = any(c + n).(V)
	default:
		fn := p.funcs[op]
		if fn == nil {
			return nil, fmt.Errorf("unknown operation %q", op)
		}
		key, err := p.keys.Decode(rec.Key)
		if err != nil {
			return nil, fmt.Errorf("decoding the key: %w", err)
		}
		next, err = safeCall(ctx, fn, key, curV, exists, rec.Value)
		if err != nil {
			return nil, err
		}
	}
	return p.values.Encode(next)
}

func safeCall[K comparable, V any](ctx context.Context, fn UpdateFunc[K, V], k K, v V, exists bool, arg []byte) (next V, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("update function panicked: %v", r)
		}
	}()
	return fn(ctx, k, v, exists, arg)
}

// partition returns rec's partition state, locked, rebuilding it from the
// store topic when it cannot be trusted: first command of this assignment
// (another instance may have owned the partition meanwhile), or a command
// at or below the last one applied (a transaction aborted and the consumer
// rewound: the values applied since the last commit were never written).
func (p *Processor[K, V]) partition(ctx context.Context, rec *kgo.Record) (*partState, error) {
	p.mu.Lock()
	st := p.state[rec.Partition]
	if st == nil {
		st = &partState{}
		p.state[rec.Partition] = st
	}
	p.mu.Unlock()
	assignment, _ := consumer.Assignment(ctx)
	st.mu.Lock()
	if st.vals != nil && st.assigned == assignment && rec.Offset > st.last {
		return st, nil
	}
	st.vals, st.win = nil, nil
	vals, win, err := p.load(ctx, rec.Partition)
	if err != nil {
		st.mu.Unlock()
		return nil, err
	}
	st.vals, st.win, st.assigned, st.last = vals, win, assignment, rec.Offset-1
	p.m.rebuilds.Inc()
	return st, nil
}

// load reads store partition part up to its end, once no transaction is
// open on it: read_committed, so it holds exactly the values of the commands
// committed before the consumer's position, and the outcomes of the last
// command ids (DedupWindow) that the partition's records still carry.
func (p *Processor[K, V]) load(ctx context.Context, part int32) (map[string][]byte, *window, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.loadTimeout)
	defer cancel()
	topic := StoreTopic(p.name)
	var end int64
	for {
		// The last stable offset equals the high watermark only when no
		// transaction is open on the partition: the previous owner's
		// (or a zombie's) has been committed or aborted and its markers
		// are written.
		lso, err1 := p.adm.ListCommittedOffsets(ctx, topic)
		hwm, err2 := p.adm.ListEndOffsets(ctx, topic)
		if err := errors.Join(err1, err2); err == nil {
			l, ok1 := lso.Lookup(topic, part)
			h, ok2 := hwm.Lookup(topic, part)
			if ok1 && ok2 && l.Err == nil && h.Err == nil && l.Offset == h.Offset {
				end = h.Offset
				break
			}
		}
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("store partition %d: a transaction is still open on it after %v", part, p.cfg.loadTimeout)
		}
		sleep(ctx, 50)
	}
	starts, err := p.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, nil, fmt.Errorf("store partition %d: listing start offsets: %w", part, err)
	}
	vals := make(map[string][]byte)
	win := newWindow(p.cfg.dedupWindow)
	start, _ := starts.Lookup(topic, part)
	if start.Offset >= end {
		return vals, win, nil
	}
	// The user's options may set the fetch wait; not what is read.
	cl, err := kgo.NewClient(append(p.kafka().Plain(kgo.FetchMaxWait(100*time.Millisecond)),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {part: kgo.NewOffset().At(start.Offset)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // to see the offset of a final transaction marker
	)...)
	if err != nil {
		return nil, nil, err
	}
	defer cl.Close()
	for done := false; !done; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("store partition %d: reading up to offset %d: %w", part, end, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= end {
				done = true
				return
			}
			if !r.Attrs.IsControl() {
				if r.Value == nil {
					delete(vals, string(r.Key))
				} else {
					vals[string(r.Key)] = r.Value
				}
				if id, o, ok := rebuildOutcome(r); ok {
					win.add(id, o)
				}
			}
			if r.Offset == end-1 {
				done = true
			}
		})
	}
	p.log.Debug("store partition rebuilt", zap.Int32("partition", part), zap.Int64("end", end), zap.Int("keys", len(vals)), zap.Int("ids", len(win.outs)))
	return vals, win, nil
}

package atomicstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/internal/connect"
	"github.com/whippet-go/whippet/kvstore"
)

// Store is the client side of an atomic store: it sends commands and reads
// a local replica of the store topic. It is safe for concurrent use. Create
// it with Open and release it with Close.
type Store[K comparable, V any] struct {
	name   string
	cfg    config
	keys   codec.Codec[K]
	values codec.Codec[V]
	parts  int32
	cl     *kgo.Client
	kv     *kvstore.Store[K, V]
	w      *watch
	m      *storeMetrics

	unregisterKafka func() // the producer client's metrics

	closing   chan struct{} // closed by Close: wakes waiting Updates
	closeOnce sync.Once
	closeErr  error
}

// result is what the processor wrote for one command.
type result struct {
	value  []byte
	errMsg string
	failed bool
}

// waiter is one Update waiting for its result.
type waiter struct {
	key  []byte
	part int32
	res  chan result   // buffered: one send
	gap  chan struct{} // buffered: the replica skipped offsets of part
}

// watch sees every record the replica fetches (read_committed) and hands
// those carrying a waited-for command id, for the waiter's key, to their
// Updates. Unlike a kvstore subscription, it never merges two changes of a
// key. It also tells the Updates waiting on a partition when the replica
// skipped offsets of it: records removed by compaction (possibly one with
// their result, when the replica lagged) or by an aborted transaction.
type watch struct {
	mu    sync.Mutex
	waits map[string][]*waiter
	next  map[int32]int64 // per partition, the offset after the last record fetched
}

func (w *watch) add(id string, wt *waiter) {
	w.mu.Lock()
	w.waits[id] = append(w.waits[id], wt)
	w.mu.Unlock()
}

func (w *watch) remove(id string, wt *waiter) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ws := slices.DeleteFunc(w.waits[id], func(x *waiter) bool { return x == wt })
	if len(ws) == 0 {
		delete(w.waits, id)
	} else {
		w.waits[id] = ws
	}
}

// oldQueryAnswer is how a processor that predates result queries rejects
// one: not an answer to wait for.
var oldQueryAnswer = fmt.Sprintf("unknown operation %q", OpQuery)

// OnFetchRecordUnbuffered implements kgo.HookFetchRecordUnbuffered.
func (w *watch) OnFetchRecordUnbuffered(r *kgo.Record, polled bool) {
	if !polled {
		return
	}
	id, hasID := header(r, HeaderCommandID)
	var got []*waiter
	w.mu.Lock()
	next, known := w.next[r.Partition]
	if !known || r.Offset >= next {
		w.next[r.Partition] = r.Offset + 1
	}
	if known && r.Offset > next {
		for _, ws := range w.waits {
			for _, wt := range ws {
				if wt.part == r.Partition {
					select {
					case wt.gap <- struct{}{}:
					default:
					}
				}
			}
		}
	}
	if hasID && !r.Attrs.IsControl() {
		if msg, _ := header(r, HeaderError); msg != oldQueryAnswer {
			ws := w.waits[id]
			keep := ws[:0]
			for _, wt := range ws {
				if bytes.Equal(wt.key, r.Key) {
					got = append(got, wt)
				} else {
					keep = append(keep, wt)
				}
			}
			if len(keep) == 0 {
				delete(w.waits, id)
			} else {
				w.waits[id] = keep
			}
		}
	}
	w.mu.Unlock()
	if len(got) == 0 {
		return
	}
	// A copy: Update decodes the value on another goroutine, and r.Value
	// shares the replica's fetch buffer.
	res := result{value: bytes.Clone(r.Value)}
	if dup, ok := header(r, HeaderDuplicate); ok && dup != "" {
		// An answer to a command applied before: its original result.
		res.value = nil
		if dup[0] == '=' {
			res.value = []byte(dup[1:])
		}
	}
	if msg, ok := header(r, HeaderError); ok {
		res.failed, res.errMsg = true, msg
	}
	for _, wt := range got {
		wt.res <- res // buffered, one send per waiter
	}
}

// Open validates conn and the options, creates the topics "<name>-commands"
// and "<name>-store" (compacted) if they are missing, and starts replicating
// the store topic into memory (a kvstore.Store named name, read_committed).
// It returns once loading started; WaitReady waits for the initial load. ctx
// bounds Open's own network calls. A bad option, or metrics of another Store
// of this name on conn.Registerer, is reported before any network I/O
// (errors.Is(err, ErrInvalidConfig)).
//
// Its clients are the producer of commands (Kafka client metrics
// whippet_kafka_*{component="atomicstore", name=<name>}) and the replica's
// (see kvstore.Open).
func Open[K comparable, V any](ctx context.Context, conn whippet.Connection, name string, keys codec.Codec[K], values codec.Codec[V], opts ...Option) (*Store[K, V], error) {
	cfg := defaultConfig()
	cfg.conn = conn
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if err := cfg.validate(name, keys == nil, values == nil, false); err != nil {
		return nil, err
	}
	m, err := newStoreMetrics(name, conn.Registerer)
	if err != nil {
		return nil, err
	}
	kc := connect.New(conn, "atomicstore", name)
	cl, err := kgo.NewClient(append(kc.All(kgo.ProducerLinger(0)),
		// After the user's options: a command goes to the partition
		// produce sets, its key's, whatever partitioner they name.
		kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		m.reg.unregister()
		return nil, &ConfigError{Pkg: "atomicstore", Sentinel: ErrInvalidConfig, Field: "Connection.ClientOptions", Rule: "franz-go rejected the client configuration", Err: err}
	}
	unregisterKafka, err := kc.Register()
	if err != nil {
		cl.Close()
		m.reg.unregister()
		return nil, &ConfigError{Pkg: "atomicstore", Sentinel: ErrInvalidConfig, Field: "Connection.Registerer", Rule: "cannot register the Kafka client metrics (stores sharing a Registerer need distinct names)", Err: err}
	}
	fail := func(err error) (*Store[K, V], error) {
		cl.Close()
		unregisterKafka()
		m.reg.unregister()
		return nil, err
	}
	parts, err := ensureTopics(ctx, kadm.NewClient(cl), name, &cfg)
	if err != nil {
		return fail(err)
	}
	w := &watch{waits: make(map[string][]*waiter), next: make(map[int32]int64)}
	var kv *kvstore.Store[K, V]
	kvConn := conn
	kvConn.ClientOptions = append(slices.Clip(conn.ClientOptions), kgo.WithHooks(w))
	// ensureTopics saw the store topic in one broker's metadata; the
	// replica's client may ask another broker that does not know it yet (on
	// 3 brokers this failed the chaos suite once), so a missing topic is
	// asked for again for a few seconds.
	for attempt := 0; ; attempt++ {
		kv, err = kvstore.Open(ctx, kvConn, StoreTopic(name), keys, values, kvstore.Name(name), kvstore.CreateTopic(false))
		if !errors.Is(err, kvstore.ErrTopicNotFound) || attempt == 50 || ctx.Err() != nil {
			break
		}
		sleep(ctx, 100)
	}
	if err != nil {
		return fail(fmt.Errorf("atomicstore: opening the replica of %s: %w", StoreTopic(name), err))
	}
	return &Store[K, V]{name: name, cfg: cfg, keys: keys, values: values, parts: parts, cl: cl, kv: kv, w: w, m: m,
		unregisterKafka: unregisterKafka, closing: make(chan struct{})}, nil
}

// Name returns the store's name.
func (s *Store[K, V]) Name() string { return s.name }

// Get returns k's value in the local replica and whether it has one. It
// reads memory only; the replica follows the store topic (read_committed),
// so it may lag the processor's latest commit by a fetch.
func (s *Store[K, V]) Get(k K) (V, bool) { return s.kv.Get(k) }

// WaitReady waits until the replica loaded the store topic as it was at Open.
func (s *Store[K, V]) WaitReady(ctx context.Context) error { return s.kv.WaitReady(ctx) }

// Replica returns the kvstore.Store replicating the store topic, for
// Subscribe, Snapshot or All. Do not Put or Delete through it: only the
// processor writes the store topic.
func (s *Store[K, V]) Replica() *kvstore.Store[K, V] { return s.kv }

// Send produces cmd for key to the commands topic and returns its command id
// once Kafka acknowledged it, without waiting for the result. The command is
// then applied exactly once. Sending it again with the same id
// (cmd.WithID(id)) does not apply it again within the processor's dedup
// window. The id is returned with an error too: with Kafka's error it may
// have been stored all the same.
func (s *Store[K, V]) Send(ctx context.Context, key K, cmd Command) (string, error) {
	id, err := cmd.commandID()
	if err != nil {
		return "", err
	}
	kb, arg, err := s.encode(key, cmd)
	if err != nil {
		return id, err
	}
	if err := s.produce(ctx, kb, cmd.op, arg, id); err != nil {
		return id, err
	}
	s.m.commands.Inc()
	return id, nil
}

// encode returns the record key and value of cmd for key.
func (s *Store[K, V]) encode(key K, cmd Command) (kb, arg []byte, err error) {
	kb, err = s.keys.Encode(key)
	if err != nil {
		return nil, nil, fmt.Errorf("atomicstore: encoding the key: %w", err)
	}
	if kb == nil {
		return nil, nil, errors.New("atomicstore: the key encodes to a null key, which Kafka does not partition by hash")
	}
	arg, err = encodeArg(cmd, s.values.Encode)
	if err != nil {
		return nil, nil, err
	}
	return kb, arg, nil
}

func (s *Store[K, V]) produce(ctx context.Context, kb []byte, op string, arg []byte, id string) error {
	rec := &kgo.Record{
		Topic: CommandsTopic(s.name), Key: kb, Value: arg,
		// Explicit (the client's partitioner is manual), so that a
		// partitioner in the client options cannot break co-partitioning
		// with the store topic.
		Partition: partitionOf(kb, s.parts),
		Headers:   []kgo.RecordHeader{{Key: HeaderOp, Value: []byte(op)}, {Key: HeaderCommandID, Value: []byte(id)}},
	}
	if err := s.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		if errors.Is(err, kgo.ErrClientClosed) {
			return ErrClosed
		}
		return fmt.Errorf("atomicstore: producing the command: %w", err)
	}
	return nil
}

// queryInterval is the least time between two result queries of an Update.
const queryInterval = time.Second

// Update sends cmd for key and waits (at most UpdateTimeout, or until ctx
// ends) for the processor to apply it, and returns the resulting value. The
// result is matched by the command id the processor copies onto the store
// record, as the local replica fetches it. A rejected command returns the
// unchanged value and an error wrapping ErrRejected (and ErrCASMismatch for a
// failed compare-and-set).
//
// On ErrUpdateTimeout, or an error producing the command, the command may
// have been stored and be applied later. To try again without applying it
// twice, send it with the same id: set one with cmd.WithID before the first
// try (the id is also in ErrUpdateTimeout's text). A command whose id the
// processor already applied is answered with its original result (value
// and outcome) and not applied again, within the processor's dedup window
// (DedupWindow). Several Updates with one id, from one client or many, all
// get that result.
//
// If the replica skips offsets of the key's partition while Update waits
// (compaction removed records before the replica, lagging behind after a
// broker restart, fetched them: perhaps the one with the result), Update
// asks the processor for its result again (an OpQuery command, at most once
// per second), which answers from its dedup window. If the id left the
// window meanwhile, Update returns ErrResultUnknown: the command was applied
// once, do not send it again.
func (s *Store[K, V]) Update(ctx context.Context, key K, cmd Command) (V, error) {
	var zero V
	id, err := cmd.commandID()
	if err != nil {
		return zero, err
	}
	kb, arg, err := s.encode(key, cmd)
	if err != nil {
		return zero, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.updateTimeout)
	defer cancel()
	wt := &waiter{key: kb, part: partitionOf(kb, s.parts), res: make(chan result, 1), gap: make(chan struct{}, 1)}
	s.w.add(id, wt)
	defer s.w.remove(id, wt)
	start := time.Now()
	if err := s.produce(ctx, kb, cmd.op, arg, id); err != nil {
		return zero, err
	}
	s.m.commands.Inc()
	lastAsk := time.Now() // the command itself
	var ask <-chan time.Time
	for {
		select {
		case r := <-wt.res:
			s.m.update.Observe(time.Since(start).Seconds())
			return s.result(r)
		case <-wt.gap:
			if ask == nil {
				ask = time.After(max(0, time.Until(lastAsk.Add(queryInterval))))
			}
		case <-ask:
			ask, lastAsk = nil, time.Now()
			// An error (ctx ended, the client closed) is seen below.
			_ = s.produce(ctx, kb, OpQuery, nil, id)
		case <-s.closing:
			return zero, ErrClosed
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return zero, fmt.Errorf("%w: command %s after %v", ErrUpdateTimeout, id, s.cfg.updateTimeout)
			}
			return zero, ctx.Err()
		}
	}
}

// result decodes what the processor wrote for a command.
func (s *Store[K, V]) result(r result) (V, error) {
	var v, zero V
	if r.value != nil {
		var err error
		if v, err = s.values.Decode(r.value); err != nil {
			return zero, fmt.Errorf("atomicstore: decoding the result: %w", err)
		}
	}
	if r.failed {
		switch r.errMsg {
		case ErrCASMismatch.Error():
			return v, fmt.Errorf("%w: %w", ErrRejected, ErrCASMismatch)
		case ErrResultUnknown.Error():
			return zero, ErrResultUnknown
		}
		return v, fmt.Errorf("%w: %s", ErrRejected, r.errMsg)
	}
	return v, nil
}

// Close releases the replica, the producer and the metrics; Updates still
// waiting return ErrClosed. ctx bounds what the replica's Close waits for
// (see kvstore.Store.Close). It is safe to call more than once;
// later calls return the first one's error.
func (s *Store[K, V]) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.cl.Close()
		s.closeErr = s.kv.Close(ctx)
		s.unregisterKafka()
		s.m.reg.unregister()
	})
	return s.closeErr
}

func sleep(ctx context.Context, ms int) {
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

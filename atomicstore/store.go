package atomicstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/kvstore"
	"github.com/whippet-go/whippet/producer"
)

// Store is the client side of an atomic store: it sends commands and reads
// a local replica of the store topic. It is safe for concurrent use. Create
// it with Open and release it with Close.
type Store[K comparable, V any] struct {
	name   string
	cfg    config
	keys   producer.Codec[K]
	values producer.Codec[V]
	parts  int32
	cl     *kgo.Client
	kv     *kvstore.Store[K, V]
	w      *watch

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

// watch sees every record the replica fetches (read_committed) and hands
// those carrying a waited-for command id to their Update. Unlike a kvstore
// subscription, it never merges two changes of a key.
type watch struct {
	mu    sync.Mutex
	waits map[string]chan result
}

// OnFetchRecordUnbuffered implements kgo.HookFetchRecordUnbuffered.
func (w *watch) OnFetchRecordUnbuffered(r *kgo.Record, polled bool) {
	if !polled {
		return
	}
	id, ok := header(r, HeaderCommandID)
	if !ok {
		return
	}
	w.mu.Lock()
	ch := w.waits[id]
	delete(w.waits, id)
	w.mu.Unlock()
	if ch == nil {
		return
	}
	// A copy: Update decodes the value on another goroutine, and r.Value
	// shares the replica's fetch buffer.
	res := result{value: bytes.Clone(r.Value)}
	if msg, ok := header(r, HeaderError); ok {
		res.failed, res.errMsg = true, msg
	}
	ch <- res // buffered, one send per id
}

// Open validates the options, creates the topics "<name>-commands" and
// "<name>-store" (compacted) if they are missing, and starts replicating the
// store topic into memory (a kvstore.Store, read_committed). It returns once
// loading started; WaitReady waits for the initial load. ctx bounds Open's own
// network calls.
func Open[K comparable, V any](ctx context.Context, name string, keys producer.Codec[K], values producer.Codec[V], opts ...Option) (*Store[K, V], error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if err := cfg.validate(name, keys == nil, values == nil, false); err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(cfg.brokers...),
		kgo.ProducerLinger(0),
	}, cfg.clientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("atomicstore: creating the Kafka client: %w", err)
	}
	parts, err := ensureTopics(ctx, kadm.NewClient(cl), name, &cfg)
	if err != nil {
		cl.Close()
		return nil, err
	}
	w := &watch{waits: make(map[string]chan result)}
	var kv *kvstore.Store[K, V]
	// ensureTopics saw the store topic in one broker's metadata; the
	// replica's client may ask another broker that does not know it yet (on
	// 3 brokers this failed the chaos suite once), so a missing topic is
	// asked for again for a few seconds.
	for attempt := 0; ; attempt++ {
		kv, err = kvstore.Open(ctx, StoreTopic(name), keys, values,
			kvstore.Brokers(cfg.brokers...), kvstore.Logger(cfg.logger), kvstore.Name(name),
			kvstore.CreateTopic(false),
			kvstore.ClientOptions(append(append([]kgo.Opt(nil), cfg.clientOpts...), kgo.WithHooks(w))...))
		if !errors.Is(err, kvstore.ErrTopicNotFound) || attempt == 50 || ctx.Err() != nil {
			break
		}
		sleep(ctx, 100)
	}
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("atomicstore: opening the replica of %s: %w", StoreTopic(name), err)
	}
	return &Store[K, V]{name: name, cfg: cfg, keys: keys, values: values, parts: parts, cl: cl, kv: kv, w: w,
		closing: make(chan struct{})}, nil
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
// then applied exactly once (unless Send's caller sends it again).
func (s *Store[K, V]) Send(ctx context.Context, key K, cmd Command) (string, error) {
	id := cmd.id
	if id == "" {
		id = newID()
	}
	return id, s.send(ctx, key, cmd, id)
}

func (s *Store[K, V]) send(ctx context.Context, key K, cmd Command, id string) error {
	kb, err := s.keys.Encode(key)
	if err != nil {
		return fmt.Errorf("atomicstore: encoding the key: %w", err)
	}
	if kb == nil {
		return errors.New("atomicstore: the key encodes to a null key, which Kafka does not partition by hash")
	}
	arg, err := encodeArg(cmd, s.values.Encode)
	if err != nil {
		return err
	}
	rec := &kgo.Record{
		Topic: CommandsTopic(s.name), Key: kb, Value: arg,
		// Explicit, so that a client partitioner option cannot break
		// co-partitioning with the store topic.
		Partition: partitionOf(kb, s.parts),
		Headers:   []kgo.RecordHeader{{Key: HeaderOp, Value: []byte(cmd.op)}, {Key: HeaderCommandID, Value: []byte(id)}},
	}
	if err := s.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		if errors.Is(err, kgo.ErrClientClosed) {
			return ErrClosed
		}
		return fmt.Errorf("atomicstore: producing the command: %w", err)
	}
	return nil
}

// Update sends cmd for key and waits (at most UpdateTimeout, or until ctx
// ends) for the processor to apply it, and returns the resulting value. The
// result is matched by the command id the processor copies onto the store
// record, as the local replica fetches it. A rejected command returns the
// unchanged value and an error wrapping ErrRejected (and ErrCASMismatch for a
// failed compare-and-set). On timeout (ErrUpdateTimeout) the command may
// still be applied later: do not blindly send it again unless it is
// idempotent.
func (s *Store[K, V]) Update(ctx context.Context, key K, cmd Command) (V, error) {
	var zero V
	ctx, cancel := context.WithTimeout(ctx, s.cfg.updateTimeout)
	defer cancel()
	id := cmd.id
	if id == "" {
		id = newID()
	}
	ch := make(chan result, 1)
	s.w.mu.Lock()
	s.w.waits[id] = ch
	s.w.mu.Unlock()
	defer func() {
		s.w.mu.Lock()
		delete(s.w.waits, id)
		s.w.mu.Unlock()
	}()
	if err := s.send(ctx, key, cmd, id); err != nil {
		return zero, err
	}
	select {
	case r := <-ch:
		var v V
		if r.value != nil {
			var err error
			if v, err = s.values.Decode(r.value); err != nil {
				return zero, fmt.Errorf("atomicstore: decoding the result: %w", err)
			}
		}
		if r.failed {
			if r.errMsg == ErrCASMismatch.Error() {
				return v, fmt.Errorf("%w: %w", ErrRejected, ErrCASMismatch)
			}
			return v, fmt.Errorf("%w: %s", ErrRejected, r.errMsg)
		}
		return v, nil
	case <-s.closing:
		return zero, ErrClosed
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return zero, fmt.Errorf("%w: command %s after %v", ErrUpdateTimeout, id, s.cfg.updateTimeout)
		}
		return zero, ctx.Err()
	}
}

// Close releases the replica and the producer; Updates still waiting
// return ErrClosed. It is safe to call more than once.
func (s *Store[K, V]) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.cl.Close()
		s.closeErr = s.kv.Close()
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

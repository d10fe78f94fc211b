package kvstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kzap"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/internal/connect"
	"github.com/whippet-go/whippet/producer"
)

var (
	// ErrClosed is returned by operations on a closed Store, and matched by
	// the error of a Put or Delete that the store was closed under.
	ErrClosed = errors.New("kvstore: closed")

	// ErrNotCompacted is matched by the error Open returns when the topic
	// exists and its cleanup.policy does not include "compact" (see
	// AllowNotCompacted).
	ErrNotCompacted = errors.New("kvstore: topic is not compacted")

	// ErrTopicNotFound is matched by the error Open returns when the topic
	// does not exist and CreateTopic is off.
	ErrTopicNotFound = errors.New("kvstore: topic not found")

	// ErrNotApplied is matched, together with the context's error or
	// ErrClosed, by the error of a Put or Delete that Kafka acknowledged but
	// that was not yet applied to this store when ctx ended or the store
	// closed (see AwaitApplied). The write is in Kafka; the store shows it
	// once its loader gets there.
	ErrNotApplied = errors.New("kvstore: written to Kafka, not yet applied locally")
)

// closeFlushTimeout bounds how long Close waits for writes still in flight.
const closeFlushTimeout = 5 * time.Second

// Store is a compacted Kafka topic replicated into memory. See the package
// documentation for what it promises. A Store is safe for concurrent use.
// Create it with Open and release it with Close.
type Store[K comparable, V any] struct {
	topic      string
	cfg        config
	keys       codec.Codec[K]
	values     codec.Codec[V]
	copyKeys   bool // the key codec may keep the bytes it decodes
	copyValues bool
	log        *zap.Logger
	tab        table[K, V]
	fetchSize  int32     // FetchMaxPartitionBytes: see fetchBytes
	pool       *loadPool // while loading, for a table that keeps raw values
	kc         *connect.Client
	handedOut  []*kgo.Record // the loader's: records of the poll given to OnDecodeError
	st         stats
	m          *metrics
	opened     time.Time

	cl   *kgo.Client
	adm  *kadm.Client
	prod *producer.Producer

	ready     chan struct{} // closed when the initial load finished
	closing   chan struct{} // closed by Close
	loadCtx   context.Context
	stopLoad  context.CancelFunc
	loaderEnd chan struct{}
	subsWG    sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
	lastErr   atomic.Pointer[string] // the loader's last error, for WaitReady's message
	decodeLog rateLimit              // the loader's
	listed    atomic.Bool            // the initial load's end offsets are known
	compacted bool                   // the topic's cleanup.policy includes compact

	// applyMu is held by the loader while it applies a poll's records, and
	// by what must see the entries and the positions together: Subscribe
	// (replay snapshot + registration), Snapshot, and a write's wait.
	applyMu sync.Mutex
	closed  bool                // set by Close: no new subscribers or waiters
	pos     map[int32]int64     // per partition, the next offset to apply
	waiters map[int32][]*waiter // writes waiting until their offset is applied
	subs    []*subscriber[K, V] // active subscriptions
}

// waiter is a write waiting until the loader applied its offset.
type waiter struct {
	offset int64
	done   chan struct{}
}

// Open validates conn and the options, then checks the topic (creating it, compacted,
// if it does not exist; see CreateTopic, Partitions, ReplicationFactor and
// TopicConfig), and starts loading the topic into memory in the background.
// It returns as soon as loading started: use WaitReady (or Ready, or
// ReadyHandler) to know when the store has caught up. ctx bounds Open's own
// network calls, not the store's life.
//
// keys and values convert keys and values to and from record bytes; use the
// codec package's codecs (codec.String(), codec.JSON[T](),
// codec.Bytes()) or your own. A key's encoding must be deterministic:
// compaction and partitioning work on the bytes.
//
// A bad option or argument is reported before any network I/O, with the
// option's name and the rule it breaks (errors.Is(err, ErrInvalidConfig)).
// An existing topic that is not compacted is ErrNotCompacted.
func Open[K comparable, V any](ctx context.Context, conn whippet.Connection, topic string, keys codec.Codec[K], values codec.Codec[V], opts ...Option) (*Store[K, V], error) {
	cfg := defaultConfig()
	cfg.conn = conn
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if err := cfg.validate(topic, keys == nil, values == nil); err != nil {
		return nil, err
	}
	s := &Store[K, V]{
		topic:      topic,
		cfg:        cfg,
		keys:       keys,
		values:     values,
		copyKeys:   mayRetain(keys),
		copyValues: mayRetain(values),
		log:        cfg.logger.With(zap.String("store", cfg.name), zap.String("topic", topic)),
		opened:     time.Now(),
		ready:      make(chan struct{}),
		closing:    make(chan struct{}),
		loaderEnd:  make(chan struct{}),
		pos:        make(map[int32]int64),
		waiters:    make(map[int32][]*waiter),
	}
	s.tab = s.newTable()
	// Register the store's own collectors first: a name clash is a config
	// error, reported before any network I/O.
	s.kc = connect.New(cfg.conn, "kvstore", cfg.name)
	m, err := newMetrics(&s.st, cfg.name, topic, cfg.conn.Registerer)
	if err != nil {
		return nil, err
	}
	s.m = m

	if err := s.ensureTopic(ctx); err != nil {
		s.m.unregister()
		return nil, err
	}
	cl, err := kgo.NewClient(s.clientOptions()...)
	if err != nil {
		s.m.unregister()
		return nil, &ConfigError{Pkg: "kvstore", Sentinel: ErrInvalidConfig, Field: "Connection.ClientOptions", Rule: "franz-go rejected the client configuration", Err: err}
	}
	unregister, err := s.kc.Register()
	if err != nil {
		cl.Close()
		s.m.unregister()
		return nil, &ConfigError{Pkg: "kvstore", Sentinel: ErrInvalidConfig, Field: "Connection.Registerer", Rule: "cannot register the Kafka client metrics (stores sharing a Registerer need distinct Names)", Err: err}
	}
	s.m.unregisterKafka = unregister
	prod, err := producer.NewFromClient(cl, whippet.Connection{Logger: cfg.logger}, producer.FlushTimeout(closeFlushTimeout))
	if err != nil { // cannot happen: the options are fixed
		cl.Close()
		s.m.unregister()
		return nil, err
	}
	s.cl, s.adm, s.prod = cl, kadm.NewClient(cl), prod
	s.loadCtx, s.stopLoad = context.WithCancel(context.Background())
	go s.load()
	return s, nil
}

// mayRetain reports whether a codec's Decode may keep (alias) the bytes it
// is given. Record keys and values point into franz-go's fetch buffers, so
// the store copies them for such codecs: keeping a slice would pin a whole
// fetched batch in memory. The String and JSON codecs copy what they decode.
func mayRetain[T any](c codec.Codec[T]) bool {
	t := reflect.TypeOf(c)
	return t != reflect.TypeOf(codec.String()) && t != reflect.TypeOf(codec.JSON[T]())
}

// newTable picks the table for the codecs: for string keys with the String
// codec an arenaTable (string and []byte values with the String and Bytes
// codecs kept as raw bytes in the arena, others decoded), else a mapTable.
func (s *Store[K, V]) newTable() table[K, V] {
	if reflect.TypeFor[K]() != reflect.TypeFor[string]() || reflect.TypeOf(s.keys) != reflect.TypeOf(codec.String()) {
		return newMapTable(s.decode)
	}
	vk := decodedValues
	switch vt, ct := reflect.TypeFor[V](), reflect.TypeOf(s.values); {
	case vt == reflect.TypeFor[string]() && ct == reflect.TypeOf(codec.String()):
		vk = stringValues
	case vt == reflect.TypeFor[[]byte]() && ct == reflect.TypeOf(codec.Bytes()):
		vk = bytesValues
	}
	keyErr := func(b []byte) error { _, err := s.keys.Decode(b); return invalidUTF8(err) }
	valueErr := func(b []byte) error { _, err := s.values.Decode(b); return invalidUTF8(err) }
	t := newArenaTable[K](vk, keyErr, valueErr, s.decodeValue)
	if vk != decodedValues {
		s.pool = &loadPool{}
		t.pin = &pinned{pool: s.pool}
	}
	return t
}

// invalidUTF8 returns err, the String codec's error for bytes that are not
// UTF-8 (which it always reports).
func invalidUTF8(err error) error {
	if err == nil {
		err = errors.New("invalid UTF-8")
	}
	return err
}

func (s *Store[K, V]) clientOptions() []kgo.Opt {
	opts := append([]kgo.Opt(nil), s.kc.Base...)
	opts = append(opts,
		kgo.WithLogger(kzap.New(s.cfg.logger, kzap.Level(kgo.LogLevelWarn))),
		// A Put is one record that its caller waits for: send it at once.
		kgo.ProducerLinger(0),
		// After an error in the metadata (a topic just created, a leader
		// moving, a broker restarting) franz-go asks again no sooner than
		// this; its default, 5s, would stall writes and updates that long.
		kgo.MetadataMinAge(500*time.Millisecond),
		// The Java consumer's fetch.max.wait.ms rather than franz-go's 5s: a
		// partition whose offset had to be reloaded joins the next fetch
		// only when the fetch in flight returns.
		kgo.FetchMaxWait(500*time.Millisecond),
		// Smaller polls than franz-go's 1 MiB per partition (which, once
		// decompressed, can be 50,000 records each): the loader applies
		// one poll while franz-go fetches and decodes the next, so smaller
		// polls overlap better, and the first records arrive sooner. The
		// size depends on the topic's compression: see fetchBytes.
		kgo.FetchMaxPartitionBytes(s.fetchSize),
	)
	if s.pool != nil {
		// Before the user's options: franz-go uses the first pool given
		// of each kind.
		opts = append(opts, kgo.WithPools(s.pool))
	}
	opts = append(opts, s.kc.Extra...)
	opts = append(opts,
		kgo.SeedBrokers(s.cfg.conn.Brokers...),
		kgo.ConsumeTopics(s.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Records of aborted transactions never reach the store, and the
		// commit and abort markers come back as control records so that the
		// loader knows its position even when a partition ends with one.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)
	if s.kc.Metrics != nil {
		opts = append(opts, kgo.WithHooks(s.kc.Metrics))
	}
	return opts
}

// Topic returns the store's topic.
func (s *Store[K, V]) Topic() string { return s.topic }

// Get returns the value of k and whether the store has it. It reads memory
// only. Before the store is ready it answers from what was loaded so far.
// A []byte value is the store's own copy, shared by every Get of it: do not
// modify it.
func (s *Store[K, V]) Get(k K) (V, bool) { return s.tab.get(k) }

// Len returns the number of keys in the store.
func (s *Store[K, V]) Len() int { return int(s.st.entries.Load()) }

// All returns an iterator over the store's keys and values, for use with
// range. It is not a point-in-time snapshot: each key present throughout
// the iteration is seen exactly once, with a value it had during the
// iteration; keys added or deleted meanwhile may or may not be seen. The loop
// body runs without any lock held (the entries are copied one shard, about
// 1/64 of the store, at a time), so it may call any method of the store.
// Use Snapshot for a consistent copy.
func (s *Store[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		var buf []kv[K, V]
		for i := range shardCount {
			buf = s.tab.appendShard(i, buf[:0])
			for _, p := range buf {
				if !yield(p.k, p.v) {
					return
				}
			}
		}
	}
}

// Snapshot returns a copy of the store's contents at one point in time (no
// record is half applied). It holds the loader up while it copies.
func (s *Store[K, V]) Snapshot() map[K]V {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	out := make(map[K]V, s.st.entries.Load())
	var buf []kv[K, V]
	for i := range shardCount {
		buf = s.tab.appendShard(i, buf[:0])
		for _, p := range buf {
			out[p.k] = p.v
		}
	}
	return out
}

// Ready reports whether the initial load finished: the store applied every
// record up to the end offsets (last stable offsets) its partitions had
// when Open was called. It stays true afterwards; the lag_records metric
// shows how far behind live updates are.
func (s *Store[K, V]) Ready() bool { return s.st.ready.Load() }

// WaitReady waits until the initial load finished (see Ready) and returns
// nil; or returns ErrClosed if the store was closed first, or an error
// matching ctx's error (and saying how far behind the load is, and the
// loader's last error, if any) if ctx ended first.
func (s *Store[K, V]) WaitReady(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	default:
	}
	select {
	case <-s.ready:
		return nil
	case <-s.closing:
		return fmt.Errorf("kvstore %q: waiting for the initial load: %w", s.cfg.name, ErrClosed)
	case <-ctx.Done():
		msg := fmt.Sprintf("kvstore %q: not ready, %d records behind", s.cfg.name, s.st.lag.Load())
		if !s.listed.Load() {
			msg = fmt.Sprintf("kvstore %q: not ready, the topic's end offsets are not listed yet", s.cfg.name)
		}
		if e := s.lastErr.Load(); e != nil {
			msg += " (last error: " + *e + ")"
		}
		return fmt.Errorf("%s: %w", msg, context.Cause(ctx))
	}
}

// ReadyHandler returns an http.Handler for a readiness probe: 200 "ready"
// once the initial load finished, else 503 saying how far behind the load
// is (or that the store is closed).
func (s *Store[K, V]) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		select {
		case <-s.closing:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "kvstore %s: closed\n", s.cfg.name)
			return
		default:
		}
		if s.Ready() {
			fmt.Fprintf(w, "kvstore %s: ready, %d entries\n", s.cfg.name, s.Len())
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "kvstore %s: loading, %d entries, %d records behind\n", s.cfg.name, s.Len(), s.st.lag.Load())
	})
}

// Put writes v for k to the topic and waits for Kafka's acknowledgement and,
// unless AwaitApplied is off, until this store applied the write, so that
// Get(k) then returns v (or a later value). Every store on the topic applies
// it. A value that encodes to nil is written as an empty value, not a
// tombstone: use Delete to remove a key.
//
// Errors: the codec's (matching codec.ErrEncode); the producer's (a ctx
// that ends before Kafka answers gives producer.ErrUnconfirmed: the write
// may or may not be in Kafka); ErrNotApplied with ctx's error or ErrClosed
// when the write is in Kafka but not yet applied here; ErrClosed after Close.
func (s *Store[K, V]) Put(ctx context.Context, k K, v V) error {
	kb, err := s.encodeKey("Put", k)
	if err != nil {
		return err
	}
	vb, err := s.values.Encode(v)
	if err != nil {
		s.st.writeFailures.Add(1)
		return fmt.Errorf("kvstore %q: Put: value: %w", s.cfg.name, err)
	}
	if vb == nil {
		vb = []byte{}
	}
	return s.write(ctx, "Put", kb, vb)
}

// Delete writes a tombstone (a record with k and a nil value) to the topic,
// which removes k from every store on the topic (and, after compaction and
// delete.retention.ms, from the topic). It waits as Put does and returns the
// same errors. Deleting a key that is not there is not an error.
func (s *Store[K, V]) Delete(ctx context.Context, k K) error {
	kb, err := s.encodeKey("Delete", k)
	if err != nil {
		return err
	}
	return s.write(ctx, "Delete", kb, nil)
}

func (s *Store[K, V]) encodeKey(op string, k K) ([]byte, error) {
	kb, err := s.keys.Encode(k)
	if err != nil {
		s.st.writeFailures.Add(1)
		return nil, fmt.Errorf("kvstore %q: %s: key: %w", s.cfg.name, op, err)
	}
	if kb == nil {
		kb = []byte{} // Kafka rejects null keys on compacted topics
	}
	return kb, nil
}

func (s *Store[K, V]) write(ctx context.Context, op string, key, value []byte) error {
	select {
	case <-s.closing:
		s.st.writeFailures.Add(1)
		return fmt.Errorf("kvstore %q: %s: %w", s.cfg.name, op, ErrClosed)
	default:
	}
	res, err := s.prod.Produce(ctx, &kgo.Record{Topic: s.topic, Key: key, Value: value})
	if err != nil {
		s.st.writeFailures.Add(1)
		if errors.Is(err, producer.ErrClosed) {
			err = fmt.Errorf("%w: %w", ErrClosed, err)
		}
		return fmt.Errorf("kvstore %q: %s: %w", s.cfg.name, op, err)
	}
	s.st.writes.Add(1)
	if !s.cfg.awaitApplied {
		return nil
	}
	if err := s.awaitApplied(ctx, res.Partition, res.Offset); err != nil {
		s.st.writeFailures.Add(1)
		return fmt.Errorf("kvstore %q: %s: partition %d offset %d: %w: %w", s.cfg.name, op, res.Partition, res.Offset, ErrNotApplied, err)
	}
	return nil
}

// awaitApplied waits until the loader applied offset in partition.
func (s *Store[K, V]) awaitApplied(ctx context.Context, partition int32, offset int64) error {
	s.applyMu.Lock()
	if s.closed {
		s.applyMu.Unlock()
		return ErrClosed
	}
	next, known := s.pos[partition]
	if next > offset {
		s.applyMu.Unlock()
		return nil
	}
	w := &waiter{offset: offset, done: make(chan struct{})}
	s.waiters[partition] = append(s.waiters[partition], w)
	s.applyMu.Unlock()
	if !known {
		// A partition added after the store started: franz-go consumes it
		// once its metadata shows it.
		s.cl.ForceMetadataRefresh()
	}
	select {
	case <-w.done:
		return nil
	case <-s.closing:
		return ErrClosed
	case <-ctx.Done():
		s.applyMu.Lock()
		ws := s.waiters[partition]
		for i, x := range ws {
			if x == w {
				s.waiters[partition] = append(ws[:i:i], ws[i+1:]...)
				break
			}
		}
		s.applyMu.Unlock()
		return context.Cause(ctx)
	}
}

// Close stops the loader and the subscriptions (it waits for callbacks under
// way to return; pending changes are dropped), fails the writes waiting to
// be applied with ErrClosed, waits for writes in flight (up to 5s, or until
// ctx ends, whichever is first), closes the Kafka client and unregisters the
// metrics. It is safe to call more than once; later calls return the first
// call's result.
func (s *Store[K, V]) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.applyMu.Lock()
		s.closed = true
		s.applyMu.Unlock()
		close(s.closing)
		s.stopLoad()
		<-s.loaderEnd
		s.subsWG.Wait()
		ctx, cancel := context.WithTimeout(ctx, closeFlushTimeout)
		if err := s.prod.Close(ctx); err != nil {
			s.closeErr = fmt.Errorf("kvstore %q: close: %w", s.cfg.name, err)
		}
		cancel()
		s.cl.Close()
		s.m.unregister()
		s.log.Info("kvstore closed")
	})
	return s.closeErr
}

// decode decodes a record's key, and its value unless it is a tombstone.
func (s *Store[K, V]) decode(r *kgo.Record) (k K, v V, err error) {
	kb := r.Key
	if s.copyKeys {
		kb = bytes.Clone(kb)
	}
	if k, err = s.keys.Decode(kb); err != nil {
		return k, v, fmt.Errorf("key: %w", err)
	}
	v, err = s.decodeValue(r.Value)
	return k, v, err
}

// decodeValue decodes a value, unless it is a tombstone (nil).
func (s *Store[K, V]) decodeValue(b []byte) (v V, err error) {
	if b == nil {
		return v, nil
	}
	if s.copyValues {
		b = bytes.Clone(b)
	}
	if v, err = s.values.Decode(b); err != nil {
		return v, fmt.Errorf("value: %w", err)
	}
	return v, nil
}

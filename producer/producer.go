package producer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/connect"
	"github.com/whippet-go/whippet/internal/secure"
)

var (
	// ErrClosed is returned (or passed to the callback) for records
	// produced after Close was called, and is matched by the error of
	// every record Close failed because it could not be delivered within
	// FlushTimeout.
	ErrClosed = errors.New("producer: closed")

	// ErrUnconfirmed is matched, together with the context's error, by the
	// error of a synchronous produce (Produce, ProduceMany,
	// Typed.Produce) whose context ended before Kafka's answer: the
	// record may or may not be written.
	ErrUnconfirmed = errors.New("producer: delivery unconfirmed, the record may still be written")

	// ErrInvalidRecord is returned for a nil record, or a record with no
	// Topic when the producer has no DefaultTopic.
	ErrInvalidRecord = errors.New("producer: invalid record")
)

// Result is where Kafka stored a produced record.
type Result struct {
	// Topic is the record's topic. It is set on errors too.
	Topic string
	// Partition is the partition the record was written to, or -1 on
	// error.
	Partition int32
	// Offset is the record's offset in Partition, or -1 on error.
	Offset int64
	// Timestamp is the record's timestamp (set to the produce time unless
	// the record had one).
	Timestamp time.Time
}

// Header returns a record header, for records and for Typed.Produce.
func Header(key, value string) kgo.RecordHeader {
	return kgo.RecordHeader{Key: key, Value: []byte(value)}
}

// Producer produces records to Kafka. It is safe for concurrent use. Create
// it with New or NewFromClient and release it with Close.
type Producer struct {
	cl         *kgo.Client
	owned      bool // Close closes cl
	topic      string
	timeout    time.Duration
	log        *zap.Logger
	metrics    *metrics
	unregister func()        // unregisters the Kafka client metrics
	auth       *secure.Watch // connection failures due to SASL/TLS; nil with NewFromClient

	mu       sync.RWMutex // guards closed against pending.add
	closed   bool
	aborting atomic.Bool // Close is failing undelivered records
	pending  pending

	closeOnce sync.Once
	closeErr  error
}

// New validates conn and opts, then creates a Producer with its own franz-go
// client. It does no network I/O: brokers are contacted on the first
// produce.
//
// The client is idempotent with acks=all (franz-go's defaults), retries
// failed requests without limit, and keeps records of a partition in order;
// Connection.ClientOptions can change that. Every invalid field or option is
// reported in the returned error (a join of *ConfigError values), which
// matches ErrInvalidConfig.
//
// With conn.Registerer, the producer's metrics are
// whippet_producer_records_produced_total{topic},
// whippet_producer_records_failed_total{topic} and
// whippet_producer_produce_latency_seconds{topic}, each with a constant
// client_id label, plus franz-go's client metrics (whippet_kafka_*); Close
// unregisters the latter.
func New(conn whippet.Connection, opts ...Option) (*Producer, error) {
	cfg := newConfig(conn, opts)
	if err := cfg.validate(false); err != nil {
		return nil, err
	}
	kc := connect.New(conn, "producer", connect.ClientID(conn, "producer"))
	log := connect.Logger(conn)
	auth := secure.NewWatch(func(err *secure.AuthError) {
		log.Error("Kafka refused the connection: check Connection.TLS and Connection.SASL; records wait and are retried", zap.Error(err))
	})
	cl, err := kgo.NewClient(kc.All(
		kgo.ProducerLinger(cfg.linger),
		kgo.ProducerBatchMaxBytes(cfg.maxBatchBytes),
		kgo.WithHooks(auth),
	)...)
	if err != nil {
		return nil, &ConfigError{Pkg: "producer", Sentinel: ErrInvalidConfig, Field: "Connection.ClientOptions", Rule: "franz-go rejected the client configuration", Err: err}
	}
	auth.SetClient(cl)
	p := newProducer(cl, true, &cfg)
	p.auth = auth
	if p.unregister, err = kc.Register(); err != nil {
		cl.Close()
		return nil, &ConfigError{Pkg: "producer", Sentinel: ErrInvalidConfig, Field: "Connection.Registerer", Rule: "cannot register the Kafka client metrics", Err: err}
	}
	if conn.Registerer != nil {
		reg := prometheus.WrapRegistererWith(prometheus.Labels{"client_id": connect.ClientID(conn, "producer")}, conn.Registerer)
		if p.metrics, err = newMetrics(reg); err != nil {
			p.unregister()
			cl.Close()
			return nil, &ConfigError{Pkg: "producer", Sentinel: ErrInvalidConfig, Field: "Connection.Registerer", Rule: "cannot register producer metrics", Err: err}
		}
	}
	return p, nil
}

// NewFromClient creates a Producer that produces through an existing
// client. The Producer does not own cl: Close waits only for the records
// produced through this Producer and never closes cl, which stays the
// caller's to close.
//
// Of conn only Logger and Registerer apply; the fields that configure a
// client (Brokers, TLS, SASL, ClientID, ClientOptions) are rejected, and so
// are the options Linger and MaxBatchBytes. With Registerer, only the
// producer's own metrics are recorded (labeled with cl's client.id):
// franz-go's client metrics need hooks installed when the client is
// created. Delivery guarantees are whatever cl was configured with.
func NewFromClient(cl *kgo.Client, conn whippet.Connection, opts ...Option) (*Producer, error) {
	cfg := newConfig(conn, opts)
	err := cfg.validate(true)
	if cl == nil {
		err = errors.Join(&ConfigError{Pkg: "producer", Sentinel: ErrInvalidConfig, Field: "client", Rule: "must not be nil"}, err)
	}
	if err != nil {
		return nil, err
	}
	p := newProducer(cl, false, &cfg)
	if conn.Registerer != nil {
		id, _ := cl.OptValue(kgo.ClientID).(string)
		reg := prometheus.WrapRegistererWith(prometheus.Labels{"client_id": id}, conn.Registerer)
		if p.metrics, err = newMetrics(reg); err != nil {
			return nil, &ConfigError{Pkg: "producer", Sentinel: ErrInvalidConfig, Field: "Connection.Registerer", Rule: "cannot register producer metrics", Err: err}
		}
	}
	return p, nil
}

func newProducer(cl *kgo.Client, owned bool, cfg *config) *Producer {
	p := &Producer{
		cl:         cl,
		owned:      owned,
		topic:      cfg.defaultTopic,
		timeout:    cfg.flushTimeout,
		log:        connect.Logger(cfg.conn),
		unregister: func() {},
	}
	p.pending.init()
	return p
}

// Client returns the underlying franz-go client, for what this package does
// not wrap (admin requests, ProducerID, ...). Records produced directly on it
// are not tracked by Flush, Close or the producer's metrics. Do not close a
// client the Producer owns; call Close.
func (p *Producer) Client() *kgo.Client { return p.cl }

// Produce produces r and waits for Kafka's answer: the Result on success,
// or an error. If r.Topic is empty, the DefaultTopic is used.
//
// ctx becomes the record's context (unless r.Context is already set):
// franz-go fails the record with ctx's error if ctx ends before the record
// is sent. Note that franz-go checks the context of the first record of a
// batch and, to keep the partition gapless, then fails every record
// buffered behind it in that partition too.
//
// If ctx ends before Kafka answers, Produce returns at once with an error
// matching both ctx's error and ErrUnconfirmed: the record may or may not
// be written (franz-go fails it if it was not sent yet, and retries a
// request already carrying it until Kafka answers). It stays pending, so
// Flush and Close still account for it, and its final outcome is counted in
// the metrics and logged (Info when written, Warn when failed).
//
// If a connection to Kafka fails authentication or TLS set-up while the
// record waits (a wrong password, an untrusted certificate), Produce does
// not wait for ctx: it cancels the record's context and returns an error
// naming the broker and the SASL mechanism (never a credential) that
// matches franz-go's error, e.g. kerr.SaslAuthenticationFailed. If franz-go
// had already sent the record and keeps it, the error also matches
// ErrUnconfirmed. (Producers made by NewFromClient wait for ctx.)
//
// Produce must not be called from a ProduceAsync callback.
func (p *Producer) Produce(ctx context.Context, r *kgo.Record) (Result, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	type outcome struct {
		res Result
		err error
	}
	const waiting, answered, abandoned = 0, 1, 2
	var state atomic.Int32
	ch := make(chan outcome, 1)
	rctx, cancel, authFailed := ctx, context.CancelCauseFunc(nil), (<-chan struct{})(nil)
	if p.auth != nil {
		authFailed = p.auth.Next() // before producing: the attempts this record triggers count
		rctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
	}
	p.ProduceAsync(rctx, r, func(res Result, err error) {
		if state.CompareAndSwap(waiting, answered) {
			ch <- outcome{res, err}
		} else {
			p.logLate(res, err)
		}
	})
	var authErr error
	for {
		select {
		case o := <-ch:
			if authErr != nil && o.err != nil && ctx.Err() == nil && errors.Is(o.err, context.Canceled) {
				o.err = fmt.Errorf("producer: produce to topic %q: %w", o.res.Topic, authErr) // failed unsent
			}
			return o.res, o.err
		case <-authFailed:
			authFailed = p.auth.Next()
			err := p.auth.Err()
			if err == nil { // a connection succeeded meanwhile
				continue
			}
			if authErr == nil { // fail the record if it was not sent yet
				authErr = err
				cancel(err)
				continue
			}
			// Failed again and franz-go kept the record: it may be in flight.
			if state.CompareAndSwap(waiting, abandoned) {
				topic := topicOf(r)
				return failed(topic), fmt.Errorf("%w: produce to topic %q: %w", ErrUnconfirmed, topic, authErr)
			}
		case <-ctx.Done():
			if state.CompareAndSwap(waiting, abandoned) {
				topic := topicOf(r)
				return failed(topic), unconfirmed(ctx, topic)
			}
			o := <-ch // answered at the same time
			return o.res, o.err
		}
	}
}

func topicOf(r *kgo.Record) string {
	if r == nil {
		return ""
	}
	return r.Topic
}

// logLate logs the outcome of a record whose synchronous caller stopped
// waiting (ErrUnconfirmed), so that operators can still see it.
func (p *Producer) logLate(res Result, err error) {
	if err != nil {
		p.log.Warn("unconfirmed record failed after its caller stopped waiting",
			zap.String("topic", res.Topic), zap.Error(err))
		return
	}
	p.log.Info("unconfirmed record was written after its caller stopped waiting",
		zap.String("topic", res.Topic), zap.Int32("partition", res.Partition), zap.Int64("offset", res.Offset))
}

func unconfirmed(ctx context.Context, topic string) error {
	return fmt.Errorf("%w: produce to topic %q: %w", ErrUnconfirmed, topic, context.Cause(ctx))
}

// ProduceAsync produces r and calls fn exactly once with the Result or an
// error: when Kafka answers, when the record fails (ctx canceled before the
// record was sent, retries or timeouts configured through ClientOptions
// exhausted, the producer closed), or at once for an invalid record or a
// closed producer. fn may be nil.
//
// ctx becomes the record's context as for Produce: if it ends before the
// record is sent, the record fails with ctx's error, so pass a context that
// lives until delivery (not, say, an HTTP request's that ends when the
// handler returns). Once a request carrying the record is in flight, the
// callback reports the real outcome when Kafka answers, however late (at
// the latest, Close fails the record).
//
// Callbacks run one at a time, in the order records complete (which, for
// records of one partition, is the order they were produced), on a goroutine
// shared with all other callbacks. They must be quick and must not call
// Produce, ProduceMany, Flush or Close, nor ProduceAsync, which blocks while
// the buffer is full (that could deadlock); hand such work to another
// goroutine instead. A callback may run before ProduceAsync returns.
//
// ProduceAsync blocks only while franz-go's buffer is full
// (kgo.MaxBufferedRecords, 50,000 records by default), until space frees or
// ctx is done.
func (p *Producer) ProduceAsync(ctx context.Context, r *kgo.Record, fn func(Result, error)) {
	if fn == nil {
		fn = func(Result, error) {}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if r == nil {
		fn(failed(""), fmt.Errorf("%w: nil record", ErrInvalidRecord))
		return
	}
	if r.Topic == "" {
		r.Topic = p.topic
		if r.Topic == "" {
			fn(failed(""), fmt.Errorf("%w: record has no Topic and the producer has no DefaultTopic", ErrInvalidRecord))
			return
		}
	}
	topic := r.Topic

	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		p.metrics.rejected(topic)
		fn(failed(topic), fmt.Errorf("%w: produce to topic %q", ErrClosed, topic))
		return
	}
	p.pending.add()
	p.mu.RUnlock()

	var start time.Time
	if p.metrics != nil {
		start = time.Now()
	}
	if err := ctx.Err(); err != nil {
		p.complete(topic, start, err, nil, fn)
		return
	}
	p.cl.Produce(ctx, r, func(r *kgo.Record, err error) {
		p.complete(topic, start, err, r, fn)
	})
}

// complete records the outcome of one pending record and calls its
// callback; the record stops being pending only after fn returns, so that
// Flush and Close return after every callback.
func (p *Producer) complete(topic string, start time.Time, err error, r *kgo.Record, fn func(Result, error)) {
	defer p.pending.done()
	p.metrics.observe(topic, start, err)
	if err != nil {
		if p.aborting.Load() && errors.Is(err, kgo.ErrClientClosed) {
			err = fmt.Errorf("%w: produce to topic %q: %w", ErrClosed, topic, err)
		} else {
			err = fmt.Errorf("producer: produce to topic %q: %w", topic, p.tooLarge(r, err))
		}
		fn(failed(topic), err)
		return
	}
	fn(Result{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp}, nil)
}

func failed(topic string) Result { return Result{Topic: topic, Partition: -1, Offset: -1} }

// ProduceMany produces all records concurrently and waits for all of them.
// results[i] is the Result of records[i]. The error joins one error per
// failed record, each prefixed with "record <i>: "; it is nil only if every
// record was produced. Records of one partition keep their order. If ctx
// ends first, ProduceMany returns at once and each record without an answer
// yet gets an error matching ErrUnconfirmed, as for Produce.
func (p *Producer) ProduceMany(ctx context.Context, records ...*kgo.Record) ([]Result, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	var (
		mu       sync.Mutex
		returned bool // late callbacks must not touch results/errs
		left     = len(records)
		answered = make([]bool, len(records))
		results  = make([]Result, len(records))
		errs     = make([]error, len(records))
		all      = make(chan struct{})
	)
	if left == 0 {
		return results, nil
	}
	for i, r := range records {
		p.ProduceAsync(ctx, r, func(res Result, err error) {
			mu.Lock()
			defer mu.Unlock()
			if returned {
				p.logLate(res, err)
				return
			}
			results[i], answered[i] = res, true
			if err != nil {
				errs[i] = fmt.Errorf("record %d: %w", i, err)
			}
			if left--; left == 0 {
				close(all)
			}
		})
	}
	select {
	case <-all:
	case <-ctx.Done():
		mu.Lock()
		returned = true
		for i, ok := range answered {
			if !ok {
				topic := topicOf(records[i])
				results[i] = failed(topic)
				errs[i] = fmt.Errorf("record %d: %w", i, unconfirmed(ctx, topic))
			}
		}
		mu.Unlock()
	}
	return results, errors.Join(errs...)
}

// Flush sends buffered records without waiting for Linger and waits until
// every record produced through p so far has completed and its callback has
// returned, or until ctx is done (returning ctx's error; records keep
// flushing). Records produced while Flush waits may be waited for too.
// With NewFromClient, Flush also speeds up records others buffered in the
// client.
func (p *Producer) Flush(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.cl.Flush(fctx) // stops lingering; we wait on our own records below
	}()
	err := p.pending.wait(ctx)
	cancel()
	<-done
	if err != nil {
		return fmt.Errorf("producer: flush: %d records still pending: %w", p.pending.count(), err)
	}
	return nil
}

// Close stops accepting records (later produces fail with ErrClosed),
// flushes pending records, and releases the client. It waits at most
// FlushTimeout, or until ctx is done if that is sooner (pass
// context.Background() to rely on FlushTimeout alone).
//
// If records are still undelivered then, Close fails them: their Produce
// returns, and their callbacks are called with, an error matching ErrClosed
// (and kgo.ErrClientClosed), and Close returns an error saying how many were
// failed. Close returns only after every callback has returned.
//
// With NewFromClient, Close never closes the client; records still pending
// after the timeout stay with the client, whose owner completes them (at the
// latest when closing it, with kgo.ErrClientClosed), and Close returns an
// error saying so.
//
// Close is idempotent: later calls wait for the first and return its result.
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

	n := p.pending.count()
	p.log.Debug("producer closing", zap.Int("pending", n), zap.Duration("flush_timeout", p.timeout))

	fctx, cancel := context.WithTimeout(ctx, p.timeout)
	flushErr := p.Flush(fctx)
	cancel()

	var err error
	switch {
	case flushErr == nil:
		if p.owned {
			p.cl.Close()
		}
	case p.owned:
		failedN := p.pending.count()
		p.aborting.Store(true)
		p.log.Warn("producer close: failing undelivered records", zap.Int("records", failedN), zap.Error(flushErr))
		p.cl.Close() // fails every buffered record with kgo.ErrClientClosed
		// franz-go has failed every record; wait for their callbacks.
		_ = p.pending.wait(context.Background())
		err = fmt.Errorf("producer: close: %d records not delivered in time were failed with %w: %w", failedN, ErrClosed, context.Cause(fctx))
	default:
		left := p.pending.count()
		p.log.Warn("producer close: records still pending in a client the producer does not own", zap.Int("records", left), zap.Error(flushErr))
		err = fmt.Errorf("producer: close: %d records still pending in the caller's client (their callbacks run when the client completes them): %w", left, context.Cause(fctx))
	}
	p.unregister()
	return err
}

// pending counts records handed to the producer whose callback has not yet
// returned, and lets callers wait for the count to reach zero.
type pending struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed while n == 0
}

func (q *pending) init() {
	q.zero = make(chan struct{})
	close(q.zero)
}

func (q *pending) add() {
	q.mu.Lock()
	if q.n == 0 {
		q.zero = make(chan struct{})
	}
	q.n++
	q.mu.Unlock()
}

func (q *pending) done() {
	q.mu.Lock()
	q.n--
	if q.n == 0 {
		close(q.zero)
	}
	q.mu.Unlock()
}

func (q *pending) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

func (q *pending) wait(ctx context.Context) error {
	q.mu.Lock()
	z := q.zero
	q.mu.Unlock()
	select {
	case <-z:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

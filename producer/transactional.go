package producer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/check"
	"github.com/whippet-go/whippet/internal/connect"
)

var (
	// ErrFenced is matched by the error of Transact when Kafka fenced the
	// producer: another producer started with the same transactional id.
	// The Transactional cannot be used any more; close it.
	ErrFenced = errors.New("producer: transactional producer fenced")

	// ErrAborted is matched by the error of Transact when the transaction
	// was aborted: fn returned an error (matched too), a record failed, or
	// the commit could not be made. None of its records is visible to
	// read_committed readers.
	ErrAborted = errors.New("producer: transaction aborted")
)

// Transactional produces groups of records atomically, for producer-only
// flows ("create the order and reserve its items" as several events that
// readers with the read_committed isolation level see all or none of). For
// consume-transform-produce, use consumer.Transactional, which also commits
// the consumed offsets in the transaction.
//
// It is idempotent with acks=all, as every whippet producer. One
// transaction runs at a time; Transact calls from several goroutines wait
// for each other.
//
// The transactional id identifies the producer across restarts: give each
// running instance its own, stable one (e.g. "<service>-<pod name>"). When a
// producer starts with an id, Kafka aborts the transaction its previous
// holder left open and fences that holder: its next Transact fails with
// ErrFenced.
type Transactional struct {
	cl    *kgo.Client
	id    string
	topic string
	log   *zap.Logger

	unregister func() // the Kafka client metrics

	mu     sync.Mutex // one transaction at a time; guards closed
	closed bool
}

// NewTransactional validates conn and opts and creates a Transactional
// producer with the transactional id id. It does no network I/O. The options
// are those of New; FlushTimeout does not apply (Transact's context bounds
// each transaction). With conn.Registerer, franz-go's client metrics are
// registered (whippet_kafka_*, component "producer", name id); Close unregisters
// them.
func NewTransactional(conn whippet.Connection, id string, opts ...Option) (*Transactional, error) {
	cfg := newConfig(conn, opts)
	errs := check.NewErrors("producer", ErrInvalidConfig)
	if id == "" {
		errs.Add("TransactionalID", "must not be empty (use one unique per instance and stable across its restarts)")
	}
	if err := errors.Join(errs.Err(), cfg.validate(false)); err != nil {
		return nil, err
	}
	kc := connect.New(conn, "producer", id)
	cl, err := kgo.NewClient(append(kc.All(
		kgo.ProducerLinger(cfg.linger),
		kgo.ProducerBatchMaxBytes(cfg.maxBatchBytes),
		// As in the consumer's transactional mode: Kafka 4 (transactions v2,
		// KIP-890) answers a produce that comes while the last transaction's
		// markers are still being written with CONCURRENT_TRANSACTIONS, which
		// franz-go retries only after a metadata refresh, no sooner than
		// MetadataMinAge (default 5s); 20ms is its default backoff for the
		// same error on AddPartitionsToTxn.
		kgo.ConcurrentTransactionsBackoff(5*time.Millisecond),
		kgo.MetadataMinAge(250*time.Millisecond),
	), kgo.TransactionalID(id))...) // last: the id is this constructor's argument
	if err != nil {
		return nil, &ConfigError{Pkg: "producer", Sentinel: ErrInvalidConfig, Field: "Connection.ClientOptions", Rule: "franz-go rejected the client configuration", Err: err}
	}
	unregister, err := kc.Register()
	if err != nil {
		cl.Close()
		return nil, &ConfigError{Pkg: "producer", Sentinel: ErrInvalidConfig, Field: "Connection.Registerer", Rule: "cannot register the Kafka client metrics", Err: err}
	}
	return &Transactional{cl: cl, id: id, topic: cfg.defaultTopic, log: connect.Logger(conn), unregister: unregister}, nil
}

// Client returns the underlying franz-go client, for admin requests. Do not
// produce or manage transactions with it.
func (t *Transactional) Client() *kgo.Client { return t.cl }

// Transact runs fn in a new transaction and commits the records fn produced
// with tx.Produce once they are all written, or aborts them all: if fn
// returns an error or panics, if a record fails, or if ctx ends first. It
// returns nil only when the transaction committed. On abort the error
// matches ErrAborted and the cause (fn's error included); when Kafka fenced
// the producer it matches ErrFenced.
//
// Canceling ctx while the commit is under way leaves its outcome unknown to
// this producer (the error says so); the next Transact starts afresh.
func (t *Transactional) Transact(ctx context.Context, fn func(tx *Tx) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("%w: transactional id %q", ErrClosed, t.id)
	}
	if err := t.cl.BeginTransaction(); err != nil {
		return t.failure("beginning the transaction", err)
	}
	tx := &Tx{t: t, ctx: ctx, open: true}
	panicked := true
	defer func() {
		if panicked {
			tx.close()
			_ = t.abort(ctx)
		}
	}()
	ferr := fn(tx)
	panicked = false
	tx.close()
	if ferr == nil {
		if err := t.cl.Flush(ctx); err != nil {
			ferr = fmt.Errorf("flushing the transaction's records: %w", err)
		} else {
			ferr = tx.cause()
		}
	}
	if ferr != nil {
		aerr := t.abort(ctx)
		switch {
		case fenced(ferr) || fenced(aerr):
			t.log.Error("transactional producer fenced: another producer uses this transactional id", zap.String("transactionalID", t.id), zap.Error(ferr))
			return fmt.Errorf("%w (transactional id %q): %w: %w", ErrFenced, t.id, ErrAborted, ferr)
		case aerr != nil:
			return errors.Join(fmt.Errorf("%w: %w", ErrAborted, ferr), t.failure("aborting", aerr))
		}
		return fmt.Errorf("%w: %w", ErrAborted, ferr)
	}
	if err := t.cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		// The documented recovery: end with an abort. Either the commit was
		// not made (OperationNotAttempted, TransactionAbortable), or its
		// outcome is unknown and the abort settles it.
		aerr := t.cl.EndTransaction(ctx, kgo.TryAbort)
		if aerr != nil {
			return errors.Join(fmt.Errorf("%w: the commit failed and its outcome is unknown: %w", ErrAborted, err), t.failure("aborting", aerr))
		}
		return errors.Join(ErrAborted, t.failure("committing", err))
	}
	return nil
}

func (t *Transactional) abort(ctx context.Context) error {
	if err := t.cl.AbortBufferedRecords(ctx); err != nil {
		return err
	}
	return t.cl.EndTransaction(ctx, kgo.TryAbort)
}

// fenced reports whether err says another producer holds the transactional id.
func fenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.InvalidProducerIDMapping)
}

func (t *Transactional) failure(what string, err error) error {
	if fenced(err) {
		t.log.Error("transactional producer fenced: another producer uses this transactional id", zap.String("transactionalID", t.id), zap.Error(err))
		return fmt.Errorf("%w: transactional id %q: %s: %w", ErrFenced, t.id, what, err)
	}
	return fmt.Errorf("producer: transactional id %q: %s: %w", t.id, what, err)
}

// Close releases the client and its metrics. It waits for a Transact under
// way, which that call's context bounds, so ctx is not consulted; it always
// returns nil and takes ctx for the lifecycle every whippet type shares.
// Later Transact calls fail with ErrClosed.
func (t *Transactional) Close(context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.closed = true
		t.cl.Close()
		t.unregister()
	}
	return nil
}

// Tx is one transaction of a Transactional producer, valid only during the
// Transact call that gave it.
type Tx struct {
	t   *Transactional
	ctx context.Context

	mu   sync.RWMutex // produces under the read lock while open
	open bool

	errMu sync.Mutex
	err   error // the first failed record
}

// Produce adds r to the transaction (r.Topic empty: the DefaultTopic). It
// does not wait for the record: Transact waits for every record before it
// commits, and aborts if one failed. It returns an error only for an invalid
// record or a transaction that has ended. It is safe for concurrent use
// during fn.
func (tx *Tx) Produce(r *kgo.Record) error {
	if r == nil {
		return fmt.Errorf("%w: nil record", ErrInvalidRecord)
	}
	if r.Topic == "" {
		if r.Topic = tx.t.topic; r.Topic == "" {
			return fmt.Errorf("%w: record has no Topic and the producer has no DefaultTopic", ErrInvalidRecord)
		}
	}
	tx.mu.RLock()
	defer tx.mu.RUnlock()
	if !tx.open {
		return errors.New("producer: Tx.Produce after its Transact call returned")
	}
	tx.t.cl.Produce(tx.ctx, r, tx.produced)
	return nil
}

func (tx *Tx) produced(r *kgo.Record, err error) {
	if err == nil {
		return
	}
	tx.errMu.Lock()
	defer tx.errMu.Unlock()
	if tx.err == nil {
		tx.err = fmt.Errorf("producing to topic %q: %w", r.Topic, err)
	}
}

func (tx *Tx) cause() error {
	tx.errMu.Lock()
	defer tx.errMu.Unlock()
	return tx.err
}

func (tx *Tx) close() {
	tx.mu.Lock()
	tx.open = false
	tx.mu.Unlock()
}

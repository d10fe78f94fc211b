package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
)

// BatchHandler handles records a batch at a time: the unit to write when a
// call has a fixed cost worth sharing (a bulk insert, a multi-row update, one
// request to a remote service for many records).
//
// A batch holds up to BatchSize's maxRecords records of one partition, in
// offset order. In key-parallel mode (KeyParallel) it holds the buffered
// records of some of the partition's keys (each key's earliest ones, in
// offset order; the batch is sorted by offset), and no key is in two
// batches at once; KeyParallel's concurrency bounds the batch calls under
// way. recs and its records belong to the consumer once
// HandleBatch returns: keep neither.
//
// HandleBatch returns nil when every record is handled; a *BatchError (see
// RecordErrors) to say which records failed; any other error fails every
// record of the batch with it (a panic too). Only the failed records go
// through the retry policy: a blocking retry calls HandleBatch again with
// the failed records of the call, the others are forwarded one by one to the
// next retry topic or the dead-letter topic. A batch of a retry topic holds
// only records that are due. A record is committed once it is handled, or
// its forward or outputs are acknowledged (transactional: in the
// transaction), and never before a record before it in the partition.
//
// ctx is as Handler's; retry.InfoFrom(ctx) is not set (each record's
// attempts are in its headers: retry.InfoFor). Outputs are emitted with
// EmitFor, for the input they belong to; Emit returns ErrEmitNeedsInput in a
// batch call.
type BatchHandler interface {
	HandleBatch(ctx context.Context, recs []*kgo.Record) error
}

// BatchHandlerFunc adapts an ordinary function to a BatchHandler.
type BatchHandlerFunc func(ctx context.Context, recs []*kgo.Record) error

// HandleBatch calls f(ctx, recs).
func (f BatchHandlerFunc) HandleBatch(ctx context.Context, recs []*kgo.Record) error {
	return f(ctx, recs)
}

// BatchError is what a BatchHandler returns when some of its records failed:
// Errs[i] is the error of the batch's i-th record, nil if it was handled.
// Errs must have one entry per record; otherwise every record of the batch
// fails with an error saying so (nothing is committed that was not
// reported handled).
type BatchError struct {
	Errs []error
}

// Error summarizes the failures: how many, and the first.
func (e *BatchError) Error() string {
	n, first := 0, -1
	for i, err := range e.Errs {
		if err != nil {
			n++
			if first < 0 {
				first = i
			}
		}
	}
	if n == 0 {
		return "consumer: batch: no record failed"
	}
	return fmt.Sprintf("consumer: batch: %d of %d records failed, the first (index %d): %v", n, len(e.Errs), first, e.Errs[first])
}

// Unwrap returns the records' errors, so that errors.Is and errors.As look
// through them.
func (e *BatchError) Unwrap() []error {
	var errs []error
	for _, err := range e.Errs {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// RecordErrors returns the result of a batch call from one error per record
// (nil for a record handled): nil if none failed, else a *BatchError.
func RecordErrors(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return &BatchError{Errs: errs}
		}
	}
	return nil
}

// ErrEmitNeedsInput is returned by Emit in a batch handler call: the
// consumer cannot tell which record an output belongs to, and so whether to
// produce it when some records fail. Use EmitFor.
var ErrEmitNeedsInput = errors.New("consumer: Emit in a batch handler call: use EmitFor to name the input record")

// EmitFor adds out to the outputs of in, a record of the handler call whose
// context is ctx (in a Handler call, the call's record). The outputs of in
// are produced only if in is handled (its entry of a BatchError is nil, or
// the call returned nil), as Emit's are; those of a failed record are
// dropped, so a record retried never emits twice. ErrNotInHandler if ctx is
// not the context of a call under way, ErrInvalidOutput for a nil record or
// a record without a Topic or an in that is not a record of the call.
func EmitFor(ctx context.Context, in, out *kgo.Record) error {
	return emit(ctx, in, out)
}

// DefaultBatchRecords and DefaultBatchLinger are BatchSize's defaults.
const (
	DefaultBatchRecords = 500
	// The linger of Kafka's producer since 4.0 (linger.ms=5): a batch
	// smaller than maxRecords waits this long for more records.
	DefaultBatchLinger = 5 * time.Millisecond
)

// BatchSize sets the most records of a batch handler call and how long a
// batch smaller than that waits for more records of its partition (its
// linger, 0 for none) before the call: the batch is flushed at maxRecords
// or after linger, whichever is first. The linger starts when the first
// record of the batch is ready; a shutdown or revocation flushes at once.
// In transactional mode there is no linger (the transaction's own interval
// gathers the records: see TransactionBatch), and a batch never spans two
// transactions. Only for a consumer made with NewBatch. Default:
// DefaultBatchRecords, DefaultBatchLinger.
func BatchSize(maxRecords int, linger time.Duration) Option {
	return func(c *config) { c.batchRecords, c.batchLinger, c.batchSet = maxRecords, linger, true }
}

// NewBatch is New for a BatchHandler: the same options, semantics and
// retries, with handler calls of up to BatchSize records. Middlewares of
// single records (WithMiddleware) cannot be combined with it; batch
// middlewares (WithBatchMiddleware) wrap each batch call.
func NewBatch(conn whippet.Connection, h BatchHandler, opts ...Option) (*Consumer, error) {
	return newConsumer(conn, nil, h, opts)
}

// BatchMiddleware wraps a BatchHandler to add behaviour around each batch
// call (tracing, logging), as Middleware does for a Handler.
type BatchMiddleware func(BatchHandler) BatchHandler

// WithBatchMiddleware wraps the batch handler of NewBatch; the first
// middleware is the outermost. A record forwarded to a retry or dead-letter
// topic is produced with the values of the context its last call passed
// to the handler, as deep as the middlewares passed it on (a tracing
// middleware's span), so a middleware must call its next handler before it
// returns. Default: none.
func WithBatchMiddleware(mws ...BatchMiddleware) Option {
	return func(c *config) { c.batchMiddlewares = append(c.batchMiddlewares, mws...) }
}

// chainBatch wraps h with the middlewares, each one's next handler noting
// the context it is called with (see reaching).
func chainBatch(h BatchHandler, mws []BatchMiddleware) BatchHandler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](batchReaching{h})
	}
	return h
}

// batchReaching is reaching for batch middlewares.
type batchReaching struct{ next BatchHandler }

func (r batchReaching) HandleBatch(ctx context.Context, recs []*kgo.Record) error {
	if h, ok := ctx.Value(handlingKey{}).(*handling); ok {
		h.reached = ctx
	}
	return r.next.HandleBatch(ctx, recs)
}

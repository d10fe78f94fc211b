package consumer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/internal/inhandler"
)

var (
	// ErrNotInHandler is returned by Emit when ctx is not the context of a
	// consumer handler call under way: a context from elsewhere, or the
	// handler already returned.
	ErrNotInHandler = errors.New("consumer: Emit outside a handler call")
	// ErrInvalidOutput is returned by Emit for a nil record or a record
	// without a Topic.
	ErrInvalidOutput = errors.New("consumer: invalid output record")
)

// Emit adds rec to the outputs of the handler call whose context is ctx. The
// outputs of a call are produced only if the handler returns nil; those of a
// failed call are dropped, so a record retried never emits twice.
//
// At-least-once (the default): the input record counts as finished, and its
// offset may be committed, only when Kafka has acknowledged every one of its
// outputs; an output that fails is produced again with the partition
// stopped, never dropped. Outputs are produced by the consumer's idempotent
// producer (acks=all), so the retries of a produce never duplicate it, but a
// crash between the outputs and the commit produces them again when the
// input is handled again.
//
// Transactional (see Transactional): the outputs are produced in the
// transaction that commits the input's offset, so readers with the
// read_committed isolation level see each of them exactly once.
//
// rec.Topic is required; rec.Partition is chosen by the producer's
// partitioner (by key hash). Emit may be called from goroutines the handler
// starts, but only until the handler returns: later calls return
// ErrNotInHandler. Emit does not produce anything by itself.
//
// The output is produced with ctx's values (a tracing span, for one) unless
// rec.Context is set already, in which case that one's are used; its
// cancellation is the consumer's either way, so an output emitted with a ctx
// the handler cancels on return is produced all the same.
func Emit(ctx context.Context, rec *kgo.Record) error {
	return emit(ctx, nil, rec)
}

// emit is Emit (in nil) and EmitFor.
func emit(ctx context.Context, in, rec *kgo.Record) error {
	o, _ := ctx.Value(outboxKey{}).(*outbox)
	if o == nil {
		return ErrNotInHandler
	}
	if rec == nil {
		return fmt.Errorf("%w: nil record", ErrInvalidOutput)
	}
	if rec.Topic == "" {
		return fmt.Errorf("%w: no Topic", ErrInvalidOutput)
	}
	if rec.Context == nil {
		rec.Context = ctx // made a produceContext when produced
	}
	return o.add(in, rec)
}

type (
	outboxKey   struct{}
	handlingKey struct{}
)

// handling is the context of the handler calls of one lane (or, in
// transactional mode, of one partition's records in a transaction): the
// partition's context plus the outbox of the call under way. It is allocated
// once per lane, not per record, and implements Value itself so that Emit
// finds the outbox without a context.WithValue per call.
type handling struct {
	context.Context
	out  outbox
	sink sink // atLeastOnce, or the transaction under way

	// reached is the deepest context of the record's last attempt: the one
	// the attempt was made with, or the one a middleware passed on to the
	// next handler (see reaching). A forward of the record takes its
	// values. nil until the record's first attempt.
	reached context.Context
}

// valuesCtx is the context whose values a forward of the record under way
// carries: its last attempt's, or the partition's if none was made.
func (h *handling) valuesCtx() context.Context {
	if h.reached != nil {
		return h.reached
	}
	return h
}

// Value returns the outbox for Emit, marks the context as a handler's (the
// durable spool refuses it: its outputs could be only on local disk when
// the input's offset is committed), and defers every other key to the
// partition's context.
func (h *handling) Value(key any) any {
	switch key {
	case outboxKey{}:
		return &h.out
	case handlingKey{}:
		return h
	case inhandler.Key{}:
		return true
	}
	return h.Context.Value(key)
}

// outbox collects what a handler call emits. The lane calls open before the
// handler and close after it; a call of Emit racing with the handler's
// return either lands in the call's outputs or returns ErrNotInHandler.
//
// The empty case costs two atomic stores and two loads: close takes the lock
// only if an Emit ran or is running. Emit increments emitting before it reads
// call, and close clears call before it reads emitting; so an Emit that
// close does not see (emitting 0, stored 0) reads call after it was
// cleared, and fails.
type outbox struct {
	// call is the offset of the call under way's record (of its first,
	// for a batch) plus one, 0 while no call is: Emit is refused outside
	// a call, and in strict partition order it is the partition's health
	// reading too (see callStarts), which spares the hot path a store of
	// its own.
	call     atomic.Int64
	emitting atomic.Int32 // Emit calls under way
	stored   atomic.Int32 // len(recs), for close's lock-free check
	mu       sync.Mutex
	recs     []*kgo.Record
	// The call's input: one record (callAddr, its address: the record is
	// alive while the call is, and EmitFor only compares it, so it need not
	// be a pointer, whose store per record would cost a GC write barrier
	// whenever a collection is marking), or a batch in offset order (calls),
	// whose outputs are kept with their input (ins, parallel to recs).
	callAddr uintptr
	calls    []*kgo.Record
	ins      []*kgo.Record
}

func (o *outbox) add(in, rec *kgo.Record) error {
	o.emitting.Add(1)
	defer o.emitting.Add(-1)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.call.Load() == 0 {
		return ErrNotInHandler
	}
	switch {
	case o.calls == nil:
		if in != nil && uintptr(unsafe.Pointer(in)) != o.callAddr {
			return fmt.Errorf("%w: EmitFor's input is not the record of the handler call", ErrInvalidOutput)
		}
	case in == nil:
		return ErrEmitNeedsInput
	default:
		i, found := slices.BinarySearchFunc(o.calls, in.Offset, func(r *kgo.Record, off int64) int { return cmp.Compare(r.Offset, off) })
		if !found || o.calls[i] != in {
			return fmt.Errorf("%w: EmitFor's input (%s[%d] offset %d) is not a record of the batch", ErrInvalidOutput, in.Topic, in.Partition, in.Offset)
		}
		o.ins = append(o.ins, in)
	}
	o.recs = append(o.recs, rec)
	o.stored.Store(int32(len(o.recs)))
	return nil
}

// open starts a call for rec.
func (o *outbox) open(rec *kgo.Record) {
	o.callAddr = uintptr(unsafe.Pointer(rec))
	o.call.Store(rec.Offset + 1)
}

// openBatch starts a batch call for recs, in offset order.
func (o *outbox) openBatch(recs []*kgo.Record) {
	o.calls = recs
	o.call.Store(recs[0].Offset + 1)
}

// callOffset returns the offset of the record of the call under way (the
// first of a batch call's) and whether a call is under way: -1 and false
// while none is.
func (o *outbox) callOffset() (int64, bool) {
	c := o.call.Load()
	return c - 1, c != 0
}

// closeBatch ends a batch call and returns its outputs with their inputs.
func (o *outbox) closeBatch() (outs, ins []*kgo.Record) {
	o.call.Store(0)
	o.mu.Lock()
	defer o.mu.Unlock()
	outs, ins = o.recs, o.ins
	o.recs, o.ins, o.calls = nil, nil, nil
	o.stored.Store(0)
	return outs, ins
}

// close ends the call and returns its outputs: nil if it failed (ok false)
// or emitted nothing.
func (o *outbox) close(ok bool) []*kgo.Record {
	o.call.Store(0)
	if o.emitting.Load() == 0 && o.stored.Load() == 0 {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	recs := o.recs
	o.recs = nil
	o.stored.Store(0)
	if !ok {
		return nil
	}
	return recs
}

// chain is Chain, with each middleware's next handler noting the context it
// is called with (see reaching). Without middlewares it is h itself: the
// attempt's context is the deepest.
func chain(h Handler, mws []Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](reaching{h})
	}
	return h
}

// reaching is a middleware's next handler: it notes in the handling the
// context the middleware passes on, so that a forward of the record carries
// what the middlewares put in it (a tracing middleware's span, a logger's
// fields). A middleware calls its next handler before it returns, so the note
// is written by the lane's goroutine or one that the lane waits for.
type reaching struct{ next Handler }

func (r reaching) Handle(ctx context.Context, rec *kgo.Record) error {
	if h, ok := ctx.Value(handlingKey{}).(*handling); ok {
		h.reached = ctx
	}
	return r.next.Handle(ctx, rec)
}

// produceContext is the Context of a record the consumer produces for a
// handler call (a forward, an Emit output): the values of the call's context
// (values), and the cancellation of the consumer's produce (the embedded
// Context: the partition's, or none in a transaction), so that the handler's
// own cancellation never fails it. It hides the keys of a handler call under
// way: the call is over, Emit with it fails.
type produceContext struct {
	context.Context
	values context.Context
}

// withValues returns a produceContext, or nil if values is nil (the produce
// then sets the record's Context).
func withValues(cancel, values context.Context) context.Context {
	if values == nil {
		return nil
	}
	return &produceContext{Context: cancel, values: values}
}

// Value implements context.Context.
func (c *produceContext) Value(key any) any {
	switch key {
	case outboxKey{}, handlingKey{}, inhandler.Key{}:
		return nil
	}
	return c.values.Value(key)
}

package consumer

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Handler handles one record. It is the unit users write, in the spirit of
// net/http's Handler: behaviour around the call (tracing, logging, metrics)
// is added by wrapping it (see Middleware). What follows a failure is the
// consumer's: the retry policy (see Retry and retry.Policy.Decide) decides
// whether to retry in place, forward to a retry topic or dead-letter, since
// a forward must be acknowledged (or, transactional, in the transaction)
// before the record's offset may be committed. BatchHandler handles many
// records per call.
//
// Handle is called with a context that belongs to the current assignment of
// the record's partition (see Assignment): it is canceled when the partition is
// revoked and did not drain within the drain timeout, or when the consumer is
// shut down and the drain timeout has passed. A nil error means the record is
// handled and its offset may be committed.
type Handler interface {
	Handle(ctx context.Context, rec *kgo.Record) error
}

// HandlerFunc adapts an ordinary function to a Handler.
type HandlerFunc func(ctx context.Context, rec *kgo.Record) error

// Handle calls f(ctx, rec).
func (f HandlerFunc) Handle(ctx context.Context, rec *kgo.Record) error { return f(ctx, rec) }

// Middleware wraps a Handler to add behaviour around each attempt (tracing,
// logging, decoding). Every attempt, blocking retries included, goes
// through the middlewares; retries themselves are the retry policy's.
type Middleware func(Handler) Handler

// Chain wraps h with the middlewares so that the first one is the outermost:
// Chain(h, a, b) handles a record as a(b(h)).
func Chain(h Handler, mws ...Middleware) Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

// ErrHandlerPanic is wrapped by the error a handler's panic is turned into, so
// a panicking handler counts as a failed handler and never kills the consumer.
var ErrHandlerPanic = errors.New("consumer: handler panicked")

// PanicError is the error a recovered handler panic becomes. It wraps
// ErrHandlerPanic and, when the panic value is an error, that error too.
type PanicError struct {
	// Value is what the handler panicked with.
	Value any
	// Stack is the goroutine stack at the panic.
	Stack []byte
}

// Error describes the panic value.
func (e *PanicError) Error() string { return fmt.Sprintf("%v: %v", ErrHandlerPanic, e.Value) }

// Unwrap lets errors.Is find ErrHandlerPanic and the panic value if it is an error.
func (e *PanicError) Unwrap() []error {
	if err, ok := e.Value.(error); ok {
		return []error{ErrHandlerPanic, err}
	}
	return []error{ErrHandlerPanic}
}

// callSafely runs h and turns a panic into a *PanicError.
func callSafely(ctx context.Context, h Handler, rec *kgo.Record) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return h.Handle(ctx, rec)
}

type assignmentKey struct{}

// assignments numbers partition assignments, process-wide.
var assignments atomic.Uint64

// Assignment returns the number of the partition assignment a handler's
// context belongs to: each time a partition is assigned to a consumer of this
// process, its records are handled with a new number. A handler that keeps
// state per partition can compare it to know when it must rebuild that state,
// since another member may have owned the partition in between. ok is false
// for a context that does not come from a consumer handler call.
func Assignment(ctx context.Context) (n uint64, ok bool) {
	n, ok = ctx.Value(assignmentKey{}).(uint64)
	return n, ok
}

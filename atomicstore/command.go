package atomicstore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Record headers of the commands and store topics.
const (
	// HeaderOp names the operation of a command record.
	HeaderOp = "whippet-op"
	// HeaderCommandID carries the command id, on the command record and on
	// the store record the processor writes for it.
	HeaderCommandID = "whippet-cmd-id"
	// HeaderError is set on a store record written for a rejected command:
	// the value is unchanged and the header holds the reason.
	HeaderError = "whippet-cmd-error"
	// HeaderDuplicate is set on a store record that answers a command
	// whose id the processor already applied (a command sent again, or
	// the result query of an Update) instead of applying it: the record's
	// value is the key's current value, unchanged. The header's value is
	// the original result: "=" followed by the value the command left, or
	// "-" if it left none; or empty when the record only carries an error
	// (HeaderError) and no original result.
	HeaderDuplicate = "whippet-cmd-duplicate"
)

// MaxCommandIDLen bounds the length of a command id set with WithID, in
// bytes.
const MaxCommandIDLen = 256

// Built-in operation names (a registered update function may not use the
// "whippet." prefix).
const (
	OpAdd = "whippet.add"
	OpSet = "whippet.set"
	OpCAS = "whippet.cas"
	// OpQuery is the operation of a result query that Update sends when
	// its replica may have missed its result (see Update): the processor
	// answers it with the result of the command with the same id, and
	// never applies it.
	OpQuery = "whippet.query"
)

var (
	// ErrRejected is wrapped by Update's error when the processor rejected
	// the command (an update function's error, an unknown operation, a
	// compare-and-set mismatch): the value was left unchanged.
	ErrRejected = errors.New("atomicstore: command rejected")
	// ErrCASMismatch is the reason of a rejected compare-and-set whose
	// expected value was not the current one (errors.Is works on Update's
	// error).
	ErrCASMismatch = errors.New("atomicstore: compare-and-set: current value differs")
	// ErrUpdateTimeout is wrapped by Update's error when no result arrived
	// within UpdateTimeout. The command may still be applied later: retry
	// with the same command id (Command.WithID; the id is in the error's
	// text), which the processor applies once.
	ErrUpdateTimeout = errors.New("atomicstore: timed out waiting for the result")
	// ErrResultUnknown is wrapped by Update's error when its command was
	// applied (once) but its result is lost: the replica missed the store
	// record that carried it (compaction removed it first) and the
	// processor no longer has the command id in its dedup window. Do not
	// send the command again: it would be applied again.
	ErrResultUnknown = errors.New("atomicstore: the command was applied, but its result is no longer known")
	// ErrClosed is returned by the methods of a closed Store.
	ErrClosed = errors.New("atomicstore: closed")
)

// Command is one update of a key, sent by Store.Update or Store.Send and
// applied by the Processor. Build it with Add, Set, CompareAndSet or Call.
type Command struct {
	id     string // set by WithID; else Send and Update choose a random one
	idSet  bool
	op     string
	arg    []byte
	val    any // Set / CAS new value, encoded by the store's value codec
	old    any // CAS expected value
	hasOld bool
}

// Op returns the command's operation name.
func (c Command) Op() string { return c.op }

// WithID returns a copy of c whose command id is id (1 to MaxCommandIDLen
// bytes; Send and Update refuse others) instead of a random one chosen by
// Send or Update. The processor applies a command id once: sending a
// command again with the same id, after ErrUpdateTimeout or after an error
// that leaves unknown whether Kafka stored it, does not apply it again, and
// Update returns the original result (value and outcome) — as long as the
// id is still in the processor's dedup window (see DedupWindow). Use an id
// that names the logical update (for example "order-17:add"), not one per
// attempt, and the same key in every send.
func (c Command) WithID(id string) Command { c.id, c.idSet = id, true; return c }

// ID returns the command id set by WithID, or "" if none was set.
func (c Command) ID() string { return c.id }

// Add returns a command adding n to an int64 value (a missing key counts as
// 0). Only for stores whose value type is int64.
func Add(n int64) Command { return Command{op: OpAdd, arg: strconv.AppendInt(nil, n, 10)} }

// Set returns a command setting the value to v. V must be the store's value
// type.
func Set[V any](v V) Command { return Command{op: OpSet, val: v} }

// CompareAndSet returns a command setting the value to v if the current
// value encodes to the same bytes as old (a missing key never matches);
// else it is rejected with ErrCASMismatch. V must be the store's value type.
func CompareAndSet[V any](old, v V) Command {
	return Command{op: OpCAS, val: v, old: old, hasOld: true}
}

// Call returns a command applying the update function registered under op
// (Processor.Register) with arg.
func Call(op string, arg []byte) Command { return Command{op: op, arg: arg} }

// encodeArg turns the command's typed parts into the record value.
func encodeArg[V any](c Command, enc func(V) ([]byte, error)) ([]byte, error) {
	switch c.op {
	case OpSet:
		v, ok := c.val.(V)
		if !ok {
			return nil, fmt.Errorf("atomicstore: Set: value is %T, the store holds %T", c.val, *new(V))
		}
		return enc(v)
	case OpCAS:
		o, ok1 := c.old.(V)
		v, ok2 := c.val.(V)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("atomicstore: CompareAndSet: values are %T/%T, the store holds %T", c.old, c.val, *new(V))
		}
		ob, err := enc(o)
		if err != nil {
			return nil, err
		}
		vb, err := enc(v)
		if err != nil {
			return nil, err
		}
		out := binary.AppendUvarint(nil, uint64(len(ob)))
		out = append(out, ob...)
		return append(out, vb...), nil
	case "":
		return nil, errors.New("atomicstore: empty command (use Add, Set, CompareAndSet or Call)")
	}
	return c.arg, nil
}

func splitCAS(b []byte) (old, v []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return nil, nil, errors.New("malformed compare-and-set argument")
	}
	return b[k : k+int(n)], b[k+int(n):], nil
}

// commandID returns the command's id, or a new random one if WithID was
// not used.
func (c Command) commandID() (string, error) {
	if !c.idSet {
		return newID(), nil
	}
	if c.id == "" || len(c.id) > MaxCommandIDLen {
		return "", fmt.Errorf("atomicstore: WithID: the command id must be 1 to %d bytes, got %d", MaxCommandIDLen, len(c.id))
	}
	return c.id, nil
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// UpdateFunc is a user-defined update, registered by name with
// Processor.Register and invoked with Call. It gets the key, its current
// value (the zero value and exists false if the key has none) and the
// command's argument, and returns the new value. An error rejects the
// command: the value stays, and Update returns the error's text wrapped in
// ErrRejected. It runs on the processor inside the Kafka transaction that
// writes the new value and commits the command; it must be deterministic and
// free of outside side effects (it runs again if the transaction aborts).
// Records it wants produced go through Emit, in the same transaction.
type UpdateFunc[K comparable, V any] func(ctx context.Context, key K, current V, exists bool, arg []byte) (V, error)

type effectsKey struct{}

type effects struct{ recs []*kgo.Record }

// Emit adds rec to the outputs of the update function call whose context is
// ctx: it is produced in the processor's transaction, with the new value and
// the command's offset, only if the function returns nil. So a completion
// event, for example, is produced exactly once for read_committed readers.
// rec.Topic is required; the partition comes from the key hash.
func Emit(ctx context.Context, rec *kgo.Record) error {
	e, _ := ctx.Value(effectsKey{}).(*effects)
	if e == nil {
		return errors.New("atomicstore: Emit outside an update function")
	}
	if rec == nil || rec.Topic == "" {
		return errors.New("atomicstore: Emit: a record with a Topic is required")
	}
	e.recs = append(e.recs, rec)
	return nil
}

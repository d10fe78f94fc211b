package consumer

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/codec"
)

// Message is a record with its key and value decoded, as a Typed handler
// gets it.
type Message[K, V any] struct {
	// Key and Value are the record's key and value, decoded by the codecs
	// given to Typed.
	Key   K
	Value V
	// Headers are the record's headers.
	Headers []kgo.RecordHeader
	// Topic, Partition and Offset place the record; for a record of a retry
	// topic they are where it is now (retry.InfoFrom(ctx) has where it came
	// from).
	Topic     string
	Partition int32
	Offset    int64
	// Timestamp is the record's timestamp.
	Timestamp time.Time
	// Record is the raw record, for what Message does not carry (its leader
	// epoch, its attributes, the bytes themselves). Do not modify it: the
	// consumer forwards it to retry and dead-letter topics as fetched.
	Record *kgo.Record
}

// Typed returns a Handler that decodes each record's key with keys and its
// value with values and calls fn with the decoded Message. A tombstone's
// value (nil) goes to values as is: codec.JSON rejects it, so use a codec
// that accepts nil (codec.Bytes, or your own) on a topic with tombstones; a
// record without a key gives keys a nil key (use codec.Bytes when records
// have none).
//
// A record that cannot be decoded is a poison pill: fn is not called, and the
// handler returns a *DecodeError, which matches codec.ErrDecode whatever the
// codec returned (a custom codec need not wrap it) and carries the codec's
// error. The retry policy then dead-letters the record at once, with reason
// "decode" and the codec's error in its whippet-error header, without
// retrying it (unless the policy has RetryDecodeErrors). An error returned by
// fn goes through the retry policy like any handler's.
//
// Typed returns nil if a codec or fn is nil; New refuses a nil Handler.
// TypedBatch is the same for batches.
func Typed[K, V any](keys codec.Codec[K], values codec.Codec[V], fn func(ctx context.Context, m Message[K, V]) error) Handler {
	if keys == nil || values == nil || fn == nil {
		// A nil codec would panic at the first record, a poison pill of
		// every record: fail at New instead (it refuses a nil Handler).
		return nil
	}
	return HandlerFunc(func(ctx context.Context, rec *kgo.Record) error {
		m, err := decode(keys, values, rec)
		if err != nil {
			return err
		}
		return fn(ctx, m)
	})
}

// TypedBatch adapts fn, a function of a batch of decoded messages, to a
// BatchHandler: each record's key and value are decoded with the codecs, as
// Typed does. A record that cannot be decoded is a poison pill: it is left
// out of ms and fails with a *DecodeError (dead-lettered at once with reason
// "decode"); fn is called with the others, in the batch's order, unless none
// is left. fn's result is read as a BatchHandler's, its *BatchError indexed
// by ms.
//
// TypedBatch returns nil if a codec or fn is nil; NewBatch refuses a nil
// BatchHandler.
func TypedBatch[K, V any](keys codec.Codec[K], values codec.Codec[V], fn func(ctx context.Context, ms []Message[K, V]) error) BatchHandler {
	if keys == nil || values == nil || fn == nil {
		return nil
	}
	return BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
		ms := make([]Message[K, V], 0, len(recs))
		var errs []error // one per record, once a record failed to decode
		var at []int     // the index in recs of each of ms, once errs is set
		for i, rec := range recs {
			m, err := decode(keys, values, rec)
			if err != nil {
				if errs == nil {
					errs = make([]error, len(recs))
					at = make([]int, len(ms), len(recs))
					for j := range at {
						at[j] = j
					}
				}
				errs[i] = err
				continue
			}
			ms = append(ms, m)
			if errs != nil {
				at = append(at, i)
			}
		}
		if len(ms) == 0 {
			return RecordErrors(errs)
		}
		err := fn(ctx, ms)
		if errs == nil {
			return err // ms is recs, one to one
		}
		var be *BatchError
		switch {
		case err == nil:
		case errors.As(err, &be) && len(be.Errs) == len(ms):
			for j, e := range be.Errs {
				errs[at[j]] = e
			}
		default:
			// One error for every message: the decoded records fail with it.
			for _, i := range at {
				errs[i] = err
			}
		}
		return RecordErrors(errs)
	})
}

// decode decodes rec into a Message.
func decode[K, V any](keys codec.Codec[K], values codec.Codec[V], rec *kgo.Record) (Message[K, V], error) {
	k, err := keys.Decode(rec.Key)
	if err != nil {
		return Message[K, V]{}, &DecodeError{Field: "key", Err: err}
	}
	v, err := values.Decode(rec.Value)
	if err != nil {
		return Message[K, V]{}, &DecodeError{Field: "value", Err: err}
	}
	return Message[K, V]{
		Key: k, Value: v, Headers: rec.Headers,
		Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Timestamp: rec.Timestamp,
		Record: rec,
	}, nil
}

// DecodeError is the error of a Typed handler whose codec could not decode
// a record's key or value. It matches codec.ErrDecode (so the record is a
// poison pill, dead-lettered with reason "decode") and wraps the codec's
// error.
type DecodeError struct {
	// Field is "key" or "value".
	Field string
	// Err is the codec's error.
	Err error
}

// Error returns "consumer: decoding the <field>: " and the codec's error.
func (e *DecodeError) Error() string {
	return "consumer: decoding the " + e.Field + ": " + e.Err.Error()
}

// Unwrap lets errors.Is and errors.As find codec.ErrDecode and the codec's
// error.
func (e *DecodeError) Unwrap() []error { return []error{codec.ErrDecode, e.Err} }

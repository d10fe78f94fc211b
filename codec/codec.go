package codec

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"unicode/utf8"
)

var (
	// ErrDecode is matched by every error a Codec from this package returns
	// from Decode; the message names the codec and the target type, and
	// wraps the underlying cause. Custom codecs should wrap it too, so that
	// consumers can tell undecodable records (poison pills) from other
	// failures.
	ErrDecode = errors.New("codec: decode")

	// ErrEncode is matched by every error a Codec from this package returns
	// from Encode, and by Typed's errors for a key or value that could not
	// be encoded.
	ErrEncode = errors.New("codec: encode")
)

// Codec converts values of type T to and from record bytes (keys or values).
// Implementations must be safe for concurrent use. Whether a nil value (a
// tombstone) decodes is up to the codec: Bytes and String accept it, JSON
// rejects it.
type Codec[T any] interface {
	// Encode returns the bytes for v.
	Encode(v T) ([]byte, error)
	// Decode returns the value encoded in b, or an error wrapping
	// ErrDecode.
	Decode(b []byte) (T, error)
}

// Bytes returns the identity codec for []byte. Encode and Decode return
// their argument without copying: do not modify a slice handed to a
// producer until its record completes. A nil key encodes to a nil key
// (Kafka's null key), which spreads records over partitions.
func Bytes() Codec[[]byte] { return bytesCodec{} }

type bytesCodec struct{}

func (bytesCodec) Encode(v []byte) ([]byte, error) { return v, nil }
func (bytesCodec) Decode(b []byte) ([]byte, error) { return b, nil }

// String returns a codec for UTF-8 text. Encode and Decode fail (with
// ErrEncode or ErrDecode) on invalid UTF-8, so binary data is caught at the
// edge instead of travelling as a corrupt string. The empty string encodes to
// an empty, non-nil key or value.
func String() Codec[string] { return stringCodec{} }

type stringCodec struct{}

func (stringCodec) Encode(v string) ([]byte, error) {
	if !utf8.ValidString(v) {
		return nil, fmt.Errorf("%w: String: invalid UTF-8 in %q", ErrEncode, truncate(v))
	}
	return []byte(v), nil
}

func (stringCodec) Decode(b []byte) (string, error) {
	if !utf8.Valid(b) {
		return "", fmt.Errorf("%w: String: invalid UTF-8 in %q", ErrDecode, truncate(string(b)))
	}
	return string(b), nil
}

// JSON returns a codec that encodes T with encoding/json. Decode rejects
// empty input, malformed JSON and values that do not fit T, naming T in the
// error.
func JSON[T any]() Codec[T] { return jsonCodec[T]{} }

type jsonCodec[T any] struct{}

func (jsonCodec[T]) Encode(v T) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: JSON from %s: %w", ErrEncode, typeName[T](), err)
	}
	return b, nil
}

func (jsonCodec[T]) Decode(b []byte) (T, error) {
	var v T
	if len(b) == 0 {
		return v, fmt.Errorf("%w: JSON into %s: empty input", ErrDecode, typeName[T]())
	}
	if err := json.Unmarshal(b, &v); err != nil {
		var zero T
		return zero, fmt.Errorf("%w: JSON into %s: %w", ErrDecode, typeName[T](), err)
	}
	return v, nil
}

func typeName[T any]() string {
	return reflect.TypeFor[T]().String()
}

// truncate shortens s for error messages.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

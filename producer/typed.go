package producer

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/internal/check"
)

// Typed produces records with typed keys and values to one topic, encoding
// them with its codecs. It is safe for concurrent use and shares the
// Producer's lifecycle (closing the Producer closes it).
type Typed[K, V any] struct {
	p     *Producer
	topic string
	key   codec.Codec[K]
	value codec.Codec[V]
}

// NewTyped returns a Typed producing to topic through p, encoding keys with
// key and values with value. An empty topic means the Producer's
// DefaultTopic. For records without a key, use Bytes() as the key codec and
// pass a nil key. The error (matching ErrInvalidConfig) names a nil
// argument or an invalid topic.
func NewTyped[K, V any](p *Producer, topic string, key codec.Codec[K], value codec.Codec[V]) (*Typed[K, V], error) {
	switch {
	case p == nil:
		return nil, &ConfigError{Pkg: "producer", Sentinel: ErrInvalidConfig, Field: "producer", Rule: "must not be nil"}
	case key == nil:
		return nil, &ConfigError{Pkg: "producer", Sentinel: ErrInvalidConfig, Field: "key codec", Rule: "must not be nil (use codec.Bytes() for records without keys)"}
	case value == nil:
		return nil, &ConfigError{Pkg: "producer", Sentinel: ErrInvalidConfig, Field: "value codec", Rule: "must not be nil"}
	}
	if topic == "" {
		topic = p.topic
		if topic == "" {
			return nil, &ConfigError{Pkg: "producer", Sentinel: ErrInvalidConfig, Field: "topic", Rule: "must be set when the producer has no DefaultTopic"}
		}
	} else if rule := check.TopicRule(topic); rule != "" {
		return nil, &ConfigError{Pkg: "producer", Sentinel: ErrInvalidConfig, Field: "topic", Rule: rule}
	}
	return &Typed[K, V]{p: p, topic: topic, key: key, value: value}, nil
}

// Topic returns the topic t produces to.
func (t *Typed[K, V]) Topic() string { return t.topic }

// Record encodes key and value into a record for t's topic, without
// producing it: for Producer.ProduceMany, or to set more record fields. The
// error wraps codec.ErrEncode and says whether the key or the value failed.
func (t *Typed[K, V]) Record(key K, value V, headers ...kgo.RecordHeader) (*kgo.Record, error) {
	k, err := t.key.Encode(key)
	if err != nil {
		return nil, fmt.Errorf("producer: topic %q: key: %w", t.topic, err)
	}
	v, err := t.value.Encode(value)
	if err != nil {
		return nil, fmt.Errorf("producer: topic %q: value: %w", t.topic, err)
	}
	return &kgo.Record{Topic: t.topic, Key: k, Value: v, Headers: headers}, nil
}

// Produce encodes key and value and produces them like Producer.Produce.
func (t *Typed[K, V]) Produce(ctx context.Context, key K, value V, headers ...kgo.RecordHeader) (Result, error) {
	r, err := t.Record(key, value, headers...)
	if err != nil {
		return failed(t.topic), err
	}
	return t.p.Produce(ctx, r)
}

// ProduceAsync encodes key and value and produces them like
// Producer.ProduceAsync: fn is called exactly once, also (before
// ProduceAsync returns) when encoding fails.
func (t *Typed[K, V]) ProduceAsync(ctx context.Context, key K, value V, fn func(Result, error), headers ...kgo.RecordHeader) {
	r, err := t.Record(key, value, headers...)
	if err != nil {
		if fn != nil {
			fn(failed(t.topic), err)
		}
		return
	}
	t.p.ProduceAsync(ctx, r, fn)
}

// Package toolarge turns franz-go's kerr.MessageTooLarge into an error that
// says which record was too large, by how much, and against which limit:
// the client's maximum batch size (checked by franz-go before sending) or
// the topic's max.message.bytes (checked by the broker), so that the
// producer and the consumer's forwards report the same clear error.
package toolarge

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrRecordTooLarge is matched by every *Error.
var ErrRecordTooLarge = errors.New("record too large")

// Error reports a record Kafka did not take because of its size. It
// matches ErrRecordTooLarge and franz-go's error (kerr.MessageTooLarge).
type Error struct {
	// Topic is the record's topic.
	Topic string
	// Size is the size of the record in a batch of its own, uncompressed,
	// as Kafka counts it against max.message.bytes (key, value, headers
	// and framing).
	Size int
	// MaxBatchBytes is the client's maximum batch size for the topic
	// (kgo.ProducerBatchMaxBytes, or kgo.ProducerBatchMaxBytesFn);
	// LimitOption names what sets it.
	MaxBatchBytes int32
	LimitOption   string
	// TopicMaxMessageBytes is the topic's max.message.bytes, or 0 if it
	// could not be read (see LookupErr).
	TopicMaxMessageBytes int32
	LookupErr            error
	// Err is franz-go's error.
	Err error
}

// Error says what was too large against what.
func (e *Error) Error() string {
	cause := ""
	if e.Err != nil {
		cause = ": " + e.Err.Error()
	}
	switch {
	case e.Size > int(e.MaxBatchBytes):
		return fmt.Sprintf("record too large: %d bytes is more than %s (%d), the largest batch the client sends%s",
			e.Size, e.LimitOption, e.MaxBatchBytes, cause)
	case e.TopicMaxMessageBytes > 0 && e.Size > int(e.TopicMaxMessageBytes):
		return fmt.Sprintf("record too large: %d bytes is more than max.message.bytes of topic %q (%d)%s",
			e.Size, e.Topic, e.TopicMaxMessageBytes, cause)
	case e.TopicMaxMessageBytes > 0:
		return fmt.Sprintf("record too large: the record (%d bytes) fits max.message.bytes of topic %q (%d), but the batch it was sent in did not: keep %s (%d) at or below it%s",
			e.Size, e.Topic, e.TopicMaxMessageBytes, e.LimitOption, e.MaxBatchBytes, cause)
	}
	return fmt.Sprintf("record too large: Kafka refused the record (%d bytes) or its batch as larger than max.message.bytes of topic %q, which could not be read (%v); %s is %d%s",
		e.Size, e.Topic, e.LookupErr, e.LimitOption, e.MaxBatchBytes, cause)
}

// Unwrap returns ErrRecordTooLarge and franz-go's error.
func (e *Error) Unwrap() []error { return []error{ErrRecordTooLarge, e.Err} }

// Explain returns err unchanged unless it matches kerr.MessageTooLarge; then
// it returns an *Error for rec, produced through cl, whose batch limit is
// set by the option named limitOption. It reads the topic's
// max.message.bytes from Kafka (at most every 30s per client and topic,
// within 5s), so it may block that long.
func Explain(cl *kgo.Client, limitOption string, rec *kgo.Record, err error) error {
	if err == nil || rec == nil || !errors.Is(err, kerr.MessageTooLarge) {
		return err
	}
	e := &Error{Topic: rec.Topic, Size: BatchSize(rec), LimitOption: limitOption, Err: err}
	e.MaxBatchBytes = batchMaxBytes(cl, rec.Topic)
	if e.Size <= int(e.MaxBatchBytes) {
		e.TopicMaxMessageBytes, e.LookupErr = topicLimit(cl, rec.Topic)
	}
	return e
}

// batchMaxBytes returns the client's batch limit for topic: franz-go's
// limit may differ per topic (kgo.ProducerBatchMaxBytesFn).
func batchMaxBytes(cl *kgo.Client, topic string) int32 {
	if fn, ok := cl.OptValue(kgo.ProducerBatchMaxBytesFn).(func(string) int32); ok && fn != nil {
		return fn(topic)
	}
	n, _ := cl.OptValue(kgo.ProducerBatchMaxBytes).(int32)
	return n
}

// BatchSize returns the size of a record batch holding only r, uncompressed,
// as Kafka counts it against max.message.bytes: 61 bytes of batch header
// and the record's own encoding.
func BatchSize(r *kgo.Record) int {
	body := 1 + 1 + 1 // attributes, timestamp delta 0, offset delta 0
	body += bytesLen(r.Key) + bytesLen(r.Value) + varintLen(int64(len(r.Headers)))
	for _, h := range r.Headers {
		body += varintLen(int64(len(h.Key))) + len(h.Key) + bytesLen(h.Value)
	}
	return 61 + varintLen(int64(body)) + body
}

func bytesLen(b []byte) int {
	if b == nil {
		return varintLen(-1)
	}
	return varintLen(int64(len(b))) + len(b)
}

func varintLen(n int64) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutVarint(buf[:], n)
}

type cacheKey struct {
	cl    *kgo.Client
	topic string
}

type cached struct {
	limit int32
	err   error
	at    time.Time
}

var (
	mu    sync.Mutex
	cache = map[cacheKey]cached{}
)

// topicLimit returns the topic's max.message.bytes, cached for 30s.
func topicLimit(cl *kgo.Client, topic string) (int32, error) {
	now := time.Now()
	k := cacheKey{cl, topic}
	mu.Lock()
	for ck, c := range cache { // few entries: errors are rare
		if now.Sub(c.at) > 30*time.Second {
			delete(cache, ck)
		}
	}
	c, ok := cache[k]
	mu.Unlock()
	if ok {
		return c.limit, c.err
	}
	c = cached{at: now}
	c.limit, c.err = describe(cl, topic)
	mu.Lock()
	cache[k] = c
	mu.Unlock()
	return c.limit, c.err
}

func describe(cl *kgo.Client, topic string) (int32, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return 0, err
	}
	rc, err := rcs.On(topic, nil)
	if err != nil {
		return 0, err
	}
	if rc.Err != nil {
		return 0, rc.Err
	}
	for _, c := range rc.Configs {
		if c.Key == "max.message.bytes" && c.Value != nil {
			n, err := strconv.ParseInt(*c.Value, 10, 32)
			if err != nil {
				return 0, fmt.Errorf("max.message.bytes %q: %w", *c.Value, err)
			}
			return int32(n), nil
		}
	}
	return 0, errors.New("the broker did not return max.message.bytes")
}

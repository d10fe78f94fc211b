package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/check"
	"github.com/whippet-go/whippet/internal/connect"
	"github.com/whippet-go/whippet/producer"
)

// ErrInvalidPayload is matched by Publish's error for a payload that is not
// valid JSON.
var ErrInvalidPayload = errors.New("notify: payload is not valid JSON")

// ErrInvalidChannel is matched by the error of Publish for a channel id that
// is empty, longer than MaxChannelLen bytes, or holds control characters.
var ErrInvalidChannel = errors.New("notify: invalid channel id")

// MaxChannelLen is the longest channel id, in bytes.
const MaxChannelLen = 256

// Publisher produces notifications to a topic: the record's key is the
// channel id (so one channel's notifications share a partition and keep their
// order) and its value the JSON payload. It is safe for concurrent use.
type Publisher struct {
	p     *producer.Producer
	topic string
}

// PublisherOption configures a Publisher.
type PublisherOption func(*publisherConfig)

type publisherConfig struct {
	producerOpts []producer.Option
}

// ProducerOptions passes options to the Publisher's producer (see
// producer.New), after the Publisher's own. Default: producer.Linger(0) (a
// notification is sent at once; concurrent ones still share requests) and
// otherwise the producer's defaults (idempotent, acks=all).
func ProducerOptions(opts ...producer.Option) PublisherOption {
	return func(c *publisherConfig) { c.producerOpts = append(c.producerOpts, opts...) }
}

// NewPublisher validates conn and topic and creates a Publisher with its own
// idempotent producer (see producer.New; its metrics are the producer's).
// Its client id defaults to "whippet-notify-publisher", so that it does not
// clash with a service's own producer on one Registerer. It does no network
// I/O. The topic must exist; it is the one the gateways read.
//
// The record partition is chosen by Kafka's default key hashing (murmur2),
// which the Gateway relies on to know a channel's partition: do not override
// the partitioner in conn.ClientOptions.
func NewPublisher(conn whippet.Connection, topic string, opts ...PublisherOption) (*Publisher, error) {
	var cfg publisherConfig
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	v := check.NewErrors("notify", ErrInvalidConfig)
	connect.Validate(v, conn)
	if rule := check.TopicRule(topic); rule != "" {
		v.Add("topic", "%s", rule)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if conn.ClientID == "" {
		conn.ClientID = connect.ClientID(conn, "notify-publisher")
	}
	p, err := producer.New(conn, append([]producer.Option{producer.DefaultTopic(topic), producer.Linger(0)}, cfg.producerOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("notify: publisher: %w", err)
	}
	return &Publisher{p: p, topic: topic}, nil
}

// Publish produces payload, which must be valid JSON, as a notification for
// channel and waits for Kafka's answer: the notification's ID, or an error
// (see producer.Producer.Produce for what a canceled ctx means).
func (p *Publisher) Publish(ctx context.Context, channel string, payload []byte) (ID, error) {
	if err := validChannel(channel); err != nil {
		return ID{}, err
	}
	if !json.Valid(payload) {
		return ID{}, fmt.Errorf("%w (channel %q, %d bytes)", ErrInvalidPayload, channel, len(payload))
	}
	res, err := p.p.Produce(ctx, &kgo.Record{Key: []byte(channel), Value: payload})
	if err != nil {
		return ID{}, fmt.Errorf("notify: publish to channel %q: %w", channel, err)
	}
	return ID{Partition: res.Partition, Offset: res.Offset}, nil
}

// PublishJSON is Publish with v encoded by encoding/json.
func (p *Publisher) PublishJSON(ctx context.Context, channel string, v any) (ID, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return ID{}, fmt.Errorf("%w: %w", ErrInvalidPayload, err)
	}
	return p.Publish(ctx, channel, b)
}

// Topic returns the notification topic.
func (p *Publisher) Topic() string { return p.topic }

// Client returns the underlying franz-go client. Do not close it; call
// Close.
func (p *Publisher) Client() *kgo.Client { return p.p.Client() }

// Close waits for pending notifications (bounded by ctx and the producer's
// FlushTimeout) and closes the producer.
func (p *Publisher) Close(ctx context.Context) error { return p.p.Close(ctx) }

func validChannel(ch string) error {
	if ch == "" {
		return fmt.Errorf("%w: empty", ErrInvalidChannel)
	}
	if len(ch) > MaxChannelLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidChannel, len(ch), MaxChannelLen)
	}
	for _, r := range ch {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w %q: control character", ErrInvalidChannel, ch)
		}
	}
	return nil
}

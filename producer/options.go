package producer

import (
	"errors"
	"fmt"
	"time"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/check"
	"github.com/whippet-go/whippet/internal/connect"
)

// Defaults applied when the matching option is not given.
const (
	// DefaultFlushTimeout is how long Close waits for pending records when
	// FlushTimeout is not set.
	DefaultFlushTimeout = 30 * time.Second
	// DefaultLinger is franz-go's default linger, used when Linger is not set.
	DefaultLinger = 10 * time.Millisecond
	// DefaultMaxBatchBytes is franz-go's default maximum uncompressed batch
	// size (Kafka's default max.message.bytes), used when MaxBatchBytes is
	// not set.
	DefaultMaxBatchBytes int32 = 1_000_012
)

// ErrInvalidConfig is matched (with errors.Is) by every error New,
// NewFromClient and NewTyped return for a bad option or argument. The
// concrete error is a *ConfigError naming the field and the rule.
var ErrInvalidConfig = errors.New("producer: invalid config")

// ConfigError reports one invalid configuration value. Its message reads
// "producer: <Field>: <Rule>", for example
// "producer: Connection.Brokers: at least one seed broker is required", and it matches
// ErrInvalidConfig with errors.Is.
type ConfigError = check.Error

// Option configures a Producer. Options are applied in order, then validated as
// a whole before any network I/O; see New.
type Option func(*config)

type config struct {
	conn          whippet.Connection
	defaultTopic  string
	flushTimeout  time.Duration
	linger        time.Duration
	maxBatchBytes int32

	// set records which options were given, for validation.
	set map[string]bool
}

func newConfig(conn whippet.Connection, opts []Option) config {
	c := config{
		conn:          conn,
		flushTimeout:  DefaultFlushTimeout,
		linger:        DefaultLinger,
		maxBatchBytes: DefaultMaxBatchBytes,
		set:           make(map[string]bool),
	}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	return c
}

// DefaultTopic sets the topic used for records whose Topic field is empty.
// The default is no default topic: such records fail with ErrInvalidRecord.
func DefaultTopic(topic string) Option {
	return func(c *config) {
		c.set["DefaultTopic"] = true
		c.defaultTopic = topic
	}
}

// FlushTimeout bounds how long Close waits for pending records to be
// delivered before failing them. The default is DefaultFlushTimeout (30s).
func FlushTimeout(d time.Duration) Option {
	return func(c *config) {
		c.set["FlushTimeout"] = true
		c.flushTimeout = d
	}
}

// Linger sets how long a partition's batch waits for more records before it
// is sent (kgo.ProducerLinger), between 0 and 1 minute. Zero sends as soon as
// possible. Flush and Close stop lingering. The default is DefaultLinger
// (10ms, franz-go's default). Not allowed with NewFromClient.
func Linger(d time.Duration) Option {
	return func(c *config) {
		c.set["Linger"] = true
		c.linger = d
	}
}

// MaxBatchBytes sets the maximum uncompressed size of one record batch
// (kgo.ProducerBatchMaxBytes), between 512 bytes and 1 GiB; a larger record
// fails with a *RecordTooLargeError (matching ErrRecordTooLarge and
// kerr.MessageTooLarge). Keep it at or below the topic's max.message.bytes.
// The default is DefaultMaxBatchBytes (1,000,012). Not allowed with
// NewFromClient.
func MaxBatchBytes(n int32) Option {
	return func(c *config) {
		c.set["MaxBatchBytes"] = true
		c.maxBatchBytes = n
	}
}

// clientLevel lists the options that configure the franz-go client itself
// and so cannot apply to a client passed to NewFromClient.
var clientLevel = []string{"Linger", "MaxBatchBytes"}

// validate checks every value and returns all violations joined; each one is
// a *ConfigError. fromClient is true for NewFromClient.
func (c *config) validate(fromClient bool) error {
	errs := check.NewErrors("producer", ErrInvalidConfig)
	bad := func(field, rule string) { errs.Add(field, rule) }

	if fromClient {
		for _, f := range clientLevel {
			if c.set[f] {
				bad(f, "not allowed with NewFromClient; configure the *kgo.Client instead")
			}
		}
		notFromClient := func(field string, set bool) {
			if set {
				bad("Connection."+field, "not allowed with NewFromClient (only Logger and Registerer apply); configure the *kgo.Client instead")
			}
		}
		notFromClient("Brokers", len(c.conn.Brokers) > 0)
		notFromClient("TLS", c.conn.TLS != nil)
		notFromClient("SASL", c.conn.SASL != nil)
		notFromClient("ClientID", c.conn.ClientID != "")
		notFromClient("ClientOptions", len(c.conn.ClientOptions) > 0)
	} else {
		connect.Validate(errs, c.conn)
		if c.linger < 0 || c.linger > time.Minute {
			bad("Linger", fmt.Sprintf("must be between 0 and 1m, got %v", c.linger))
		}
		if c.maxBatchBytes < 512 || c.maxBatchBytes > 1<<30 {
			bad("MaxBatchBytes", fmt.Sprintf("must be between 512 and 1073741824, got %d", c.maxBatchBytes))
		}
	}
	if c.set["DefaultTopic"] {
		if rule := check.TopicRule(c.defaultTopic); rule != "" {
			bad("DefaultTopic", rule)
		}
	}
	if c.flushTimeout <= 0 {
		bad("FlushTimeout", fmt.Sprintf("must be positive, got %v", c.flushTimeout))
	}
	return errs.Err()
}

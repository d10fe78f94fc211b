package producer

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet/internal/check"
)

// Defaults applied when the matching option is not given.
const (
	// DefaultFlushTimeout is how long Close waits for pending records when
	// FlushTimeout is not set.
	DefaultFlushTimeout = 30 * time.Second
	// DefaultClientID is the Kafka client.id used when ClientID is not set.
	DefaultClientID = "whippet-producer"
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
// "producer: Brokers: at least one seed broker is required", and it matches
// ErrInvalidConfig with errors.Is.
type ConfigError = check.Error

// Option configures a Producer. Options are applied in order, then validated as
// a whole before any network I/O; see New.
type Option func(*config)

type config struct {
	brokers       []string
	defaultTopic  string
	logger        *zap.Logger
	registerer    prometheus.Registerer
	clientOpts    []kgo.Opt
	flushTimeout  time.Duration
	clientID      string
	linger        time.Duration
	maxBatchBytes int32

	// set records which options were given, for validation.
	set map[string]bool
}

func newConfig(opts []Option) config {
	c := config{
		logger:        zap.NewNop(),
		flushTimeout:  DefaultFlushTimeout,
		clientID:      DefaultClientID,
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

// Brokers sets the seed brokers ("host:port"; the port defaults to 9092).
// Required by New, where at least one is needed; not allowed with
// NewFromClient. There is no default.
func Brokers(seeds ...string) Option {
	return func(c *config) {
		c.set["Brokers"] = true
		c.brokers = append(c.brokers, seeds...)
	}
}

// DefaultTopic sets the topic used for records whose Topic field is empty.
// The default is no default topic: such records fail with ErrInvalidRecord.
func DefaultTopic(topic string) Option {
	return func(c *config) {
		c.set["DefaultTopic"] = true
		c.defaultTopic = topic
	}
}

// Logger sets the zap logger for the producer and, through kzap, for the
// franz-go client it creates. The default is zap.NewNop(): no logging.
func Logger(l *zap.Logger) Option {
	return func(c *config) {
		c.set["Logger"] = true
		c.logger = l
	}
}

// Registerer enables Prometheus metrics, registered on reg: franz-go's client
// metrics through kprom (names whippet_producer_kgo_*; New only, as hooks
// cannot be added to an existing client) and the producer's own
// whippet_producer_records_produced_total{topic},
// whippet_producer_records_failed_total{topic} and
// whippet_producer_produce_latency_seconds{topic}. Every metric carries a
// constant client_id label, so producers sharing a Registerer need distinct
// ClientIDs; the kprom collectors are unregistered by Close. The default is
// no metrics.
func Registerer(reg prometheus.Registerer) Option {
	return func(c *config) {
		c.set["Registerer"] = true
		c.registerer = reg
	}
}

// ClientOptions appends raw franz-go options to the client New creates. They
// are applied after the options whippet derives from this package's options,
// so they win on conflict (for example kgo.RequiredAcks or
// kgo.DisableIdempotentWrite weaken the default delivery guarantees). Not
// allowed with NewFromClient. The default is none.
func ClientOptions(opts ...kgo.Opt) Option {
	return func(c *config) {
		c.set["ClientOptions"] = true
		c.clientOpts = append(c.clientOpts, opts...)
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

// ClientID sets the Kafka client.id (1 to 256 characters). It also labels
// the producer's metrics. The default is DefaultClientID
// ("whippet-producer"). Not allowed with NewFromClient.
func ClientID(id string) Option {
	return func(c *config) {
		c.set["ClientID"] = true
		c.clientID = id
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
var clientLevel = []string{"Brokers", "ClientID", "ClientOptions", "Linger", "MaxBatchBytes"}

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
	} else {
		if len(c.brokers) == 0 {
			bad("Brokers", "at least one seed broker is required")
		}
		for i, b := range c.brokers {
			if b == "" || strings.ContainsAny(b, " \t\r\n") {
				bad(fmt.Sprintf("Brokers[%d]", i), fmt.Sprintf("must be a non-empty host[:port] without spaces, got %q", b))
			} else if rule := check.SeedPortRule(b); rule != "" {
				errs.Add(fmt.Sprintf("Brokers[%d]", i), "%s, got %q", rule, b)
			}
		}
		if n := len(c.clientID); n == 0 || n > 256 {
			bad("ClientID", fmt.Sprintf("must be 1 to 256 characters, got %d", n))
		}
		if c.linger < 0 || c.linger > time.Minute {
			bad("Linger", fmt.Sprintf("must be between 0 and 1m, got %v", c.linger))
		}
		if c.maxBatchBytes < 512 || c.maxBatchBytes > 1<<30 {
			bad("MaxBatchBytes", fmt.Sprintf("must be between 512 and 1073741824, got %d", c.maxBatchBytes))
		}
		for i, o := range c.clientOpts {
			if o == nil {
				bad(fmt.Sprintf("ClientOptions[%d]", i), "must not be nil")
			}
		}
	}
	if c.set["DefaultTopic"] {
		if rule := check.TopicRule(c.defaultTopic); rule != "" {
			bad("DefaultTopic", rule)
		}
	}
	if c.logger == nil {
		bad("Logger", "must not be nil (omit the option to disable logging)")
	}
	if c.set["Registerer"] && c.registerer == nil {
		bad("Registerer", "must not be nil (omit the option to disable metrics)")
	}
	if c.flushTimeout <= 0 {
		bad("FlushTimeout", fmt.Sprintf("must be positive, got %v", c.flushTimeout))
	}
	return errs.Err()
}

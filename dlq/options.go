package dlq

import (
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet/internal/check"
)

// DefaultClientID is the Kafka client.id of a Client made by New when
// ClientID is not given.
const DefaultClientID = "whippet-dlq"

// ErrInvalidConfig is matched (with errors.Is) by every error New and
// NewFromClient return for a bad option. The concrete errors are
// *ConfigError values naming the option and the rule, joined.
var ErrInvalidConfig = errors.New("dlq: invalid config")

// ErrInvalidArgument is matched (with errors.Is) by the error a method
// returns for a bad argument: an invalid topic name, a negative partition,
// a malformed Filter or cursor, a purge without a scope. The concrete errors
// are *ConfigError values naming the argument or field, e.g.
// "dlq: Filter.Limit: must be >= 0, got -1".
var ErrInvalidArgument = errors.New("dlq: invalid argument")

// ConfigError reports one invalid option or argument. Its message reads
// "dlq: <Field>: <Rule>", and it matches ErrInvalidConfig (options) or
// ErrInvalidArgument (method arguments) with errors.Is.
type ConfigError = check.Error

// Option configures a Client. Options are applied in order and then
// validated as a whole before any network I/O.
type Option func(*config)

type config struct {
	brokers    []string
	clientID   string
	clientOpts []kgo.Opt
	logger     *zap.Logger
	set        map[string]bool
}

func newConfig(opts []Option) config {
	c := config{clientID: DefaultClientID, logger: zap.NewNop(), set: map[string]bool{}}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	return c
}

// Brokers sets the seed brokers ("host[:port]"; the port defaults to 9092).
// Required by New; not allowed with NewFromClient. There is no default.
func Brokers(seeds ...string) Option {
	return func(c *config) {
		c.set["Brokers"] = true
		c.brokers = append(c.brokers, seeds...)
	}
}

// ClientOptions appends raw franz-go options (TLS, SASL, timeouts, ...) to
// the client New creates. They are applied after the options whippet
// derives, so they win on conflict: kgo.RequiredAcks or
// kgo.DisableIdempotentWrite weaken the delivery of replayed records. Not
// allowed with NewFromClient. The default is none.
func ClientOptions(opts ...kgo.Opt) Option {
	return func(c *config) {
		c.set["ClientOptions"] = true
		c.clientOpts = append(c.clientOpts, opts...)
	}
}

// ClientID sets the Kafka client.id (1 to 256 characters). The default is
// DefaultClientID ("whippet-dlq"). Not allowed with NewFromClient.
func ClientID(id string) Option {
	return func(c *config) {
		c.set["ClientID"] = true
		c.clientID = id
	}
}

// Logger sets the zap logger: replays and purges are logged at Info level
// and, for New, franz-go's own logs go through it too (kzap). The default
// is zap.NewNop(): no logging.
func Logger(l *zap.Logger) Option {
	return func(c *config) {
		c.set["Logger"] = true
		c.logger = l
	}
}

// clientLevel lists the options that configure the franz-go client itself.
var clientLevel = []string{"Brokers", "ClientID", "ClientOptions"}

// validate checks every value without network I/O and returns every
// violation joined.
func (c *config) validate(fromClient bool) error {
	errs := check.NewErrors("dlq", ErrInvalidConfig)
	if fromClient {
		for _, f := range clientLevel {
			if c.set[f] {
				errs.Add(f, "not allowed with NewFromClient; configure the *kgo.Client instead")
			}
		}
	} else {
		if len(c.brokers) == 0 {
			errs.Add("Brokers", "at least one seed broker is required")
		}
		for i, b := range c.brokers {
			if b == "" || strings.ContainsAny(b, " \t\r\n") {
				errs.Add(fmt.Sprintf("Brokers[%d]", i), "must be a non-empty host[:port] without spaces, got %q", b)
			} else if rule := check.SeedPortRule(b); rule != "" {
				errs.Add(fmt.Sprintf("Brokers[%d]", i), "%s, got %q", rule, b)
			}
		}
		if n := len(c.clientID); n == 0 || n > 256 {
			errs.Add("ClientID", "must be 1 to 256 characters, got %d", n)
		}
		for i, o := range c.clientOpts {
			if o == nil {
				errs.Add(fmt.Sprintf("ClientOptions[%d]", i), "must not be nil")
			}
		}
	}
	if c.logger == nil {
		errs.Add("Logger", "must not be nil (omit the option to disable logging)")
	}
	return errs.Err()
}

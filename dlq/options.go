package dlq

import (
	"errors"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/check"
	"github.com/whippet-go/whippet/internal/connect"
)

// ErrInvalidConfig is matched (with errors.Is) by every error New and
// NewFromClient return for a bad Connection field or option. The concrete
// errors are *ConfigError values naming the field and the rule, joined, e.g.
// "dlq: Connection.Brokers: at least one seed broker is required".
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

// Option configures a Client. There are none yet: New and NewFromClient
// take options so that later ones do not change their signatures.
type Option func(*config)

type config struct {
	conn whippet.Connection
}

func newConfig(conn whippet.Connection, opts []Option) config {
	c := config{conn: conn}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	return c
}

// validate checks every value without network I/O and returns every
// violation joined. fromClient is true for NewFromClient.
func (c *config) validate(fromClient bool) error {
	errs := check.NewErrors("dlq", ErrInvalidConfig)
	if !fromClient {
		connect.Validate(errs, c.conn)
		return errs.Err()
	}
	notFromClient := func(field string, set bool) {
		if set {
			errs.Add("Connection."+field, "not allowed with NewFromClient (only Logger and Registerer apply); configure the *kgo.Client instead")
		}
	}
	notFromClient("Brokers", len(c.conn.Brokers) > 0)
	notFromClient("TLS", c.conn.TLS != nil)
	notFromClient("SASL", c.conn.SASL != nil)
	notFromClient("ClientID", c.conn.ClientID != "")
	notFromClient("ClientOptions", len(c.conn.ClientOptions) > 0)
	return errs.Err()
}

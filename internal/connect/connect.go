// Package connect turns a whippet.Connection into franz-go options, the one
// way every whippet component builds its clients: validation with field
// names, TLS, SASL, logging through kzap and the Kafka client metrics under
// one naming scheme.
package connect

import (
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
	"github.com/twmb/franz-go/plugin/kzap"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/check"
)

// Validate records the connection's violations on v, each field named
// "Connection.<Field>".
func Validate(v *check.Errors, c whippet.Connection) {
	if len(c.Brokers) == 0 {
		v.Add("Connection.Brokers", "at least one seed broker is required")
	}
	for i, b := range c.Brokers {
		if b == "" || strings.ContainsAny(b, " \t\r\n") {
			v.Add(fmt.Sprintf("Connection.Brokers[%d]", i), "must be a non-empty host[:port] without spaces, got %q", b)
		} else if rule := check.SeedPortRule(b); rule != "" {
			v.Add(fmt.Sprintf("Connection.Brokers[%d]", i), "%s, got %q", rule, b)
		}
	}
	if n := len(c.ClientID); n > 256 {
		v.Add("Connection.ClientID", "must be at most 256 characters, got %d", n)
	}
	for i, o := range c.ClientOptions {
		if o == nil {
			v.Add(fmt.Sprintf("Connection.ClientOptions[%d]", i), "must not be nil")
		}
	}
}

// ClientID returns c's ClientID, or "whippet-<component>".
func ClientID(c whippet.Connection, component string) string {
	if c.ClientID != "" {
		return c.ClientID
	}
	return "whippet-" + component
}

// Logger returns c's Logger, or a no-op logger.
func Logger(c whippet.Connection) *zap.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return zap.NewNop()
}

// Client describes the franz-go client a component builds from a
// Connection.
type Client struct {
	// Opts are the options to create the client with (the component appends
	// its own before Extra).
	Opts []kgo.Opt
	// Extra are the user's ClientOptions: append them last.
	Extra []kgo.Opt
	// Metrics is the kprom hook when c.Registerer is set (already in Opts);
	// Register it once the client exists.
	Metrics *kprom.Metrics

	reg prometheus.Registerer
}

// New returns the options for a component's client: seeds, client id, TLS,
// SASL, kzap and, with a Registerer, the kprom hook.
func New(c whippet.Connection, component string) *Client {
	id := ClientID(c, component)
	cl := &Client{Extra: c.ClientOptions}
	cl.Opts = []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(id),
		kgo.WithLogger(kzap.New(Logger(c))),
	}
	if c.TLS != nil {
		cl.Opts = append(cl.Opts, kgo.DialTLSConfig(c.TLS.Clone()))
	}
	if c.SASL != nil {
		cl.Opts = append(cl.Opts, kgo.SASL(c.SASL))
	}
	if c.Registerer != nil {
		cl.reg = prometheus.WrapRegistererWith(prometheus.Labels{"component": component, "client_id": id}, c.Registerer)
		// With a nil registry kprom only builds its collectors; Register
		// registers them so that a clash is an error, not a panic.
		cl.Metrics = kprom.NewMetrics("whippet", kprom.Subsystem("kafka"), kprom.Registry(nil))
		cl.Opts = append(cl.Opts, kgo.WithHooks(cl.Metrics))
	}
	return cl
}

// ErrMetricsClash is wrapped by Register's error when another client of the
// same component and ClientID already registered its metrics.
var ErrMetricsClash = errors.New("Kafka client metrics already registered")

// Register registers the client metrics (if any) and returns a function that
// unregisters them.
func (cl *Client) Register() (unregister func(), err error) {
	if cl.Metrics == nil {
		return func() {}, nil
	}
	if err := cl.reg.Register(cl.Metrics); err != nil {
		return nil, fmt.Errorf("%w (components of one kind sharing a Registerer need distinct Connection.ClientID values): %w", ErrMetricsClash, err)
	}
	m, reg := cl.Metrics, cl.reg
	return func() { reg.Unregister(m) }, nil
}

// All returns Opts followed by extra (the component's own) and then the
// user's ClientOptions.
func (cl *Client) All(extra ...kgo.Opt) []kgo.Opt {
	out := make([]kgo.Opt, 0, len(cl.Opts)+len(extra)+len(cl.Extra))
	out = append(out, cl.Opts...)
	out = append(out, extra...)
	return append(out, cl.Extra...)
}

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
	// Base are the seeds, client id, TLS, SASL and logger options (no
	// metrics hook).
	Base []kgo.Opt
	// Extra are the user's ClientOptions: they go after the component's own.
	Extra []kgo.Opt
	// Metrics is the kprom hook when c.Registerer is set, nil otherwise; All
	// adds it. One kprom hook serves one client: a component's secondary
	// clients use Plain. Register it once the client exists.
	Metrics *kprom.Metrics

	reg             prometheus.Registerer
	component, name string
}

// New returns the options for a component's client: seeds, client id, TLS,
// SASL, kzap and, with a Registerer, the kprom hook. name tells this client
// from others of the same component in the metrics (a consumer's group, a
// store's name, a producer's client id): the metrics are
// whippet_kafka_*{component, name}.
func New(c whippet.Connection, component, name string) *Client {
	id := ClientID(c, component)
	cl := &Client{Extra: c.ClientOptions}
	cl.Base = []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(id),
		kgo.WithLogger(kzap.New(Logger(c))),
	}
	if c.TLS != nil {
		cl.Base = append(cl.Base, kgo.DialTLSConfig(c.TLS.Clone()))
	}
	if c.SASL != nil {
		cl.Base = append(cl.Base, kgo.SASL(c.SASL))
	}
	if c.Registerer != nil {
		cl.reg = prometheus.WrapRegistererWith(prometheus.Labels{"component": component, "name": name}, c.Registerer)
		cl.component, cl.name = component, name
		// With a nil registry kprom only builds its collectors; Register
		// registers them so that a clash is an error, not a panic.
		cl.Metrics = kprom.NewMetrics("whippet", kprom.Subsystem("kafka"), kprom.Registry(nil))
	}
	return cl
}

// ErrMetricsClash is wrapped by Register's error when another client of the
// same component and name already registered its metrics.
var ErrMetricsClash = errors.New("franz-go client metrics already registered")

// Register registers the client metrics (if any) and returns a function that
// unregisters them.
func (cl *Client) Register() (unregister func(), err error) {
	if cl.Metrics == nil {
		return func() {}, nil
	}
	if err := cl.reg.Register(cl.Metrics); err != nil {
		return nil, fmt.Errorf("%w for %s %q (two of a kind sharing a Registerer need distinct names): %w", ErrMetricsClash, cl.component, cl.name, err)
	}
	m, reg := cl.Metrics, cl.reg
	return func() { reg.Unregister(m) }, nil
}

// All returns the options of a component's main client: Base, the metrics
// hook (if any), extra (the component's own) and then the user's
// ClientOptions, which so win where they set the same thing.
func (cl *Client) All(extra ...kgo.Opt) []kgo.Opt {
	out := cl.Plain(extra...)
	if cl.Metrics != nil {
		out = append(out, kgo.WithHooks(cl.Metrics))
	}
	return out
}

// Plain is All without the metrics hook, for a component's secondary
// clients.
func (cl *Client) Plain(extra ...kgo.Opt) []kgo.Opt {
	out := make([]kgo.Opt, 0, len(cl.Base)+len(extra)+len(cl.Extra)+1)
	out = append(out, cl.Base...)
	out = append(out, extra...)
	return append(out, cl.Extra...)
}

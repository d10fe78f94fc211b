package dlq_test

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/testkit"
)

// TestEveryConfigErrorNamesItsField checks every option and method argument
// rule: the error is a *ConfigError, matches ErrInvalidConfig (options) or
// ErrInvalidArgument (arguments), names the field, says the rule, and comes
// before any connection to the broker.
func TestEveryConfigErrorNamesItsField(t *testing.T) {
	addr, conns := testkit.CountingListener(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c, err := dlq.New(whippet.Connection{Brokers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	newErr := func(conn whippet.Connection) error {
		c, err := dlq.New(conn)
		if err == nil {
			_ = c.Close(context.Background())
		}
		return err
	}
	fromErr := func(conn whippet.Connection) error {
		_, err := dlq.NewFromClient(cl, conn)
		return err
	}
	day := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	const notFromClient = "not allowed with NewFromClient (only Logger and Registerer apply)"
	cases := []struct {
		name     string
		err      error
		sentinel error
		field    string
		want     string
	}{
		// The Connection's rules are internal/connect's; one shows they are
		// applied and reported with the package prefix.
		{"no brokers", newErr(whippet.Connection{}), dlq.ErrInvalidConfig, "Connection.Brokers", "at least one seed broker is required"},
		{"brokers with a client", fromErr(whippet.Connection{Brokers: []string{"x:1"}}), dlq.ErrInvalidConfig, "Connection.Brokers", notFromClient},
		{"TLS with a client", fromErr(whippet.Connection{TLS: &tls.Config{}}), dlq.ErrInvalidConfig, "Connection.TLS", notFromClient},
		{"SASL with a client", fromErr(whippet.Connection{SASL: plain.Auth{User: "u", Pass: "p"}.AsMechanism()}), dlq.ErrInvalidConfig, "Connection.SASL", notFromClient},
		{"client id with a client", fromErr(whippet.Connection{ClientID: "x"}), dlq.ErrInvalidConfig, "Connection.ClientID", notFromClient},
		{"client options with a client", fromErr(whippet.Connection{ClientOptions: []kgo.Opt{kgo.ClientID("x")}}), dlq.ErrInvalidConfig, "Connection.ClientOptions", notFromClient},
		{"nil client", func() error { _, err := dlq.NewFromClient(nil, whippet.Connection{}); return err }(), dlq.ErrInvalidConfig, "client", "must not be nil"},
		{"list topic", errOf(c.List(ctx, "bad topic", dlq.Filter{})), dlq.ErrInvalidArgument, "dlqTopic", "must contain only ASCII letters"},
		{"list limit", errOf(c.List(ctx, "t-g-dlq", dlq.Filter{Limit: -1})), dlq.ErrInvalidArgument, "Filter.Limit", "must be >= 0, got -1"},
		{"list partitions", errOf(c.List(ctx, "t-g-dlq", dlq.Filter{Partitions: []int32{0, -2}})), dlq.ErrInvalidArgument, "Filter.Partitions", "must be >= 0, got -2"},
		{"list times", errOf(c.List(ctx, "t-g-dlq", dlq.Filter{Since: day, Until: day})), dlq.ErrInvalidArgument, "Filter.Until", "must be after Since (2026-05-01T00:00:00Z)"},
		{"list cursor", errOf(c.List(ctx, "t-g-dlq", dlq.Filter{Cursor: "0:1,0:2"})), dlq.ErrInvalidArgument, "Filter.Cursor", "partition 0 appears twice"},
		{"replay cursor", errOf(c.Replay(ctx, "t-g-dlq", dlq.Filter{Cursor: "x"})), dlq.ErrInvalidArgument, "Filter.Cursor", `malformed cursor "x"`},
		{"get position", errOf(c.Get(ctx, "t-g-dlq", -1, 3)), dlq.ErrInvalidArgument, "partition, offset", "must be >= 0, got -1 and 3"},
		{"purge topic", errOf(c.Purge(ctx, "", dlq.PurgeAll())), dlq.ErrInvalidArgument, "dlqTopic", "must not be empty"},
		{"purge scope", errOf(c.Purge(ctx, "t-g-dlq", dlq.PurgeBefore(time.Time{}))), dlq.ErrInvalidArgument, "scope", "must be PurgeAll() or PurgeBefore(t) with a non-zero t"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !errors.Is(tc.err, tc.sentinel) {
				t.Fatalf("%v does not match %v", tc.err, tc.sentinel)
			}
			var ce *dlq.ConfigError
			if !errors.As(tc.err, &ce) || ce.Field != tc.field || !strings.Contains(tc.err.Error(), "dlq: "+tc.field+": ") ||
				!strings.Contains(tc.err.Error(), tc.want) {
				t.Fatalf("error %q does not name %s with %q", tc.err, tc.field, tc.want)
			}
		})
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("%d connections: bad options and arguments must be reported before any network I/O", n)
	}
}

func errOf[T any](_ T, err error) error { return err }

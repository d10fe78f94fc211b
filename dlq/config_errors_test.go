package dlq_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

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
	c, err := dlq.New(dlq.Brokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	newErr := func(opts ...dlq.Option) error {
		c, err := dlq.New(opts...)
		if err == nil {
			c.Close()
		}
		return err
	}
	fromErr := func(opts ...dlq.Option) error {
		_, err := dlq.NewFromClient(cl, opts...)
		return err
	}
	ok := dlq.Brokers(addr)
	day := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		err      error
		sentinel error
		field    string
		want     string
	}{
		{"no brokers", newErr(), dlq.ErrInvalidConfig, "Brokers", "at least one seed broker is required"},
		{"empty broker", newErr(dlq.Brokers("")), dlq.ErrInvalidConfig, "Brokers[0]", `must be a non-empty host[:port] without spaces, got ""`},
		{"broker port", newErr(dlq.Brokers("kafka:0")), dlq.ErrInvalidConfig, "Brokers[0]", `the port must be a number from 1 to 65535, got "kafka:0"`},
		{"client id", newErr(ok, dlq.ClientID(strings.Repeat("c", 257))), dlq.ErrInvalidConfig, "ClientID", "must be 1 to 256 characters, got 257"},
		{"nil client option", newErr(ok, dlq.ClientOptions(nil)), dlq.ErrInvalidConfig, "ClientOptions[0]", "must not be nil"},
		{"nil logger", newErr(ok, dlq.Logger(nil)), dlq.ErrInvalidConfig, "Logger", "must not be nil"},
		{"brokers with a client", fromErr(dlq.Brokers("x:1")), dlq.ErrInvalidConfig, "Brokers", "not allowed with NewFromClient"},
		{"client id with a client", fromErr(dlq.ClientID("x")), dlq.ErrInvalidConfig, "ClientID", "not allowed with NewFromClient"},
		{"client options with a client", fromErr(dlq.ClientOptions()), dlq.ErrInvalidConfig, "ClientOptions", "not allowed with NewFromClient"},
		{"nil client", func() error { _, err := dlq.NewFromClient(nil); return err }(), dlq.ErrInvalidConfig, "client", "must not be nil"},
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

// A broker port franz-go cannot use is reported on Brokers, naming the
// entry, instead of surfacing as a rejected client configuration; a seed
// without a port (franz-go's default 9092) stays valid.
func TestBrokerPortErrorsNameTheEntry(t *testing.T) {
	for _, b := range []string{"kafka:0", "kafka:x", "kafka:65536"} {
		c, err := dlq.New(dlq.Brokers("ok:9092", b))
		if err == nil {
			c.Close()
			t.Fatalf("Brokers(%q) accepted", b)
		}
		var ce *dlq.ConfigError
		if !errors.Is(err, dlq.ErrInvalidConfig) || !errors.As(err, &ce) || ce.Field != "Brokers[1]" ||
			err.Error() != `dlq: Brokers[1]: the port must be a number from 1 to 65535, got "`+b+`"` {
			t.Fatalf("Brokers(%q): %v", b, err)
		}
	}
	for _, b := range []string{"kafka", "kafka:9092", "[::1]:9092"} {
		c, err := dlq.New(dlq.Brokers(b))
		if err != nil {
			t.Fatalf("Brokers(%q): %v", b, err)
		}
		c.Close()
	}
}

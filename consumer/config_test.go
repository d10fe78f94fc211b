package consumer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/retry"
)

var nopHandler = HandlerFunc(func(context.Context, *kgo.Record) error { return nil })

// conn is a valid Connection to nothing: New does no network I/O.
var conn = whippet.Connection{Brokers: []string{"127.0.0.1:1"}}

func TestConfigValidation(t *testing.T) {
	valid := []Option{Group("g"), Topics("t")}
	cases := []struct {
		name    string
		h       Handler
		opts    []Option
		field   string
		message string
	}{
		{"nil handler", nil, nil, "Handler", "must not be nil"},
		{"empty group", nopHandler, []Option{Group("")}, "Group", "must not be empty"},
		{"no topics", nopHandler, []Option{Group("g")}, "Topics", "at least one topic"},
		{"bad topic name", nopHandler, []Option{Topics("bad topic!")}, "Topics", `"bad topic!": must contain only ASCII letters, digits`},
		{"bad regex", nopHandler, []Option{TopicRegex("([")}, "TopicRegex", "does not compile"},
		{"bad reset offset", nopHandler, []Option{ResetOffset(StartOffset(7))}, "ResetOffset", "must be Earliest or Latest"},
		{"zero buffer", nopHandler, []Option{PartitionBuffer(0)}, "PartitionBuffer", "must be > 0, got 0"},
		{"negative buffer", nopHandler, []Option{PartitionBuffer(-3)}, "PartitionBuffer", "must be > 0, got -3"},
		{"zero concurrency", nopHandler, []Option{KeyParallel(0)}, "KeyParallel", "concurrency must be > 0, got 0"},
		{"negative concurrency", nopHandler, []Option{KeyParallel(-1)}, "KeyParallel", "concurrency must be > 0, got -1"},
		{"zero backpressure wait", nopHandler, []Option{BackpressureWait(0)}, "BackpressureWait", "must be > 0"},
		{"zero drain timeout", nopHandler, []Option{DrainTimeout(0)}, "DrainTimeout", "must be > 0"},
		{"negative commit interval", nopHandler, []Option{CommitInterval(-time.Second)}, "CommitInterval", "must be at least 100ms"},
		{"too short commit interval", nopHandler, []Option{CommitInterval(99 * time.Millisecond)}, "CommitInterval", "must be at least 100ms (franz-go's minimum), got 99ms"},
		{"session timeout below the broker's minimum", nopHandler, []Option{SessionTimeout(5 * time.Second)}, "SessionTimeout", "must be between 6s and 30m"},
		{"negative retry partitions", nopHandler, []Option{RetryPartitions(-1)}, "RetryPartitions", "must be ≥ 0 (0: as the source topic), got -1"},
		{"zero retry replication", nopHandler, []Option{RetryReplicationFactor(0)}, "RetryReplicationFactor", "must be -1 (broker default) or > 0, got 0"},
		{"bad retry topic config", nopHandler, []Option{RetryTopicConfig("retention ms", "1")}, "RetryTopicConfig", `"retention ms" is not a topic config name`},
		{"nil middleware", nopHandler, []Option{WithMiddleware(nil)}, "WithMiddleware", "middleware 0 is nil"},
		{"empty transactional id", nopHandler, []Option{Transactional("")}, "Transactional", "the transactional id must not be empty"},
		{"transactional key-parallel", nopHandler, []Option{Transactional("t-0"), KeyParallel(4)}, "KeyParallel", "cannot be combined with Transactional"},
		{"zero batch records", nopHandler, []Option{Transactional("t-0"), TransactionBatch(0, time.Second)}, "TransactionBatch", "maxRecords must be > 0, got 0"},
		{"zero batch interval", nopHandler, []Option{Transactional("t-0"), TransactionBatch(10, 0)}, "TransactionBatch", "maxInterval must be > 0"},
		{"batch interval over half the timeout", nopHandler, []Option{Transactional("t-0"), TransactionBatch(10, 30*time.Second)}, "TransactionBatch", "must be at most half the TransactionTimeout (40s)"},
		{"transaction timeout too long", nopHandler, []Option{Transactional("t-0"), TransactionTimeout(time.Hour)}, "TransactionTimeout", "must be between 1s and 15m"},
		{"endless blocking retries in a transaction", nopHandler, []Option{Transactional("t-0"), Retry(retry.BlockingBackoff(retry.Exponential{
			Initial: time.Second, Max: time.Minute, Multiplier: 2, Retries: retry.Forever}))}, "Retry", "blocking retries wait inside the open transaction, so they must end"},
		{"blocking retries longer than the transaction", nopHandler, []Option{Transactional("t-0"), Retry(retry.Blocking(10*time.Second, 15*time.Second))}, "Retry", "wait up to 25s inside the open transaction"},
		{"blocking retries of one topic in a transaction", nopHandler, []Option{Transactional("t-0"), RetryFor("t", retry.Blocking(time.Minute))}, "RetryFor", "t: blocking retries wait up to 1m0s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := append(append([]Option{}, valid...), tc.opts...)
			if tc.field == "Topics" && strings.Contains(tc.message, "at least") {
				opts = tc.opts // these cases need the valid value left out
			}
			c, err := New(conn, tc.h, opts...)
			if err == nil {
				t.Fatalf("New succeeded (%v); want an error about %s", c, tc.field)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not match ErrInvalidConfig", err)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Pkg != "consumer" {
				t.Errorf("error %v is not a consumer *ConfigError", err)
			}
			if !strings.Contains(err.Error(), tc.field+": ") || !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not name field %q with %q", err, tc.field, tc.message)
			}
		})
	}
}

func TestTransactionalConfigAccepted(t *testing.T) {
	for _, opts := range [][]Option{
		{Transactional("checkout-0")},
		{Transactional("checkout-0"), TransactionBatch(100, 50*time.Millisecond), TransactionTimeout(time.Minute)},
		{Transactional("checkout-0"), Retry(retry.BlockingThenNonBlocking(retry.Blocking(time.Second, 5*time.Second), retry.NonBlocking(time.Hour)))},
	} {
		c, err := New(conn, nopHandler, append([]Option{Group("g"), Topics("t")}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConfigValidationReportsEveryField(t *testing.T) {
	_, err := New(whippet.Connection{}, nil, PartitionBuffer(0), DrainTimeout(-1))
	for _, field := range []string{"Handler", "Connection.Brokers", "Group", "Topics", "PartitionBuffer", "DrainTimeout"} {
		if err == nil || !strings.Contains(err.Error(), field+": ") {
			t.Errorf("error %v does not name %s", err, field)
		}
	}
}

func TestValidConfigDoesNoNetworkIO(t *testing.T) {
	// Nothing listens on this port: New must still succeed, since it only validates.
	c, err := New(conn, nopHandler, Group("g"), Topics("t"), TopicRegex("^x"))
	if err == nil {
		t.Fatalf("mixing Topics and TopicRegex patterns is accepted only as regexes; got consumer %v", c)
	}
	c, err = New(conn, nopHandler, Group("g"), Topics("t"), KeyParallel(4))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(context.Background()); err != nil { // before Run: no goroutine, no I/O
		t.Fatal(err)
	}
	if err := c.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close = %v, want ErrClosed", err)
	}
}

func TestDuplicateMetricsRegistrationIsAConfigError(t *testing.T) {
	reg := prometheus.NewRegistry()
	conn := whippet.Connection{Brokers: []string{"127.0.0.1:1"}, Registerer: reg}
	opts := []Option{Group("g"), Topics("t")}
	if _, err := New(conn, nopHandler, opts...); err != nil {
		t.Fatal(err)
	}
	_, err := New(conn, nopHandler, opts...)
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "consumer: Connection.Registerer: ") {
		t.Fatalf("second consumer of group g on one registry: %v, want a Registerer config error", err)
	}
}

// TestNilOptionIsIgnored checks that New and NewBatch skip a nil Option, as
// every other constructor of whippet does (an option chosen at run time
// may be nil), rather than panicking on it.
func TestNilOptionIsIgnored(t *testing.T) {
	c, err := New(conn, nopHandler, nil, Group("g"), Topics("t"), nil)
	if err != nil {
		t.Fatalf("New with nil options: %v", err)
	}
	if c.Group() != "g" {
		t.Errorf("group %q, want g: the options around the nil ones were not applied", c.Group())
	}
	bh := BatchHandlerFunc(func(context.Context, []*kgo.Record) error { return nil })
	if _, err := NewBatch(conn, bh, Group("g"), nil, Topics("t")); err != nil {
		t.Fatalf("NewBatch with a nil option: %v", err)
	}
}

package consumer_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// configErrors returns the *ConfigError leaves of a (joined) error, and
// fails the test if any leaf is something else (a network error, say).
func configErrors(t *testing.T, err error) []*consumer.ConfigError {
	t.Helper()
	var out []*consumer.ConfigError
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, c := range j.Unwrap() {
				walk(c)
			}
			return
		}
		var ce *consumer.ConfigError
		if !errors.As(e, &ce) {
			t.Errorf("%v is not a *consumer.ConfigError", e)
			return
		}
		out = append(out, ce)
	}
	walk(err)
	return out
}

var okHandler = consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil })

// TestEveryConfigErrorNamesItsField feeds each option an invalid value and
// checks that New reports it, before any network I/O, as a *ConfigError
// matching ErrInvalidConfig whose Field is the option and whose message
// says what is wrong with the value given.
func TestEveryConfigErrorNamesItsField(t *testing.T) {
	brokerAddr, conns := testkit.CountingListener(t)
	long := strings.Repeat("g", 240)
	exp := func(mut func(*retry.Exponential)) retry.Policy {
		e := retry.Exponential{Initial: time.Second, Max: time.Minute, Multiplier: 2, Retries: 3}
		mut(&e)
		return retry.BlockingBackoff(e)
	}
	cases := []struct {
		name  string
		h     consumer.Handler
		opts  []consumer.Option
		field string
		want  string
	}{
		{"nil handler", nil, nil, "Handler", "must not be nil"},
		// The Connection's rules are internal/connect's; one of them, with
		// the consumer's prefix:
		{"no brokers", okHandler, nil, "Connection.Brokers", "at least one seed broker is required"},
		{"empty group", okHandler, []consumer.Option{consumer.Group("")}, "Group", "must not be empty"},
		{"group making invalid topic names", okHandler, []consumer.Option{consumer.Group("billing service")}, "Group",
			`"billing service" makes the retry or dead-letter topic "orders-billing service-dlq" an invalid topic name`},
		{"group making too long topic names", okHandler, []consumer.Option{consumer.Group(long)}, "Group", "must be at most 249 characters"},
		{"no topics", okHandler, []consumer.Option{consumer.Topics()}, "Topics", "at least one topic"},
		{"invalid topic", okHandler, []consumer.Option{consumer.Topics("orders", "or ders")}, "Topics", `"or ders": must contain only`},
		{"topics and regex", okHandler, []consumer.Option{consumer.Topics("orders"), consumer.TopicRegex("^o")}, "Topics", "cannot be combined with TopicRegex"},
		{"bad regex", okHandler, []consumer.Option{consumer.TopicRegex("(")}, "TopicRegex", `"(" does not compile`},
		{"reset offset", okHandler, []consumer.Option{consumer.ResetOffset(consumer.StartOffset(9))}, "ResetOffset", "must be Earliest or Latest, got StartOffset(9)"},
		{"partition buffer", okHandler, []consumer.Option{consumer.PartitionBuffer(0)}, "PartitionBuffer", "must be > 0, got 0"},
		{"key concurrency", okHandler, []consumer.Option{consumer.KeyParallel(0)}, "KeyParallel", "concurrency must be > 0, got 0"},
		{"backpressure wait", okHandler, []consumer.Option{consumer.BackpressureWait(-time.Second)}, "BackpressureWait", "must be > 0, got -1s"},
		{"drain timeout", okHandler, []consumer.Option{consumer.DrainTimeout(0)}, "DrainTimeout", "must be > 0, got 0s"},
		{"session timeout too short", okHandler, []consumer.Option{consumer.SessionTimeout(3 * time.Second)}, "SessionTimeout", "must be between 6s and 30m"},
		{"session timeout too long", okHandler, []consumer.Option{consumer.SessionTimeout(time.Hour)}, "SessionTimeout", "got 1h0m0s"},
		{"commit interval", okHandler, []consumer.Option{consumer.CommitInterval(time.Millisecond)}, "CommitInterval", "must be at least 100ms (franz-go's minimum), got 1ms"},
		{"nil middleware", okHandler, []consumer.Option{consumer.WithMiddleware(nil)}, "WithMiddleware", "middleware 0 is nil"},
		{"retry topic partitions", okHandler, []consumer.Option{consumer.RetryPartitions(-1)}, "RetryPartitions", "must be ≥ 0 (0: as the source topic), got -1"},
		{"retry topic replication", okHandler, []consumer.Option{consumer.RetryReplicationFactor(0)}, "RetryReplicationFactor", "must be -1 (broker default) or > 0, got 0"},
		{"retry topic config", okHandler, []consumer.Option{consumer.RetryTopicConfig("", "1")}, "RetryTopicConfig", `"" is not a topic config name`},
		{"retry for another topic", okHandler, []consumer.Option{consumer.RetryFor("payments", retry.Blocking(time.Second))}, "RetryFor", `"payments" is not one of the subscribed Topics`},
		{"retry for with regex", okHandler, []consumer.Option{consumer.Topics(), consumer.TopicRegex("^o"), consumer.RetryFor("orders", retry.NoRetry())}, "RetryFor", "orders: cannot be combined with TopicRegex"},
		{"non-blocking with regex and latest", okHandler, []consumer.Option{consumer.TopicRegex("^o"), consumer.ResetOffset(consumer.Latest), consumer.Retry(retry.NonBlocking(time.Second))}, "ResetOffset", "Latest cannot be combined with TopicRegex and non-blocking retries"},
		{"non-blocking with regex ending inside", okHandler, []consumer.Option{consumer.TopicRegex("^o$x"), consumer.Retry(retry.NonBlocking(time.Second))}, "TopicRegex", `"^o$x": with non-blocking retries, $ (the end of the name) may only end the pattern`},
		// Retry policies: the error names the policy's field.
		{"blocking without intervals", okHandler, []consumer.Option{consumer.Retry(retry.Blocking())}, "Retry", "Blocking needs at least one interval"},
		{"negative blocking interval", okHandler, []consumer.Option{consumer.Retry(retry.Blocking(time.Second, -time.Second))}, "Retry", "Blocking interval 1 must be ≥ 0, got -1s"},
		{"negative non-blocking interval", okHandler, []consumer.Option{consumer.Retry(retry.NonBlocking(-time.Minute))}, "Retry", "NonBlocking interval 0 must be ≥ 0, got -1m0s"},
		{"nil predicate", okHandler, []consumer.Option{consumer.Retry(retry.NoRetry().NonRetriableIf(nil))}, "Retry", "NonRetriableIf predicate 0 is nil"},
		{"exponential initial", okHandler, []consumer.Option{consumer.Retry(exp(func(e *retry.Exponential) { e.Initial = 0 }))}, "Retry", "Exponential.Initial must be > 0, got 0s"},
		{"exponential max", okHandler, []consumer.Option{consumer.Retry(exp(func(e *retry.Exponential) { e.Max = time.Millisecond }))}, "Retry", "Exponential.Max must be ≥ Initial (1s), got 1ms"},
		{"exponential multiplier", okHandler, []consumer.Option{consumer.Retry(exp(func(e *retry.Exponential) { e.Multiplier = 0.5 }))}, "Retry", "Exponential.Multiplier must be ≥ 1, got 0.5"},
		{"exponential jitter", okHandler, []consumer.Option{consumer.Retry(exp(func(e *retry.Exponential) { e.Jitter = 1 }))}, "Retry", "Exponential.Jitter must be in [0, 1), got 1"},
		{"exponential retries", okHandler, []consumer.Option{consumer.Retry(exp(func(e *retry.Exponential) { e.Retries = 0 }))}, "Retry", "Exponential.Retries must be > 0 or Forever, got 0"},
		{"bad policy of one topic", okHandler, []consumer.Option{consumer.RetryFor("orders", retry.NonBlocking(-1))}, "RetryFor", "orders: NonBlocking interval 0 must be ≥ 0"},
		// Transactional mode.
		{"empty transactional id", okHandler, []consumer.Option{consumer.Transactional("")}, "Transactional", "the transactional id must not be empty"},
		{"transactional key-parallel", okHandler, []consumer.Option{consumer.Transactional("x-0"), consumer.KeyParallel(2)}, "KeyParallel", "cannot be combined with Transactional"},
		{"transaction records", okHandler, []consumer.Option{consumer.Transactional("x-0"), consumer.TransactionBatch(-1, time.Second)}, "TransactionBatch", "maxRecords must be > 0, got -1"},
		{"transaction interval", okHandler, []consumer.Option{consumer.Transactional("x-0"), consumer.TransactionBatch(1, 0)}, "TransactionBatch", "maxInterval must be > 0, got 0s"},
		{"transaction timeout", okHandler, []consumer.Option{consumer.Transactional("x-0"), consumer.TransactionTimeout(time.Millisecond)}, "TransactionTimeout", "must be between 1s and 15m"},
		{"health poll limit", okHandler, []consumer.Option{consumer.HealthPollLimit(100 * time.Millisecond)}, "HealthPollLimit", "must be more than BackpressureWait (500ms)"},
		{"health poll limit in transactions", okHandler, []consumer.Option{consumer.Transactional("x-0"), consumer.HealthPollLimit(10 * time.Second)}, "HealthPollLimit", "must be at least the TransactionTimeout (40s)"},
		{"health blocked limit", okHandler, []consumer.Option{consumer.HealthBlockedLimit(0)}, "HealthBlockedLimit", "must be > 0, got 0s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn := whippet.Connection{Brokers: []string{brokerAddr}}
			opts := append([]consumer.Option{consumer.Group("g"), consumer.Topics("orders")}, tc.opts...)
			switch tc.field {
			case "Connection.Brokers":
				conn.Brokers = nil
			case "Group":
				opts = append([]consumer.Option{consumer.Topics("orders")}, tc.opts...)
			case "Topics":
				opts = append([]consumer.Option{consumer.Group("g")}, tc.opts...)
			}
			c, err := consumer.New(conn, tc.h, opts...)
			if err == nil {
				c.Close(context.Background())
				t.Fatalf("New accepted %s", tc.name)
			}
			if !errors.Is(err, consumer.ErrInvalidConfig) {
				t.Errorf("%v does not match ErrInvalidConfig", err)
			}
			found := false
			for _, ce := range configErrors(t, err) {
				if ce.Pkg != "consumer" {
					t.Errorf("%v: package %q", ce, ce.Pkg)
				}
				if ce.Field == tc.field && strings.Contains(ce.Error(), "consumer: "+tc.field+": ") && strings.Contains(ce.Error(), tc.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("error does not name %s with %q:\n%v", tc.field, tc.want, err)
			}
		})
	}
	if n := conns.Load(); n != 0 {
		t.Fatalf("%d connections to the broker: configs must be validated before any network I/O", n)
	}
	// Control: a client that does talk to the address is counted.
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokerAddr))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = cl.Ping(ctx)
	cl.Close()
	if conns.Load() == 0 {
		t.Fatal("the listener did not see a client that connected: it proves nothing")
	}
}

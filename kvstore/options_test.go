package kvstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/kvstore"
)

// Every bad value is reported before any network I/O (the broker address
// below would never answer), as a *ConfigError naming its field.
func TestOpenValidatesOptions(t *testing.T) {
	const noBroker = "127.0.0.1:1"
	cases := []struct {
		name   string
		topic  string
		keys   codec.Codec[string]
		values codec.Codec[Value]
		opts   []kvstore.Option
		field  string
		rule   string
	}{
		{"no brokers", "t", codec.String(), codec.JSON[Value](), nil, "Brokers", "at least one"},
		{"bad broker", "t", codec.String(), codec.JSON[Value](), []kvstore.Option{kvstore.Brokers("nohostport")}, "Brokers", "not host:port"},
		{"bad port", "t", codec.String(), codec.JSON[Value](), []kvstore.Option{kvstore.Brokers("h:99999")}, "Brokers", "invalid port"},
		{"empty topic", "", codec.String(), codec.JSON[Value](), nil, "topic", "must not be empty"},
		{"bad topic", "a b", codec.String(), codec.JSON[Value](), nil, "topic", "only ASCII"},
		{"nil keys", "t", nil, codec.JSON[Value](), nil, "keys", "must not be nil"},
		{"nil values", "t", codec.String(), nil, nil, "values", "must not be nil"},
		{"partitions", "t", codec.String(), codec.JSON[Value](), []kvstore.Option{kvstore.Partitions(0)}, "Partitions", "got 0"},
		{"replication", "t", codec.String(), codec.JSON[Value](), []kvstore.Option{kvstore.ReplicationFactor(-2)}, "ReplicationFactor", "got -2"},
		{"topic config name", "t", codec.String(), codec.JSON[Value](), []kvstore.Option{kvstore.TopicConfig("", "x")}, "TopicConfig", "not a topic config"},
		{"delete policy", "t", codec.String(), codec.JSON[Value](), []kvstore.Option{kvstore.TopicConfig("cleanup.policy", "delete")}, "TopicConfig", "would not compact"},
		{"nil logger", "t", codec.String(), codec.JSON[Value](), []kvstore.Option{kvstore.Logger(nil)}, "Logger", "must not be nil"},
		{"nil registerer", "t", codec.String(), codec.JSON[Value](), []kvstore.Option{kvstore.Registerer(nil)}, "Registerer", "must not be nil"},
		{"client id", "t", codec.String(), codec.JSON[Value](), []kvstore.Option{kvstore.ClientID("")}, "ClientID", "1 to 256"},
		{"nil client option", "t", codec.String(), codec.JSON[Value](), []kvstore.Option{kvstore.ClientOptions(nil)}, "ClientOptions[0]", "must not be nil"},
		{"name", "t", codec.String(), codec.JSON[Value](), []kvstore.Option{kvstore.Name("\xff")}, "Name", "UTF-8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := c.opts
			if c.field != "Brokers" {
				opts = append([]kvstore.Option{kvstore.Brokers(noBroker)}, opts...)
			}
			start := time.Now()
			s, err := kvstore.Open(context.Background(), c.topic, c.keys, c.values, opts...)
			if err == nil {
				_ = s.Close()
				t.Fatal("no error")
			}
			if time.Since(start) > time.Second {
				t.Errorf("took %v: validation must not wait for the network", time.Since(start))
			}
			var ce *kvstore.ConfigError
			if !errors.Is(err, kvstore.ErrInvalidConfig) || !errors.As(err, &ce) {
				t.Fatalf("%v is not a ConfigError matching ErrInvalidConfig", err)
			}
			if ce.Field != c.field || !strings.Contains(ce.Rule, c.rule) {
				t.Fatalf("got field %q rule %q, want %q containing %q", ce.Field, ce.Rule, c.field, c.rule)
			}
			if !strings.HasPrefix(err.Error(), "kvstore: "+c.field+": ") {
				t.Fatalf("message %q does not name the field", err)
			}
		})
	}
}

// All violations are reported at once, and the valid options are accepted
// (AllowNotCompacted lets TopicConfig set another cleanup.policy).
func TestOpenReportsEveryViolation(t *testing.T) {
	_, err := kvstore.Open[string, Value](context.Background(), "", nil, nil, kvstore.Partitions(-5))
	msg := err.Error()
	for _, f := range []string{"topic", "keys", "values", "Brokers", "Partitions"} {
		if !strings.Contains(msg, "kvstore: "+f+": ") {
			t.Errorf("%q does not report %s", msg, f)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	// Valid options: Open gets past validation and fails on the network.
	_, err = kvstore.Open(ctx, "t", codec.String(), codec.JSON[Value](),
		kvstore.Brokers("127.0.0.1:1"), kvstore.AllowNotCompacted(true), kvstore.TopicConfig("cleanup.policy", "delete"),
		kvstore.Name("n"), kvstore.Partitions(3), kvstore.ReplicationFactor(3), kvstore.CreateTopic(false),
		kvstore.AwaitApplied(false), kvstore.Logger(zap.NewNop()), kvstore.Registerer(prometheus.NewRegistry()),
		kvstore.ClientID("c"), kvstore.ClientOptions(kgo.RetryTimeout(50*time.Millisecond)),
		kvstore.OnDecodeError(func(*kgo.Record, error) {}))
	if err == nil || errors.Is(err, kvstore.ErrInvalidConfig) {
		t.Fatalf("valid options: %v", err)
	}
}

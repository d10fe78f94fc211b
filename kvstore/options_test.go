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

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/kvstore"
)

// Every bad value is reported before any network I/O (the broker address
// below would never answer), as a *ConfigError naming its field.
func TestOpenValidatesOptions(t *testing.T) {
	const noBroker = "127.0.0.1:1"
	ok := whippet.Connection{Brokers: []string{noBroker}}
	cases := []struct {
		name   string
		conn   whippet.Connection
		topic  string
		keys   codec.Codec[string]
		values codec.Codec[Value]
		opts   []kvstore.Option
		field  string
		rule   string
	}{
		{"no brokers", whippet.Connection{}, "t", codec.String(), codec.JSON[Value](), nil, "Connection.Brokers", "at least one"},
		{"bad broker", whippet.Connection{Brokers: []string{"no host"}}, "t", codec.String(), codec.JSON[Value](), nil, "Connection.Brokers[0]", "without spaces"},
		{"bad port", whippet.Connection{Brokers: []string{"h:99999"}}, "t", codec.String(), codec.JSON[Value](), nil, "Connection.Brokers[0]", "port must be"},
		{"empty topic", ok, "", codec.String(), codec.JSON[Value](), nil, "topic", "must not be empty"},
		{"bad topic", ok, "a b", codec.String(), codec.JSON[Value](), nil, "topic", "only ASCII"},
		{"nil keys", ok, "t", nil, codec.JSON[Value](), nil, "keys", "must not be nil"},
		{"nil values", ok, "t", codec.String(), nil, nil, "values", "must not be nil"},
		{"partitions", ok, "t", codec.String(), codec.JSON[Value](), []kvstore.Option{kvstore.Partitions(0)}, "Partitions", "got 0"},
		{"replication", ok, "t", codec.String(), codec.JSON[Value](), []kvstore.Option{kvstore.ReplicationFactor(-2)}, "ReplicationFactor", "got -2"},
		{"topic config name", ok, "t", codec.String(), codec.JSON[Value](), []kvstore.Option{kvstore.TopicConfig("", "x")}, "TopicConfig", "not a topic config"},
		{"delete policy", ok, "t", codec.String(), codec.JSON[Value](), []kvstore.Option{kvstore.TopicConfig("cleanup.policy", "delete")}, "TopicConfig", "would not compact"},
		{"nil client option", whippet.Connection{Brokers: []string{noBroker}, ClientOptions: []kgo.Opt{nil}}, "t", codec.String(), codec.JSON[Value](), nil, "Connection.ClientOptions[0]", "must not be nil"},
		{"name", ok, "t", codec.String(), codec.JSON[Value](), []kvstore.Option{kvstore.Name("\xff")}, "Name", "UTF-8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			s, err := kvstore.Open(context.Background(), c.conn, c.topic, c.keys, c.values, c.opts...)
			if err == nil {
				_ = s.Close(context.Background())
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
	_, err := kvstore.Open[string, Value](context.Background(), whippet.Connection{}, "", nil, nil, kvstore.Partitions(-5))
	msg := err.Error()
	for _, f := range []string{"topic", "keys", "values", "Connection.Brokers", "Partitions"} {
		if !strings.Contains(msg, "kvstore: "+f+": ") {
			t.Errorf("%q does not report %s", msg, f)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	// Valid options: Open gets past validation and fails on the network.
	_, err = kvstore.Open(ctx, whippet.Connection{Brokers: []string{"127.0.0.1:1"}, Logger: zap.NewNop(), Registerer: prometheus.NewRegistry(), ClientID: "c", ClientOptions: []kgo.Opt{kgo.RetryTimeout(50 * time.Millisecond)}}, "t", codec.String(), codec.JSON[Value](), kvstore.AllowNotCompacted(true), kvstore.TopicConfig("cleanup.policy", "delete"),
		kvstore.Name("n"), kvstore.Partitions(3), kvstore.ReplicationFactor(3), kvstore.CreateTopic(false),
		kvstore.AwaitApplied(false),
		kvstore.OnDecodeError(func(*kgo.Record, error) {}))
	if err == nil || errors.Is(err, kvstore.ErrInvalidConfig) {
		t.Fatalf("valid options: %v", err)
	}
}

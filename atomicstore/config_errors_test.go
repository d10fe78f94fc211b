package atomicstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/testkit"
)

// TestEveryConfigErrorNamesItsField feeds Open and NewProcessor each invalid
// option and argument: the error is a *ConfigError matching
// ErrInvalidConfig that names the field and the rule, and it comes before
// any connection (Open gets a short context, so a network attempt would end
// in a different error).
func TestEveryConfigErrorNamesItsField(t *testing.T) {
	addr, conns := testkit.CountingListener(t)
	ok := atomicstore.Brokers(addr)
	cases := []struct {
		name      string
		storeName string
		opts      []atomicstore.Option
		processor bool // NewProcessor only
		field     string
		want      string
	}{
		{"empty name", "", []atomicstore.Option{ok}, false, "name", "must not be empty"},
		{"invalid name", "my store", []atomicstore.Option{ok}, false, "name", "must contain only ASCII letters"},
		{"name too long for the topics", strings.Repeat("n", 245), []atomicstore.Option{ok}, false, "name", "must be at most 249 characters"},
		{"name too long for the processor's dead letters", strings.Repeat("n", 113), []atomicstore.Option{ok}, true, "name", "must be at most 112 characters"},
		{"no brokers", "s", nil, false, "Brokers", "at least one seed broker is required"},
		{"broker without port", "s", []atomicstore.Option{atomicstore.Brokers("kafka")}, false, "Brokers", `"kafka" is not host:port`},
		{"broker port", "s", []atomicstore.Option{atomicstore.Brokers("kafka:70000")}, false, "Brokers", `"kafka:70000" has an invalid port`},
		{"partitions", "s", []atomicstore.Option{ok, atomicstore.Partitions(0)}, false, "Partitions", "must be at least 1, got 0"},
		{"replication", "s", []atomicstore.Option{ok, atomicstore.ReplicationFactor(0)}, false, "ReplicationFactor", "must be -1 (broker default) or at least 1, got 0"},
		{"update timeout", "s", []atomicstore.Option{ok, atomicstore.UpdateTimeout(0)}, false, "UpdateTimeout", "must be positive, got 0s"},
		{"load timeout", "s", []atomicstore.Option{ok, atomicstore.LoadTimeout(-time.Second)}, false, "LoadTimeout", "must be positive, got -1s"},
		{"nil logger", "s", []atomicstore.Option{ok, atomicstore.Logger(nil)}, false, "Logger", "must not be nil"},
		{"dedup window", "s", []atomicstore.Option{ok, atomicstore.DedupWindow(-1)}, false, "DedupWindow", "must be 0 (off) or more, got -1"},
		{"nil client option", "s", []atomicstore.Option{ok, atomicstore.ClientOptions(kgo.ClientID("x"), nil)}, false, "ClientOptions", "option 1 is nil"},
		{"output topic", "s", []atomicstore.Option{ok, atomicstore.OutputTopics("ok", "not ok")}, false, "OutputTopics", `"not ok": must contain only`},
		{"transaction batch records", "s", []atomicstore.Option{ok, atomicstore.TransactionalID("p-0"), atomicstore.TransactionBatch(-1, time.Second)}, true,
			"TransactionBatch", "maxRecords and maxInterval must be > 0, got -1 and 1s"},
		{"transaction batch interval", "s", []atomicstore.Option{ok, atomicstore.TransactionalID("p-0"), atomicstore.TransactionBatch(10, 0)}, true,
			"TransactionBatch", "maxRecords and maxInterval must be > 0, got 10 and 0s"},
		{"no transactional id", "s", []atomicstore.Option{ok}, true, "TransactionalID", "is required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			errs := map[string]error{}
			if !tc.processor {
				s, err := atomicstore.Open(ctx, tc.storeName, codec.String(), atomicstore.Int64(), tc.opts...)
				if err == nil {
					s.Close()
				}
				errs["Open"] = err
			}
			opts := tc.opts
			if tc.field != "TransactionalID" {
				opts = append([]atomicstore.Option{atomicstore.TransactionalID("p-0")}, opts...)
			}
			_, errs["NewProcessor"] = atomicstore.NewProcessor(tc.storeName, codec.String(), atomicstore.Int64(), opts...)
			for fn, err := range errs {
				if !errors.Is(err, atomicstore.ErrInvalidConfig) {
					t.Fatalf("%s: %v does not match ErrInvalidConfig", fn, err)
				}
				var ce *atomicstore.ConfigError
				if !errors.As(err, &ce) || !strings.Contains(err.Error(), "atomicstore: "+tc.field+": ") || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("%s: error %q does not name %s with %q", fn, err, tc.field, tc.want)
				}
			}
		})
	}
	t.Run("nil codecs", func(t *testing.T) {
		_, err := atomicstore.Open[string, int64](context.Background(), "s", nil, nil, ok)
		for _, want := range []string{"atomicstore: keys: the key codec must not be nil", "atomicstore: values: the value codec must not be nil"} {
			if !errors.Is(err, atomicstore.ErrInvalidConfig) || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v lacks %q", err, want)
			}
		}
	})
	if n := conns.Load(); n != 0 {
		t.Fatalf("%d connections: options must be validated before any network I/O", n)
	}
}

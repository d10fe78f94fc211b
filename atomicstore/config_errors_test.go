package atomicstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/whippet-go/whippet"
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
	ok := whippet.Connection{Brokers: []string{addr}}
	cases := []struct {
		name      string
		conn      whippet.Connection
		storeName string
		opts      []atomicstore.Option
		processor bool // NewProcessor only
		field     string
		want      string
	}{
		{"empty name", ok, "", nil, false, "name", "must not be empty"},
		{"invalid name", ok, "my store", nil, false, "name", "must contain only ASCII letters"},
		{"name too long for the topics", ok, strings.Repeat("n", 245), nil, false, "name", "must be at most 249 characters"},
		{"name too long for the processor's dead letters", ok, strings.Repeat("n", 113), nil, true, "name", "must be at most 112 characters"},
		// One Connection error: the Connection's rules are connect's
		// (internal/connect), reported with this package's prefix.
		{"no brokers", whippet.Connection{}, "s", nil, false, "Connection.Brokers", "at least one seed broker is required"},
		{"partitions", ok, "s", []atomicstore.Option{atomicstore.Partitions(0)}, false, "Partitions", "must be at least 1, got 0"},
		{"replication", ok, "s", []atomicstore.Option{atomicstore.ReplicationFactor(0)}, false, "ReplicationFactor", "must be -1 (broker default) or at least 1, got 0"},
		{"update timeout", ok, "s", []atomicstore.Option{atomicstore.UpdateTimeout(0)}, false, "UpdateTimeout", "must be positive, got 0s"},
		{"load timeout", ok, "s", []atomicstore.Option{atomicstore.LoadTimeout(-time.Second)}, false, "LoadTimeout", "must be positive, got -1s"},
		{"dedup window", ok, "s", []atomicstore.Option{atomicstore.DedupWindow(-1)}, false, "DedupWindow", "must be 0 (off) or more, got -1"},
		{"output topic", ok, "s", []atomicstore.Option{atomicstore.OutputTopics("ok", "not ok")}, false, "OutputTopics", `"not ok": must contain only`},
		{"transaction batch records", ok, "s", []atomicstore.Option{atomicstore.TransactionBatch(-1, time.Second)}, true,
			"TransactionBatch", "maxRecords and maxInterval must be > 0, got -1 and 1s"},
		{"transaction batch interval", ok, "s", []atomicstore.Option{atomicstore.TransactionBatch(10, 0)}, true,
			"TransactionBatch", "maxRecords and maxInterval must be > 0, got 10 and 0s"},
		{"no transactional id", ok, "s", nil, true, "TransactionalID", "is required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			errs := map[string]error{}
			if !tc.processor {
				s, err := atomicstore.Open(ctx, tc.conn, tc.storeName, codec.String(), atomicstore.Int64(), tc.opts...)
				if err == nil {
					_ = s.Close(ctx)
				}
				errs["Open"] = err
			}
			opts := tc.opts
			if tc.field != "TransactionalID" {
				opts = append([]atomicstore.Option{atomicstore.TransactionalID("p-0")}, opts...)
			}
			_, errs["NewProcessor"] = atomicstore.NewProcessor(tc.conn, tc.storeName, codec.String(), atomicstore.Int64(), opts...)
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
		_, err := atomicstore.Open[string, int64](context.Background(), ok, "s", nil, nil)
		for _, want := range []string{"atomicstore: keys: the key codec must not be nil", "atomicstore: values: the value codec must not be nil"} {
			if !errors.Is(err, atomicstore.ErrInvalidConfig) || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v lacks %q", err, want)
			}
		}
	})
	t.Run("metrics clash", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		conn := ok
		conn.Registerer = reg
		p1, err := atomicstore.NewProcessor(conn, "s", codec.String(), atomicstore.Int64(), atomicstore.TransactionalID("p-0"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = atomicstore.NewProcessor(conn, "s", codec.String(), atomicstore.Int64(), atomicstore.TransactionalID("p-1"))
		if !errors.Is(err, atomicstore.ErrInvalidConfig) || !strings.Contains(err.Error(), `atomicstore: Connection.Registerer: metrics for store "s" are already registered`) {
			t.Fatalf("a second processor of one name on one Registerer: %v", err)
		}
		// Another name is fine; Close releases the name.
		p2, err := atomicstore.NewProcessor(conn, "t", codec.String(), atomicstore.Int64(), atomicstore.TransactionalID("p-2"))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []*atomicstore.Processor[string, int64]{p1, p2} {
			if err := p.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		p3, err := atomicstore.NewProcessor(conn, "s", codec.String(), atomicstore.Int64(), atomicstore.TransactionalID("p-0"))
		if err != nil {
			t.Fatalf("after Close: %v", err)
		}
		if err := p3.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := p3.Run(context.Background()); !errors.Is(err, atomicstore.ErrClosed) {
			t.Fatalf("Run after Close: %v, want ErrClosed", err)
		}
	})
	if n := conns.Load(); n != 0 {
		t.Fatalf("%d connections: options must be validated before any network I/O", n)
	}
}

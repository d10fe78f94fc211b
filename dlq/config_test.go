package dlq_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/retry"
)

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		new  func() (*dlq.Client, error)
		want []string
	}{
		{"no brokers", func() (*dlq.Client, error) { return dlq.New(whippet.Connection{}) },
			[]string{"dlq: Connection.Brokers: at least one seed broker is required"}},
		{"from nil client", func() (*dlq.Client, error) {
			return dlq.NewFromClient(nil, whippet.Connection{Brokers: []string{"x:1"}, ClientID: "x"})
		}, []string{"dlq: client: must not be nil", "dlq: Connection.Brokers: not allowed with NewFromClient",
			"dlq: Connection.ClientID: not allowed with NewFromClient"}},
	} {
		c, err := tc.new()
		if c != nil || !errors.Is(err, dlq.ErrInvalidConfig) {
			t.Errorf("%s: %v, %v; want ErrInvalidConfig", tc.name, c, err)
			continue
		}
		var ce *dlq.ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%s: %T is not a *ConfigError", tc.name, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", tc.name, err, w)
			}
		}
	}
}

func TestArgumentErrors(t *testing.T) {
	c, err := dlq.New(whippet.Connection{Brokers: []string{"127.0.0.1:1"}}) // never contacted: arguments are checked first
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	ctx := context.Background()
	now := time.Now()
	for _, tc := range []struct {
		topic string
		f     dlq.Filter
		want  string
	}{
		{"", dlq.Filter{}, "dlq: dlqTopic: must not be empty"},
		{"a b", dlq.Filter{}, "dlq: dlqTopic: must contain only"},
		{"t-dlq", dlq.Filter{Limit: -1}, "dlq: Filter.Limit: must be >= 0, got -1"},
		{"t-dlq", dlq.Filter{Cursor: "zz"}, "dlq: Filter.Cursor: malformed cursor"},
		{"t-dlq", dlq.Filter{Since: now, Until: now.Add(-time.Hour)}, "dlq: Filter.Until: must be after Since"},
		{"t-dlq", dlq.Filter{Partitions: []int32{-2}}, "dlq: Filter.Partitions: must be >= 0"},
	} {
		_, err := c.List(ctx, tc.topic, tc.f)
		if !errors.Is(err, dlq.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("List(%q, %+v) = %v; want ErrInvalidArgument saying %q", tc.topic, tc.f, err, tc.want)
		}
		_, err = c.Replay(ctx, tc.topic, tc.f)
		if !errors.Is(err, dlq.ErrInvalidArgument) {
			t.Errorf("Replay(%q, %+v) = %v; want ErrInvalidArgument", tc.topic, tc.f, err)
		}
	}
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.Close(ended); err != nil {
		t.Fatalf("Close with no call in progress and an ended context = %v, want nil", err)
	}
	if _, err := c.List(ctx, "t-dlq", dlq.Filter{}); !errors.Is(err, dlq.ErrClosed) {
		t.Errorf("List after Close = %v; want ErrClosed", err)
	}
}

func TestPartitionFilterMustExist(t *testing.T) {
	fx := newFixture(t, 2)
	_, err := fx.c.List(ctxT(t), fx.dlqTopic, dlq.Filter{Partitions: []int32{5}})
	if !errors.Is(err, dlq.ErrInvalidArgument) || !strings.Contains(err.Error(), "no partition 5") {
		t.Errorf("List with partition 5 of 2 = %v", err)
	}
}

// TestNewFromClientLeaksNothing uses a caller's client, which stays open,
// with the Connection's Logger (and a Registerer, accepted), and proves that
// a Client from New leaves no goroutine behind.
func TestNewFromClientLeaksNothing(t *testing.T) {
	fx := newFixture(t, 2)
	ctx := ctxT(t)
	fx.deadLetter(t, dead{p: 0, key: "a", reason: retry.ReasonExhausted}, dead{p: 1, key: "b", reason: retry.ReasonDecode})

	cl := fx.kc.Client(t)
	core, logs := observer.New(zap.InfoLevel)
	c, err := dlq.NewFromClient(cl, whippet.Connection{Logger: zap.New(core), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	page, err := c.List(ctx, fx.dlqTopic, dlq.Filter{})
	if err != nil || len(page.Records) != 2 {
		t.Fatalf("List through a caller's client: %d records, %v", len(page.Records), err)
	}
	if res, err := c.Replay(ctx, fx.dlqTopic, dlq.Filter{}, dlq.DryRun()); err != nil || len(res.Replayed) != 2 {
		t.Fatalf("dry-run Replay through a caller's client: %+v, %v", res, err)
	}
	if n := logs.FilterMessage("dlq: replay").Len(); n != 1 {
		t.Errorf("the Connection's Logger got %d replay entries, want 1", n)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := cl.Ping(ctx); err != nil {
		t.Errorf("the caller's client was closed: %v", err)
	}

	ignore := goleak.IgnoreCurrent()
	c, err = dlq.New(whippet.Connection{Brokers: fx.kc.Brokers})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.List(ctx, fx.dlqTopic, dlq.Filter{Limit: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, fx.dlqTopic, 0, 0); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Replay(ctx, fx.dlqTopic, dlq.Filter{}); err != nil || len(res.Replayed) != 2 {
		t.Fatalf("Replay: %+v, %v", res, err)
	}
	if res, err := c.Purge(ctx, fx.dlqTopic, dlq.PurgeAll()); err != nil || res.Deleted != 2 {
		t.Fatalf("Purge: %+v, %v", res, err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// On kfake the broker runs in this process: its goroutines serving
	// connections are the broker's, not the Client's.
	goleak.VerifyNone(t, ignore,
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).read"),
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).read.func1"),
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).write"))
}

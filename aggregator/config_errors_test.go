package aggregator_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/aggregator"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/testkit"
)

// The aggregator's options are the atomic store's: each error is an
// atomicstore *ConfigError naming the field, reported before any network
// I/O (nothing listens on 127.0.0.1:1 and the context is short, so a network
// attempt would end in another error).
func TestEveryConfigErrorNamesItsField(t *testing.T) {
	ok := whippet.Connection{Brokers: []string{"127.0.0.1:1"}}
	for _, tc := range []struct {
		name, aggName string
		conn          whippet.Connection
		opts          []atomicstore.Option
		field, want   string
	}{
		{"empty name", "", ok, nil, "name", "must not be empty"},
		{"invalid name", "imports!", ok, nil, "name", "must contain only ASCII letters"},
		{"no brokers", "imports", whippet.Connection{}, nil, "Connection.Brokers", "at least one seed broker is required"},
		{"partitions", "imports", ok, []atomicstore.Option{atomicstore.Partitions(-1)}, "Partitions", "must be at least 1, got -1"},
		{"update timeout", "imports", ok, []atomicstore.Option{atomicstore.UpdateTimeout(0)}, "UpdateTimeout", "must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			a, err := aggregator.Open(ctx, tc.conn, tc.aggName, tc.opts...)
			if err == nil {
				_ = a.Close(ctx)
			}
			_, perr := aggregator.NewProcessor(tc.conn, tc.aggName, append(tc.opts, atomicstore.TransactionalID("p-0"))...)
			for _, err := range []error{err, perr} {
				var ce *atomicstore.ConfigError
				if !errors.Is(err, atomicstore.ErrInvalidConfig) || !errors.As(err, &ce) ||
					!strings.Contains(err.Error(), "atomicstore: "+tc.field+": ") || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v does not name %s with %q", err, tc.field, tc.want)
				}
			}
		})
	}
}

// Task numbers and totals outside what a batch can hold are refused by the
// client with ErrBadTask, before anything is sent.
func TestBadTasksAreRefusedBeforeSending(t *testing.T) {
	kc := testkit.Fake(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := aggregator.Open(ctx, whippet.Connection{Brokers: kc.Brokers}, "bad-tasks", atomicstore.Partitions(1), atomicstore.UpdateTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	for name, err := range map[string]error{
		"Start 0":        errOf(a.Start(ctx, "b", 0)),
		"Start too many": errOf(a.Start(ctx, "b", aggregator.MaxTasks+1)),
		"Done -1":        errOf(a.Done(ctx, "b", -1)),
		"Done MaxTasks":  errOf(a.Done(ctx, "b", aggregator.MaxTasks)),
		"Report huge":    a.Report(ctx, "b", 1<<40),
	} {
		if !errors.Is(err, aggregator.ErrBadTask) || !strings.Contains(err.Error(), "want ") {
			t.Errorf("%s: %v, want ErrBadTask saying the range", name, err)
		}
	}
}

func errOf[T any](_ T, err error) error { return err }

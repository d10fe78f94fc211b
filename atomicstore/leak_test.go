package atomicstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/testkit"
)

func TestConfigErrorsNameTheField(t *testing.T) {
	_, err := atomicstore.NewProcessor[string, int64](whippet.Connection{}, "", codec.String(), nil, atomicstore.Partitions(0))
	if !errors.Is(err, atomicstore.ErrInvalidConfig) {
		t.Fatalf("got %v", err)
	}
	for _, field := range []string{"name", "values", "Connection.Brokers", "Partitions", "TransactionalID"} {
		if !strings.Contains(err.Error(), "atomicstore: "+field+":") {
			t.Errorf("%q not named in %v", field, err)
		}
	}
	if _, err := atomicstore.Open(context.Background(), whippet.Connection{Brokers: []string{"no host"}}, "x", codec.String(), atomicstore.Int64()); !errors.Is(err, atomicstore.ErrInvalidConfig) {
		t.Errorf("Open: %v", err)
	}
}

// The processor and a store leave no goroutine behind (kfake: fast).
func TestNoGoroutineLeak(t *testing.T) {
	kc := testkit.Fake(t)
	ignore := goleak.IgnoreCurrent()
	func() {
		ctx, cancel := context.WithCancel(context.Background())
		conn := whippet.Connection{Brokers: kc.Brokers}
		opts := []atomicstore.Option{atomicstore.Partitions(2)}
		p, err := atomicstore.NewProcessor(conn, "leak", codec.String(), atomicstore.Int64(), append(opts, atomicstore.TransactionalID("leak-p"))...)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		s, err := atomicstore.Open(ctx, conn, "leak", codec.String(), atomicstore.Int64(), opts...)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := s.Update(ctx, "k", atomicstore.Add(3)); err != nil || v != 3 {
			t.Fatalf("%d, %v", v, err)
		}
		uctx, ucancel := context.WithTimeout(ctx, 10*time.Millisecond)
		defer ucancel()
		_, _ = s.Update(uctx, "k", atomicstore.Add(1)) // may time out: its waiter must go
		_ = s.Close(ctx)
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}()
	goleak.VerifyNone(t, ignore,
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).read"),
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).read.func1"),
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).write"))
}

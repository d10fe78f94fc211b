package kvstore_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/kvstore"
	"github.com/whippet-go/whippet/testkit"
)

// The broker goes down and comes back on the same address with its data (a
// kfake cluster persisted to a directory, stopped and started again): the
// store keeps serving reads meanwhile, and applies the writes made after the
// restart. The shared real broker is not restarted: other tests use it.
func TestSurvivesBrokerRestart(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	dir := t.TempDir()
	port := freePort(t)
	start := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir), kfake.SyncWrites())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	broker := start()
	kc := &testkit.Cluster{Brokers: broker.ListenAddrs(), Backend: testkit.BackendKfake}
	core, logs := observer.New(zap.WarnLevel)
	s := openStoreConn(t, whippet.Connection{Brokers: kc.Brokers, Logger: zap.New(core)}, "countries", kvstore.Partitions(2))
	ctx := ctxT(t, 60*time.Second)
	if err := s.Put(ctx, "before", Value{Version: 1}); err != nil {
		t.Fatal(err)
	}

	broker.Close()
	time.Sleep(500 * time.Millisecond) // the store's connections fail meanwhile
	if v, ok := s.Get("before"); !ok || v.Version != 1 {
		t.Fatal("reads stop while the broker is down")
	}
	broker = start()
	defer broker.Close()

	// Another writer, after the restart.
	w := openStore(t, kc, "countries")
	if err := w.Put(ctx, "after", Value{Version: 2}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if v, ok := s.Get("after"); !ok || v.Version != 2 {
			return errors.New("the write made after the restart is not applied")
		}
		return nil
	})
	// And the store's own writes work again.
	if err := s.Put(ctx, "again", Value{Version: 3}); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d warnings logged across the restart", logs.Len())
	_ = w.Close(context.Background())
	_ = s.Close(context.Background())
	broker.Close()
	goleak.VerifyNone(t, ignore)
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Fetch errors that franz-go hands to the poll loop are logged and counted,
// and the loader goes on.
func TestFetchErrorsAreLoggedAndSurvived(t *testing.T) {
	kc := testkit.Fake(t)
	fake := kc.Kfake()
	if err := fake.CreateTopic("rates", 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	// A non-retryable error, which franz-go returns to the poller.
	h := fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: "rates", Err: kerr.TopicAuthorizationFailed, Count: 5})
	defer h.Remove()
	core, logs := observer.New(zap.WarnLevel)
	reg := prometheus.NewRegistry()
	s := openStoreNoWaitConn(t, whippet.Connection{Brokers: kc.Brokers, Logger: zap.New(core), Registerer: reg,
		ClientOptions: []kgo.Opt{kgo.RetryBackoffFn(func(int) time.Duration { return 10 * time.Millisecond })}}, "rates")
	if err := s.WaitReady(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctxT(t, 30*time.Second), "EUR", Value{Version: 1}); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(gaugeOf(t, reg, "whippet_kvstore_fetch_errors_total")); n < 1 {
		t.Fatalf("fetch_errors_total = %v", n)
	}
	if logs.FilterMessage("fetch error; the store keeps going").Len() == 0 {
		t.Fatalf("fetch errors not logged: %v", logs.All())
	}
}

// WaitReady says why a store is not ready.
func TestWaitReadyExplains(t *testing.T) {
	kc := testkit.Fake(t)
	fake := kc.Kfake()
	if err := fake.CreateTopic("zones", 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	h := fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.ListOffsets}, Err: kerr.UnknownServerError, Count: -1})
	s := openStoreNoWait(t, kc, "zones")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := s.WaitReady(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "last error") || s.Ready() {
		t.Fatalf("WaitReady = %v", err)
	}
	t.Log(err)
	h.Remove()
	if err := s.WaitReady(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	_ = s.Close(context.Background())
	if err := s.WaitReady(context.Background()); err != nil {
		t.Fatalf("WaitReady after ready and closed: %v", err)
	}
}

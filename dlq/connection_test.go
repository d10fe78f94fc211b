package dlq_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/internal/connect"
	"github.com/whippet-go/whippet/retry"
)

// With the Connection's Registerer, franz-go's client metrics are
// whippet_kafka_*{component="dlq", name=<client id>}; a second Client with
// the same client id on that Registerer is refused, naming the field; Close
// unregisters them.
func TestClientMetricsOnTheConnectionsRegisterer(t *testing.T) {
	fx := newFixture(t, 1)
	ctx := ctxT(t)
	fx.deadLetter(t, dead{p: 0, key: "a", reason: retry.ReasonExhausted})
	reg := prometheus.NewRegistry()
	conn := whippet.Connection{Brokers: fx.kc.Brokers, Registerer: reg}

	c, err := dlq.New(conn)
	if err != nil {
		t.Fatal(err)
	}
	if page, err := c.List(ctx, fx.dlqTopic, dlq.Filter{}); err != nil || len(page.Records) != 1 {
		t.Fatalf("List: %d records, %v", len(page.Records), err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var reads float64
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "whippet_kafka_") {
			t.Errorf("metric %s: want only whippet_kafka_* from a dlq.Client", mf.GetName())
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["component"] != "dlq" || labels["name"] != "whippet-dlq" {
				t.Errorf("metric %s labelled %v, want component=dlq, name=whippet-dlq", mf.GetName(), labels)
			}
			if mf.GetName() == "whippet_kafka_read_bytes_total" {
				reads += m.GetCounter().GetValue()
			}
		}
	}
	if reads == 0 {
		t.Errorf("whippet_kafka_read_bytes_total is 0 after a List (metrics: %d families)", len(mfs))
	}

	_, err = dlq.New(conn)
	var ce *dlq.ConfigError
	if !errors.Is(err, dlq.ErrInvalidConfig) || !errors.Is(err, connect.ErrMetricsClash) ||
		!errors.As(err, &ce) || ce.Field != "Connection.Registerer" {
		t.Fatalf("a second Client with the same client id on one Registerer: %v", err)
	}
	other := conn
	other.ClientID = "dlq-tool"
	c2, err := dlq.New(other)
	if err != nil {
		t.Fatalf("another client id on the same Registerer: %v", err)
	}
	if err := c2.Close(ctx); err != nil {
		t.Fatal(err)
	}

	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if mfs, err := reg.Gather(); err != nil || len(mfs) != 0 {
		t.Errorf("after Close the Registerer still gathers %d families (%v)", len(mfs), err)
	}
	c, err = dlq.New(conn)
	if err != nil {
		t.Fatalf("New after Close freed the name: %v", err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// silentBroker accepts connections and never answers: a call to it stays
// in progress until its context ends or its client is closed. accepted
// counts the connections; stop closes everything.
func silentBroker(t *testing.T) (addr string, accepted *atomic.Int32, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int32)
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			accepted.Add(1)
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ln.Close()
			wg.Wait()
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), accepted, stop
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// listInProgress starts a List on a Client of a silent broker and returns
// once the List reached the broker, with its cancel and result.
func listInProgress(t *testing.T) (c *dlq.Client, cancel context.CancelFunc, listErr <-chan error, stop func()) {
	addr, accepted, stop := silentBroker(t)
	c, err := dlq.New(whippet.Connection{Brokers: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	errc := make(chan error, 1)
	go func() {
		_, err := c.List(ctx, "orders-g-dlq", dlq.Filter{})
		errc <- err
	}()
	waitFor(t, "the List to reach the broker", func() bool { return accepted.Load() > 0 })
	return c, cancel, errc, stop
}

// closing reports whether Close has begun: a new call is then refused with
// ErrClosed at once (an empty topic would be refused before any I/O
// otherwise).
func closing(c *dlq.Client) bool {
	_, err := c.Get(context.Background(), "", 0, 0)
	return errors.Is(err, dlq.ErrClosed)
}

// Close refuses new calls at once, lets the calls in progress finish, and
// only then closes the franz-go client.
func TestCloseWaitsForCallsInProgress(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c, cancelList, listErr, stop := listInProgress(t)
	defer stop()

	closeErr := make(chan error, 1)
	go func() { closeErr <- c.Close(context.Background()) }()
	waitFor(t, "Close to begin", func() bool { return closing(c) })
	select {
	case err := <-closeErr:
		t.Fatalf("Close returned (%v) while a List was in progress", err)
	case err := <-listErr:
		t.Fatalf("the List ended (%v) before its context did: Close cut it short", err)
	default:
	}
	// franz-go waits for the answer to a request it has written whatever its
	// context says; the broker hanging up ends that wait.
	cancelList()
	stop()
	if err := <-listErr; !errors.Is(err, context.Canceled) {
		t.Errorf("the List in progress ended with %v, want its own context's error", err)
	}
	if err := <-closeErr; err != nil {
		t.Errorf("Close after the calls in progress ended: %v", err)
	}
	if _, err := c.List(context.Background(), "orders-g-dlq", dlq.Filter{}); !errors.Is(err, dlq.ErrClosed) {
		t.Errorf("List after Close = %v, want ErrClosed", err)
	}
	if err := c.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// When Close's context ends first, Close closes the franz-go client
// anyway, which ends the calls still in progress, and says so.
func TestCloseStopsWaitingWhenItsContextEnds(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	c, _, listErr, stop := listInProgress(t)
	defer stop()

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close with an ended context while a List runs = %v, want context.Canceled", err)
	}
	if err := <-listErr; err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("the List cut short by Close ended with %v, want the closed client's error", err)
	}
}

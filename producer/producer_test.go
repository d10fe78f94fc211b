package producer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/producer"
)

func newProducer(t *testing.T, c *kfake.Cluster, opts ...producer.Option) *producer.Producer {
	t.Helper()
	return newProducerWith(t, whippet.Connection{Brokers: c.ListenAddrs()}, opts...)
}

func newProducerWith(t *testing.T, conn whippet.Connection, opts ...producer.Option) *producer.Producer {
	t.Helper()
	p, err := producer.New(conn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

// callbacks checks that every ProduceAsync callback is called exactly once.
type callbacks struct {
	t     *testing.T
	mu    sync.Mutex
	calls []int // calls[i] = times callback i ran
	res   []producer.Result
	errs  []error
	wg    sync.WaitGroup
}

func newCallbacks(t *testing.T, n int) *callbacks {
	cb := &callbacks{t: t, calls: make([]int, n), res: make([]producer.Result, n), errs: make([]error, n)}
	cb.wg.Add(n)
	return cb
}

func (cb *callbacks) fn(i int) func(producer.Result, error) {
	return func(r producer.Result, err error) {
		cb.mu.Lock()
		cb.calls[i]++
		first := cb.calls[i] == 1
		cb.res[i], cb.errs[i] = r, err
		cb.mu.Unlock()
		if first {
			cb.wg.Done()
		}
	}
}

// wait waits for every callback and checks none ran twice.
func (cb *callbacks) wait(timeout time.Duration) {
	cb.t.Helper()
	done := make(chan struct{})
	go func() { cb.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		cb.mu.Lock()
		defer cb.mu.Unlock()
		missing := 0
		for _, c := range cb.calls {
			if c == 0 {
				missing++
			}
		}
		cb.t.Fatalf("%d of %d callbacks never called", missing, len(cb.calls))
	}
	cb.checkOnce()
}

func (cb *callbacks) checkOnce() {
	cb.t.Helper()
	cb.mu.Lock()
	defer cb.mu.Unlock()
	for i, c := range cb.calls {
		if c != 1 {
			cb.t.Errorf("callback %d called %d times, want exactly once", i, c)
		}
	}
}

func TestProduceReturnsPartitionAndOffset(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 3, "orders")
	p := newProducer(t, c)
	ctx := t.Context()

	offsets := map[int32]int64{}
	for i := range 6 {
		res, err := p.Produce(ctx, &kgo.Record{
			Topic:   "orders",
			Key:     fmt.Appendf(nil, "k%d", i%2),
			Value:   fmt.Appendf(nil, "v%d", i),
			Headers: []kgo.RecordHeader{producer.Header("trace-id", fmt.Sprint(i))},
		})
		if err != nil {
			t.Fatalf("Produce %d: %v", i, err)
		}
		if res.Topic != "orders" || res.Timestamp.IsZero() {
			t.Errorf("Result %d = %+v", i, res)
		}
		if want := offsets[res.Partition]; res.Offset != want {
			t.Errorf("record %d: offset %d in partition %d, want %d", i, res.Offset, res.Partition, want)
		}
		offsets[res.Partition]++
	}

	recs := consumeN(t, c.ListenAddrs(), "orders", 6)
	for _, r := range recs {
		var i int
		fmt.Sscanf(string(r.Value), "v%d", &i)
		if got, _ := headerValue(r, "trace-id"); got != fmt.Sprint(i) {
			t.Errorf("record %s: trace-id header = %q", r.Value, got)
		}
	}
}

func TestDefaultTopicAndInvalidRecords(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "events")
	p := newProducer(t, c, producer.DefaultTopic("events"))

	res, err := p.Produce(t.Context(), &kgo.Record{Value: []byte("x")})
	if err != nil || res.Topic != "events" {
		t.Fatalf("Produce without Topic = %+v, %v; want DefaultTopic", res, err)
	}

	if _, err := p.Produce(t.Context(), nil); !errors.Is(err, producer.ErrInvalidRecord) {
		t.Errorf("Produce(nil) error = %v, want ErrInvalidRecord", err)
	}

	noDefault := newProducer(t, c)
	res, err = noDefault.Produce(t.Context(), &kgo.Record{Value: []byte("x")})
	if !errors.Is(err, producer.ErrInvalidRecord) || res.Partition != -1 || res.Offset != -1 {
		t.Errorf("Produce without any topic = %+v, %v; want ErrInvalidRecord", res, err)
	}
}

func TestProduceAsyncCallsEveryCallbackOnceInOrder(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "async")
	p := newProducer(t, c)
	const n = 500
	cb := newCallbacks(t, n)
	var order []int64
	var mu sync.Mutex
	for i := range n {
		inner := cb.fn(i)
		p.ProduceAsync(t.Context(), &kgo.Record{Topic: "async", Value: []byte{byte(i)}}, func(r producer.Result, err error) {
			mu.Lock()
			order = append(order, r.Offset)
			mu.Unlock()
			inner(r, err)
		})
	}
	cb.wait(20 * time.Second)
	for i, err := range cb.errs {
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if cb.res[i].Offset != int64(i) {
			t.Errorf("record %d got offset %d; one partition must keep produce order", i, cb.res[i].Offset)
		}
	}
	for i, off := range order {
		if off != int64(i) {
			t.Fatalf("callback %d reported offset %d: callbacks must run in completion order", i, off)
		}
	}
}

func TestProduceAsyncNilCallbackAndInvalidRecord(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "t")
	p := newProducer(t, c)
	p.ProduceAsync(t.Context(), &kgo.Record{Topic: "t"}, nil) // must not panic
	cb := newCallbacks(t, 2)
	p.ProduceAsync(t.Context(), nil, cb.fn(0))
	p.ProduceAsync(t.Context(), &kgo.Record{}, cb.fn(1))
	cb.wait(time.Second)
	for i, err := range cb.errs {
		if !errors.Is(err, producer.ErrInvalidRecord) {
			t.Errorf("callback %d error = %v, want ErrInvalidRecord", i, err)
		}
	}
	if err := p.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestCanceledContext(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "t")
	p := newProducer(t, c)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	if _, err := p.Produce(ctx, &kgo.Record{Topic: "t"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Produce(canceled ctx) error = %v, want context.Canceled", err)
	}
	cb := newCallbacks(t, 1)
	p.ProduceAsync(ctx, &kgo.Record{Topic: "t"}, cb.fn(0))
	cb.wait(time.Second)
	if !errors.Is(cb.errs[0], context.Canceled) {
		t.Errorf("ProduceAsync(canceled ctx) error = %v, want context.Canceled", cb.errs[0])
	}
}

// A sync Produce returns when its context ends even if franz-go cannot fail
// the record (here: the broker died after taking the request, so the
// idempotent client must keep retrying it); the error says the outcome is
// unconfirmed, and Close later fails the record.
func TestProduceContextEndsWhileClusterDown(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "t")
	core, logs := observer.New(zap.InfoLevel)
	p := newProducerWith(t, whippet.Connection{Brokers: c.ListenAddrs(), Logger: zap.New(core)}, producer.FlushTimeout(100*time.Millisecond))
	if _, err := p.Produce(t.Context(), &kgo.Record{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	c.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	res, err := p.Produce(ctx, &kgo.Record{Topic: "t"})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, producer.ErrUnconfirmed) || res.Offset != -1 {
		t.Fatalf("Produce to a dead cluster = %+v, %v; want ErrUnconfirmed and DeadlineExceeded", res, err)
	}

	ctx2, cancel2 := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel2()
	res2, err := p.ProduceMany(ctx2, &kgo.Record{Topic: "t"}, nil)
	if !errors.Is(err, producer.ErrUnconfirmed) || !errors.Is(err, producer.ErrInvalidRecord) || len(res2) != 2 {
		t.Fatalf("ProduceMany to a dead cluster = %+v, %v; want ErrUnconfirmed and ErrInvalidRecord", res2, err)
	}
	if err := p.Close(context.Background()); !errors.Is(err, producer.ErrClosed) || !strings.Contains(err.Error(), "2 records") {
		t.Fatalf("Close = %v, want ErrClosed failing the 2 unconfirmed records", err)
	}
	// Their final outcome, which no caller waited for, is logged.
	if n := logs.FilterMessage("unconfirmed record failed after its caller stopped waiting").Len(); n != 2 {
		t.Errorf("%d late failures logged, want 2", n)
	}
}

func TestProduceMany(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "many")
	p := newProducer(t, c, producer.DefaultTopic("many"))

	recs := []*kgo.Record{{Value: []byte("a")}, {Value: []byte("b")}, {Value: []byte("c")}}
	res, err := p.ProduceMany(t.Context(), recs...)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Offset != int64(i) {
			t.Errorf("results[%d].Offset = %d, want %d", i, r.Offset, i)
		}
	}

	res, err = p.ProduceMany(t.Context(), &kgo.Record{Value: []byte("d")}, nil, &kgo.Record{Value: []byte("e")}, nil)
	if !errors.Is(err, producer.ErrInvalidRecord) {
		t.Fatalf("err = %v, want ErrInvalidRecord", err)
	}
	if !strings.Contains(err.Error(), "record 1:") || !strings.Contains(err.Error(), "record 3:") ||
		strings.Contains(err.Error(), "record 0:") {
		t.Errorf("joined error does not name exactly records 1 and 3: %v", err)
	}
	if res[0].Offset != 3 || res[2].Offset != 4 || res[1].Offset != -1 {
		t.Errorf("results = %+v", res)
	}
}

// Flush sends lingering records and returns only after their callbacks ran.
func TestFlushWaitsForCallbacks(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "t")
	p := newProducer(t, c, producer.Linger(time.Minute))
	var done atomic.Int32
	for range 100 {
		p.ProduceAsync(t.Context(), &kgo.Record{Topic: "t"}, func(_ producer.Result, err error) {
			if err != nil {
				t.Error(err)
			}
			time.Sleep(time.Millisecond) // a slowish callback
			done.Add(1)
		})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v (a one-minute linger must not delay Flush)", err)
	}
	if got := done.Load(); got != 100 {
		t.Fatalf("Flush returned with %d of 100 callbacks done", got)
	}
}

func TestFlushContextEnds(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "t")
	p := newProducer(t, c, producer.FlushTimeout(100*time.Millisecond))
	if _, err := p.Produce(t.Context(), &kgo.Record{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	cb := newCallbacks(t, 1)
	p.ProduceAsync(context.Background(), &kgo.Record{Topic: "t"}, cb.fn(0))
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := p.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "1 records still pending") {
		t.Fatalf("Flush = %v, want DeadlineExceeded with 1 pending", err)
	}
	p.Close(context.Background())
	cb.wait(time.Second)
	if !errors.Is(cb.errs[0], producer.ErrClosed) {
		t.Errorf("record error = %v, want ErrClosed", cb.errs[0])
	}
}

// Close flushes lingering records: all are acknowledged and visible.
func TestCloseFlushes(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 2, "t")
	p := newProducer(t, c, producer.Linger(time.Minute))
	const n = 200
	cb := newCallbacks(t, n)
	for i := range n {
		p.ProduceAsync(context.Background(), &kgo.Record{Topic: "t", Value: []byte{byte(i)}}, cb.fn(i))
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	cb.checkOnce() // all callbacks already ran: Close waits for them
	for i, err := range cb.errs {
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	consumeN(t, c.ListenAddrs(), "t", n)
}

func TestProduceAfterClose(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "t")
	p := newProducer(t, c)
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	res, err := p.Produce(t.Context(), &kgo.Record{Topic: "t"})
	if !errors.Is(err, producer.ErrClosed) || res.Topic != "t" || res.Offset != -1 {
		t.Errorf("Produce after Close = %+v, %v; want ErrClosed", res, err)
	}
	cb := newCallbacks(t, 1)
	p.ProduceAsync(t.Context(), &kgo.Record{Topic: "t"}, cb.fn(0))
	cb.wait(time.Second)
	if !errors.Is(cb.errs[0], producer.ErrClosed) {
		t.Errorf("ProduceAsync after Close: %v, want ErrClosed", cb.errs[0])
	}
	if _, err := p.ProduceMany(t.Context(), &kgo.Record{Topic: "t"}); !errors.Is(err, producer.ErrClosed) {
		t.Errorf("ProduceMany after Close: %v, want ErrClosed", err)
	}
	if err := p.Close(t.Context()); err != nil {
		t.Errorf("second Close = %v, want the first Close's nil", err)
	}
}

// The cluster dies with records buffered (never sent): Close with a short
// timeout fails every one of them, each callback exactly once, and a
// blocked sync Produce returns.
func TestCloseFailsRecordsWhenClusterIsDown(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 3, "t")
	p := newProducer(t, c, producer.FlushTimeout(200*time.Millisecond))
	if _, err := p.Produce(t.Context(), &kgo.Record{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	c.Close()

	const n = 300
	cb := newCallbacks(t, n)
	for i := range n {
		p.ProduceAsync(context.Background(), &kgo.Record{Topic: "t", Key: []byte{byte(i)}}, cb.fn(i))
	}
	syncErr := make(chan error, 1)
	go func() {
		_, err := p.Produce(context.Background(), &kgo.Record{Topic: "t"})
		syncErr <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the sync Produce get buffered

	err := p.Close(context.Background())
	if !errors.Is(err, producer.ErrClosed) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want ErrClosed and DeadlineExceeded", err)
	}
	cb.checkOnce()
	for i, err := range cb.errs {
		if !errors.Is(err, producer.ErrClosed) || !errors.Is(err, kgo.ErrClientClosed) {
			t.Fatalf("record %d error = %v, want ErrClosed (and kgo.ErrClientClosed)", i, err)
		}
	}
	if err := <-syncErr; !errors.Is(err, producer.ErrClosed) {
		t.Fatalf("sync Produce error = %v, want ErrClosed", err)
	}
}

// Records are in flight (the broker took the produce request and never
// answers): Close still fails each of them exactly once.
func TestCloseFailsInFlightRecords(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "t")
	p := newProducer(t, c, producer.FlushTimeout(300*time.Millisecond), producer.Linger(0))
	if _, err := p.Produce(t.Context(), &kgo.Record{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	var held atomic.Int32
	c.ControlKey(kmsg.Produce.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		held.Add(1)
		return nil, nil, true // swallow: no response ever
	})

	const n = 50
	cb := newCallbacks(t, n)
	for i := range n {
		p.ProduceAsync(context.Background(), &kgo.Record{Topic: "t"}, cb.fn(i))
	}
	deadline := time.Now().Add(5 * time.Second)
	for held.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if held.Load() == 0 {
		t.Fatal("no produce request reached the broker")
	}
	if err := p.Close(context.Background()); !errors.Is(err, producer.ErrClosed) {
		t.Fatalf("Close = %v, want ErrClosed", err)
	}
	cb.checkOnce()
	for i, err := range cb.errs {
		if err == nil {
			t.Fatalf("record %d succeeded although the broker never answered", i)
		}
		if !errors.Is(err, producer.ErrClosed) {
			t.Errorf("record %d error = %v, want ErrClosed", i, err)
		}
	}
}

// Concurrent producers racing with Close: every record gets exactly one
// outcome, either delivered (and then visible to a consumer) or ErrClosed.
func TestCloseRacingProducers(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 4, "t")
	p := newProducer(t, c)
	const workers, per = 8, 2000
	cb := newCallbacks(t, workers*per)
	var started sync.WaitGroup
	started.Add(workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				p.ProduceAsync(context.Background(), &kgo.Record{Topic: "t"}, cb.fn(w*per+i))
				if i == 100 {
					started.Done()
				}
			}
		}()
	}
	started.Wait() // every worker is mid-stream
	if err := p.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	cb.wait(5 * time.Second)
	var ok, closed int
	for i, err := range cb.errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, producer.ErrClosed):
			closed++
		default:
			t.Errorf("record %d: unexpected error %v", i, err)
		}
	}
	t.Logf("%d delivered, %d rejected after Close", ok, closed)
	if closed == 0 {
		t.Log("no record raced with Close this run")
	}
	consumeN(t, c.ListenAddrs(), "t", ok)
}

func TestIdempotentWithAcksAllByDefault(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "t")
	p := newProducer(t, c)
	cl := p.Client()
	if acks := cl.OptValue(kgo.RequiredAcks); acks != kgo.AllISRAcks() {
		t.Errorf("RequiredAcks = %v, want all ISR acks", acks)
	}
	if disabled := cl.OptValue(kgo.DisableIdempotentWrite); disabled != false {
		t.Errorf("DisableIdempotentWrite = %v, want false", disabled)
	}
	if _, err := p.Produce(t.Context(), &kgo.Record{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	id, epoch, err := cl.ProducerID(t.Context())
	if err != nil || id < 0 || epoch < 0 {
		t.Errorf("ProducerID = %d, %d, %v; want an assigned idempotent producer id", id, epoch, err)
	}
}

func TestNewFromClientDoesNotCloseClient(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "t")
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	p, err := producer.NewFromClient(cl, whippet.Connection{}, producer.DefaultTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Client() != cl {
		t.Fatal("Client() is not the given client")
	}
	if _, err := p.Produce(t.Context(), &kgo.Record{Value: []byte("via producer")}); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Produce(t.Context(), &kgo.Record{}); !errors.Is(err, producer.ErrClosed) {
		t.Errorf("Produce after Close = %v, want ErrClosed", err)
	}
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: "t", Value: []byte("direct")}).FirstErr(); err != nil {
		t.Fatalf("client unusable after Producer.Close: %v", err)
	}
}

// With a client it does not own, Close cannot fail records; it says how many
// are pending, and their callbacks still run exactly once when the owner
// closes the client.
func TestNewFromClientCloseTimeoutLeavesRecordsToOwner(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "t")
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	p, err := producer.NewFromClient(cl, whippet.Connection{}, producer.FlushTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Produce(t.Context(), &kgo.Record{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	cb := newCallbacks(t, 10)
	for i := range 10 {
		p.ProduceAsync(context.Background(), &kgo.Record{Topic: "t"}, cb.fn(i))
	}
	err = p.Close(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "10 records still pending") {
		t.Fatalf("Close = %v, want DeadlineExceeded naming 10 pending records", err)
	}
	cl.Close()
	cb.wait(5 * time.Second)
	for i, err := range cb.errs {
		if !errors.Is(err, kgo.ErrClientClosed) {
			t.Errorf("record %d error = %v, want kgo.ErrClientClosed", i, err)
		}
	}
}

// Close bounded by its context, not only FlushTimeout.
func TestCloseHonorsContext(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "t")
	p := newProducer(t, c) // FlushTimeout 30s
	if _, err := p.Produce(t.Context(), &kgo.Record{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	cb := newCallbacks(t, 1)
	p.ProduceAsync(context.Background(), &kgo.Record{Topic: "t"}, cb.fn(0))
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := p.Close(ctx); !errors.Is(err, producer.ErrClosed) {
		t.Fatalf("Close = %v, want ErrClosed", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Close took %v despite a 100ms context", d)
	}
	cb.wait(time.Second)
}

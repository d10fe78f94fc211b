package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
)

// S6: a sink with a fixed cost per call and a small cost per record, as a
// bulk database insert has. The JVM peer (bench/peers/spring-batch) runs
// the same sink the same way: the fixed part slept, the per-record part
// busy-spun on the monotonic clock.

// sink is S6's simulated bulk insert of n records: it sleeps callCost (the
// round trip, which costs the client no CPU) and then spins until
// n×recordCost has passed (building the rows, which does). Spinning rather
// than sleeping the per-record part keeps it exact: a sleep overshoots by
// about 0.1 ms on Linux, 50 records' worth.
func sink(n int, callCost, recordCost time.Duration) {
	time.Sleep(callCost)
	end := time.Now().Add(time.Duration(n) * recordCost)
	for time.Now().Before(end) {
	}
}

// begin starts the records/s clock at the first sink call, if it has not
// started: S6 times from the first call's start, so that the first
// call's cost is inside the clock for every contender.
func (t *tracker) begin() {
	if !t.started.Load() && t.started.CompareAndSwap(false, true) {
		t.first.Store(int64(time.Since(epoch)))
	}
}

// s6WhippetBatch: NewBatch with its default BatchSize (500 records, 5 ms
// linger), the sink called once per batch; each record is counted once
// the call that holds it returned.
func s6WhippetBatch(ctx context.Context, f contenderFlags) (result, error) {
	t, err := newTracker(ctx, f)
	if err != nil {
		return result{}, err
	}
	var calls atomic.Int64 // calls with backlog records (a batch is of one partition, so of one topic)
	h := consumer.BatchHandlerFunc(func(_ context.Context, recs []*kgo.Record) error {
		t.begin()
		sink(len(recs), f.callCost, f.recordCost)
		if len(recs) > 0 && recs[0].Topic == f.topic {
			calls.Add(1)
		}
		for _, r := range recs {
			t.record(r)
		}
		return nil
	})
	c, err := consumer.NewBatch(whippet.Connection{Brokers: strings.Split(f.brokers, ",")}, h,
		consumer.Group(f.group), consumer.Topics(f.topics()...))
	if err != nil {
		return result{}, err
	}
	res, err := runS6(ctx, c, t, f, nil)
	if err == nil {
		res.Extra = map[string]any{"backlog_calls": calls.Load(), "records_per_call": t.backlog / max(1, calls.Load())}
	}
	return res, err
}

// s6WhippetRecord: New, the sink called once per record. At 2 ms and more
// a record per partition, the backlog would take minutes, so the run stops
// f.limit after the first sink call began and reports the rate of the
// records handled by then, marked unfinished (0: no limit).
func s6WhippetRecord(ctx context.Context, f contenderFlags) (result, error) {
	if f.liveTopic != "" {
		return result{}, errors.New("contender: S6's per-record contender has no live phase")
	}
	t, err := newTracker(ctx, f)
	if err != nil {
		return result{}, err
	}
	var handled atomic.Int64
	h := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		t.begin()
		sink(1, f.callCost, f.recordCost)
		handled.Add(1)
		t.record(r)
		return nil
	})
	c, err := consumer.New(whippet.Connection{Brokers: strings.Split(f.brokers, ",")}, h,
		consumer.Group(f.group), consumer.Topics(f.topic))
	if err != nil {
		return result{}, err
	}
	return runS6(ctx, c, t, f, &handled)
}

// runS6 runs c until t's backlog is handled, then announces it and waits
// for the live records. With handled (the count of the records handled so
// far) and f.limit, it stops f.limit after the clock started, without a
// live phase, and reports the part handled. It returns at once if Run
// stops first (unlike runConsumer, which waits out ctx).
func runS6(ctx context.Context, c *consumer.Consumer, t *tracker, f contenderFlags, handled *atomic.Int64) (result, error) {
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	var (
		res     result
		werr    error
		stopped bool // Run returned, its error in werr
		tick    = time.NewTicker(10 * time.Millisecond)
		limited = handled != nil && f.limit > 0
	)
	defer tick.Stop()
wait:
	for {
		select {
		case <-t.backlogC:
			if t.live > 0 { // the harness's cue for the live phase, which only then has a topic
				fmt.Println("BACKLOG-DONE")
			}
			select {
			case <-t.liveC:
			case werr = <-errc:
				stopped = true
			case <-ctx.Done():
				t.mu.Lock()
				werr = fmt.Errorf("live: %d of %d records: %w", len(t.lat), t.live, ctx.Err())
				t.mu.Unlock()
			}
			t.mu.Lock()
			res = result{Records: float64(t.backlog), Seconds: (t.last - time.Duration(t.first.Load())).Seconds()}
			res.P50, res.P99 = percentiles(t.lat)
			t.mu.Unlock()
			break wait
		case werr = <-errc:
			stopped = true
			break wait
		case <-ctx.Done():
			t.mu.Lock()
			werr = fmt.Errorf("backlog: %d of %d partitions finished: %w", t.finished, len(t.lastOffset), ctx.Err())
			t.mu.Unlock()
			break wait
		case <-tick.C:
			if !limited || !t.started.Load() {
				continue
			}
			if d := time.Since(epoch) - time.Duration(t.first.Load()); d >= f.limit {
				n := handled.Load()
				res = result{Records: float64(n), Seconds: d.Seconds(),
					Extra: map[string]any{"unfinished": true, "handled": n, "backlog": t.backlog}}
				break wait
			}
		}
	}
	if stopped {
		return result{}, fmt.Errorf("consumer stopped: %w", werr)
	}
	_ = c.Close(context.Background())
	if err := <-errc; werr == nil && err != nil && !errors.Is(err, context.Canceled) {
		werr = err
	}
	return res, werr
}

//go:build chaos

package chaos_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/kvstore"
	"github.com/whippet-go/whippet/testkit"
)

// kvValue is the value of the KV store of testStores.
type kvValue struct {
	Round int    `json:"round"`
	Key   string `json:"key"`
}

// writeStats measures the writes of a store: how many, how many failed
// (and were retried), and the longest.
type writeStats struct {
	mu      sync.Mutex
	n       int
	errs    int
	lastErr error
	longest time.Duration
	started []time.Time // start times of the writes that succeeded
}

func (w *writeStats) record(start time.Time, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.errs++
		w.lastErr = err
		return
	}
	w.n++
	w.longest = max(w.longest, time.Since(start))
	w.started = append(w.started, start)
}

// startedSince reports whether a write that started after t succeeded.
func (w *writeStats) startedSince(t time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.started) > 0 && w.started[len(w.started)-1].After(t)
}

// testStores: a kvstore writer puts and deletes 100 keys in rounds while a
// second store replicates them, and 4 goroutines add to 20 atomicstore
// counters through a processor, while the leader of a partition of both is
// SIGKILLed and restarted. Each add has its own command id; a try that is
// not acknowledged within 5s (an Update without its result, a Send without
// Kafka's answer) is sent again with the same id until it is. The stores
// must converge to the writer's state (also a store opened afterwards), and
// every counter must equal the sum of its acknowledged adds, each counted
// once however many times it was sent.
func testStores(t *testing.T, e *env) {
	ctx := ctxT(t, 10*time.Minute)
	// The KV store.
	topic := testkit.TopicName(t.Name())
	openKV := func(name string) *kvstore.Store[string, kvValue] {
		s, err := kvstore.Open(ctx, whippet.Connection{Brokers: e.lk.Brokers}, topic, codec.String(), codec.JSON[kvValue](),
			kvstore.Partitions(3), kvstore.Name(name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close(context.Background()) })
		if err := s.WaitReady(ctxT(t, time.Minute)); err != nil {
			t.Fatal(err)
		}
		return s
	}
	writer := openKV("writer")
	replica := openKV("replica")
	var kvw writeStats
	want := map[string]kvValue{}

	// The atomic store: a processor (a transactional consumer) and a client
	// whose tries time out after tryTimeout, shorter than the fault: an
	// add not acknowledged in time is sent again with its id until it is.
	name := testkit.TopicName(t.Name() + "-counters")
	const tryTimeout = 5 * time.Second
	core, logs := observer.New(zap.WarnLevel)
	defer logWarnings(t, logs)
	log := zap.New(core)
	store, err := atomicstore.Open(ctx, whippet.Connection{Brokers: e.lk.Brokers, Logger: log.Named("store")}, name, codec.String(), atomicstore.Int64(),
		atomicstore.Partitions(3), atomicstore.UpdateTimeout(tryTimeout))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close(context.Background()) })
	proc, err := atomicstore.NewProcessor(whippet.Connection{Brokers: e.lk.Brokers, Logger: log.Named("processor")}, name, codec.String(), atomicstore.Int64(),
		atomicstore.TransactionalID(name+"-processor-0"), atomicstore.Partitions(3))
	if err != nil {
		t.Fatal(err)
	}
	procCtx, stopProc := context.WithCancel(context.Background())
	procErr := make(chan error, 1)
	go func() { procErr <- proc.Run(procCtx) }()
	procRunning := true
	defer func() {
		if procRunning {
			stopProc()
			<-procErr
		}
	}()
	const counters = 20
	var added [counters]atomic.Int64
	var adds, sentAgain, resultsUnknown atomic.Int64
	var atw writeStats

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for round := 1; ; round++ {
			for i := range 100 {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("k%03d", i)
				del := (i+round)%7 == 0
				for {
					// A failed write is written again: both are idempotent.
					start := time.Now()
					wctx, cancel := context.WithTimeout(ctx, time.Minute)
					var err error
					if del {
						err = writer.Delete(wctx, k)
					} else {
						err = writer.Put(wctx, k, kvValue{round, k})
					}
					cancel()
					kvw.record(start, err)
					if err == nil {
						break
					}
					if ctx.Err() != nil {
						return
					}
				}
				if del {
					delete(want, k)
				} else {
					want[k] = kvValue{round, k}
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
	})
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := r.IntN(counters)
				n := int64(1 + r.IntN(5))
				key := fmt.Sprintf("counter-%02d", k)
				// One id per logical add, the same in every try.
				cmd := atomicstore.Add(n).WithID(fmt.Sprintf("g%d-%d", g, i))
				start := time.Now()
				for try := 1; ; try++ {
					tctx, cancel := context.WithTimeout(ctx, tryTimeout)
					var err error
					if g < 2 {
						// Adds that wait for their result through the fault.
						_, err = store.Update(tctx, key, cmd)
					} else {
						// Adds acknowledged by Kafka: a try that times out
						// may have been stored all the same.
						_, err = store.Send(tctx, key, cmd)
					}
					cancel()
					if errors.Is(err, atomicstore.ErrResultUnknown) {
						// Applied once; only its result is lost.
						resultsUnknown.Add(1)
						err = nil
					}
					atw.record(start, err)
					if err == nil {
						break
					}
					if ctx.Err() != nil {
						t.Errorf("add %d to %s (%s), try %d: %v", n, key, cmd.ID(), try, err)
						return
					}
					t.Logf("add %d to %s (%s), try %d: %v; sending it again", n, key, cmd.ID(), try, err)
					sentAgain.Add(1)
				}
				added[k].Add(n)
				adds.Add(1)
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	stopWriters := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	defer stopWriters()

	time.Sleep(3 * time.Second)
	node := e.leaderOf(t, atomicstore.CommandsTopic(name), 0)
	t.Logf("killing %s", e.roles(t, node, topic, atomicstore.CommandsTopic(name), atomicstore.StoreTopic(name), "__consumer_offsets", "__transaction_state"))
	if err := e.lk.Kill(node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { restartIfDown(t, e, node) })
	at := time.Now()
	testkit.Eventually(t, 2*time.Minute, func() error {
		// Both write paths complete writes again with the node down.
		if !kvw.startedSince(at) || !atw.startedSince(at) {
			return errors.New("writes not completing yet with the node down")
		}
		return nil
	})
	e.restart(t, node)
	e.waitHealthy(t, topic, atomicstore.CommandsTopic(name), atomicstore.StoreTopic(name))
	time.Sleep(2 * time.Second)
	stopWriters()
	if t.Failed() {
		t.FailNow()
	}

	// KV: the writer, the live replica and a store opened now agree.
	var offKeys []string
	diverged := func(s *kvstore.Store[string, kvValue]) int {
		got := s.Snapshot()
		n := 0
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				n++
				offKeys = append(offKeys, fmt.Sprintf("%s: got %v (present %v), want %v", k, g, ok, v))
			}
		}
		for k, v := range got {
			if _, ok := want[k]; !ok {
				n++
				offKeys = append(offKeys, fmt.Sprintf("%s: got %v, want deleted", k, v))
			}
		}
		return n
	}
	waitUntil(time.Minute, func() bool { return diverged(replica) == 0 })
	fresh := openKV("fresh")
	kvLost := diverged(writer) + diverged(replica) + diverged(fresh)
	report(row{scenario: "KV store through a broker restart", records: kvw.n, lost: kvLost, recover: "longest write " + secs(kvw.longest),
		notes: fmt.Sprintf("writer, live replica and a store opened afterwards hold the same %d keys (lost = keys that differ); %d write errors, written again", len(want), kvw.errs)})
	if kvLost > 0 {
		t.Errorf("stores differ from the writer's %d keys: writer %d, replica %d, fresh %d keys off: %v", len(want), diverged(writer), diverged(replica), diverged(fresh), offKeys)
		for _, r := range e.readAll(t, topic, true) {
			t.Logf("%s[%d]@%d %s = %s (at %s)", topic, r.Partition, r.Offset, r.Key, r.Value, r.Timestamp.Format("15:04:05.000"))
		}
	}

	// Atomic store: every counter is the sum of its adds, in the client's
	// replica and in one opened now.
	off := func(s *atomicstore.Store[string, int64]) (less, more int64) {
		for k := range counters {
			got, _ := s.Get(fmt.Sprintf("counter-%02d", k))
			if d := added[k].Load() - got; d > 0 {
				less += d
			} else {
				more -= d
			}
		}
		return less, more
	}
	waitUntil(2*time.Minute, func() bool { l, m := off(store); return l == 0 && m == 0 })
	freshStore, err := atomicstore.Open(ctx, whippet.Connection{Brokers: e.lk.Brokers}, name, codec.String(), atomicstore.Int64())
	if err != nil {
		t.Fatal(err)
	}
	defer freshStore.Close(context.Background())
	if err := freshStore.WaitReady(ctxT(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	less, more := off(store)
	l2, m2 := off(freshStore)
	var sum int64
	for k := range counters {
		sum += added[k].Load()
	}
	report(row{scenario: "atomic store counters through a broker restart, clients sending again after a timeout", records: int(adds.Load()), lost: int(less + l2), dup: int(more + m2),
		recover: "longest add " + secs(atw.longest),
		notes: fmt.Sprintf("%d counters, sum %d of the acknowledged adds; lost/duplicated = amount missing/extra in the client's replica + a fresh one; %d tries (Update or Send) timed out after %v or failed and were sent again with the same id; %d results unknown (applied, result lost)",
			counters, sum, sentAgain.Load(), tryTimeout, resultsUnknown.Load())})
	if less+more+l2+m2 > 0 {
		t.Errorf("counters off: replica %d missing %d extra, fresh store %d missing %d extra", less, more, l2, m2)
	}
	stopProc()
	procRunning = false
	if err := <-procErr; err != nil {
		t.Errorf("processor Run: %v", err)
	}
}

package atomicstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/testkit"
)

// fetchGate stalls a client's fetches once armed: the first record fetched
// after arm blocks the client's fetch goroutine (no further fetch is sent)
// until release, as a replica stalls while its broker restarts.
type fetchGate struct {
	armed    atomic.Bool
	blocked  chan struct{} // closed when a fetch is held
	released chan struct{}
	once     sync.Once
	block    sync.Once
}

func newFetchGate() *fetchGate {
	return &fetchGate{blocked: make(chan struct{}), released: make(chan struct{})}
}

func (g *fetchGate) OnFetchRecordBuffered(*kgo.Record) {
	if g.armed.Load() {
		g.block.Do(func() { close(g.blocked) })
		<-g.released
	}
}

func (g *fetchGate) release() { g.once.Do(func() { close(g.released) }) }

// storeHas reports whether the store topic still holds a record with the
// command id (read_committed, from the start).
func storeHas(ctx context.Context, t *testing.T, kc *testkit.Cluster, name, id string) bool {
	t.Helper()
	adm := kc.Admin(t)
	ends, err := adm.ListCommittedOffsets(ctx, atomicstore.StoreTopic(name))
	if err != nil {
		t.Fatal(err)
	}
	cl := kc.Client(t, kgo.ConsumeTopics(atomicstore.StoreTopic(name)), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(), kgo.FetchMaxWait(100*time.Millisecond))
	defer cl.Close()
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	found := false
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading the store topic: %v", ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == atomicstore.HeaderCommandID && string(h.Value) == id {
					found = true
				}
			}
			if end, ok := left[r.Partition]; ok && r.Offset >= end-1 {
				delete(left, r.Partition)
			}
		})
	}
	return found
}

// TestUpdateGetsItsResultAfterCompactionRemovedIt: a client's replica
// stalls (as when the leader of its store partition restarts) while the
// processor applies the client's Update and then more updates of the same
// key; compaction (the test broker rolls segments every 500ms and compacts
// at once) removes the record that carried the Update's result before the
// replica fetches it. The Update must still get its result once the replica
// goes on, not ErrUpdateTimeout.
func TestUpdateGetsItsResultAfterCompactionRemovedIt(t *testing.T) {
	v, a, err := updateWhileCompacted(t)
	if err != nil || v != 1 {
		t.Fatalf("Update whose result record was compacted away before the replica fetched it: %d, %v; want 1, nil", v, err)
	}
	if v := counter(t, a, "k"); v != 1 {
		t.Fatalf("k = %d after one add of 1 (and adds of 0)", v)
	}
}

// TestUpdateResultUnknownBeyondTheWindow: as above, but the processor's
// dedup window (1 id) no longer has the command when the Update asks for
// its result: ErrResultUnknown, and the add counted once.
func TestUpdateResultUnknownBeyondTheWindow(t *testing.T) {
	v, a, err := updateWhileCompacted(t, atomicstore.DedupWindow(1))
	if !errors.Is(err, atomicstore.ErrResultUnknown) {
		t.Fatalf("Update whose result was compacted away and left the window: %d, %v; want ErrResultUnknown", v, err)
	}
	if v := counter(t, a, "k"); v != 1 {
		t.Fatalf("k = %d after one add of 1 (and adds of 0)", v)
	}
}

// updateWhileCompacted runs the scenario of
// TestUpdateGetsItsResultAfterCompactionRemovedIt with a processor with
// opts, and returns what the Update returned and its store.
func updateWhileCompacted(t *testing.T, opts ...atomicstore.Option) (int64, *atomicstore.Store[string, int64], error) {
	kc := testkit.Shared(t)
	name := testkit.TopicName(t.Name())
	runProcessor(t, kc, name, name+"-p1", opts...)
	gate := newFetchGate()
	a, err := atomicstore.Open(context.Background(), whippet.Connection{Brokers: kc.Brokers, ClientOptions: []kgo.Opt{kgo.WithHooks(gate)}}, name, codec.String(), atomicstore.Int64(), atomicstore.Partitions(3), atomicstore.UpdateTimeout(90*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	t.Cleanup(gate.release) // before Close: a held fetch would hold Close
	b := openStore(t, kc, name, atomicstore.Int64())
	if err := a.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := counter(t, a, "k"); v != 0 {
		t.Fatalf("k = %d at start", v)
	}

	gate.armed.Store(true)
	if _, err := b.Update(context.Background(), "other", atomicstore.Add(1)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gate.blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("a's replica did not fetch b's update")
	}

	const id = "add-while-stalled"
	type res struct {
		v   int64
		err error
	}
	done := make(chan res, 1)
	go func() {
		v, err := a.Update(context.Background(), "k", atomicstore.Add(1).WithID(id))
		done <- res{v, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	testkit.Eventually(t, 40*time.Second, func() error {
		if !storeHas(ctx, t, kc, name, id) {
			return fmt.Errorf("no result for %s in the store topic yet", id)
		}
		return nil
	})
	// More updates of k, across segment rolls, until compaction removed
	// the record with the Update's result.
	testkit.Eventually(t, 40*time.Second, func() error {
		if _, err := b.Update(ctx, "k", atomicstore.Add(0)); err != nil {
			return err
		}
		if storeHas(ctx, t, kc, name, id) {
			time.Sleep(300 * time.Millisecond) // the broker rolls segments every 500ms, on append
			return fmt.Errorf("the result of %s is not compacted away yet", id)
		}
		return nil
	})
	gate.release()
	r := <-done
	return r.v, a, r.err
}

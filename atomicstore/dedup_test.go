package atomicstore_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/testkit"
)

// runProcessor starts a counter processor and returns a function that stops
// it (and fails the test if Run failed); the test's cleanup stops it too.
func runProcessor(t *testing.T, kc *testkit.Cluster, name, txnID string, opts ...atomicstore.Option) (stop func()) {
	t.Helper()
	p, err := atomicstore.NewProcessor(whippet.Connection{Brokers: kc.Brokers}, name, codec.String(), atomicstore.Int64(), append([]atomicstore.Option{
		atomicstore.TransactionalID(txnID), atomicstore.Partitions(3),
		atomicstore.TransactionBatch(1000, 20*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("processor %s: %v", txnID, err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// counter returns k's value as the processor has it now: the result of an
// Add(0), which is applied after every command sent before it.
func counter(t *testing.T, s *atomicstore.Store[string, int64], k string) int64 {
	t.Helper()
	v, err := s.Update(context.Background(), k, atomicstore.Add(0))
	if err != nil {
		t.Fatalf("reading %s: %v", k, err)
	}
	return v
}

// TestUpdateRetriedAfterTimeoutAppliedOnce: an Update times out because no
// processor runs; the client sends the same update again (same command id)
// once one does. The add counts once, and both the retry and a later third
// send get the result of the one application.
func TestUpdateRetriedAfterTimeoutAppliedOnce(t *testing.T) {
	kc := testkit.Shared(t)
	name := testkit.TopicName(t.Name())
	s := openStore(t, kc, name, atomicstore.Int64())
	add := atomicstore.Add(5).WithID("order-1:add-5")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := s.Update(ctx, "k", add)
	cancel()
	if !errors.Is(err, atomicstore.ErrUpdateTimeout) {
		t.Fatalf("first Update without a processor: %v, want ErrUpdateTimeout", err)
	}
	runProcessor(t, kc, name, name+"-p1")
	for i := range 2 {
		v, err := s.Update(context.Background(), "k", add)
		if err != nil || v != 5 {
			t.Errorf("Update sent again (%d): %d, %v; want 5, nil", i+1, v, err)
		}
	}
	if v := counter(t, s, "k"); v != 5 {
		t.Fatalf("k = %d after one add of 5 sent three times with one id: applied %d times", v, v/5)
	}
}

// TestSameIDSentTwiceAppliedOnce: three Updates with one command id, two
// from the same client, run at once. The command is applied once and each
// caller gets its result.
func TestSameIDSentTwiceAppliedOnce(t *testing.T) {
	kc := testkit.Shared(t)
	name := testkit.TopicName(t.Name())
	runProcessor(t, kc, name, name+"-p1")
	s1 := openStore(t, kc, name, atomicstore.Int64())
	s2 := openStore(t, kc, name, atomicstore.Int64())
	if v := counter(t, s1, "k"); v != 0 {
		t.Fatalf("k = %d at start", v)
	}
	add := atomicstore.Add(3).WithID("same-id")
	var wg sync.WaitGroup
	for i, s := range []*atomicstore.Store[string, int64]{s1, s1, s2} {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if v, err := s.Update(ctx, "k", add); err != nil || v != 3 {
				t.Errorf("Update %d: %d, %v; want 3, nil", i, v, err)
			}
		})
	}
	wg.Wait()
	if v := counter(t, s1, "k"); v != 3 {
		t.Fatalf("k = %d after one add of 3 sent three times with one id", v)
	}
}

// TestDedupSurvivesProcessorRestart: commands applied (one rejected) by a
// processor that then stops are sent again, with their ids, to another
// processor instance, which rebuilt the partition from the store topic: a
// retried add is not applied again, and a retried compare-and-set that was
// rejected stays rejected, though it would match now.
func TestDedupSurvivesProcessorRestart(t *testing.T) {
	kc := testkit.Shared(t)
	name := testkit.TopicName(t.Name())
	stop := runProcessor(t, kc, name, name+"-p1")
	s := openStore(t, kc, name, atomicstore.Int64())
	cas := atomicstore.CompareAndSet[int64](2, 9).WithID("cas-1")
	add := atomicstore.Add(2).WithID("add-1")
	if _, err := s.Update(context.Background(), "k", cas); !errors.Is(err, atomicstore.ErrCASMismatch) {
		t.Fatalf("CAS on a missing key: %v, want ErrCASMismatch", err)
	}
	if v, err := s.Update(context.Background(), "k", add); err != nil || v != 2 {
		t.Fatalf("add: %d, %v", v, err)
	}
	stop()

	runProcessor(t, kc, name, name+"-p2")
	v, err := s.Update(context.Background(), "k", cas)
	if !errors.Is(err, atomicstore.ErrCASMismatch) {
		t.Errorf("CAS sent again after the restart: %d, %v; want its original outcome, ErrCASMismatch", v, err)
	}
	if v, err := s.Update(context.Background(), "k", add); err != nil || v != 2 {
		t.Errorf("add sent again after the restart: %d, %v; want 2, nil", v, err)
	}
	if v := counter(t, s, "k"); v != 2 {
		t.Fatalf("k = %d, want 2: a command sent again after a processor restart was applied again", v)
	}
}

// TestDedupWindowBound: with a window of 2 ids, a command sent again after
// two others reached its partition is applied again (the documented limit);
// one sent again within the window is not.
func TestDedupWindowBound(t *testing.T) {
	kc := testkit.Shared(t)
	name := testkit.TopicName(t.Name())
	runProcessor(t, kc, name, name+"-p1", atomicstore.Partitions(1), atomicstore.DedupWindow(2))
	s := openStore(t, kc, name, atomicstore.Int64(), atomicstore.Partitions(1))
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c", "c"} {
		if _, err := s.Update(ctx, "k", atomicstore.Add(1).WithID(id)); err != nil {
			t.Fatal(err)
		}
	}
	if v := counter(t, s, "k"); v != 3 { // the counter's Add(0) is one more id: b leaves
		t.Fatalf("k = %d after a, b, c, c: want 3", v)
	}
	if v, err := s.Update(ctx, "k", atomicstore.Add(1).WithID("a")); err != nil || v != 4 {
		t.Fatalf("a sent again after 3 other ids: %d, %v; want 4 (applied again: beyond the window)", v, err)
	}
}

// TestIDReusedForAnotherKey: an id applied for one key and sent for
// another key of the same partition is rejected, and changes nothing.
func TestIDReusedForAnotherKey(t *testing.T) {
	kc := testkit.Shared(t)
	name := testkit.TopicName(t.Name())
	runProcessor(t, kc, name, name+"-p1", atomicstore.Partitions(1))
	s := openStore(t, kc, name, atomicstore.Int64(), atomicstore.Partitions(1))
	ctx := context.Background()
	if v, err := s.Update(ctx, "k1", atomicstore.Add(1).WithID("x")); err != nil || v != 1 {
		t.Fatalf("k1: %d, %v", v, err)
	}
	_, err := s.Update(ctx, "k2", atomicstore.Add(1).WithID("x"))
	if !errors.Is(err, atomicstore.ErrRejected) || !strings.Contains(err.Error(), "already used for another key") {
		t.Fatalf("id of k1 sent for k2: %v; want ErrRejected", err)
	}
	if v1, v2 := counter(t, s, "k1"), counter(t, s, "k2"); v1 != 1 || v2 != 0 {
		t.Fatalf("k1 = %d, k2 = %d; want 1, 0", v1, v2)
	}
}

// TestWithIDChecked: an empty or too long id is refused before anything is
// sent.
func TestWithIDChecked(t *testing.T) {
	kc := testkit.Shared(t)
	s := openStore(t, kc, testkit.TopicName(t.Name()), atomicstore.Int64())
	for _, id := range []string{"", strings.Repeat("i", atomicstore.MaxCommandIDLen+1)} {
		if _, err := s.Update(context.Background(), "k", atomicstore.Add(1).WithID(id)); err == nil || !strings.Contains(err.Error(), "WithID") {
			t.Errorf("Update with a %d-byte id: %v", len(id), err)
		}
		if _, err := s.Send(context.Background(), "k", atomicstore.Add(1).WithID(id)); err == nil || !strings.Contains(err.Error(), "WithID") {
			t.Errorf("Send with a %d-byte id: %v", len(id), err)
		}
	}
}

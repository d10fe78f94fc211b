package atomicstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/testkit"
)

func startProcessor[V any](t *testing.T, kc *testkit.Cluster, name, txnID string, values codec.Codec[V], setup func(*atomicstore.Processor[string, V]), opts ...atomicstore.Option) {
	t.Helper()
	startProcessorConn(t, whippet.Connection{Brokers: kc.Brokers}, name, txnID, values, setup, opts...)
}

// startProcessorConn runs a processor until the test ends, then closes it.
func startProcessorConn[V any](t *testing.T, conn whippet.Connection, name, txnID string, values codec.Codec[V], setup func(*atomicstore.Processor[string, V]), opts ...atomicstore.Option) {
	t.Helper()
	p, err := atomicstore.NewProcessor(conn, name, codec.String(), values, append([]atomicstore.Option{
		atomicstore.TransactionalID(txnID), atomicstore.Partitions(3),
		atomicstore.TransactionBatch(1000, 20*time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(p)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(context.Background()) }()
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("closing the processor: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("processor: %v", err)
		}
	})
}

func openStore[V any](t *testing.T, kc *testkit.Cluster, name string, values codec.Codec[V], opts ...atomicstore.Option) *atomicstore.Store[string, V] {
	t.Helper()
	return openStoreConn(t, whippet.Connection{Brokers: kc.Brokers}, name, values, opts...)
}

// openStoreConn opens a store, waits until it is ready, and closes it when
// the test ends.
func openStoreConn[V any](t *testing.T, conn whippet.Connection, name string, values codec.Codec[V], opts ...atomicstore.Option) *atomicstore.Store[string, V] {
	t.Helper()
	s, err := atomicstore.Open(context.Background(), conn, name, codec.String(), values, append([]atomicstore.Option{
		atomicstore.Partitions(3), atomicstore.UpdateTimeout(60 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	if err := s.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCounterOperations(t *testing.T) {
	kc := testkit.Shared(t)
	name := testkit.TopicName(t.Name())
	startProcessor(t, kc, name, name+"-p1", atomicstore.Int64(), nil)
	s := openStore(t, kc, name, atomicstore.Int64())
	ctx := context.Background()

	const workers, adds = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range adds {
				if _, err := s.Update(ctx, "c"+strconv.Itoa(w%2), atomicstore.Add(1)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, k := range []string{"c0", "c1"} {
		v, err := s.Update(ctx, k, atomicstore.Add(0))
		if err != nil || v != workers/2*adds {
			t.Fatalf("%s = %d, %v; want %d", k, v, err, workers/2*adds)
		}
	}
	if v, err := s.Update(ctx, "c0", atomicstore.Set[int64](7)); err != nil || v != 7 {
		t.Fatalf("Set: %d, %v", v, err)
	}
	if v, err := s.Update(ctx, "c0", atomicstore.CompareAndSet[int64](7, 9)); err != nil || v != 9 {
		t.Fatalf("CAS: %d, %v", v, err)
	}
	v, err := s.Update(ctx, "c0", atomicstore.CompareAndSet[int64](7, 11))
	if !errors.Is(err, atomicstore.ErrRejected) || !errors.Is(err, atomicstore.ErrCASMismatch) || v != 9 {
		t.Fatalf("CAS mismatch: %d, %v", v, err)
	}
	if _, err := s.Update(ctx, "c0", atomicstore.Call("nope", nil)); !errors.Is(err, atomicstore.ErrRejected) {
		t.Fatalf("unknown op: %v", err)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if v, ok := s.Get("c0"); !ok || v != 9 {
			return fmt.Errorf("Get(c0) = %d, %v", v, ok)
		}
		return nil
	})
}

type tags struct {
	Seen []string `json:"seen"`
}

func TestUserFunctionAndEmit(t *testing.T) {
	kc := testkit.Shared(t)
	name := testkit.TopicName(t.Name())
	events := name + "-events"
	kc.CreateTopic(t, events, 1, nil)
	startProcessor(t, kc, name, name+"-p1", codec.JSON[tags](), func(p *atomicstore.Processor[string, tags]) {
		if err := p.Register("tag", func(ctx context.Context, key string, cur tags, exists bool, arg []byte) (tags, error) {
			for _, s := range cur.Seen {
				if s == string(arg) {
					return cur, nil
				}
			}
			if string(arg) == "bad" {
				return cur, errors.New("bad tag")
			}
			cur.Seen = append(cur.Seen, string(arg))
			if len(cur.Seen) == 3 {
				if err := atomicstore.Emit(ctx, &kgo.Record{Topic: events, Key: []byte(key), Value: []byte("full")}); err != nil {
					return cur, err
				}
			}
			return cur, nil
		}); err != nil {
			t.Fatal(err)
		}
	})
	s := openStore(t, kc, name, codec.JSON[tags]())
	ctx := context.Background()
	for _, a := range []string{"a", "b", "a", "bad", "c", "c"} {
		v, err := s.Update(ctx, "k", atomicstore.Call("tag", []byte(a)))
		if (a == "bad") != errors.Is(err, atomicstore.ErrRejected) {
			t.Fatalf("tag %s: %v, %v", a, v, err)
		}
	}
	v, _ := s.Update(ctx, "k", atomicstore.Call("tag", []byte("a")))
	if fmt.Sprint(v.Seen) != "[a b c]" {
		t.Fatalf("got %v", v.Seen)
	}
	recs := kc.ConsumeUntil(ctx, t, events, func(all []*kgo.Record) bool { return len(all) >= 1 })
	time.Sleep(time.Second)
	if len(recs) != 1 || string(recs[0].Value) != "full" {
		t.Fatalf("events: %d", len(recs))
	}
}

// A partitioner in the client options (a service may set one for all its
// producers, in its one Connection) must not move commands off their key's
// partition: the processor refuses those (dead letters), and Update would
// wait for a result that never comes.
func TestClientPartitionerKeepsCommandsCoPartitioned(t *testing.T) {
	kc := testkit.Shared(t)
	name := testkit.TopicName(t.Name())
	startProcessor(t, kc, name, name+"-p1", atomicstore.Int64(), nil)
	s := openStoreConn(t, whippet.Connection{Brokers: kc.Brokers, ClientOptions: []kgo.Opt{kgo.RecordPartitioner(kgo.RoundRobinPartitioner())}},
		name, atomicstore.Int64(), atomicstore.UpdateTimeout(10*time.Second))
	ctx := context.Background()
	// Round robin spreads six commands over the 3 partitions: at least
	// four land on another partition than their key's.
	for i := range 6 {
		if v, err := s.Update(ctx, "k", atomicstore.Add(1)); err != nil || v != int64(i+1) {
			t.Fatalf("add %d: %d, %v; want %d", i, v, err, i+1)
		}
	}
}

// The same partitioner given to the processor must not move store records
// off their key's partition either: a processor rebuilds a partition's
// values from that partition only, so after a restart it would apply the
// next command to a stale value.
func TestProcessorPartitionerKeepsStoreRecordsCoPartitioned(t *testing.T) {
	kc := testkit.Shared(t)
	name := testkit.TopicName(t.Name())
	rr := whippet.Connection{Brokers: kc.Brokers, ClientOptions: []kgo.Opt{kgo.RecordPartitioner(kgo.RoundRobinPartitioner())}}
	s := openStore(t, kc, name, atomicstore.Int64(), atomicstore.UpdateTimeout(20*time.Second))
	ctx := context.Background()
	for round := range 2 {
		// A new processor instance each round: it rebuilds the
		// partition of "k" from the store topic.
		func() {
			p, err := atomicstore.NewProcessor(rr, name, codec.String(), atomicstore.Int64(),
				atomicstore.TransactionalID(name+"-p1"), atomicstore.Partitions(3), atomicstore.TransactionBatch(1000, 20*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			pctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- p.Run(pctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("processor: %v", err)
				}
			}()
			for i := range 6 {
				want := int64(6*round + i + 1)
				if v, err := s.Update(ctx, "k", atomicstore.Add(1)); err != nil || v != want {
					t.Fatalf("round %d, add %d: %d, %v; want %d", round, i, v, err, want)
				}
			}
		}()
	}
	// Whatever the values above (round robin may happen to put the last
	// record on the right partition), every store record of "k" must be on
	// one partition: the others stay empty (no record, no transaction
	// marker). End offsets, as compaction may remove old values.
	ends, err := kc.Admin(t).ListEndOffsets(ctx, atomicstore.StoreTopic(name))
	if err != nil {
		t.Fatal(err)
	}
	written := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			written[o.Partition] = o.Offset
		}
	})
	if len(written) != 1 {
		t.Fatalf("the store records of one key went to several partitions (end offsets %v)", written)
	}
}

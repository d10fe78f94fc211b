package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// plainMember is a franz-go group member that only tracks what it owns.
type plainMember struct {
	mu    sync.Mutex
	owned map[int32]bool
}

func joinPlain(t *testing.T, kc *testkit.Cluster, group, topic string) *plainMember {
	t.Helper()
	m := &plainMember{owned: map[int32]bool{}}
	set := func(on bool) func(context.Context, *kgo.Client, map[string][]int32) {
		return func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, p := range ps[topic] {
				if on {
					m.owned[p] = true
				} else {
					delete(m.owned, p)
				}
			}
		}
	}
	kc.Client(t, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(set(true)), kgo.OnPartitionsRevoked(set(false)), kgo.OnPartitionsLost(set(false)))
	return m
}

func (m *plainMember) partitions() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.owned))
}

func assignedIDs(c *consumer.Consumer) []int32 {
	var out []int32
	for _, s := range c.Partitions() {
		out = append(out, s.Partition)
	}
	return out
}

func blockedIDs(c *consumer.Consumer) []int32 {
	var out []int32
	for _, b := range c.Blocked() {
		out = append(out, b.Partition)
	}
	return out
}

// franz-go's GroupTransactSession calls OnPartitionsRevoked only for the
// first revocation until the transaction ends. A second member joining
// while a blocking retry keeps the transaction open takes a partition the
// consumer must then let go of all the same: not listed, not blocked on,
// not retried.
func TestTransactionalSecondRevocationInOneTransaction(t *testing.T) {
	kc := testkit.Shared(t)
	const parts = 6
	topic := kc.NewTopic(t, parts, nil)
	group := topic
	produceSpread(t, kc, topic, parts, parts, nil) // one record per partition

	var failing atomic.Bool
	failing.Store(true)
	var mu sync.Mutex
	attempts := map[int32]int{}
	a := newTxnConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		mu.Lock()
		attempts[r.Partition]++
		mu.Unlock()
		if failing.Load() {
			return errors.New("the stock service is down")
		}
		return nil
	}), group, group+"-txn", consumer.Topics(topic),
		consumer.Retry(retry.BlockingBackoff(retry.Exponential{Initial: 50 * time.Millisecond, Max: 50 * time.Millisecond, Multiplier: 1, Retries: 1000})),
		consumer.TransactionTimeout(2*time.Minute))
	run(t, a)
	t.Cleanup(func() { failing.Store(false) }) // runs before a's Close
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := blockedIDs(a); len(got) != parts {
			return fmt.Errorf("blocked partitions %v, want all %d", got, parts)
		}
		return nil
	})

	// complement is what the plain members leave to a.
	complement := func(ms ...*plainMember) ([]int32, error) {
		others := map[int32]bool{}
		for _, m := range ms {
			for _, p := range m.partitions() {
				if others[p] {
					return nil, fmt.Errorf("partition %d owned twice", p)
				}
				others[p] = true
			}
		}
		var left []int32
		for p := range int32(parts) {
			if !others[p] {
				left = append(left, p)
			}
		}
		return left, nil
	}
	b := joinPlain(t, kc, group, topic)
	testkit.Eventually(t, 60*time.Second, func() error {
		if got := b.partitions(); len(got) != parts/2 {
			return fmt.Errorf("b owns %v, waiting for %d", got, parts/2)
		}
		return nil
	})
	c := joinPlain(t, kc, group, topic)
	testkit.Eventually(t, 60*time.Second, func() error {
		if gb, gc := b.partitions(), c.partitions(); len(gb) != parts/3 || len(gc) != parts/3 {
			return fmt.Errorf("b owns %v, c owns %v, waiting for %d each", gb, gc, parts/3)
		}
		return nil
	})
	want, err := complement(b, c)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := assignedIDs(a); !slices.Equal(got, want) {
			return fmt.Errorf("a lists partitions %v; it owns %v (b %v, c %v)", got, want, b.partitions(), c.partitions())
		}
		if got := blockedIDs(a); !slices.Equal(got, want) {
			return fmt.Errorf("a is blocked on partitions %v; it owns %v", got, want)
		}
		return nil
	})
	// A partition let go of is no longer retried: its attempts stop while
	// those of a's own partitions go on.
	mu.Lock()
	before := maps.Clone(attempts)
	mu.Unlock()
	testkit.Eventually(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range want {
			if attempts[p] < before[p]+3 {
				return fmt.Errorf("attempts %v, waiting for 3 more on each of a's partitions %v", attempts, want)
			}
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for p := range int32(parts) {
		if !slices.Contains(want, p) && attempts[p] != before[p] {
			t.Errorf("partition %d, owned by another member, was retried %d more times by a", p, attempts[p]-before[p])
		}
	}
}

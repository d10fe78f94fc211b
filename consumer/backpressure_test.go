package consumer_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/testkit"
)

// TestBackpressureWaitsForADrainingPartition: a key-parallel partition whose
// one fetch (150 records) is far over its PartitionBuffer (40) and drains at a
// steady pace (one record per 10ms, paced by the test) takes longer than
// BackpressureWait (1s) to drain to half the bound (about 1.3s) but finishes
// more records during the wait than it still has to. Its fetching is not
// paused: a pause would drop its prefetched fetch, and its next fetch would
// wait behind the long poll of the consumer's other, idle topic (up to
// FetchMaxWait), the 0.5s stalls of S3 in issue 20. A partition with no
// progress is still paused (TestBackpressurePausesAndResumesFetching).
func TestBackpressureWaitsForADrainingPartition(t *testing.T) {
	kc := testkit.Shared(t)
	busy := kc.NewTopic(t, 1, nil)
	idle := kc.NewTopic(t, 1, nil)
	const n, bound = 150, 40
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: busy, Key: []byte(strconv.Itoa(i % 10)), Value: []byte(strconv.Itoa(i))}
	}
	// One ProduceSync: the records land in one batch, so the consumer's
	// first fetch holds all of them.
	if err := kc.Client(t).ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	pace := time.NewTicker(10 * time.Millisecond)
	defer pace.Stop()
	var done atomic.Int64
	c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		select {
		case <-pace.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		done.Add(1)
		return nil
	}), busy, consumer.Topics(busy, idle), consumer.KeyParallel(4),
		consumer.PartitionBuffer(bound), consumer.BackpressureWait(time.Second))
	run(t, c)

	// Watch the partition's state until every record is handled.
	sample := time.NewTicker(2 * time.Millisecond)
	defer sample.Stop()
	deadline := time.After(60 * time.Second)
	var peak int
	var pausedAt []string
	for done.Load() < n {
		select {
		case <-sample.C:
		case <-deadline:
			t.Fatalf("handled %d of %d records", done.Load(), n)
		}
		for _, ps := range c.Partitions() {
			if ps.Topic != busy {
				continue
			}
			peak = max(peak, ps.Buffered)
			if ps.Backpressure {
				pausedAt = append(pausedAt, fmt.Sprintf("%d buffered after %d handled", ps.Buffered, done.Load()))
			}
		}
	}
	if peak < bound {
		t.Fatalf("at most %d records buffered, never the bound %d: the fetch was split, the test proves nothing", peak, bound)
	}
	if len(pausedAt) > 0 {
		t.Fatalf("fetching paused for backpressure while the partition drained steadily (%d samples; first: %s, last: %s)",
			len(pausedAt), pausedAt[0], pausedAt[len(pausedAt)-1])
	}
	t.Logf("peak %d buffered (bound %d); never paused while draining", peak, bound)
}

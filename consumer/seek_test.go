package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// seekModes run a seek test in at-least-once mode, in partition order and
// key-parallel, and in transactional mode.
var seekModes = []struct {
	name string
	opts func(t *testing.T) []consumer.Option
}{
	{"at-least-once", func(*testing.T) []consumer.Option {
		return []consumer.Option{consumer.CommitInterval(100 * time.Millisecond)}
	}},
	{"key-parallel", func(*testing.T) []consumer.Option {
		return []consumer.Option{consumer.CommitInterval(100 * time.Millisecond), consumer.KeyParallel(4)}
	}},
	{"transactional", func(t *testing.T) []consumer.Option {
		return []consumer.Option{consumer.Transactional(testkit.TopicName(t.Name()) + "-txn")}
	}},
}

// after returns the events handled after the first n, per partition, in
// order.
func after(h *handled, n int) map[int32][]int64 {
	out := map[int32][]int64{}
	for _, e := range h.snapshot()[n:] {
		out[e.partition] = append(out[e.partition], e.offset)
	}
	return out
}

func offsetsFrom(from, to int64) []int64 {
	var out []int64
	for o := from; o < to; o++ {
		out = append(out, o)
	}
	return out
}

// TestSeekToTimeRehandlesExactlyTheRecordsAtOrAfterIt produces, in each of
// 3 partitions, records stamped an hour ago and then records stamped from
// half an hour ago on, lets a running consumer handle them all, and seeks
// every partition of the topic to half an hour ago: in every partition,
// the records handled again are exactly the later ones, in order, and the
// committed offsets reach the end again.
func TestSeekToTimeRehandlesExactlyTheRecordsAtOrAfterIt(t *testing.T) {
	for _, mode := range seekModes {
		t.Run(mode.name, func(t *testing.T) {
			kc := testkit.Shared(t)
			const parts = 3
			topic := kc.NewTopic(t, parts, nil)
			group := topic
			cut := time.Now().Add(-30 * time.Minute).Truncate(time.Millisecond)
			before := map[int32]int64{0: 7, 1: 3, 2: 11} // records before cut, per partition
			const later = 6                              // records at or after cut, per partition
			var recs []*kgo.Record
			for p := int32(0); p < parts; p++ {
				for i := int64(0); i < before[p]; i++ {
					recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Timestamp: cut.Add(-time.Hour + time.Duration(i)*time.Millisecond)})
				}
				for i := range int64(later) {
					recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Timestamp: cut.Add(time.Duration(i) * time.Millisecond)})
				}
			}
			cl := kc.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
			if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			var h handled
			c := newConsumer(t, kc, h.handler("c"), group, append(mode.opts(t), consumer.Topics(topic))...)
			errc := make(chan error, 1)
			go func() { errc <- c.Run(context.Background()) }()
			defer func() { c.Close(context.Background()); <-errc }()
			testkit.Eventually(t, 60*time.Second, func() error {
				if d := h.distinct(); d != len(recs) {
					return fmt.Errorf("handled %d of %d", d, len(recs))
				}
				return nil
			})
			n := len(h.snapshot())

			res, err := c.SeekTo(context.Background(), topic, consumer.AllPartitions, consumer.SeekTime(cut))
			if err != nil {
				t.Fatalf("SeekTo: %v", err)
			}
			slices.SortFunc(res, func(a, b consumer.SeekResult) int { return int(a.Partition - b.Partition) })
			if len(res) != parts {
				t.Fatalf("SeekTo moved %d partitions, want %d: %+v", len(res), parts, res)
			}
			for _, r := range res {
				if end := before[r.Partition] + later; r.Topic != topic || r.To != before[r.Partition] || r.From != end {
					t.Errorf("SeekTo result %+v, want %s[%d] from %d to %d", r, topic, r.Partition, end, before[r.Partition])
				}
			}
			testkit.Eventually(t, 60*time.Second, func() error {
				if got := len(h.snapshot()) - n; got < parts*later {
					return fmt.Errorf("handled %d records again, want %d", got, parts*later)
				}
				got := committed(t, kc.Admin(t), group, topic)
				for p := range int32(parts) {
					if got[p] != before[p]+later {
						return fmt.Errorf("committed %v, want every partition at its end", got)
					}
				}
				return nil
			})
			c.Close(context.Background())
			if err := <-errc; err != nil {
				t.Fatalf("Run: %v", err)
			}
			errc <- nil
			again := after(&h, n)
			for p := range int32(parts) {
				if want := offsetsFrom(before[p], before[p]+later); !slices.Equal(again[p], want) {
					t.Errorf("partition %d handled %v again after the seek to %s, want %v", p, again[p], cut.Format(time.RFC3339Nano), want)
				}
			}
			t.Logf("seek to a time: %v", again)
		})
	}
}

// TestSeekToOffset moves a partition back to an offset, forward beyond its
// end (kept at the end), and to its end; and refuses partitions that are not
// the consumer's and invalid targets. It leaks no goroutine.
func TestSeekToOffset(t *testing.T) {
	for _, mode := range seekModes {
		t.Run(mode.name, func(t *testing.T) {
			kc := testkit.Shared(t)
			topic := kc.NewTopic(t, 1, nil)
			group := topic
			produceSpread(t, kc, topic, 1, 20, nil)
			adm := kc.Admin(t)
			ignore := goleak.IgnoreCurrent()
			var h handled
			c := newConsumer(t, kc, h.handler("c"), group, append(mode.opts(t), consumer.Topics(topic))...)
			errc := make(chan error, 1)
			go func() { errc <- c.Run(context.Background()) }()
			defer func() { c.Close(context.Background()); <-errc }()
			testkit.Eventually(t, 60*time.Second, func() error {
				if d := h.distinct(); d != 20 {
					return fmt.Errorf("handled %d of 20", d)
				}
				return nil
			})
			n := len(h.snapshot())
			ctx := context.Background()
			if _, err := c.SeekTo(ctx, topic, 1, consumer.SeekOffset(0)); !errors.Is(err, consumer.ErrNotAssigned) {
				t.Errorf("SeekTo of a partition not assigned: %v, want ErrNotAssigned", err)
			}
			if _, err := c.SeekTo(ctx, "not-"+topic, consumer.AllPartitions, consumer.SeekEnd()); !errors.Is(err, consumer.ErrNotAssigned) {
				t.Errorf("SeekTo of a topic not consumed: %v, want ErrNotAssigned", err)
			}
			for _, bad := range []consumer.SeekTarget{{}, consumer.SeekOffset(-1), consumer.SeekTime(time.Time{})} {
				if _, err := c.SeekTo(ctx, topic, 0, bad); !errors.Is(err, consumer.ErrInvalidSeek) {
					t.Errorf("SeekTo %v: %v, want ErrInvalidSeek", bad, err)
				}
			}
			res, err := c.SeekTo(ctx, topic, 0, consumer.SeekOffset(5))
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 1 || res[0].From != 20 || res[0].To != 5 || len(res[0].Abandoned) != 0 {
				t.Fatalf("SeekTo offset 5: %+v, want from 20 to 5", res)
			}
			testkit.Eventually(t, 60*time.Second, func() error {
				if got := len(h.snapshot()) - n; got < 15 {
					return fmt.Errorf("handled %d records again, want 15", got)
				}
				if got := committed(t, adm, group, topic); got[0] != 20 {
					return fmt.Errorf("committed %v, want 20", got)
				}
				return nil
			})
			if again := after(&h, n); !slices.Equal(again[0], offsetsFrom(5, 20)) {
				t.Fatalf("handled %v again after the seek to offset 5, want 5..19", again[0])
			}
			for _, target := range []consumer.SeekTarget{consumer.SeekOffset(1000), consumer.SeekEnd()} {
				res, err := c.SeekTo(ctx, topic, 0, target)
				if err != nil {
					t.Fatal(err)
				}
				if len(res) != 1 || res[0].To != 20 {
					t.Fatalf("SeekTo %v: %+v, want to 20 (the end)", target, res)
				}
			}
			if got := committed(t, adm, group, topic); got[0] != 20 {
				t.Fatalf("committed %v after seeking to the end, want 20", got)
			}
			c.Close(ctx)
			if err := <-errc; err != nil {
				t.Fatalf("Run: %v", err)
			}
			errc <- nil
			if again := after(&h, n); !slices.Equal(again[0], offsetsFrom(5, 20)) {
				t.Fatalf("handled %v again in all, want 5..19", again[0])
			}
			goleak.VerifyNone(t, ignore)
		})
	}
}

// TestSeekWhileBlocked seeks two partitions blocked by a record in blocking
// retries at offset 8: one past the record, one before it (the cause is
// fixed once the partition is back at 3). Seeking past it unblocks the partition without handling or
// dead-lettering the record (it is reported abandoned); seeking before it
// handles it again, in order.
func TestSeekWhileBlocked(t *testing.T) {
	for _, mode := range seekModes {
		t.Run(mode.name, func(t *testing.T) {
			kc := testkit.Shared(t)
			topic := kc.NewTopic(t, 2, nil)
			group := topic
			produceSpread(t, kc, topic, 2, 40, nil) // offsets 0..19 in each partition
			var h handled
			var healed, seen3 atomic.Bool
			c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
				if r.Partition == 1 && r.Offset == 3 && seen3.Swap(true) {
					healed.Store(true) // fixed once the seek to 3 took partition 1 back
				}
				if r.Offset == 8 && (r.Partition == 0 || !healed.Load()) {
					return errors.New("poison")
				}
				h.add("c", r)
				return nil
			}), group, append(mode.opts(t), consumer.Topics(topic), consumer.Retry(retry.BlockingBackoff(retry.Exponential{
				Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond, Multiplier: 2, Retries: 150})))...)
			errc := make(chan error, 1)
			go func() { errc <- c.Run(context.Background()) }()
			defer func() { c.Close(context.Background()); <-errc }()
			testkit.Eventually(t, 60*time.Second, func() error {
				if b := c.Blocked(); len(b) != 2 || b[0].Offset != 8 || b[1].Offset != 8 || b[0].Attempts < 2 || b[1].Attempts < 2 {
					return fmt.Errorf("blocked: %+v", b)
				}
				return nil
			})
			n := len(h.snapshot())
			if !slices.Equal(after(&h, 0)[0], offsetsFrom(0, 8)) {
				t.Fatalf("partition 0 handled %v before the seek, want 0..7", after(&h, 0)[0])
			}
			// Both at once: in transactional mode one blocked partition holds
			// the transaction open, and a seek waits for it to end.
			ctx := context.Background()
			var wg sync.WaitGroup
			var res [2][]consumer.SeekResult
			var errs [2]error
			for p, to := range []int64{12, 3} {
				wg.Go(func() { res[p], errs[p] = c.SeekTo(ctx, topic, int32(p), consumer.SeekOffset(to)) })
			}
			wg.Wait()
			for p, to := range []int64{12, 3} {
				if errs[p] != nil {
					t.Fatalf("SeekTo partition %d: %v", p, errs[p])
				}
				if r := res[p]; len(r) != 1 || r[0].From != 8 || r[0].To != to || !slices.Equal(r[0].Abandoned, []int64{8}) {
					t.Fatalf("SeekTo partition %d: %+v, want from 8 to %d abandoning 8", p, r, to)
				}
			}
			testkit.Eventually(t, 60*time.Second, func() error {
				if got := len(h.snapshot()) - n; got < 8+17 {
					return fmt.Errorf("handled %d records after the seeks, want %d", got, 8+17)
				}
				if got := committed(t, kc.Admin(t), group, topic); got[0] != 20 || got[1] != 20 {
					return fmt.Errorf("committed %v, want both partitions at 20", got)
				}
				return nil
			})
			if b := c.Blocked(); len(b) != 0 {
				t.Fatalf("still blocked after the seeks: %+v", b)
			}
			c.Close(ctx)
			if err := <-errc; err != nil {
				t.Fatalf("Run: %v", err)
			}
			errc <- nil
			again := after(&h, n)
			if !slices.Equal(again[0], offsetsFrom(12, 20)) || !slices.Equal(again[1], offsetsFrom(3, 20)) {
				t.Fatalf("after the seeks partition 0 handled %v (want 12..19), partition 1 %v (want 3..19)", again[0], again[1])
			}
			if ends := endOffsets(t, kc.Admin(t), retry.DLQTopicName(topic, group)); ends[0]+ends[1] != 0 {
				t.Fatalf("the dead-letter topic holds %v records: a seek must not dead-letter the record it abandons", ends)
			}
		})
	}
}

// TestTransactionalSeekIsNotUndoneByTheTransactionUnderWay seeks a
// transactional consumer back while its transaction holds records 0..7 and
// record 8 is in blocking retries: the transaction ends with the records
// handled (committing offset 8), the seek then commits offset 3, and that
// is what the group's offset stays at (read as a new owner reads it) while
// record 3 is handled again; nothing the earlier transaction commits
// overrides it.
func TestTransactionalSeekIsNotUndoneByTheTransactionUnderWay(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	group := topic
	produceSpread(t, kc, topic, 1, 20, nil)
	var (
		h      handled
		healed atomic.Bool
		gate   = make(chan struct{})
		at3    = make(chan struct{})
		once   sync.Once
	)
	c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if r.Offset == 8 && !healed.Load() {
			return errors.New("poison")
		}
		if r.Offset == 3 && healed.Load() {
			once.Do(func() { close(at3) })
			<-gate
		}
		h.add("c", r)
		return nil
	}), group, consumer.Topics(topic), consumer.Transactional(testkit.TopicName(t.Name())+"-txn"),
		// After its second attempt record 8 waits 15s: healed before
		// the seek, it must still be in blocking retries when the seek
		// comes (with short waits a retry could succeed first under load).
		consumer.Retry(retry.Blocking(20*time.Millisecond, 15*time.Second)))
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	defer func() { c.Close(context.Background()); <-errc }()
	testkit.Eventually(t, 60*time.Second, func() error {
		if b := c.Blocked(); len(b) != 1 || b[0].Offset != 8 || b[0].Attempts < 2 {
			return fmt.Errorf("blocked: %+v", b)
		}
		return nil
	})
	healed.Store(true)
	res, err := c.SeekTo(context.Background(), topic, 0, consumer.SeekOffset(3))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].To != 3 || !slices.Equal(res[0].Abandoned, []int64{8}) {
		t.Fatalf("SeekTo: %+v, want to 3 abandoning 8", res)
	}
	select {
	case <-at3:
	case <-time.After(60 * time.Second):
		t.Fatal("record 3 was not handled again after the seek")
	}
	if got := stableCommitted(t, kc, group, topic, 0); got != 3 {
		close(gate)
		t.Fatalf("the group's committed offset is %d after the seek to 3 (the transaction under way committed over it?)", got)
	}
	close(gate)
	testkit.Eventually(t, 60*time.Second, func() error {
		if got := stableCommitted(t, kc, group, topic, 0); got != 20 {
			return fmt.Errorf("committed %d, want 20", got)
		}
		return nil
	})
	c.Close(context.Background())
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	errc <- nil
	if got := handledOffsets(&h); !slices.Equal(got, append(offsetsFrom(0, 8), offsetsFrom(3, 20)...)) {
		t.Fatalf("handled %v, want 0..7 then 3..19", got)
	}
}

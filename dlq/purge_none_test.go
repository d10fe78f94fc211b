package dlq_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// fakeNone is a kfake cluster whose dead-letter topic holds, in partition 0,
// records at base+0, 1, 2, 3 minutes and, in partition 1, at base+0, 5, 1,
// 6 minutes (as TestPurgeBefore), and whose ListOffsets answers can be
// replaced.
type fakeNone struct {
	fake  *kfake.Cluster
	c     *dlq.Client
	base  time.Time
	fetch atomic.Int32 // Fetch requests seen
}

const fakeNoneTopic = "orders-billing-dlq"

func newFakeNone(t *testing.T) *fakeNone {
	t.Helper()
	kc := testkit.Fake(t, kfake.SeedTopics(2, fakeNoneTopic))
	fx := &fakeNone{fake: kc.Kfake(), base: time.Now().Add(-3 * time.Hour).Truncate(time.Millisecond)}
	prod := kc.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx := context.Background()
	m := time.Minute
	for _, r := range []struct {
		p  int32
		at time.Duration
	}{{0, 0}, {0, m}, {0, 2 * m}, {0, 3 * m}, {1, 0}, {1, 5 * m}, {1, m}, {1, 6 * m}} {
		info := retry.Info{Attempt: 2, OriginalTopic: "orders", Group: "billing", LastError: "e", Reason: retry.ReasonExhausted}
		rec := &kgo.Record{Topic: fakeNoneTopic, Partition: r.p, Timestamp: fx.base.Add(r.at), Headers: info.Headers(nil)}
		if err := prod.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	c, err := dlq.New(whippet.Connection{Brokers: kc.Brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	fx.c = c
	fx.fake.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		fx.fetch.Add(1)
		return nil, nil, false
	})
	return fx
}

// answer makes every ListOffsets request for which pick is true of the
// timestamp of one of its partitions answered by answer (ok false: the
// partition is left out of the response).
func (fx *fakeNone) answer(pick func(ts int64) bool, answer func(p int32, ts int64) (offset int64, ok bool)) {
	fx.fake.ControlKey(int16(kmsg.ListOffsets), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.ListOffsetsRequest)
		if !slices.ContainsFunc(req.Topics, func(rt kmsg.ListOffsetsRequestTopic) bool {
			return slices.ContainsFunc(rt.Partitions, func(rp kmsg.ListOffsetsRequestTopicPartition) bool { return pick(rp.Timestamp) })
		}) {
			return nil, nil, false
		}
		fx.fake.KeepControl()
		resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewListOffsetsResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				o, ok := answer(rp.Partition, rp.Timestamp)
				if !ok {
					continue
				}
				sp := kmsg.NewListOffsetsResponseTopicPartition()
				sp.Partition, sp.Offset, sp.Timestamp = rp.Partition, o, -1
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
}

func (fx *fakeNone) left(t *testing.T) int {
	t.Helper()
	page, err := fx.c.List(context.Background(), fakeNoneTopic, dlq.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(page.Records)
}

func byTime(ts int64) bool { return ts >= 0 }

// The broker answers a time lookup with -1, "no record at or after t", while
// some are: Purge reads the partition and deletes only what is before t.
func TestPurgeBeforeBrokerFindsNone(t *testing.T) {
	fx := newFakeNone(t)
	fx.answer(byTime, func(int32, int64) (int64, bool) { return -1, true })
	ctx := context.Background()
	m := time.Minute

	res, err := fx.c.Purge(ctx, fakeNoneTopic, dlq.PurgeBefore(fx.base.Add(-time.Hour)))
	want := []dlq.PartitionPurge{{Partition: 0}, {Partition: 1}}
	if err != nil || res.Deleted != 0 || !slices.Equal(res.Partitions, want) {
		t.Fatalf("purge before everything = %+v, %v; want nothing deleted", res, err)
	}
	if n := fx.left(t); n != 8 {
		t.Fatalf("%d records left, want 8", n)
	}
	res, err = fx.c.Purge(ctx, fakeNoneTopic, dlq.PurgeBefore(fx.base.Add(2*m)))
	want = []dlq.PartitionPurge{{Partition: 0, From: 0, To: 2, Deleted: 2}, {Partition: 1, From: 0, To: 1, Deleted: 1}}
	if err != nil || !slices.Equal(res.Partitions, want) {
		t.Fatalf("purge before +2m = %+v, %v; want %v", res, err, want)
	}
	res, err = fx.c.Purge(ctx, fakeNoneTopic, dlq.PurgeBefore(fx.base.Add(-time.Hour)))
	if err != nil || res.Deleted != 0 {
		t.Fatalf("second purge before everything = %+v, %v; want nothing deleted", res, err)
	}
	// The record at exactly t is kept (t's sub-millisecond part ignored, as
	// the broker does).
	res, err = fx.c.Purge(ctx, fakeNoneTopic, dlq.PurgeBefore(fx.base.Add(3*m+time.Microsecond)))
	want = []dlq.PartitionPurge{{Partition: 0, From: 2, To: 3, Deleted: 1}, {Partition: 1, From: 1, To: 1}}
	if err != nil || !slices.Equal(res.Partitions, want) {
		t.Fatalf("purge before +3m = %+v, %v; want %v", res, err, want)
	}
	if n := fx.left(t); n != 4 {
		t.Fatalf("%d records left, want 4", n)
	}
}

// When the -1 is right, the partition's largest timestamp (ListOffsets -3)
// proves it without reading; when that is unknown too, Purge reads.
func TestPurgeBeforeBrokerFindsNoneTruly(t *testing.T) {
	for _, maxKnown := range []bool{true, false} {
		fx := newFakeNone(t)
		pick := byTime
		if !maxKnown {
			pick = func(ts int64) bool { return ts >= 0 || ts == -3 }
		}
		fx.answer(pick, func(int32, int64) (int64, bool) { return -1, true })
		fetches := fx.fetch.Load()
		res, err := fx.c.Purge(context.Background(), fakeNoneTopic, dlq.PurgeBefore(fx.base.Add(time.Hour)), dlq.DryRun())
		want := []dlq.PartitionPurge{{Partition: 0, From: 0, To: 4, Deleted: 4}, {Partition: 1, From: 0, To: 4, Deleted: 4}}
		if err != nil || !slices.Equal(res.Partitions, want) {
			t.Fatalf("max timestamp known %v: purge before +1h = %+v, %v; want %v", maxKnown, res, err, want)
		}
		if read := fx.fetch.Load() > fetches; read == maxKnown {
			t.Errorf("max timestamp known %v: records read: %v", maxKnown, read)
		}
	}
}

// A broker that leaves a partition out of its answer: Purge fails and
// deletes nothing.
func TestPurgeBeforeNoAnswer(t *testing.T) {
	fx := newFakeNone(t)
	fx.answer(byTime, func(p int32, ts int64) (int64, bool) { return 1, p != 1 })
	res, err := fx.c.Purge(context.Background(), fakeNoneTopic, dlq.PurgeBefore(fx.base.Add(time.Hour)))
	if err == nil || res.Deleted != 0 {
		t.Fatalf("purge = %+v, %v; want an error", res, err)
	}
	t.Log(err)
	if n := fx.left(t); n != 8 {
		t.Fatalf("%d records left, want 8", n)
	}
}

package dlq_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// Fetches go to each partition's leader; a fetch answered "not the leader"
// (leadership moved) is retried after a metadata refresh.
func TestFetchFollowsLeaders(t *testing.T) {
	const topic = "orders-billing-dlq"
	kc := testkit.Fake(t, kfake.NumBrokers(3), kfake.SeedTopics(3, topic))
	fake := kc.Kfake()
	prod := kc.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx := context.Background()
	for i := range 30 {
		info := retry.Info{Attempt: 2, OriginalTopic: "orders", Group: "billing", LastError: "e", Reason: retry.ReasonExhausted}
		r := &kgo.Record{Topic: topic, Partition: int32(i % 3), Value: []byte{byte(i)}, Headers: info.Headers(nil)}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	c, err := dlq.New(whippet.Connection{Brokers: kc.Brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())

	var refused atomic.Int32
	fake.ControlKey(int16(kmsg.Fetch), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		if refused.Add(1) > 2 { // refuse the first two fetches
			return nil, nil, false
		}
		fake.KeepControl()
		req := kreq.(*kmsg.FetchRequest)
		resp := req.ResponseKind().(*kmsg.FetchResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewFetchResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewFetchResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.NotLeaderForPartition.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	page, err := c.List(ctx, topic, dlq.Filter{})
	if err != nil || len(page.Records) != 30 {
		t.Fatalf("List after refused fetches: %d records, %v", len(page.Records), err)
	}
	if refused.Load() < 3 {
		t.Errorf("only %d fetches seen", refused.Load())
	}

	// Move every partition's leadership, then list and get again.
	for p := range int32(3) {
		to := (fake.LeaderFor(topic, p) + 1) % 3 // kfake nodes are 0, 1, 2
		if err := fake.MoveTopicPartition(topic, p, to); err != nil {
			t.Fatal(err)
		}
	}
	page, err = c.List(ctx, topic, dlq.Filter{})
	if err != nil || len(page.Records) != 30 {
		t.Fatalf("List after leaders moved: %d records, %v", len(page.Records), err)
	}
	if r, err := c.Get(ctx, topic, 2, 9); err != nil || r.Value[0] != 29 {
		t.Errorf("Get after leaders moved: %+v, %v", r, err)
	}
	for p := range int32(3) {
		if err := fake.MoveTopicPartition(topic, p, (fake.LeaderFor(topic, p)+1)%3); err != nil {
			t.Fatal(err)
		}
	}
	if res, err := c.Purge(ctx, topic, dlq.PurgeAll()); err != nil || res.Deleted != 30 {
		t.Errorf("Purge after leaders moved: %+v, %v", res, err)
	}
}

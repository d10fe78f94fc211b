package dlq_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/retry"
)

func Example() {
	// An in-process Kafka for the example; use your brokers instead.
	dlqTopic := retry.DLQTopicName("payments", "checkout") // "payments-checkout-dlq"
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "payments", dlqTopic))
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	ctx := context.Background()

	// What a whippet consumer writes when it gives up on a record.
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	failed := time.Now()
	for i, reason := range []retry.Reason{retry.ReasonExhausted, retry.ReasonDecode} {
		info := retry.Info{Attempt: 4, OriginalTopic: "payments", OriginalOffset: int64(i), Group: "checkout",
			LastFailure: failed, LastError: "card service: timeout", Reason: reason}
		rec := &kgo.Record{Topic: dlqTopic, Key: []byte(fmt.Sprintf("user-%d", i)), Value: []byte(`{"amount":10}`),
			Headers: info.Headers([]kgo.RecordHeader{{Key: "trace-id", Value: []byte("abc")}})}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			log.Fatal(err)
		}
	}

	c, err := dlq.New(whippet.Connection{Brokers: cluster.ListenAddrs()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)

	page, err := c.List(ctx, dlqTopic, dlq.Filter{Reason: retry.ReasonExhausted})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range page.Records {
		fmt.Printf("%s key=%s attempts=%d reason=%s error=%q headers=%d\n",
			r.Position, r.Key, r.Info.Attempt, r.Info.Reason, r.Info.LastError, len(r.Headers))
	}

	// Put it back on "payments", as a fresh first attempt.
	res, err := c.Replay(ctx, dlqTopic, dlq.Filter{Key: []byte("user-0")})
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range res.Replayed {
		fmt.Println("replayed", r.From, "to", r.To)
	}

	// Kafka deletes whole prefixes of partitions: everything, or everything
	// dead-lettered before a time.
	purged, err := c.Purge(ctx, dlqTopic, dlq.PurgeAll())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("purged", purged.Deleted)

	// Output:
	// payments-checkout-dlq/0/0 key=user-0 attempts=4 reason=exhausted error="card service: timeout" headers=1
	// replayed payments-checkout-dlq/0/0 to payments/0/0
	// purged 2
}

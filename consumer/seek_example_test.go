package consumer_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
)

// After a bad deploy, replay the last hour: the running consumer moves every
// partition of the topic to its first record at or after an hour ago, and
// handles those records again.
func ExampleConsumer_SeekTo() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "renewals"))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()

	producer, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		panic(err)
	}
	defer producer.Close()
	now := time.Now()
	for i, ago := range []time.Duration{3 * time.Hour, 2 * time.Hour, 30 * time.Minute, 10 * time.Minute} {
		producer.ProduceSync(context.Background(), &kgo.Record{Topic: "renewals", Value: fmt.Appendf(nil, "renewal %d", i), Timestamp: now.Add(-ago)})
	}

	var wg sync.WaitGroup
	wg.Add(4)
	handler := consumer.HandlerFunc(func(ctx context.Context, rec *kgo.Record) error {
		defer wg.Done()
		fmt.Printf("offset %d: %s\n", rec.Offset, rec.Value)
		return nil
	})
	c, err := consumer.New(whippet.Connection{Brokers: brokers}, handler,
		consumer.Group("renewal-service"), consumer.Topics("renewals"))
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	wg.Wait()

	wg.Add(2) // the two records of the last hour
	moved, err := c.SeekTo(ctx, "renewals", consumer.AllPartitions, consumer.SeekTime(now.Add(-time.Hour)))
	if err != nil {
		panic(err)
	}
	wg.Wait()
	for _, m := range moved {
		fmt.Printf("moved %s[%d] from %d to %d\n", m.Topic, m.Partition, m.From, m.To)
	}
	stop()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output:
	// offset 0: renewal 0
	// offset 1: renewal 1
	// offset 2: renewal 2
	// offset 3: renewal 3
	// offset 2: renewal 2
	// offset 3: renewal 3
	// moved renewals[0] from 4 to 2
}

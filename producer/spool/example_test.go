package spool_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/producer/spool"
)

// An order service keeps accepting orders: each produce returns Kafka's
// acknowledgement, or, if Kafka does not answer within the threshold, once
// the order is durable on local disk.
func Example() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()
	dir, err := os.MkdirTemp("", "spool")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	sp, err := spool.New(whippet.Connection{Brokers: cluster.ListenAddrs()}, dir, spool.Threshold(2*time.Second))
	if err != nil {
		panic(err)
	}
	defer sp.Close(context.Background())

	res, err := sp.Produce(context.Background(), &kgo.Record{Topic: "orders", Key: []byte("o-1"), Value: []byte("2 books")})
	if err != nil {
		panic(err) // spool.ErrFull, Kafka refusing the record, ...
	}
	fmt.Println("spooled:", res.Spooled, "offset:", res.Offset, "ready:", sp.Ready() == nil)
	// Output: spooled: false offset: 0 ready: true
}

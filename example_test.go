package whippet_test

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/producer"
)

// One Connection configures every component of a service.
func Example() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "renewals"))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()
	kafka := whippet.Connection{Brokers: cluster.ListenAddrs()} // plus TLS, SASL, Logger, Registerer

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := producer.New(kafka)
	if err != nil {
		panic(err)
	}
	defer p.Close(ctx)
	if _, err := p.Produce(ctx, &kgo.Record{Topic: "renewals", Key: []byte("user-7"), Value: []byte("yearly")}); err != nil {
		panic(err)
	}

	done := make(chan struct{})
	c, err := consumer.New(kafka, consumer.HandlerFunc(func(ctx context.Context, rec *kgo.Record) error {
		fmt.Printf("renew %s: %s\n", rec.Key, rec.Value)
		close(done)
		return nil
	}), consumer.Group("renewal-service"), consumer.Topics("renewals"))
	if err != nil {
		panic(err)
	}
	go func() { _ = c.Run(ctx) }()
	<-done
	if err := c.Close(context.Background()); err != nil {
		panic(err)
	}
	// Output: renew user-7: yearly
}

// A bad field is reported before any network I/O, named.
func ExampleConnection_validation() {
	_, err := producer.New(whippet.Connection{})
	fmt.Println(err)
	// Output: producer: Connection.Brokers: at least one seed broker is required
}

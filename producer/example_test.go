package producer_test

import (
	"context"
	"fmt"
	"log"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/producer"
)

func ExampleProducer() {
	// An in-process Kafka for the example; use your brokers instead.
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "payments"))
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()

	p, err := producer.New(whippet.Connection{Brokers: cluster.ListenAddrs(), ClientID: "payments-service"},
		producer.DefaultTopic("payments"))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	// Synchronous: wait for Kafka's acknowledgement.
	res, err := p.Produce(ctx, &kgo.Record{
		Key:     []byte("user-42"),
		Value:   []byte(`{"amount":10}`),
		Headers: []kgo.RecordHeader{producer.Header("trace-id", "abc")},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("sync: %s[%d]@%d\n", res.Topic, res.Partition, res.Offset)

	// Asynchronous: the callback is called exactly once, success or not.
	done := make(chan struct{})
	p.ProduceAsync(ctx, &kgo.Record{Key: []byte("user-42"), Value: []byte(`{"amount":5}`)},
		func(res producer.Result, err error) {
			defer close(done)
			if err != nil {
				fmt.Println("async failed:", err)
				return
			}
			fmt.Printf("async: %s[%d]@%d\n", res.Topic, res.Partition, res.Offset)
		})
	<-done

	// Close flushes whatever is still pending, then releases the client.
	if err := p.Close(ctx); err != nil {
		log.Fatal(err)
	}
	_, err = p.Produce(ctx, &kgo.Record{Value: []byte("late")})
	fmt.Println(err)

	// Output:
	// sync: payments[0]@0
	// async: payments[0]@1
	// producer: closed: produce to topic "payments"
}

func ExampleTyped() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"))
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()

	p, err := producer.New(whippet.Connection{Brokers: cluster.ListenAddrs()})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close(context.Background())

	type Order struct {
		ID    string `json:"id"`
		Total int    `json:"total"`
	}
	orders, err := producer.NewTyped(p, "orders", codec.String(), codec.JSON[Order]())
	if err != nil {
		log.Fatal(err)
	}
	res, err := orders.Produce(context.Background(), "customer-7", Order{ID: "o-1", Total: 30},
		producer.Header("source", "web"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s[%d]@%d\n", res.Topic, res.Partition, res.Offset)

	// The same codecs decode on the consuming side.
	rec, _ := orders.Record("customer-7", Order{ID: "o-1", Total: 30})
	o, err := codec.JSON[Order]().Decode(rec.Value)
	fmt.Println(o.ID, o.Total, err)

	_, err = codec.JSON[Order]().Decode([]byte("not json"))
	fmt.Println(err)

	// Output:
	// orders[0]@0
	// o-1 30 <nil>
	// codec: decode: JSON into producer_test.Order: invalid character 'o' in literal null (expecting 'u')
}

// Several events atomically: read_committed readers see both or neither.
func ExampleTransactional_Transact() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "reservations"))
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	tp, err := producer.NewTransactional(whippet.Connection{Brokers: cluster.ListenAddrs()}, "order-service-0")
	if err != nil {
		log.Fatal(err)
	}
	defer tp.Close(context.Background())
	err = tp.Transact(context.Background(), func(tx *producer.Tx) error {
		if err := tx.Produce(&kgo.Record{Topic: "orders", Key: []byte("o-1"), Value: []byte("created")}); err != nil {
			return err
		}
		return tx.Produce(&kgo.Record{Topic: "reservations", Key: []byte("o-1"), Value: []byte("2 items")})
	})
	fmt.Println("committed:", err == nil)
	// Output:
	// committed: true
}

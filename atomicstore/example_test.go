package atomicstore_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/codec"
)

// Exact counters updated concurrently: every add goes through the processor,
// one at a time per key.
func Example() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()
	ctx, cancel := context.WithCancel(context.Background())
	kafka := whippet.Connection{Brokers: cluster.ListenAddrs()}

	// The processor: one or more instances, each with its own
	// transactional id.
	proc, err := atomicstore.NewProcessor(kafka, "visits", codec.String(), atomicstore.Int64(),
		atomicstore.Partitions(2), atomicstore.TransactionalID("visits-processor-0"))
	if err != nil {
		panic(err)
	}
	done := make(chan error, 1)
	go func() { done <- proc.Run(ctx) }()
	defer proc.Close(context.Background())

	// A client: send commands, read the local replica.
	visits, err := atomicstore.Open(ctx, kafka, "visits", codec.String(), atomicstore.Int64(), atomicstore.Partitions(2))
	if err != nil {
		panic(err)
	}
	defer visits.Close(context.Background())

	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := visits.Update(ctx, "home", atomicstore.Add(1)); err != nil {
				panic(err)
			}
		})
	}
	wg.Wait()
	n, _ := visits.Update(ctx, "home", atomicstore.Add(5))
	fmt.Println("home:", n)
	_, err = visits.Update(ctx, "home", atomicstore.CompareAndSet[int64](0, 1))
	fmt.Println(err)

	cancel()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output:
	// home: 15
	// atomicstore: command rejected: atomicstore: compare-and-set: current value differs
}

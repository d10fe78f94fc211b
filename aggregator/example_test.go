package aggregator_test

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/aggregator"
	"github.com/whippet-go/whippet/atomicstore"
)

// A batch of three tasks; a task reported twice counts once, and the batch
// completes once.
func Example() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()
	ctx, cancel := context.WithCancel(context.Background())
	kafka := whippet.Connection{Brokers: cluster.ListenAddrs()}

	proc, err := aggregator.NewProcessor(kafka, "imports", atomicstore.Partitions(1),
		atomicstore.TransactionalID("imports-processor-0"))
	if err != nil {
		panic(err)
	}
	done := make(chan error, 1)
	go func() { done <- proc.Run(ctx) }()
	defer proc.Close(context.Background())

	agg, err := aggregator.Open(ctx, kafka, "imports", atomicstore.Partitions(1))
	if err != nil {
		panic(err)
	}
	defer agg.Close(context.Background())

	if _, err := agg.Start(ctx, "job-1", 3); err != nil {
		panic(err)
	}
	for _, task := range []int{0, 2, 2, 1} {
		p, err := agg.Done(ctx, "job-1", task)
		if err != nil {
			panic(err)
		}
		fmt.Printf("task %d: %d/%d completed=%v\n", task, p.Done, p.Total, p.Completed)
	}
	// The completion event is on aggregator.CompletedTopic("imports"),
	// produced exactly once: see DecodeCompletion's example.

	cancel()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output:
	// task 0: 1/3 completed=false
	// task 2: 2/3 completed=false
	// task 2: 2/3 completed=false
	// task 1: 3/3 completed=true
}

package aggregator_test

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/aggregator"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/consumer"
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

// A service that acts once on each completed batch consumes the completion
// topic with a whippet consumer in read_committed mode: completions of
// transactions that aborted never reach it.
func ExampleDecodeCompletion() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kafka := whippet.Connection{Brokers: cluster.ListenAddrs()}

	proc, err := aggregator.NewProcessor(kafka, "exports", atomicstore.Partitions(1),
		atomicstore.TransactionalID("exports-processor-0"))
	if err != nil {
		panic(err)
	}
	go func() { _ = proc.Run(ctx) }()
	defer proc.Close(context.Background())

	// The service: one handler call per completed batch.
	completed := make(chan aggregator.Completion)
	notifier, err := consumer.New(kafka, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		c, err := aggregator.DecodeCompletion(r)
		if err != nil {
			return err // not a completion: the consumer's failure policy applies
		}
		select { // e.g. mail the user that the export is ready
		case completed <- c:
		case <-ctx.Done():
		}
		return nil
	}), consumer.Group("export-notifier"),
		consumer.Topics(aggregator.CompletedTopic("exports")), consumer.ReadCommitted(true))
	if err != nil {
		panic(err)
	}
	go func() { _ = notifier.Run(ctx) }()
	defer notifier.Close(context.Background())

	// The workers.
	agg, err := aggregator.Open(ctx, kafka, "exports", atomicstore.Partitions(1))
	if err != nil {
		panic(err)
	}
	defer agg.Close(context.Background())
	if _, err := agg.Start(ctx, "export-7", 2); err != nil {
		panic(err)
	}
	for _, task := range []int{1, 0, 1} {
		if err := agg.Report(ctx, "export-7", task); err != nil {
			panic(err)
		}
	}

	c := <-completed
	fmt.Printf("batch %s completed: %d tasks\n", c.Batch, c.Total)
	// Output:
	// batch export-7 completed: 2 tasks
}

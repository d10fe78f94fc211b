package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/retry"
)

// A batch handler stores up to 100 records with one bulk insert; a record
// it reports failed in its BatchError (here, one the store rejects) goes
// through the retry policy on its own (here, once more in place, then to the
// dead-letter topic), while the others are committed.
func ExampleNewBatch() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "signups"))
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
	for _, email := range []string{"ann@example.com", "bad address", "bo@example.com"} {
		producer.ProduceSync(context.Background(), &kgo.Record{Topic: "signups", Value: []byte(email)})
	}

	var wg sync.WaitGroup
	wg.Add(2) // the two stored
	errInvalid := errors.New("invalid e-mail address")
	handler := consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
		errs := make([]error, len(recs))
		var rows []string
		for i, rec := range recs {
			if !strings.Contains(string(rec.Value), "@") {
				errs[i] = errInvalid
				continue
			}
			rows = append(rows, string(rec.Value))
		}
		if len(rows) > 0 {
			fmt.Printf("insert %d rows: %v\n", len(rows), rows) // one bulk insert
			for range rows {
				wg.Done()
			}
		}
		return consumer.RecordErrors(errs)
	})
	c, err := consumer.NewBatch(whippet.Connection{Brokers: brokers}, handler,
		consumer.Group("signup-store"),
		consumer.Topics("signups"),
		consumer.BatchSize(100, 20*time.Millisecond),
		consumer.Retry(retry.Blocking(10*time.Millisecond)),
		consumer.OnError(func(ctx context.Context, rec *kgo.Record, err error) {
			fmt.Printf("offset %d failed: %v\n", rec.Offset, err)
		}),
	)
	if err != nil {
		panic(err)
	}
	dead, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("signups-signup-store-dlq"))
	if err != nil {
		panic(err)
	}
	defer dead.Close()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	wg.Wait()
	fetches := dead.PollFetches(context.Background())
	fetches.EachRecord(func(r *kgo.Record) {
		info, _ := retry.InfoFor(r)
		fmt.Printf("dead-lettered %q after %d attempts: %s\n", r.Value, info.Attempt, info.Reason)
	})
	stop()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output:
	// insert 2 rows: [ann@example.com bo@example.com]
	// offset 1 failed: invalid e-mail address
	// offset 1 failed: invalid e-mail address
	// dead-lettered "bad address" after 2 attempts: exhausted
}

package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/consumer"
)

// Renewal requests keyed by user id are handled in order per partition; the
// consumer commits only what its handler finished.
func Example() {
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
	for _, user := range []string{"alice", "bob", "alice"} {
		producer.ProduceSync(context.Background(), &kgo.Record{Topic: "renewals", Key: []byte(user), Value: []byte("renew " + user)})
	}

	var wg sync.WaitGroup
	wg.Add(3)
	handler := consumer.HandlerFunc(func(ctx context.Context, rec *kgo.Record) error {
		defer wg.Done()
		fmt.Printf("offset %d: %s\n", rec.Offset, rec.Value)
		return nil
	})
	c, err := consumer.New(whippet.Connection{Brokers: brokers}, handler,
		consumer.Group("renewal-service"),
		consumer.Topics("renewals"),
	)
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	wg.Wait()
	stop() // drains, commits, leaves the group
	if err := <-done; err != nil {
		panic(err)
	}
	// Output:
	// offset 0: renew alice
	// offset 1: renew bob
	// offset 2: renew alice
}

// A typed handler gets each record decoded; a record its codecs cannot
// decode never reaches it: it is dead-lettered at once with reason "decode".
func ExampleTyped() {
	type Renewal struct {
		Plan string `json:"plan"`
	}
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
	for _, r := range []struct{ user, value string }{{"alice", `{"plan":"yearly"}`}, {"bob", `{"plan":`}, {"carol", `{"plan":"monthly"}`}} {
		producer.ProduceSync(context.Background(), &kgo.Record{Topic: "renewals", Key: []byte(r.user), Value: []byte(r.value)})
	}

	var wg sync.WaitGroup
	wg.Add(3)
	handler := consumer.Typed(codec.String(), codec.JSON[Renewal](),
		func(ctx context.Context, m consumer.Message[string, Renewal]) error {
			defer wg.Done()
			fmt.Printf("offset %d: %s renews %s\n", m.Offset, m.Key, m.Value.Plan)
			return nil
		})
	c, err := consumer.New(whippet.Connection{Brokers: brokers}, handler,
		consumer.Group("renewal-service"),
		consumer.Topics("renewals"),
		consumer.OnError(func(ctx context.Context, rec *kgo.Record, err error) {
			defer wg.Done()
			fmt.Printf("offset %d: poison pill (%v): %v\n", rec.Offset, errors.Is(err, codec.ErrDecode), err)
		}),
	)
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	wg.Wait()
	stop()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output:
	// offset 0: alice renews yearly
	// offset 1: poison pill (true): consumer: decoding the value: codec: decode: JSON into consumer_test.Renewal: unexpected end of JSON input
	// offset 2: carol renews monthly
}

// Rebalance hooks bracket the handling of each partition: OnAssigned before
// its first record, OnRevoked after its last one is committed (here at
// shutdown).
func ExampleOnRevoked() {
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
	producer.ProduceSync(context.Background(), &kgo.Record{Topic: "renewals", Key: []byte("alice"), Value: []byte("renew")})

	handled := make(chan struct{})
	c, err := consumer.New(whippet.Connection{Brokers: brokers},
		consumer.HandlerFunc(func(ctx context.Context, rec *kgo.Record) error {
			fmt.Printf("handled %s[%d] offset %d\n", rec.Topic, rec.Partition, rec.Offset)
			close(handled)
			return nil
		}),
		consumer.Group("renewal-service"),
		consumer.Topics("renewals"),
		consumer.OnAssigned(func(ctx context.Context, ps []consumer.TopicPartition) { fmt.Println("assigned", ps) }),
		consumer.OnRevoked(func(ctx context.Context, ps []consumer.TopicPartition) {
			fmt.Println("revoked, offsets committed:", ps)
		}),
	)
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	<-handled
	stop()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output:
	// assigned [{renewals 0}]
	// handled renewals[0] offset 0
	// revoked, offsets committed: [{renewals 0}]
}

// Liveness and readiness probes for Kubernetes: mount the handlers on the
// service's mux.
func ExampleConsumer_ReadyHandler() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "renewals"))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()
	c, err := consumer.New(whippet.Connection{Brokers: cluster.ListenAddrs()},
		consumer.HandlerFunc(func(ctx context.Context, rec *kgo.Record) error { return nil }),
		consumer.Group("renewal-service"),
		consumer.Topics("renewals"),
	)
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/livez", c.LiveHandler())
	mux.Handle("/readyz", c.ReadyHandler())
	probe := func(path string) string {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return fmt.Sprintf("%s %d %s", path, rec.Code, rec.Body)
	}
	fmt.Print(probe("/readyz"))

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	for !c.Health().Ready {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Print(probe("/livez"))
	fmt.Print(probe("/readyz"))
	stop()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output:
	// /readyz 503 consumer renewal-service: not ready: not running (Run not called)
	// /livez 200 consumer renewal-service: live
	// /readyz 200 consumer renewal-service: ready, 2 partitions
}

// Options are checked before any network I/O, and each error names its option.
func ExampleNew_invalidConfig() {
	_, err := consumer.New(whippet.Connection{Brokers: []string{"127.0.0.1:9092"}},
		consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil }),
		consumer.Group("g"), consumer.Topics("orders"), consumer.PartitionBuffer(0))
	fmt.Println(err)
	_, err = consumer.New(whippet.Connection{},
		consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil }),
		consumer.Group("g"), consumer.Topics("orders"))
	fmt.Println(err)
	// Output:
	// consumer: PartitionBuffer: must be > 0, got 0
	// consumer: Connection.Brokers: at least one seed broker is required
}

// Middleware wraps a handler with behaviour around each attempt (here,
// logging); retries are the retry policy's, not a middleware.
func ExampleChain() {
	logging := func(next consumer.Handler) consumer.Handler {
		return consumer.HandlerFunc(func(ctx context.Context, rec *kgo.Record) error {
			fmt.Println("before", string(rec.Value))
			err := next.Handle(ctx, rec)
			fmt.Println("after", string(rec.Value), err)
			return err
		})
	}
	h := consumer.Chain(consumer.HandlerFunc(func(ctx context.Context, rec *kgo.Record) error {
		fmt.Println("handle", string(rec.Value))
		return nil
	}), logging)
	_ = h.Handle(context.Background(), &kgo.Record{Value: []byte("r1")})
	// Output:
	// before r1
	// handle r1
	// after r1 <nil>
}

// Exactly once: each payment's checkout event and the payment's offset
// commit in one transaction; read_committed readers see each event once.
func ExampleTransactional() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "payments", "checkouts"))
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
	for _, order := range []string{"o-1", "o-2"} {
		producer.ProduceSync(context.Background(), &kgo.Record{Topic: "payments", Key: []byte(order), Value: []byte("paid")})
	}

	c, err := consumer.New(whippet.Connection{Brokers: brokers}, consumer.HandlerFunc(func(ctx context.Context, rec *kgo.Record) error {
		// Produced in the transaction that commits rec's offset, if the
		// handler returns nil; dropped if it fails.
		return consumer.Emit(ctx, &kgo.Record{Topic: "checkouts", Key: rec.Key, Value: []byte("checked out")})
	}),
		consumer.Group("checkout-service"),
		consumer.Topics("payments"),
		consumer.Transactional("checkout-service-0"), // unique per instance, stable across restarts
	)
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()

	reader, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("checkouts"),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		panic(err)
	}
	defer reader.Close()
	for n := 0; n < 2; {
		reader.PollFetches(context.Background()).EachRecord(func(r *kgo.Record) {
			fmt.Printf("%s: %s\n", r.Key, r.Value)
			n++
		})
	}
	stop()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output:
	// o-1: checked out
	// o-2: checked out
}

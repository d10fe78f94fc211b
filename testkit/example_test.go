package testkit_test

import (
	"context"
	"fmt"
	"log"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/testkit"
)

// StartFake runs franz-go's in-process kfake without a testing.TB, as an
// embedded demo does. In tests, use testkit.Fake(t) (closed on cleanup) or
// testkit.Shared(t) (a real broker when one can be had).
func ExampleStartFake() {
	ctx := context.Background()
	kc, stop, err := testkit.StartFake(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer stop(ctx)

	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...),
		kgo.ConsumeTopics("greetings"), kgo.DefaultProduceTopic("greetings"))
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, nil, "greetings"); err != nil {
		log.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("hello")}).FirstErr(); err != nil {
		log.Fatal(err)
	}
	rec := cl.PollFetches(ctx).Records()[0]
	fmt.Println(kc.Backend, kc.Real, string(rec.Value))
	// Output: kfake false hello
}

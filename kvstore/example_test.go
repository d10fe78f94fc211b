package kvstore_test

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/kvstore"
)

// Country is a value kept in a store.
type Country struct {
	Name     string `json:"name"`
	Capital  string `json:"capital"`
	TimeZone string `json:"timeZone"`
}

// A store of countries in a compacted topic: loaded at start-up, read from
// memory, updated through Kafka, and watched with Subscribe.
func Example() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()
	ctx := context.Background()

	countries, err := kvstore.Open(ctx, whippet.Connection{Brokers: cluster.ListenAddrs()}, "countries", codec.String(), codec.JSON[Country](),
		kvstore.Partitions(1))
	if err != nil {
		panic(err)
	}
	defer countries.Close(context.Background())
	if err := countries.WaitReady(ctx); err != nil {
		panic(err)
	}

	// Put waits until the store applied the write: read your writes.
	if err := countries.Put(ctx, "FR", Country{Name: "France", Capital: "Paris", TimeZone: "Europe/Paris"}); err != nil {
		panic(err)
	}
	fr, ok := countries.Get("FR") // memory only
	fmt.Println(fr.Capital, ok)

	changes := make(chan kvstore.Change[string, Country], 10)
	if err := countries.Subscribe(ctx, func(c kvstore.Change[string, Country]) { changes <- c }); err != nil {
		panic(err)
	}
	fmt.Println("initial:", (<-changes).New.Name)

	_ = countries.Put(ctx, "JP", Country{Name: "Japan", Capital: "Tokyo", TimeZone: "Asia/Tokyo"})
	c := <-changes
	fmt.Println("added:", c.Key, c.New.TimeZone, "existed:", c.Existed)

	_ = countries.Delete(ctx, "FR")
	c = <-changes
	fmt.Println("deleted:", c.Key, c.Old.Name, c.Deleted)
	fmt.Println("entries:", countries.Len())
	// Output:
	// Paris true
	// initial: France
	// added: JP Asia/Tokyo existed: false
	// deleted: FR France true
	// entries: 1
}

// Options are checked before any network I/O, and each error names its option.
func ExampleOpen_invalidConfig() {
	_, err := kvstore.Open(context.Background(), whippet.Connection{Brokers: []string{"127.0.0.1:9092"}}, "countries", codec.String(), codec.JSON[Country](), kvstore.Partitions(0))
	fmt.Println(err)
	// Output:
	// kvstore: Partitions: must be -1 (broker default) or > 0, got 0
}

package producer_test

import (
	"context"
	"testing"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/producer"
)

// A broker port franz-go cannot use is reported on Brokers, naming the
// entry, instead of surfacing as a rejected client configuration
// (ClientOptions) or as a connection that can never succeed; a seed without
// a port (franz-go's default 9092) stays valid.
func TestBrokerPortErrorsNameTheEntry(t *testing.T) {
	for _, b := range []string{"kafka:0", "kafka:x", "kafka:65536", "kafka:-1"} {
		p, err := producer.New(whippet.Connection{Brokers: []string{"ok:9092", b}})
		if err == nil {
			p.Close(context.Background())
			t.Fatalf("Brokers(%q) accepted", b)
		}
		checkConfigError(t, err, "Connection.Brokers[1]", `producer: Connection.Brokers[1]: the port must be a number from 1 to 65535, got "`+b+`"`)
	}
	for _, b := range []string{"kafka", "kafka:9092", "[::1]:9092", "::1"} {
		p, err := producer.New(whippet.Connection{Brokers: []string{b}})
		if err != nil {
			t.Fatalf("Brokers(%q): %v", b, err)
		}
		if err := p.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

package spool_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/producer/spool"
	"github.com/whippet-go/whippet/testkit"
)

// TestConsumerHandlerCannotSpool: a consumer (at-least-once or
// transactional) commits an input's offset once its handler returned; an
// output produced through the spool from the handler could then be only on
// local disk. Produce refuses a handler's context with ErrInHandler.
func TestConsumerHandlerCannotSpool(t *testing.T) {
	for _, mode := range []string{"at-least-once", "transactional"} {
		t.Run(mode, func(t *testing.T) {
			noLeaks(t)
			kc := testkit.Shared(t)
			in, out := kc.NewTopic(t, 1, nil), kc.NewTopic(t, 1, nil)
			kc.Produce(t, &kgo.Record{Topic: in, Value: []byte("order")})
			sp, err := spool.New(whippet.Connection{Brokers: kc.Brokers}, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close(context.Background())
			got := make(chan error, 1)
			h := consumer.HandlerFunc(func(ctx context.Context, rec *kgo.Record) error {
				_, err := sp.Produce(ctx, &kgo.Record{Topic: out, Value: rec.Value})
				select {
				case got <- err:
				default:
				}
				return nil
			})
			opts := []consumer.Option{consumer.Group(in), consumer.Topics(in)}
			if mode == "transactional" {
				opts = append(opts, consumer.Transactional(in))
			}
			c, err := consumer.New(whippet.Connection{Brokers: kc.Brokers}, h, opts...)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			var perr error
			select {
			case perr = <-got:
			case <-time.After(30 * time.Second):
				t.Fatal("handler not called within 30s")
			}
			cancel()
			<-done
			c.Close(context.Background())
			if !errors.Is(perr, spool.ErrInHandler) {
				t.Fatalf("spool Produce from a %s handler: %v, want ErrInHandler", mode, perr)
			}
			t.Logf("refused: %v", perr)
		})
	}
}

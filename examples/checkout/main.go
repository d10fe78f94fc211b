// Command checkout is scenario 3 of the product story, "events in
// transactions": payments → checkout → inventory.
//
//   - The payment service produces PaymentSucceeded events with an
//     idempotent producer (its retries never duplicate an event).
//   - The checkout service consumes them in transactional mode: for each
//     payment its handler emits a CheckoutCompleted event, and the events and
//     the payments' offsets commit in one Kafka transaction. Once, the
//     handler asks to abort the transaction under way (consumer.ErrAbort):
//     the events it had produced are aborted and its payments are handled
//     again.
//   - The inventory service reads the checkout events with read_committed
//     and checks that it sees every order exactly once; the program exits
//     non-zero if not.
//
// It runs on an embedded kfake cluster by default (make demo), or on real
// brokers with -brokers 127.0.0.1:19092.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/producer"
)

// PaymentSucceeded is the payment service's event.
type PaymentSucceeded struct {
	Order  string `json:"order"`
	Amount int    `json:"amount_cents"`
}

// CheckoutCompleted is the checkout service's event, for inventory and
// delivery.
type CheckoutCompleted struct {
	Order  string `json:"order"`
	Amount int    `json:"amount_cents"`
}

const (
	payments   = "payments"
	checkouts  = "checkouts"
	orders     = 300
	partitions = 3
)

func main() {
	brokersFlag := flag.String("brokers", "", "comma-separated Kafka brokers; empty starts an embedded kfake cluster")
	flag.Parse()
	if err := run(*brokersFlag); err != nil {
		log.Fatal(err)
	}
}

func run(brokersFlag string) error {
	ctx := context.Background()
	brokers, stopCluster, err := cluster(brokersFlag)
	if err != nil {
		return err
	}
	defer stopCluster()
	// Unique per run, so reruns on real brokers start afresh.
	suffix := fmt.Sprintf("-%d", time.Now().UnixNano())
	if brokersFlag == "" {
		suffix = ""
	}
	paymentsTopic, checkoutsTopic := payments+suffix, checkouts+suffix
	if brokersFlag != "" {
		if err := createTopics(ctx, brokers, paymentsTopic, checkoutsTopic); err != nil {
			return err
		}
	}
	logger, _ := zap.NewDevelopment(zap.IncreaseLevel(zap.WarnLevel), zap.AddStacktrace(zap.DPanicLevel))

	// 1. The payment service: an idempotent producer (whippet's default).
	p, err := producer.New(whippet.Connection{Brokers: brokers})
	if err != nil {
		return err
	}
	defer p.Close(ctx)
	paid, err := producer.NewTyped(p, paymentsTopic, codec.String(), codec.JSON[PaymentSucceeded]())
	if err != nil {
		return err
	}
	for i := 0; i < orders; i++ {
		order := fmt.Sprintf("order-%03d", i)
		if _, err := paid.Produce(ctx, order, PaymentSucceeded{Order: order, Amount: 100 + i}); err != nil {
			return fmt.Errorf("producing a payment: %w", err)
		}
	}
	fmt.Printf("payments: produced %d PaymentSucceeded events to %q (idempotent producer)\n", orders, paymentsTopic)

	// 2. The checkout service, exactly once: outputs and input offsets in
	// one transaction per batch. The transactional id is unique per
	// instance and stable across its restarts (here: one instance).
	// A payment that does not decode never reaches the handler: it goes to
	// the dead-letter topic (reason "decode"), in the transaction.
	checkoutCodec := codec.JSON[CheckoutCompleted]()
	var handled, abortedOnce atomic.Int32
	checkoutHandler := consumer.Typed(codec.String(), codec.JSON[PaymentSucceeded](), func(ctx context.Context, m consumer.Message[string, PaymentSucceeded]) error {
		handled.Add(1)
		value, err := checkoutCodec.Encode(CheckoutCompleted(m.Value))
		if err != nil {
			return err
		}
		if err := consumer.Emit(ctx, &kgo.Record{Topic: checkoutsTopic, Key: m.Record.Key, Value: value}); err != nil {
			return err
		}
		if m.Value.Order == "order-150" && abortedOnce.CompareAndSwap(0, 1) {
			return fmt.Errorf("the stock service is being failed over: %w", consumer.ErrAbort)
		}
		return nil
	})
	checkout, err := consumer.New(whippet.Connection{Brokers: brokers, Logger: logger}, checkoutHandler,
		consumer.Group("checkout-service"+suffix),
		consumer.Topics(paymentsTopic),
		consumer.Transactional("checkout-service-0"+suffix),
		consumer.TransactionBatch(50, 50*time.Millisecond)) // small, to show several transactions
	if err != nil {
		return err
	}

	// 3. The inventory service reads only committed checkout events.
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		done = make(chan struct{})
	)
	inventory, err := consumer.New(whippet.Connection{Brokers: brokers, Logger: logger}, consumer.Typed(codec.String(), checkoutCodec, func(ctx context.Context, m consumer.Message[string, CheckoutCompleted]) error {
		ev := m.Value
		mu.Lock()
		defer mu.Unlock()
		if seen[ev.Order]++; seen[ev.Order] == 1 && len(seen) == orders {
			close(done)
		}
		return nil
	}),
		consumer.Group("inventory-service"+suffix),
		consumer.Topics(checkoutsTopic),
		consumer.ReadCommitted(true))
	if err != nil {
		return err
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 2)
	go func() { errc <- checkout.Run(runCtx) }()
	go func() { errc <- inventory.Run(runCtx) }()
	select {
	case <-done:
	case err := <-errc:
		return fmt.Errorf("a consumer stopped: %w", err)
	case <-time.After(time.Minute):
		stop()
		return errors.New("timed out waiting for inventory to see every order")
	}
	time.Sleep(time.Second) // a duplicate, if any, would arrive now
	stop()                  // graceful: the last transaction commits, both leave their groups
	for range 2 {
		if err := <-errc; err != nil {
			return err
		}
	}

	mu.Lock()
	defer mu.Unlock()
	var dups []string
	for order, n := range seen {
		if n != 1 {
			dups = append(dups, fmt.Sprintf("%s×%d", order, n))
		}
	}
	fmt.Printf("checkout: handled %d payments, %d of them again after the aborted transaction; one CheckoutCompleted each, in transactions\n",
		handled.Load(), handled.Load()-orders)
	fmt.Printf("inventory: read %d distinct orders with read_committed\n", len(seen))
	if len(dups) > 0 || len(seen) != orders {
		return fmt.Errorf("inventory saw %d of %d orders, duplicates: %v", len(seen), orders, dups)
	}
	fmt.Println("inventory saw every order exactly once")
	return nil
}

// cluster returns the brokers to use, starting an embedded kfake cluster when
// none are given.
func cluster(brokers string) ([]string, func(), error) {
	if brokers != "" {
		return strings.Split(brokers, ","), func() {}, nil
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, payments, checkouts))
	if err != nil {
		return nil, nil, err
	}
	fmt.Fprintln(os.Stderr, "embedded kfake cluster at", c.ListenAddrs())
	return c.ListenAddrs(), c.Close, nil
}

func createTopics(ctx context.Context, brokers []string, topics ...string) error {
	adm, err := kadm.NewOptClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer adm.Close()
	resps, err := adm.CreateTopics(ctx, partitions, -1, nil, topics...)
	if err != nil {
		return err
	}
	return resps.Error()
}

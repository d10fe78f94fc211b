// Command notifier is scenario 1 of the product story where order does not
// matter: an order notifier whose failures go to retry topics (one per
// interval, each record handled at its due time) so that other orders keep
// flowing; exhausted and non-retriable orders land in the dead-letter topic,
// where an operator lists them and, once the cause is fixed, replays them.
//
// It runs on an embedded kfake cluster by default (make demo), or on real
// brokers with -brokers 127.0.0.1:19092.
package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/examples/internal/demo"
	"github.com/whippet-go/whippet/producer"
	"github.com/whippet-go/whippet/retry"
)

const (
	topic  = "orders"
	group  = "order-notifier"
	orders = 30
)

var errUnknownCustomer = errors.New("unknown customer")

func main() { demo.Main(run) }

func run(brokersFlag string) error {
	ctx := context.Background()
	brokers, stopCluster, err := demo.Cluster(brokersFlag, 3, topic)
	if err != nil {
		return err
	}
	defer stopCluster()
	p, err := producer.New(whippet.Connection{Brokers: brokers})
	if err != nil {
		return err
	}
	defer p.Close(ctx)
	for i := 0; i < orders; i++ {
		if _, err := p.Produce(ctx, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "order-%02d", i), Value: fmt.Appendf(nil, "order %d confirmed", i)}); err != nil {
			return err
		}
	}

	var (
		mu          sync.Mutex
		sent        = map[string]int{} // attempt that succeeded, by order
		mailboxFull atomic.Bool
		start       = time.Now()
		lastGood    time.Duration
	)
	mailboxFull.Store(true)
	handler := consumer.HandlerFunc(func(ctx context.Context, rec *kgo.Record) error {
		attempt := 1
		if info, ok := retry.InfoFrom(ctx); ok {
			attempt = info.Attempt
		}
		switch key := string(rec.Key); {
		case key == "order-07" && attempt < 3:
			return errors.New("SMTP timeout") // transient: the second retry succeeds
		case key == "order-13" && mailboxFull.Load():
			return errors.New("mailbox full") // until someone empties it
		case key == "order-21":
			return retry.NonRetriable(errUnknownCustomer)
		}
		mu.Lock()
		defer mu.Unlock()
		sent[string(rec.Key)] = attempt
		if attempt == 1 {
			lastGood = time.Since(start)
		}
		if mark, ok := dlq.ReplayMarkOf(rec); ok {
			fmt.Printf("notified %s, replayed from %s\n", rec.Key, mark.From)
		}
		return nil
	})
	c, err := consumer.New(whippet.Connection{Brokers: brokers}, handler, consumer.Group(group), consumer.Topics(topic),
		consumer.Retry(retry.NonBlocking(300*time.Millisecond, 600*time.Millisecond).NonRetriableErrors(errUnknownCustomer)))
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(runCtx) }()

	dc, err := dlq.New(whippet.Connection{Brokers: brokers})
	if err != nil {
		return err
	}
	defer dc.Close(context.Background())
	dlqTopic := retry.DLQTopicName(topic, group)
	var page dlq.Page
	if err := waitFor(func() (bool, error) {
		page, err = dc.List(ctx, dlqTopic, dlq.Filter{})
		if errors.Is(err, dlq.ErrUnknownTopic) {
			return false, nil // the consumer creates it when it starts
		}
		return len(page.Records) == 2, err
	}); err != nil {
		return fmt.Errorf("waiting for 2 dead letters: %w", err)
	}
	mu.Lock()
	fmt.Printf("%d orders notified on their first attempt within %v, while the failures went to retry topics; order-07 on attempt %d\n",
		len(sent)-1, lastGood.Round(time.Millisecond), sent["order-07"])
	mu.Unlock()
	for _, r := range page.Records {
		fmt.Printf("dead letter %s: %s, %s after %d attempts: %q\n", r.Position, r.Key, r.Info.Reason, r.Info.Attempt, r.Info.LastError)
	}

	mailboxFull.Store(false) // the operator empties the mailbox, then replays what it blocked
	res, err := dc.Replay(ctx, dlqTopic, dlq.Filter{Reason: retry.ReasonExhausted})
	if err != nil {
		return err
	}
	fmt.Printf("replayed %d dead letter(s) to %s\n", len(res.Replayed), topic)
	if err := waitFor(func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		_, ok := sent["order-13"]
		return ok, nil
	}); err != nil {
		return fmt.Errorf("waiting for the replayed order: %w", err)
	}
	stop()
	if err := <-errc; err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != orders-1 || sent["order-07"] != 3 {
		return fmt.Errorf("notified %d orders (order-07 on attempt %d), want %d and 3", len(sent), sent["order-07"], orders-1)
	}
	fmt.Printf("all orders but order-21 (unknown customer, left in %s) notified\n", dlqTopic)
	return nil
}

func waitFor(cond func() (bool, error)) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("timed out")
}

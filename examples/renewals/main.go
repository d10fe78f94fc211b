// Command renewals is scenario 1 of the product story, "schedule and forget",
// where order matters: a subscription-renewal service handles each user's
// requests in order, retries failures in place with exponential backoff, and
// an on-call operator skips the one request that keeps failing, sending it to
// the dead-letter topic so its partition goes on.
//
// It runs on an embedded kfake cluster by default (make demo), or on real
// brokers with -brokers 127.0.0.1:19092.
//
// With -serve 127.0.0.1:8080 it does not exit: once the operator above has
// skipped the declined card (whose owner then fixes it), it serves the admin
// dashboard (package consumer/admin) at http://127.0.0.1:8080/whippet/ with
// another request blocking its partition to skip, the skipped request in the
// dead-letter topic to replay, and every partition to seek; renewals are
// printed as they are handled. Ctrl-C stops it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/examples/internal/demo"
	"github.com/whippet-go/whippet/producer"
	"github.com/whippet-go/whippet/retry"
)

// RenewalRequest asks to renew a user's subscription.
type RenewalRequest struct {
	User string `json:"user"`
	Seq  int    `json:"seq"` // per user, to show the order kept
}

const (
	topic      = "renewals"
	group      = "renewal-service"
	users      = 12
	perUser    = 5
	partitions = 3
)

var serveAddr = flag.String("serve", "", "after the scenario, keep running and serve the admin dashboard on this address (e.g. 127.0.0.1:8080) until Ctrl-C")

func main() { demo.Main(run) }

func run(brokersFlag string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return scenario(ctx, brokersFlag, *serveAddr, nil)
}

// scenario runs the story; with serve set, it then serves the dashboard
// there until ctx ends (ready, if set, is called with its URL).
func scenario(ctx context.Context, brokersFlag, serve string, ready func(url string)) error {
	brokers, stopCluster, err := demo.Cluster(brokersFlag, partitions, topic)
	if err != nil {
		return err
	}
	defer stopCluster()

	p, err := producer.New(whippet.Connection{Brokers: brokers})
	if err != nil {
		return err
	}
	defer p.Close(ctx)
	requests, err := producer.NewTyped(p, topic, codec.String(), codec.JSON[RenewalRequest]())
	if err != nil {
		return err
	}
	for seq := 0; seq < perUser; seq++ {
		for u := 0; u < users; u++ {
			user := fmt.Sprintf("user-%02d", u)
			if _, err := requests.Produce(ctx, user, RenewalRequest{User: user, Seq: seq}); err != nil {
				return err
			}
		}
	}
	fmt.Printf("produced %d renewal requests of %d users\n", users*perUser, users)

	var (
		mu       sync.Mutex
		lastSeq  = map[string]int{}
		renewed  int
		attempts = map[string]int{}
		order    error
		// Serving: the declined card is fixed once skipped, so that its
		// dead letter can be replayed; another request blocks for the
		// person at the dashboard; renewals are printed.
		cardFixed, printing atomic.Bool
	)
	// A request that does not decode never reaches the handler: it is a
	// poison pill, dead-lettered at once (reason "decode").
	handler := consumer.Typed(codec.String(), codec.JSON[RenewalRequest](), func(ctx context.Context, m consumer.Message[string, RenewalRequest]) error {
		req := m.Value
		mu.Lock()
		defer mu.Unlock()
		id := fmt.Sprintf("%s#%d", req.User, req.Seq)
		attempts[id]++
		// Attempts come in order per user; retries repeat the same request.
		if last, ok := lastSeq[req.User]; ok && req.Seq != last && req.Seq != last+1 && order == nil {
			order = fmt.Errorf("%s: request %d handled after %d", req.User, req.Seq, last)
		}
		lastSeq[req.User] = req.Seq
		switch {
		case req.User == "user-07" && req.Seq == 2 && !cardFixed.Load():
			return errors.New("card declined") // keeps failing: blocks its partition
		case req.User == "user-10" && req.Seq == 4 && serve != "":
			return errors.New("bank unreachable") // for the person at the dashboard to skip
		case req.User == "user-03" && req.Seq == 1 && attempts[id] < 3:
			return errors.New("billing system timeout") // transient: succeeds on attempt 3
		}
		renewed++
		if printing.Load() {
			fmt.Printf("renewed %s #%d (%s[%d] offset %d)\n", req.User, req.Seq, m.Topic, m.Partition, m.Offset)
		}
		return nil
	})

	c, err := consumer.New(whippet.Connection{Brokers: brokers}, handler,
		consumer.Group(group),
		consumer.Topics(topic),
		// Retried in place, 50ms, 100ms, 200ms, 400ms, 400ms, ... until it
		// succeeds or an operator steps in.
		consumer.Retry(retry.BlockingBackoff(retry.Exponential{
			Initial: 50 * time.Millisecond, Max: 400 * time.Millisecond, Multiplier: 2, Retries: retry.Forever,
		})))
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(runCtx) }()

	// The on-call operator: watches what blocks, and skips the request that
	// has failed 4 times (in a service, from the admin page or the CLI).
	deadline := time.After(time.Minute)
	for skipped := false; !skipped; {
		select {
		case <-deadline:
			return errors.New("the declined card never blocked its partition")
		case <-time.After(50 * time.Millisecond):
		}
		for _, b := range c.Blocked() {
			if b.Attempts < 4 || string(b.Key) != "user-07" {
				continue
			}
			mu.Lock()
			done := renewed
			mu.Unlock()
			fmt.Printf("operator: %s[%d] offset %d (key %s) blocked since %s, %d attempts, last error %q; %d other requests renewed meanwhile; skipping it\n",
				b.Topic, b.Partition, b.Offset, b.Key, b.Since.Format(time.TimeOnly), b.Attempts, b.Error, done)
			if err := c.Skip(b.Topic, b.Partition); err != nil {
				return err
			}
			skipped = true
		}
	}
	done := func() bool {
		if serve == "" {
			mu.Lock()
			defer mu.Unlock()
			return renewed == users*perUser-1
		}
		// user-10 #4 blocks its partition; the others are through.
		held := int32(-1)
		for _, b := range c.Blocked() {
			if string(b.Key) == "user-10" && b.Attempts >= 2 {
				held = b.Partition
			}
		}
		for _, p := range c.Partitions() {
			if p.Partition != held && (p.NextOffset < 0 || p.Lag > 0) {
				return false
			}
		}
		return held >= 0
	}
	for !done() {
		select {
		case <-deadline:
			return errors.New("timed out waiting for the renewals")
		case <-time.After(20 * time.Millisecond):
		}
	}
	if serve == "" {
		stop()
		if err := <-errc; err != nil {
			return err
		}
	}
	mu.Lock()
	if order != nil {
		mu.Unlock()
		return order
	}
	fmt.Printf("renewed %d; user-03#1 succeeded on attempt %d; every user's requests in order\n", renewed, attempts["user-03#1"])
	mu.Unlock()

	dlq := retry.DLQTopicName(topic, group)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(dlq), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	defer cl.Close()
	fetchCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	fs := cl.PollFetches(fetchCtx)
	if fs.NumRecords() != 1 {
		return fmt.Errorf("%d records in %s, want the skipped one: %v", fs.NumRecords(), dlq, fs.Errors())
	}
	d := fs.Records()[0]
	info, _ := retry.InfoFor(d)
	fmt.Printf("dead-letter topic %s: key %s, reason %s after %d attempts, from %s[%d] offset %d, error %q\n",
		dlq, d.Key, info.Reason, info.Attempt, info.OriginalTopic, info.OriginalPartition, info.OriginalOffset, info.LastError)
	if info.Reason != retry.ReasonSkipped || string(d.Key) != "user-07" {
		fmt.Fprintln(os.Stderr, "unexpected dead-letter record")
		os.Exit(1)
	}
	if serve == "" {
		return nil
	}
	cardFixed.Store(true)
	fmt.Println("user-07 updated their card: replaying their dead letter will renew it")
	printing.Store(true)
	err = dashboard(ctx, whippet.Connection{Brokers: brokers}, c, serve, ready)
	stop()
	return errors.Join(err, <-errc)
}

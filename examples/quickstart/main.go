// Command quickstart is the first part of the product story, "schedule and
// forget": a subscription-renewal service. Renewal requests keyed by user id
// are produced by an idempotent producer and handled by a whippet consumer in
// key-parallel mode: each user's requests in order, different users
// concurrently. One request fails; with the default retry policy it goes
// straight to the dead-letter topic (examples/renewals shows retries). The
// consumer then shuts down gracefully and the committed offsets show that
// every request was accounted for.
//
// It runs on an embedded kfake cluster by default (make demo), or on real
// brokers with -brokers 127.0.0.1:19092.
package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

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
	Plan string `json:"plan"`
	Seq  int    `json:"seq"` // per user, to show the order kept
}

const (
	topic      = "subscription-renewals"
	group      = "renewal-service"
	users      = 20
	perUser    = 10
	partitions = 3
)

func main() { demo.Main(run) }

func run(brokersFlag string) error {
	ctx := context.Background()
	brokers, stopCluster, err := demo.Cluster(brokersFlag, partitions, topic)
	if err != nil {
		return err
	}
	defer stopCluster()

	// The producer is idempotent by default: retries never duplicate a request.
	p, err := producer.New(whippet.Connection{Brokers: brokers})
	if err != nil {
		return err
	}
	defer p.Close(ctx)
	renewals, err := producer.NewTyped(p, topic, codec.String(), codec.JSON[RenewalRequest]())
	if err != nil {
		return err
	}
	for seq := 0; seq < perUser; seq++ {
		for u := 0; u < users; u++ {
			user := fmt.Sprintf("user-%02d", u)
			if _, err := renewals.Produce(ctx, user, RenewalRequest{User: user, Plan: "yearly", Seq: seq}); err != nil {
				return fmt.Errorf("producing a renewal: %w", err)
			}
		}
	}
	fmt.Printf("produced %d renewal requests for %d users to %q\n", users*perUser, users, topic)

	var (
		mu      sync.Mutex
		lastSeq = map[string]int{}
		renewed int
		failed  int
		order   error
		done    = make(chan struct{})
	)
	// A typed handler: a request that does not decode never reaches it, it
	// is dead-lettered at once (reason "decode").
	handler := consumer.Typed(codec.String(), codec.JSON[RenewalRequest](), func(ctx context.Context, m consumer.Message[string, RenewalRequest]) error {
		req := m.Value
		time.Sleep(2 * time.Millisecond) // the call to the billing system
		mu.Lock()
		defer mu.Unlock()
		if last, ok := lastSeq[req.User]; ok && req.Seq != last+1 && order == nil {
			order = fmt.Errorf("%s: request %d handled after %d", req.User, req.Seq, last)
		}
		lastSeq[req.User] = req.Seq
		defer func() {
			if renewed+failed == users*perUser {
				close(done)
			}
		}()
		if req.User == "user-07" && req.Seq == 3 {
			failed++
			return errors.New("billing system declined the card")
		}
		renewed++
		return nil
	})

	logger, _ := zap.NewDevelopment(zap.IncreaseLevel(zap.WarnLevel), zap.AddStacktrace(zap.DPanicLevel))
	c, err := consumer.New(whippet.Connection{Brokers: brokers, Logger: logger}, handler,
		consumer.Group(group),
		consumer.Topics(topic),
		consumer.KeyParallel(16)) // users in parallel, each user in order
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- c.Run(runCtx) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		stop()
		return errors.New("timed out waiting for the renewals to be handled")
	}
	stop() // graceful: drain, commit, leave the group
	if err := <-errc; err != nil {
		return err
	}

	mu.Lock()
	defer mu.Unlock()
	if order != nil {
		return order
	}
	fmt.Printf("renewed %d, failed %d (dead-lettered to %s); every user's requests in order\n", renewed, failed, retry.DLQTopicName(topic, group))

	adm, err := kadm.NewOptClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer adm.Close()
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return err
	}
	var committed int64
	offs.Each(func(o kadm.OffsetResponse) { committed += o.At })
	fmt.Printf("committed offsets of group %q add up to %d of %d records\n", group, committed, users*perUser)
	if committed != users*perUser {
		return fmt.Errorf("committed %d, want %d", committed, users*perUser)
	}
	return nil
}

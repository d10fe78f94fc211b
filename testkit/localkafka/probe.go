package localkafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// probeClient returns an admin client that gives up on a silent broker
// (e.g. a SIGSTOPped one) about when ctx ends: kgo's connection set-up
// (ApiVersions) is bounded by RequestTimeoutOverhead, not by the request's
// ctx, and its retries by RetryTimeout.
func probeClient(ctx context.Context, brokers []string) (*kadm.Client, func(), error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.DialTimeout(time.Second),
		kgo.RequestTimeoutOverhead(2 * time.Second),
		kgo.MetadataMinAge(100 * time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }),
	}
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, kgo.RetryTimeout(max(time.Until(dl), 10*time.Millisecond)))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("localkafka: admin client: %w", err)
	}
	return kadm.NewClient(cl), cl.Close, nil
}

// probe checks, with the Go admin client, that the cluster is usable: the
// metadata lists all n brokers, a topic replicated n times can be created and
// gets a leader with a full ISR, and the group and transaction coordinators
// are found (which also creates __consumer_offsets and __transaction_state,
// so the first test does not pay for it).
func probe(ctx context.Context, brokers []string, n int) error {
	adm, closeFn, err := probeClient(ctx, brokers)
	if err != nil {
		return err
	}
	defer closeFn()

	m, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if len(m.Brokers) < n {
		return fmt.Errorf("metadata lists %d of %d brokers", len(m.Brokers), n)
	}

	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	topic := "whippet-ready-probe-" + hex.EncodeToString(rnd[:])
	if _, err := adm.CreateTopic(ctx, 1, int16(n), nil, topic); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create probe topic: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = adm.DeleteTopic(dctx, topic)
	}()
	for {
		td, err := adm.ListTopics(ctx, topic)
		if err == nil {
			p, ok := td[topic].Partitions[0]
			if ok && p.Err == nil && p.Leader >= 0 && len(p.ISR) == n {
				break
			}
			err = fmt.Errorf("probe topic has no leader with full ISR yet")
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}

	const key = "whippet-ready-probe"
	if r := adm.FindGroupCoordinators(ctx, key)[key]; r.Err != nil {
		return fmt.Errorf("group coordinator: %w", r.Err)
	}
	if r := adm.FindTxnCoordinators(ctx, key)[key]; r.Err != nil {
		return fmt.Errorf("transaction coordinator: %w", r.Err)
	}
	return nil
}

// brokerRegistered reports whether the metadata lists broker id.
func brokerRegistered(ctx context.Context, brokers []string, id int32) error {
	adm, closeFn, err := probeClient(ctx, brokers)
	if err != nil {
		return err
	}
	defer closeFn()
	m, err := adm.BrokerMetadata(ctx)
	if err != nil {
		return err
	}
	for _, b := range m.Brokers {
		if b.NodeID == id {
			return nil
		}
	}
	return fmt.Errorf("broker %d not in metadata yet", id)
}

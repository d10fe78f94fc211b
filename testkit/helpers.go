package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultTimeout bounds each helper's Kafka calls (and ConsumeUntil when its
// context has no deadline).
const DefaultTimeout = 30 * time.Second

func (c *Cluster) newClient(opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.Brokers...)}, opts...)...)
}

// Client returns a franz-go client for the cluster (SeedBrokers set; opts
// are applied after it) that is closed when the test ends.
func (c *Cluster) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := c.newClient(opts...)
	if err != nil {
		t.Fatalf("testkit: new client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Admin returns an admin client for the cluster, closed when the test ends.
func (c *Cluster) Admin(t testing.TB) *kadm.Client {
	t.Helper()
	return kadm.NewClient(c.Client(t))
}

// withAdmin runs fn with a short-lived admin client.
func (c *Cluster) withAdmin(fn func(*kadm.Client) error) error {
	cl, err := c.newClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	return fn(kadm.NewClient(cl))
}

// CreateTopic creates topic with the broker's default replication (3 on a
// 3-node cluster) and waits until the metadata shows every partition with a
// leader. partitions may be -1 for the broker default. It fails the test if
// the topic exists already; NewTopic gives a unique name.
func (c *Cluster) CreateTopic(t testing.TB, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	if err := c.createTopic(topic, partitions, configs); err != nil {
		t.Fatalf("testkit: create topic %q: %v", topic, err)
	}
}

func (c *Cluster) createTopic(topic string, partitions int32, configs map[string]*string) error {
	return c.withAdmin(func(adm *kadm.Client) error {
		ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
		defer cancel()
		if _, err := adm.CreateTopic(ctx, partitions, -1, configs, topic); err != nil {
			if errors.Is(err, kerr.TopicAlreadyExists) {
				return fmt.Errorf("%w (use NewTopic for a unique name per test)", err)
			}
			return err
		}
		for {
			td, err := adm.ListTopics(ctx, topic)
			if err == nil {
				err = topicReady(td[topic], partitions)
			}
			if err == nil {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("created, but not ready after %s: %w", DefaultTimeout, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
}

func topicReady(d kadm.TopicDetail, partitions int32) error {
	if d.Err != nil {
		return d.Err
	}
	if len(d.Partitions) == 0 || (partitions > 0 && len(d.Partitions) != int(partitions)) {
		return fmt.Errorf("metadata shows %d of %d partitions", len(d.Partitions), partitions)
	}
	for _, p := range d.Partitions {
		if p.Err != nil {
			return fmt.Errorf("partition %d: %w", p.Partition, p.Err)
		}
		if p.Leader < 0 {
			return fmt.Errorf("partition %d has no leader", p.Partition)
		}
	}
	return nil
}

// NewTopic creates a topic named after the test (plus a random suffix, so
// reruns and parallel tests never collide), waits for its leaders as
// CreateTopic does, and deletes it when the test ends.
func (c *Cluster) NewTopic(t testing.TB, partitions int32, configs map[string]*string) string {
	t.Helper()
	topic := TopicName(t.Name())
	c.CreateTopic(t, topic, partitions, configs)
	t.Cleanup(func() {
		err := c.withAdmin(func(adm *kadm.Client) error {
			ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
			defer cancel()
			_, err := adm.DeleteTopic(ctx, topic)
			return err
		})
		if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
			t.Logf("testkit: delete topic %q: %v", topic, err)
		}
	})
	return topic
}

// TopicName turns a test name into a unique, valid topic name: characters
// Kafka does not allow become '-', and a random suffix is appended.
func TopicName(testName string) string {
	var b strings.Builder
	for _, r := range testName {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-")
	if name == "" {
		name = "topic"
	}
	const maxBase = 200 // Kafka allows 249
	if len(name) > maxBase {
		name = name[:maxBase]
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return name + "-" + hex.EncodeToString(rnd[:])
}

// Produce produces recs synchronously with a fresh default client and fails
// the test on any error. Records go where kgo's default partitioner puts
// them (by key hash; Record.Partition is ignored): to choose partitions, use
// Client with kgo.RecordPartitioner(kgo.ManualPartitioner()).
func (c *Cluster) Produce(t testing.TB, recs ...*kgo.Record) {
	t.Helper()
	cl, err := c.newClient()
	if err != nil {
		t.Fatalf("testkit: new client: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
	defer cancel()
	for i, r := range cl.ProduceSync(ctx, recs...) {
		if r.Err != nil {
			t.Fatalf("testkit: produce record %d of %d to %q: %v", i+1, len(recs), r.Record.Topic, r.Err)
		}
	}
}

// ConsumeUntil reads topic directly (no consumer group) from the earliest
// offset, collecting records until done(all) returns true, and returns them.
// If ctx ends first (DefaultTimeout when ctx has no deadline) it fails the
// test, saying how many records it got. opts are added to the client (e.g.
// kgo.FetchIsolationLevel(kgo.ReadCommitted())). Call it from the test's
// goroutine.
func (c *Cluster) ConsumeUntil(ctx context.Context, t testing.TB, topic string, done func(all []*kgo.Record) bool, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	all := []*kgo.Record{}
	if done(all) {
		return all
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	base := []kgo.Opt{kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
	cl, err := c.newClient(append(base, opts...)...)
	if err != nil {
		t.Fatalf("testkit: new client: %v", err)
	}
	defer cl.Close()
	var lastErr error
	for {
		fs := cl.PollFetches(ctx)
		if fs.IsClientClosed() {
			t.Fatalf("testkit: ConsumeUntil(%q): client closed", topic)
		}
		fs.EachError(func(tp string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				lastErr = fmt.Errorf("%s[%d]: %w", tp, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) { all = append(all, r) })
		if done(all) {
			return all
		}
		if err := ctx.Err(); err != nil {
			msg := fmt.Sprintf("testkit: ConsumeUntil(%q): condition not met after %d record(s): %v", topic, len(all), err)
			if lastErr != nil {
				msg += fmt.Sprintf(" (last fetch error: %v)", lastErr)
			}
			t.Fatal(msg)
		}
	}
}

// Eventually calls cond until it returns nil, backing off from 10ms to
// 250ms between calls, and fails the test with cond's last error if that
// does not happen within timeout.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 10 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("testkit: condition not met within %s: %v", timeout, err)
			return
		}
		time.Sleep(min(wait, left))
		wait = min(2*wait, 250*time.Millisecond)
	}
}

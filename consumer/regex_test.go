package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// topicsWithPrefix lists the topics whose name starts with prefix, sorted.
func topicsWithPrefix(t *testing.T, kc *testkit.Cluster, prefix string) []string {
	t.Helper()
	details, err := kc.Admin(t).ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, name := range details.Names() {
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// deleteTopicsWithPrefix deletes, when the test ends, every topic whose name
// starts with prefix: the test's topics and those the consumer created.
func deleteTopicsWithPrefix(t *testing.T, kc *testkit.Cluster, prefix string) {
	t.Cleanup(func() {
		if names := topicsWithPrefix(t, kc, prefix); len(names) > 0 {
			if _, err := kc.Admin(t).DeleteTopics(context.Background(), names...); err != nil {
				t.Logf("deleting %v: %v", names, err)
			}
		}
	})
}

// TestTopicRegexNeverConsumesItsOwnDeadLetters is issue 14's reproduction:
// TopicRegex("^orders.*") with group billing matches the group's own
// dead-letter topic orders-billing-dlq. A record that always fails must be
// handled exactly as often as the policy says (its retry topics consumed as
// retry stages), land once in the dead-letter topic, and no
// "-dlq-billing-dlq" topic may ever be created.
func TestTopicRegexNeverConsumesItsOwnDeadLetters(t *testing.T) {
	for _, tc := range []struct {
		name      string
		policy    retry.Policy
		retries   int // retry topics
		wantTries int
	}{
		{"dead-letter only", retry.NoRetry(), 0, 1},
		{"non-blocking retries", retry.NonBlocking(200*time.Millisecond, 300*time.Millisecond), 2, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kc := testkit.Shared(t)
			id := time.Now().UnixNano()
			orders := fmt.Sprintf("orders%d", id)
			group := fmt.Sprintf("billing%d", id)
			deleteTopicsWithPrefix(t, kc, orders)
			kc.CreateTopic(t, orders, 1, nil)
			kc.Produce(t, &kgo.Record{Topic: orders, Key: []byte("poison"), Value: []byte("v")})

			var mu sync.Mutex
			var tries []string // topic of every attempt at the poison record
			handledKeys := map[string]bool{}
			h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
				mu.Lock()
				defer mu.Unlock()
				handledKeys[string(r.Key)] = true
				if string(r.Key) == "poison" {
					tries = append(tries, r.Topic)
					return errors.New("always fails")
				}
				return nil
			})
			// A short metadata age, so that the consumer sees new topics
			// (ours and those the test creates) within seconds.
			conn := whippet.Connection{Brokers: kc.Brokers, ClientOptions: []kgo.Opt{kgo.MetadataMaxAge(time.Second), kgo.MetadataMinAge(100 * time.Millisecond)}}
			c := newConsumerConn(t, conn, h, group, consumer.TopicRegex("^"+orders+".*"), consumer.Retry(tc.policy))
			run(t, c)

			dead := readDLQ(t, kc, orders, group, 1)
			if info, _ := retry.InfoFor(dead[0]); info.Attempt != tc.wantTries || info.OriginalTopic != orders {
				t.Fatalf("dead letter %+v, want attempt %d of %s", info, tc.wantTries, orders)
			}

			// A barrier: a topic created now is found by the same metadata
			// refresh as every topic created before it, the dead-letter topic
			// too. Once its record is handled, the consumer has had its chance
			// to take the dead-letter topic.
			later := orders + "-later"
			kc.CreateTopic(t, later, 1, nil)
			kc.Produce(t, &kgo.Record{Topic: later, Key: []byte("later"), Value: []byte("v")})
			testkit.Eventually(t, 60*time.Second, func() error {
				mu.Lock()
				defer mu.Unlock()
				if !handledKeys["later"] {
					return errors.New("the record of the topic created later is not handled yet")
				}
				return nil
			})
			dlqTopic := retry.DLQTopicName(orders, group)
			for _, p := range c.Partitions() {
				if p.Topic == dlqTopic || strings.Contains(p.Topic, "-dlq") {
					t.Fatalf("the consumer took its own dead-letter topic: %+v", c.Partitions())
				}
			}
			mu.Lock()
			got := slices.Clone(tries)
			mu.Unlock()
			want := []string{orders}
			for n := range tc.retries {
				want = append(want, retry.TopicName(orders, group, n))
			}
			if !slices.Equal(got, want) {
				t.Fatalf("the poison record was handled from %v, want exactly %v", got, want)
			}
			wantTopics := append([]string{orders, later, dlqTopic}, want[1:]...)
			slices.Sort(wantTopics)
			if names := topicsWithPrefix(t, kc, orders); !slices.Equal(names, wantTopics) {
				t.Fatalf("topics %v, want %v", names, wantTopics)
			}
			// Topics lists what the patterns match, a retry topic as its
			// source, never the dead-letter topic.
			if got := c.Topics(); !slices.Equal(got, []string{orders, later}) || c.Group() != group {
				t.Fatalf("Group() %q, Topics() %v, want %q, [%s %s]", c.Group(), got, group, orders, later)
			}
			t.Logf("handled %d times (%v), dead-lettered once; topics %v", len(got), got, wantTopics)
		})
	}
}

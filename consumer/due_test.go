package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// retryRecord is a record of group's first retry topic of topic, as the
// consumer forwards it after one failed attempt: due at due, stamped ts.
func retryRecord(topic, group, key string, due, ts time.Time) *kgo.Record {
	info := retry.Info{Attempt: 2, Due: due, OriginalTopic: topic, OriginalTimestamp: ts, Group: group,
		FirstFailure: ts, LastFailure: ts, LastError: "first failure of " + key}
	return &kgo.Record{Topic: retry.TopicName(topic, group, 0), Key: []byte(key), Value: []byte("v-" + key),
		Timestamp: ts, Headers: info.Headers(nil)}
}

// keyLog records the keys a handler saw, in order.
type keyLog struct {
	mu   sync.Mutex
	keys []string
	dues []time.Time
}

func (l *keyLog) handler() consumer.Handler {
	return consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		info, _ := retry.InfoFrom(ctx)
		l.mu.Lock()
		defer l.mu.Unlock()
		l.keys = append(l.keys, string(r.Key))
		l.dues = append(l.dues, info.Due)
		return nil
	})
}

func (l *keyLog) snapshot() ([]string, []time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.keys), slices.Clone(l.dues)
}

// TestWaitingRetryIsListedAndSkippable is issue 14's reproduction: a retry
// due in 1h ahead of one already due holds its retry partition. Blocked must
// list it with its due time, Skip must dead-letter it (reason skipped,
// without handling it), and the record behind it is then handled.
func TestWaitingRetryIsListedAndSkippable(t *testing.T) {
	for _, mode := range []string{"at-least-once", "transactional"} {
		t.Run(mode, func(t *testing.T) {
			kc := testkit.Shared(t)
			topic := kc.NewTopic(t, 1, nil)
			group := topic
			deleteTopicsWithPrefix(t, kc, topic+"-")
			rt := retry.TopicName(topic, group, 0)
			kc.CreateTopic(t, rt, 1, nil)
			now := time.Now()
			later := now.Add(time.Hour).Truncate(time.Millisecond)
			kc.Produce(t, retryRecord(topic, group, "later", later, now), retryRecord(topic, group, "due", now.Add(-time.Second), now))

			var log keyLog
			opts := []consumer.Option{consumer.Topics(topic), consumer.Retry(retry.NonBlocking(time.Hour))}
			var c *consumer.Consumer
			if mode == "transactional" {
				c = newTxnConsumer(t, kc, log.handler(), group, group+"-txn", opts...)
			} else {
				c = newConsumer(t, kc, log.handler(), group, opts...)
			}
			run(t, c)

			testkit.Eventually(t, 20*time.Second, func() error {
				b := c.Blocked()
				if len(b) != 1 || b[0].Topic != rt || b[0].Partition != 0 || b[0].Offset != 0 || string(b[0].Key) != "later" ||
					!b[0].NextAttempt.Equal(later) || b[0].Forwarding || !b[0].Waiting || b[0].Error != "first failure of later" || b[0].Attempts != 1 {
					return fmt.Errorf("blocked %+v, want the retry at %s[0] offset 0 waiting until %v", b, rt, later)
				}
				return nil
			})
			if keys, _ := log.snapshot(); len(keys) != 0 {
				t.Fatalf("handled %v while the first retry waits", keys)
			}
			if err := c.Skip(rt, 0); err != nil {
				t.Fatalf("Skip of the waiting retry: %v", err)
			}
			testkit.Eventually(t, 20*time.Second, func() error {
				if keys, _ := log.snapshot(); !slices.Equal(keys, []string{"due"}) {
					return fmt.Errorf("handled %v, want [due]", keys)
				}
				return nil
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			dead := kc.ConsumeUntil(ctx, t, retry.DLQTopicName(topic, group), func(all []*kgo.Record) bool { return len(all) >= 1 },
				kgo.FetchIsolationLevel(kgo.ReadCommitted()))
			info, _ := retry.InfoFor(dead[0])
			if len(dead) != 1 || string(dead[0].Key) != "later" || info.Reason != retry.ReasonSkipped || info.Attempt != 1 ||
				info.LastError != "first failure of later" || info.OriginalTopic != topic || info.Group != group {
				t.Fatalf("dead letters %d, first %q with %+v; want the skipped retry", len(dead), dead[0].Key, info)
			}
			testkit.Eventually(t, 10*time.Second, func() error {
				if b := c.Blocked(); len(b) != 0 {
					return fmt.Errorf("still blocked after the skip: %+v", b)
				}
				return nil
			})
		})
	}
}

// TestForgedDueTimeIsCapped: a retry record whose due header is a century
// away (a forged or corrupted header, a forwarding host's clock far ahead)
// is handled at its record's timestamp plus its stage's interval plus a
// bounded tolerance, not held until then.
func TestForgedDueTimeIsCapped(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	group := topic
	deleteTopicsWithPrefix(t, kc, topic+"-")
	rt := retry.TopicName(topic, group, 0)
	kc.CreateTopic(t, rt, 1, nil)
	const interval = 200 * time.Millisecond
	ts := time.Now().Add(-10 * time.Minute).Truncate(time.Millisecond)
	kc.Produce(t, retryRecord(topic, group, "forged", ts.AddDate(100, 0, 0), ts))

	var log keyLog
	c := newConsumer(t, kc, log.handler(), group, consumer.Topics(topic), consumer.Retry(retry.NonBlocking(interval)))
	run(t, c)
	testkit.Eventually(t, 20*time.Second, func() error {
		if keys, _ := log.snapshot(); !slices.Equal(keys, []string{"forged"}) {
			return fmt.Errorf("handled %v, want [forged]; blocked %+v", keys, c.Blocked())
		}
		return nil
	})
	_, dues := log.snapshot()
	if want := ts.Add(interval + consumer.DueTolerance); !dues[0].Equal(want) {
		t.Fatalf("the handler saw due %v, want the capped due %v", dues[0], want)
	}
}

// TestRetryNeverStartsBeforeFailurePlusInterval: due times are stored in
// whole milliseconds; each retry must start no sooner than the moment its
// attempt failed plus the interval, to the nanosecond, and the due time the
// handler is told must not be earlier either.
func TestRetryNeverStartsBeforeFailurePlusInterval(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	group := topic
	deleteTopicsWithPrefix(t, kc, topic+"-")
	const n, interval = 40, 50 * time.Millisecond
	produceSpread(t, kc, topic, 1, n, func(i int) string { return fmt.Sprintf("k%d", i) })

	var mu sync.Mutex
	failedAt := map[string]time.Time{}
	type start struct {
		at  time.Time
		due time.Time
	}
	retriedAt := map[string]start{}
	h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		now := time.Now()
		info, _ := retry.InfoFrom(ctx)
		mu.Lock()
		defer mu.Unlock()
		if r.Topic == topic {
			failedAt[string(r.Key)] = time.Now() // the last moment of the failed attempt
			return errors.New("first attempt fails")
		}
		retriedAt[string(r.Key)] = start{now, info.Due}
		return nil
	})
	c := newConsumer(t, kc, h, group, consumer.Topics(topic), consumer.Retry(retry.NonBlocking(interval)))
	run(t, c)
	testkit.Eventually(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(retriedAt) != n {
			return fmt.Errorf("%d of %d retried", len(retriedAt), n)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	minMargin, minDueMargin := time.Hour, time.Hour
	for key, s := range retriedAt {
		earliest := failedAt[key].Add(interval)
		margin := s.at.Sub(earliest)              // monotonic clock
		dueMargin := s.due.Sub(earliest.Round(0)) // wall clock, as the due header
		minMargin, minDueMargin = min(minMargin, margin), min(minDueMargin, dueMargin)
		if margin < 0 {
			t.Errorf("%s: retry started %v before failure + interval", key, -margin)
		}
		if dueMargin < 0 {
			t.Errorf("%s: due time %v is %v before failure + interval", key, s.due, -dueMargin)
		}
	}
	t.Logf("%d retries: the earliest started %v after failure + %v; the tightest due time was %v after it", n, minMargin, interval, minDueMargin)
}

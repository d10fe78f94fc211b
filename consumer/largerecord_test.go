package consumer_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// maxMessageBytes reads a topic's max.message.bytes (its own or the
// broker's default).
func maxMessageBytes(t *testing.T, adm *kadm.Client, topic string) int {
	t.Helper()
	rcs, err := adm.DescribeTopicConfigs(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil || rc.Err != nil {
		t.Fatal(err, rc.Err)
	}
	for _, c := range rc.Configs {
		if c.Key == "max.message.bytes" && c.Value != nil {
			n, err := strconv.Atoi(*c.Value)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no max.message.bytes for %s", topic)
	return 0
}

// produceLarge produces a record with a random (incompressible) value of
// size bytes and key "big", then a small record with key "small".
func produceLarge(t *testing.T, kc *testkit.Cluster, topic string, size int) []byte {
	t.Helper()
	big := make([]byte, size)
	_, _ = rand.Read(big)
	cl := kc.Client(t, kgo.ProducerBatchMaxBytes(4<<20))
	if err := cl.ProduceSync(context.Background(),
		&kgo.Record{Topic: topic, Key: []byte("big"), Value: big},
		&kgo.Record{Topic: topic, Key: []byte("small"), Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return big
}

// blockedErrors lists what Blocked says, for failure messages.
func blockedErrors(c *consumer.Consumer) []string {
	var out []string
	for _, b := range c.Blocked() {
		out = append(out, fmt.Sprintf("%s[%d]@%d: %s", b.Topic, b.Partition, b.Offset, b.Error))
	}
	return out
}

// TestLargeRecordsAreRetriedAndDeadLetteredWhenTheSourceAllowsThem checks, on
// real Kafka, that a failing 1.5 MiB record of a topic whose
// max.message.bytes is 2 MiB goes to its retry topic, is handled again
// there, and ends in the dead-letter topic, with the partitions committed
// past it: the consumer creates its retry and dead-letter topics with the
// source's max.message.bytes plus 16 KiB for the retry headers, and forwards
// records that large. In both modes: at-least-once and transactional.
func TestLargeRecordsAreRetriedAndDeadLetteredWhenTheSourceAllowsThem(t *testing.T) {
	for _, mode := range []string{"at-least-once", "transactional"} {
		t.Run(mode, func(t *testing.T) {
			kc := testkit.Shared(t)
			const sourceLimit = 2 << 20
			limit := strconv.Itoa(sourceLimit)
			topic := kc.NewTopic(t, 1, map[string]*string{"max.message.bytes": &limit})
			group := topic
			big := produceLarge(t, kc, topic, 1536<<10)
			var log attemptLog
			opts := []consumer.Option{consumer.Topics(topic), consumer.Retry(retry.NonBlocking(100 * time.Millisecond)),
				consumer.CommitInterval(100 * time.Millisecond)}
			if mode == "transactional" {
				opts = append(opts, consumer.Transactional(topic+"-txn"))
			}
			c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
				log.add(ctx, r)
				if string(r.Key) == "big" {
					return errors.New("too big to handle")
				}
				return nil
			}), group, opts...)
			run(t, c)
			retryTopic := retry.TopicName(topic, group, 0)
			adm := kc.Admin(t)
			testkit.Eventually(t, 30*time.Second, func() error {
				// Past the retry topic's one record, at offset 0 (in
				// transactional mode commit markers follow it).
				src, rt := committed(t, adm, group, topic), committed(t, adm, group, retryTopic)
				if src[0] != 2 || rt[0] < 1 {
					return fmt.Errorf("committed %s %v and %s %v, want 2 and past 0; blocked: %q", topic, src, retryTopic, rt, blockedErrors(c))
				}
				return nil
			})
			dead := readDLQ(t, kc, topic, group, 1)
			info, _ := retry.InfoFor(dead[0])
			if string(dead[0].Key) != "big" || string(dead[0].Value) != string(big) || info.Attempt != 2 || info.Reason != retry.ReasonExhausted {
				t.Fatalf("dead letter key %q, %d bytes, attempt %d, reason %q; want big, %d bytes, 2, exhausted",
					dead[0].Key, len(dead[0].Value), info.Attempt, info.Reason, len(big))
			}
			// The first attempt, then the retry; an aborted transaction
			// hands its records again, at the same attempt.
			got := log.snapshot()["big"]
			seen := map[int]bool{}
			for _, e := range got {
				seen[e.attempt] = true
			}
			if !seen[1] || !seen[2] || len(seen) != 2 || (mode == "at-least-once" && len(got) != 2) {
				t.Fatalf("big handled %+v, want attempts 1 and 2", got)
			}
			for _, name := range []string{retryTopic, retry.DLQTopicName(topic, group)} {
				if got, want := maxMessageBytes(t, adm, name), sourceLimit+16<<10; got != want {
					t.Errorf("%s: max.message.bytes %d, want the source's %d + 16 KiB = %d", name, got, sourceLimit, want)
				}
			}
		})
	}
}

// TestForwardRefusedAsTooLargeSaysWhyInBlocked checks, on real Kafka, that
// a forward Kafka refuses shows why in Blocked: a dead-letter topic that
// already exists with the broker's default max.message.bytes while its
// source allows 2 MiB is left as it is, with a warning at start, and a
// failing 1.5 MiB record then blocks its partition with "record too large",
// its size, the dead-letter topic's limit and Kafka's MESSAGE_TOO_LARGE;
// once an operator raises that limit the record goes through, without a
// restart.
func TestForwardRefusedAsTooLargeSaysWhyInBlocked(t *testing.T) {
	kc := testkit.Shared(t)
	limit := strconv.Itoa(2 << 20)
	topic := kc.NewTopic(t, 1, map[string]*string{"max.message.bytes": &limit})
	group := topic
	dlqTopic := retry.DLQTopicName(topic, group)
	kc.CreateTopic(t, dlqTopic, 1, nil)
	adm := kc.Admin(t)
	dlqLimit := maxMessageBytes(t, adm, dlqTopic)
	big := produceLarge(t, kc, topic, 1536<<10)
	core, logs := observer.New(zap.WarnLevel)
	c := newConsumerConn(t, whippet.Connection{Brokers: kc.Brokers, Logger: zap.New(core)}, consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		if string(r.Key) == "big" {
			return retry.NonRetriable(errors.New("refused"))
		}
		return nil
	}), group, consumer.Topics(topic), consumer.CommitInterval(100*time.Millisecond))
	run(t, c)
	var blocked consumer.BlockedRecord
	testkit.Eventually(t, 30*time.Second, func() error {
		b := c.Blocked()
		if len(b) != 1 || !b[0].Forwarding || b[0].Offset != 0 {
			return fmt.Errorf("blocked %+v, want the failing forward of offset 0", b)
		}
		blocked = b[0]
		return nil
	})
	t.Logf("blocked: %s", blocked.Error)
	wantPrefix := "forward to " + dlqTopic + " failed: record too large: "
	wantLimit := fmt.Sprintf("bytes is more than max.message.bytes of topic %q (%d)", dlqTopic, dlqLimit)
	if !strings.HasPrefix(blocked.Error, wantPrefix) || !strings.Contains(blocked.Error, wantLimit) || !strings.Contains(blocked.Error, "MESSAGE_TOO_LARGE") {
		t.Fatalf("blocked with %q, want %q ... %q ... MESSAGE_TOO_LARGE", blocked.Error, wantPrefix, wantLimit)
	}
	warned := logs.FilterField(zap.String("topic", dlqTopic)).FilterMessageSnippet("max.message.bytes").All()
	if len(warned) == 0 {
		t.Errorf("no warning at start that %s allows smaller records than %s; warnings: %v", dlqTopic, topic, logs.All())
	}
	bigger := strconv.Itoa(4 << 20)
	if _, err := adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Name: "max.message.bytes", Value: &bigger}}, dlqTopic); err != nil {
		t.Fatal(err)
	}
	if dead := readDLQ(t, kc, topic, group, 1); string(dead[0].Value) != string(big) {
		t.Fatal("the dead letter lost its value")
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := committed(t, adm, group, topic); got[0] != 2 {
			return fmt.Errorf("committed %v, want 2; blocked: %q", got, blockedErrors(c))
		}
		return nil
	})
}

// TestTransactionalNeverCommitsPastAnOutputTheClientRefused checks, on real
// Kafka, that in transactional mode an output the producing client refuses
// before sending it (here: 1.2 MB, more than franz-go's default batch limit
// for an ordinary topic) aborts the transaction: the input offset is never
// committed past the record, so the output is not lost. franz-go calls a
// refused record's promise asynchronously, possibly only when the session
// flushes at End, after the decision to commit was taken.
func TestTransactionalNeverCommitsPastAnOutputTheClientRefused(t *testing.T) {
	kc := testkit.Shared(t)
	in := kc.NewTopic(t, 1, nil)
	out := kc.NewTopic(t, 1, nil)
	group := in
	kc.Produce(t, &kgo.Record{Topic: in, Value: []byte("v")})
	big := make([]byte, 1200_000)
	_, _ = rand.Read(big)
	core, logs := observer.New(zap.WarnLevel)
	c := newConsumerConn(t, whippet.Connection{Brokers: kc.Brokers, Logger: zap.New(core)}, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		return consumer.Emit(ctx, &kgo.Record{Topic: out, Value: big})
	}), group, consumer.Transactional(group+"-txn"), consumer.Topics(in), consumer.TransactionBatch(1, 10*time.Millisecond))
	run(t, c)
	adm := kc.Admin(t)
	aborts := func() []observer.LoggedEntry {
		return logs.FilterMessageSnippet("transaction aborted").FilterFieldKey("error").All()
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := committed(t, adm, group, in); got[0] > 0 {
			return nil // fails below
		}
		if n := len(aborts()); n < 5 {
			return fmt.Errorf("%d transactions aborted, want 5", n)
		}
		return nil
	})
	if got := committed(t, adm, group, in); got[0] > 0 {
		t.Fatalf("committed %v: past the record whose output was refused (%d aborts before)", got, len(aborts()))
	}
	for _, e := range aborts() {
		if msg := fmt.Sprint(e.ContextMap()["error"]); !strings.Contains(msg, "record too large") {
			t.Fatalf("transaction aborted with %q, want record too large", msg)
		}
	}
}

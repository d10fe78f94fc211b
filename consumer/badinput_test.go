package consumer_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/internal/toolarge"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

type payment struct {
	ID     string `json:"id"`
	Amount int64  `json:"amount"`
}

// endOffsets returns the end offset of each partition of topic.
func endOffsets(t *testing.T, adm *kadm.Client, topic string) map[int32]int64 {
	t.Helper()
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset of %s[%d]: %v", topic, o.Partition, o.Err)
		}
		out[o.Partition] = o.Offset
	})
	return out
}

// TestUndecodableRecordsGoToTheDeadLetterTopic runs, on real Kafka, a
// consumer whose handler decodes keys and values with whippet's codecs
// (String keys, JSON values) over 3 partitions holding good records and
// poison pills of every kind (malformed JSON, an empty value, a tombstone, a
// value of the wrong shape, a key that is not UTF-8). With a policy that
// would retry other failures for an hour, each poison pill must be
// dead-lettered once, at its first attempt, with reason "decode", the
// decode error and its original position; every good record is handled;
// no record is lost; and every partition's committed offset reaches its end.
// It runs in partition order and in key-parallel mode.
func TestUndecodableRecordsGoToTheDeadLetterTopic(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts []consumer.Option
	}{
		{"ordered", nil},
		{"key-parallel", []consumer.Option{consumer.KeyParallel(8)}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			kc := testkit.Shared(t)
			const parts, perPart = 3, 100
			topic := kc.NewTopic(t, parts, nil)
			group := topic + "-svc"
			poison := []struct {
				key   []byte
				value []byte
				want  string // in the dead letter's error
			}{
				{[]byte("k-p0"), []byte("not json"), "JSON into consumer_test.payment"},
				{[]byte("k-p1"), []byte{}, "JSON into consumer_test.payment: empty input"},
				{[]byte("k-p2"), nil, "JSON into consumer_test.payment: empty input"},
				{[]byte("k-p3"), []byte(`{"id":"x","amount":"ten"}`), "JSON into consumer_test.payment"},
				{[]byte("k-p4\xff"), []byte(`{"id":"y","amount":1}`), "String: invalid UTF-8"},
				{[]byte("k-p5"), []byte(`{"id":"z","amount":1} trailing`), "JSON into consumer_test.payment"},
			}
			// Poison pills at known places: record i of partition p is bad
			// if i%17 == p+3, cycling through the kinds above.
			type place struct {
				p int32
				o int64
			}
			bad := map[place]int{}
			good := map[place]string{}
			var recs []*kgo.Record
			for p := range int32(parts) {
				for i := range perPart {
					r := &kgo.Record{Topic: topic, Partition: p}
					if i%17 == int(p)+3 {
						k := len(bad) % len(poison)
						bad[place{p, int64(i)}] = k
						r.Key, r.Value = poison[k].key, poison[k].value
					} else {
						id := fmt.Sprintf("pay-%d-%d", p, i)
						r.Key = fmt.Appendf(nil, "user-%d", i%7)
						r.Value, _ = json.Marshal(payment{ID: id, Amount: int64(i)})
						good[place{p, int64(i)}] = id
					}
					recs = append(recs, r)
				}
			}
			cl := kc.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
			if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}

			keys, values := codec.String(), codec.JSON[payment]()
			var h handled
			c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
				if _, err := keys.Decode(r.Key); err != nil {
					return fmt.Errorf("key: %w", err)
				}
				v, err := values.Decode(r.Value)
				if err != nil {
					return fmt.Errorf("value: %w", err)
				}
				if info, _ := retry.InfoFrom(ctx); info.Attempt > 1 {
					return fmt.Errorf("%s handled again (attempt %d)", v.ID, info.Attempt)
				}
				h.add(v.ID, r)
				return nil
			}), group, append([]consumer.Option{consumer.Topics(topic), consumer.CommitInterval(100 * time.Millisecond),
				consumer.Retry(retry.BlockingThenNonBlocking(retry.Blocking(time.Hour), retry.NonBlocking(time.Hour)))}, mode.opts...)...)
			run(t, c)

			adm := kc.Admin(t)
			testkit.Eventually(t, 60*time.Second, func() error {
				got := committed(t, adm, group, topic)
				for p := range int32(parts) {
					if got[p] != perPart {
						return fmt.Errorf("committed %v, want %d in each partition", got, perPart)
					}
				}
				return nil
			})
			// Every good record handled (once: a retry would have failed it).
			handledAt := map[place]string{}
			for _, e := range h.snapshot() {
				handledAt[place{e.partition, e.offset}] = e.who
			}
			for pl, id := range good {
				if handledAt[pl] != id {
					t.Errorf("good record %s at %v not handled (got %q)", id, pl, handledAt[pl])
				}
			}
			if len(handledAt) != len(good) {
				t.Errorf("handled %d records, want the %d good ones", len(handledAt), len(good))
			}

			// Exactly the poison pills are dead-lettered, once each, and
			// nothing went to the retry topic.
			dlqTopic := retry.DLQTopicName(topic, group)
			dead := readDLQ(t, kc, topic, group, len(bad))
			time.Sleep(time.Second)
			if n := sum(endOffsets(t, adm, dlqTopic)); n != int64(len(bad)) {
				t.Fatalf("%d dead letters, want %d", n, len(bad))
			}
			if n := sum(endOffsets(t, adm, retry.TopicName(topic, group, 0))); n != 0 {
				t.Fatalf("%d records forwarded to the retry topic; decode failures must not be retried", n)
			}
			seen := map[place]bool{}
			for _, d := range dead {
				info, ok := retry.InfoFor(d)
				pl := place{info.OriginalPartition, info.OriginalOffset}
				k, isBad := bad[pl]
				switch {
				case !ok || info.OriginalTopic != topic || !isBad || seen[pl]:
					t.Fatalf("dead letter %+v: not one of the poison pills, or twice", info)
				case info.Reason != retry.ReasonDecode || info.Attempt != 1 || info.Group != group:
					t.Fatalf("poison pill at %v dead-lettered with %+v, want reason decode after 1 attempt by %s", pl, info, group)
				case !strings.Contains(info.LastError, "codec: decode") || !strings.Contains(info.LastError, poison[k].want):
					t.Fatalf("poison pill at %v: error %q does not say %q", pl, info.LastError, poison[k].want)
				case string(d.Key) != string(poison[k].key) || string(d.Value) != string(poison[k].value) || (d.Value == nil) != (poison[k].value == nil):
					t.Fatalf("poison pill at %v: key/value changed: %q/%q", pl, d.Key, d.Value)
				}
				seen[pl] = true
			}

			// The dlq package reads them back the same way.
			dc, err := dlq.New(whippet.Connection{Brokers: kc.Brokers})
			if err != nil {
				t.Fatal(err)
			}
			defer dc.Close(context.Background())
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			page, err := dc.List(ctx, dlqTopic, dlq.Filter{Reason: retry.ReasonDecode})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Records) != len(bad) {
				t.Fatalf("dlq.List found %d decode dead letters, want %d", len(page.Records), len(bad))
			}
		})
	}
}

// TestForwardTooLargeForTheDeadLetterTopicSaysSo checks, on real Kafka, that
// a failed record too large for its dead-letter topic (max.message.bytes
// 1000) stops its partition with an error that says the record is too
// large, with its size and the topic's limit, and that it goes through once
// the limit is raised.
func TestForwardTooLargeForTheDeadLetterTopicSaysSo(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	group := topic
	dlqTopic := retry.DLQTopicName(topic, group)
	small := "1000"
	kc.CreateTopic(t, dlqTopic, 1, map[string]*string{"max.message.bytes": &small})
	big := make([]byte, 3000)
	_, _ = rand.Read(big)
	cl := kc.Client(t)
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Value: big}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	c := newConsumer(t, kc, consumer.HandlerFunc(func(context.Context, *kgo.Record) error {
		return retry.NonRetriable(errors.New("refused"))
	}), group, consumer.Topics(topic), consumer.CommitInterval(100*time.Millisecond))
	run(t, c)
	var blocked consumer.BlockedRecord
	testkit.Eventually(t, 30*time.Second, func() error {
		b := c.Blocked()
		if len(b) != 1 || !b[0].Forwarding {
			return fmt.Errorf("blocked %+v, want the failing forward", b)
		}
		blocked = b[0]
		return nil
	})
	// The size is that of the forwarded record: the value and the retry
	// headers the forward adds.
	wantPrefix := "forward to " + dlqTopic + " failed: record too large: "
	wantLimit := fmt.Sprintf("bytes is more than max.message.bytes of topic %q (1000)", dlqTopic)
	if !strings.HasPrefix(blocked.Error, wantPrefix) || !strings.Contains(blocked.Error, wantLimit) || !strings.Contains(blocked.Error, "MESSAGE_TOO_LARGE") {
		t.Fatalf("blocked with %q, want %q ... %q", blocked.Error, wantPrefix, wantLimit)
	}
	var size int
	if _, err := fmt.Sscanf(strings.TrimPrefix(blocked.Error, wantPrefix), "%d", &size); err != nil || size <= len(big) ||
		size > toolarge.BatchSize(&kgo.Record{Value: big})+1000 {
		t.Fatalf("size in %q: %d, %v", blocked.Error, size, err)
	}
	t.Logf("blocked: %s", blocked.Error)
	bigger := "1000000"
	if _, err := kc.Admin(t).AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Name: "max.message.bytes", Value: &bigger}}, dlqTopic); err != nil {
		t.Fatal(err)
	}
	if dead := readDLQ(t, kc, topic, group, 1); string(dead[0].Value) != string(big) {
		t.Fatal("the dead letter lost its value")
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := committed(t, kc.Admin(t), group, topic); got[0] != 1 {
			return fmt.Errorf("committed %v, want 1", got)
		}
		return nil
	})
}

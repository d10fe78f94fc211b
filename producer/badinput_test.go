package producer_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/toolarge"
	"github.com/whippet-go/whippet/producer"
	"github.com/whippet-go/whippet/testkit"
)

// randomBytes returns n random bytes: compression cannot shrink them under a
// limit.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// tooLarge checks that err is a clear too-large error: it matches
// ErrRecordTooLarge and kerr.MessageTooLarge, is a *RecordTooLargeError for
// rec's size, and its message says want.
func tooLarge(t *testing.T, err error, rec *kgo.Record, want string) *producer.RecordTooLargeError {
	t.Helper()
	var e *producer.RecordTooLargeError
	switch {
	case !errors.Is(err, producer.ErrRecordTooLarge) || !errors.Is(err, kerr.MessageTooLarge):
		t.Fatalf("%v does not match ErrRecordTooLarge and kerr.MessageTooLarge", err)
	case !errors.As(err, &e):
		t.Fatalf("%v is not a *RecordTooLargeError", err)
	case e.Size != toolarge.BatchSize(rec) || e.Size <= len(rec.Value):
		t.Fatalf("Size %d, want %d (the record in a batch of its own)", e.Size, toolarge.BatchSize(rec))
	case !strings.Contains(err.Error(), want):
		t.Fatalf("message %q does not say %q", err, want)
	}
	return e
}

// TestOversizedRecordsGetAClearError produces, on real Kafka, a record larger
// than the topic's max.message.bytes (refused by the broker), one larger than
// MaxBatchBytes (refused by franz-go before sending), and small records whose
// batch is larger than max.message.bytes: each error says the record or its
// batch is too large, with the size and the limit, and the producer goes on
// producing records that fit.
func TestOversizedRecordsGetAClearError(t *testing.T) {
	kc := testkit.Shared(t)
	small := "1000"
	topic := kc.NewTopic(t, 1, map[string]*string{"max.message.bytes": &small})
	p, err := producer.New(whippet.Connection{Brokers: kc.Brokers}, producer.MaxBatchBytes(64<<10), producer.Linger(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("larger than max.message.bytes", func(t *testing.T) {
		rec := &kgo.Record{Topic: topic, Key: []byte("k"), Value: randomBytes(3000), Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}}
		_, err := p.Produce(ctx, rec)
		e := tooLarge(t, err, rec, fmt.Sprintf("record too large: %d bytes is more than max.message.bytes of topic %q (1000)", toolarge.BatchSize(rec), topic))
		if e.TopicMaxMessageBytes != 1000 || e.MaxBatchBytes != 64<<10 {
			t.Fatalf("limits %+v", e)
		}
		if !strings.HasPrefix(err.Error(), fmt.Sprintf("producer: produce to topic %q: record too large", topic)) {
			t.Fatalf("message %q does not start with the topic", err)
		}
		t.Logf("broker-side: %v", err)
	})

	t.Run("larger than MaxBatchBytes", func(t *testing.T) {
		rec := &kgo.Record{Topic: topic, Value: randomBytes(70 << 10)}
		_, err := p.Produce(ctx, rec)
		tooLarge(t, err, rec, fmt.Sprintf("record too large: %d bytes is more than MaxBatchBytes (65536), the largest batch the client sends", toolarge.BatchSize(rec)))
		t.Logf("client-side: %v", err)
	})

	t.Run("batch larger than max.message.bytes", func(t *testing.T) {
		recs := make([]*kgo.Record, 20)
		for i := range recs {
			recs[i] = &kgo.Record{Topic: topic, Value: randomBytes(200)}
		}
		_, err := p.ProduceMany(ctx, recs...)
		if err == nil {
			t.Fatal("20 records of 200 random bytes in one batch were taken by a topic with max.message.bytes 1000")
		}
		// Kafka refuses the whole batch: every record in it fails, each
		// fitting the limit on its own.
		failed := 0
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			failed++
			tooLarge(t, e, recs[0], fmt.Sprintf("the record (%d bytes) fits max.message.bytes of topic %q (1000), but the batch it was sent in did not: keep MaxBatchBytes (65536) at or below it",
				toolarge.BatchSize(recs[0]), topic))
		}
		t.Logf("%d of 20 failed, e.g. %v", failed, err.(interface{ Unwrap() []error }).Unwrap()[0])
	})

	t.Run("records that fit still go through", func(t *testing.T) {
		res, err := p.Produce(ctx, &kgo.Record{Topic: topic, Value: []byte("fits")})
		if err != nil || res.Offset < 0 {
			t.Fatalf("Produce of a small record after the failures: %+v, %v", res, err)
		}
		if got := consumeN(t, kc.Brokers, topic, 1); len(got) != 1 || string(got[0].Value) != "fits" {
			t.Fatalf("topic holds %d records, want only the one that fits", len(got))
		}
	})
}

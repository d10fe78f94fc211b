package consumer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// renewal is what renewalCodec encodes.
type renewal struct {
	User string
	Seq  int
}

// renewalCodec is a custom codec that, unlike whippet's own, returns plain
// errors that do not wrap codec.ErrDecode: "renewal <user> <seq>".
type renewalCodec struct{}

func (renewalCodec) Encode(r renewal) ([]byte, error) {
	return fmt.Appendf(nil, "renewal %s %d", r.User, r.Seq), nil
}

func (renewalCodec) Decode(b []byte) (renewal, error) {
	f := strings.Fields(string(b))
	if len(f) != 3 || f[0] != "renewal" {
		return renewal{}, fmt.Errorf("renewalCodec: %q is not a renewal", b)
	}
	seq, err := strconv.Atoi(f[2])
	if err != nil {
		return renewal{}, fmt.Errorf("renewalCodec: bad sequence number: %w", err)
	}
	return renewal{User: f[1], Seq: seq}, nil
}

// TestTypedHandlerDeadLettersUndecodableRecords runs, on real Kafka, a
// Typed consumer (codec.String keys, a custom value codec whose errors do
// not wrap codec.ErrDecode) over 3 partitions with one undecodable value and
// one key that is not UTF-8, and a policy that would retry other failures
// in place for an hour. The two poison pills must be dead-lettered at once
// with reason "decode" and the codec's error in the whippet-error header;
// every other record reaches the handler once, with its key, value,
// headers, place and timestamp decoded and the raw record; and every
// partition's offset is committed to its end.
func TestTypedHandlerDeadLettersUndecodableRecords(t *testing.T) {
	kc := testkit.Shared(t)
	const parts, perPart = 3, 20
	topic := kc.NewTopic(t, parts, nil)
	group := topic + "-svc"
	ts := time.UnixMilli(time.Now().Add(-time.Hour).UnixMilli())

	type place struct {
		p int32
		o int64
	}
	badValue, badKey := place{1, 7}, place{2, 11}
	var recs []*kgo.Record
	for p := range int32(parts) {
		for i := range perPart {
			user := fmt.Sprintf("user-%d", i%5)
			r := &kgo.Record{Topic: topic, Partition: p, Key: []byte(user), Timestamp: ts.Add(time.Duration(i) * time.Millisecond),
				Value:   fmt.Appendf(nil, "renewal %s %d", user, int(p)*1000+i),
				Headers: []kgo.RecordHeader{{Key: "request-id", Value: fmt.Appendf(nil, "%d-%d", p, i)}}}
			switch (place{p, int64(i)}) {
			case badValue:
				r.Value = []byte("renewal of user-3, please")
			case badKey:
				r.Key = []byte("user-\xff")
			}
			recs = append(recs, r)
		}
	}
	cl := kc.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	var (
		mu   sync.Mutex
		got  = map[place]consumer.Message[string, renewal]{}
		errs []error
	)
	h := consumer.Typed(codec.String(), codec.Codec[renewal](renewalCodec{}), func(ctx context.Context, m consumer.Message[string, renewal]) error {
		mu.Lock()
		defer mu.Unlock()
		pl := place{m.Partition, m.Offset}
		if _, dup := got[pl]; dup {
			errs = append(errs, fmt.Errorf("%v handled twice", pl))
		}
		got[pl] = m
		return nil
	})
	c := newConsumer(t, kc, h, group, consumer.Topics(topic), consumer.CommitInterval(100*time.Millisecond),
		consumer.Retry(retry.Blocking(time.Hour)))
	run(t, c)

	adm := kc.Admin(t)
	testkit.Eventually(t, 60*time.Second, func() error {
		got := committed(t, adm, group, topic)
		for p := range int32(parts) {
			if got[p] != perPart {
				return fmt.Errorf("committed %v, want %d in each partition (blocked: %v)", got, perPart, c.Blocked())
			}
		}
		return nil
	})

	mu.Lock()
	defer mu.Unlock()
	for _, err := range errs {
		t.Error(err)
	}
	if len(got) != parts*perPart-2 {
		t.Errorf("handled %d records, want %d", len(got), parts*perPart-2)
	}
	for _, r := range recs {
		pl := place{r.Partition, r.Offset}
		m, ok := got[pl]
		if pl == badValue || pl == badKey {
			if ok {
				t.Errorf("undecodable record at %v reached the handler: %+v", pl, m)
			}
			continue
		}
		want, _ := renewalCodec{}.Decode(r.Value)
		switch {
		case !ok:
			t.Errorf("record at %v not handled", pl)
		case m.Key != string(r.Key) || m.Value != want:
			t.Errorf("record at %v decoded as %q/%+v, want %q/%+v", pl, m.Key, m.Value, r.Key, want)
		case m.Topic != topic || len(m.Headers) != 1 || !bytes.Equal(m.Headers[0].Value, r.Headers[0].Value):
			t.Errorf("record at %v: topic %q headers %v, want %q %v", pl, m.Topic, m.Headers, topic, r.Headers)
		case !m.Timestamp.Equal(r.Timestamp):
			t.Errorf("record at %v: timestamp %v, want %v", pl, m.Timestamp, r.Timestamp)
		case m.Record == nil || m.Record.Offset != m.Offset || m.Record.Partition != m.Partition || !bytes.Equal(m.Record.Value, r.Value):
			t.Errorf("record at %v: raw record %+v does not match", pl, m.Record)
		}
	}

	dead := readDLQ(t, kc, topic, group, 2)
	for _, d := range dead {
		info, _ := retry.InfoFor(d)
		pl := place{info.OriginalPartition, info.OriginalOffset}
		var want string
		switch pl {
		case badValue:
			want = `consumer: decoding the value: renewalCodec: "renewal of user-3, please" is not a renewal`
		case badKey:
			want = "consumer: decoding the key: codec: decode: String: invalid UTF-8"
		default:
			t.Fatalf("dead letter from %v, which decodes", pl)
		}
		if info.Reason != retry.ReasonDecode || info.Attempt != 1 {
			t.Errorf("dead letter from %v: reason %q after %d attempts, want decode after 1", pl, info.Reason, info.Attempt)
		}
		if !strings.HasPrefix(info.LastError, want) {
			t.Errorf("dead letter from %v: error %q, want it to start with %q", pl, info.LastError, want)
		}
	}
}

// TestTypedErrorsMatchErrDecode checks that Typed's decode errors match
// codec.ErrDecode and the codec's own error, whatever the codec returned,
// and that the handler's own errors pass through unchanged.
func TestTypedErrorsMatchErrDecode(t *testing.T) {
	errBilling := errors.New("billing down")
	h := consumer.Typed(codec.String(), codec.Codec[renewal](renewalCodec{}), func(ctx context.Context, m consumer.Message[string, renewal]) error {
		return errBilling
	})
	err := h.Handle(context.Background(), &kgo.Record{Key: []byte("k"), Value: []byte("x")})
	var de *consumer.DecodeError
	if !errors.Is(err, codec.ErrDecode) || !errors.As(err, &de) || de.Field != "value" || !strings.Contains(de.Err.Error(), "renewalCodec") {
		t.Errorf("decode failure of a custom codec: %v, want a *DecodeError of the value matching codec.ErrDecode", err)
	}
	if retry.NoRetry().Classify(err) != retry.ReasonDecode {
		t.Errorf("policy classifies %v as %q, want decode", err, retry.NoRetry().Classify(err))
	}
	_, jsonErr := codec.JSON[renewal]().Decode([]byte("{"))
	h = consumer.Typed(codec.String(), codec.JSON[renewal](), func(context.Context, consumer.Message[string, renewal]) error { return nil })
	err = h.Handle(context.Background(), &kgo.Record{Key: []byte("k"), Value: []byte("{")})
	if !errors.Is(err, codec.ErrDecode) || err.Error() != "consumer: decoding the value: "+jsonErr.Error() {
		t.Errorf("decode failure of codec.JSON: %v", err)
	}
	h = consumer.Typed(codec.String(), codec.Codec[renewal](renewalCodec{}), func(ctx context.Context, m consumer.Message[string, renewal]) error {
		return errBilling
	})
	if err := h.Handle(context.Background(), &kgo.Record{Key: []byte("k"), Value: []byte("renewal u 1")}); err != errBilling {
		t.Errorf("handler error came back as %v, want it unchanged", err)
	}
	if consumer.Typed[string, renewal](nil, renewalCodec{}, nil) != nil {
		t.Error("Typed with a nil codec and function returned a Handler; New must refuse it")
	}
}

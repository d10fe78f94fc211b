package producer_test

import (
	"errors"
	"testing"
	"time"

	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/producer"
)

func TestTypedProduceAndDecode(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "orders")
	p := newProducer(t, c)
	orders, err := producer.NewTyped(p, "orders", codec.String(), codec.JSON[order]())
	if err != nil {
		t.Fatal(err)
	}
	if orders.Topic() != "orders" {
		t.Errorf("Topic() = %q", orders.Topic())
	}
	res, err := orders.Produce(t.Context(), "user-1", order{ID: "o-1", Amount: 3}, producer.Header("source", "test"))
	if err != nil || res.Offset != 0 {
		t.Fatalf("Produce = %+v, %v", res, err)
	}
	cb := newCallbacks(t, 1)
	orders.ProduceAsync(t.Context(), "user-2", order{ID: "o-2", Amount: 4}, cb.fn(0))
	cb.wait(10 * time.Second)
	if cb.errs[0] != nil || cb.res[0].Offset != 1 {
		t.Fatalf("ProduceAsync = %+v, %v", cb.res[0], cb.errs[0])
	}

	recs := consumeN(t, c.ListenAddrs(), "orders", 2)
	key, _ := codec.String().Decode(recs[0].Key)
	val, err := codec.JSON[order]().Decode(recs[0].Value)
	if err != nil || key != "user-1" || val.ID != "o-1" {
		t.Errorf("record 0 = %q %+v %v", key, val, err)
	}
	if src, _ := headerValue(recs[0], "source"); src != "test" {
		t.Errorf("header source = %q", src)
	}
}

func TestTypedNilKey(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "events")
	p := newProducer(t, c, producer.DefaultTopic("events"))
	events, err := producer.NewTyped(p, "", codec.Bytes(), codec.String())
	if err != nil {
		t.Fatal(err)
	}
	if events.Topic() != "events" {
		t.Errorf("empty topic did not fall back to DefaultTopic: %q", events.Topic())
	}
	if _, err := events.Produce(t.Context(), nil, "hello"); err != nil {
		t.Fatal(err)
	}
	if r := consumeN(t, c.ListenAddrs(), "events", 1)[0]; r.Key != nil || string(r.Value) != "hello" {
		t.Errorf("record key=%v value=%q, want a null key", r.Key, r.Value)
	}
}

func TestTypedEncodeErrors(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "t")
	p := newProducer(t, c)
	tp, err := producer.NewTyped(p, "t", codec.String(), codec.JSON[chan int]())
	if err != nil {
		t.Fatal(err)
	}
	res, err := tp.Produce(t.Context(), "bad\xff", nil)
	if !errors.Is(err, codec.ErrEncode) || res.Offset != -1 {
		t.Errorf("Produce(bad key) = %+v, %v; want ErrEncode", res, err)
	}
	if want := `producer: topic "t": key: codec: encode: String: invalid UTF-8 in "bad\xff"`; err == nil || err.Error() != want {
		t.Errorf("message:\n got %v\nwant %s", err, want)
	}
	cb := newCallbacks(t, 1)
	tp.ProduceAsync(t.Context(), "ok", make(chan int), cb.fn(0))
	cb.wait(time.Second)
	if !errors.Is(cb.errs[0], codec.ErrEncode) {
		t.Errorf("ProduceAsync(bad value) error = %v, want ErrEncode", cb.errs[0])
	}
	tp.ProduceAsync(t.Context(), "bad\xff", nil, nil) // nil callback: no panic
}

func TestNewTypedRules(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "t")
	p := newProducer(t, c)
	for _, tc := range []struct {
		name, field, msg string
		fn               func() error
	}{
		{"nil producer", "producer", "producer: producer: must not be nil", func() error {
			_, err := producer.NewTyped(nil, "t", codec.Bytes(), codec.Bytes())
			return err
		}},
		{"nil key codec", "key codec", "producer: key codec: must not be nil (use codec.Bytes() for records without keys)", func() error {
			_, err := producer.NewTyped[[]byte, []byte](p, "t", nil, codec.Bytes())
			return err
		}},
		{"nil value codec", "value codec", "producer: value codec: must not be nil", func() error {
			_, err := producer.NewTyped[[]byte, []byte](p, "t", codec.Bytes(), nil)
			return err
		}},
		{"no topic", "topic", "producer: topic: must be set when the producer has no DefaultTopic", func() error {
			_, err := producer.NewTyped(p, "", codec.Bytes(), codec.Bytes())
			return err
		}},
		{"invalid topic", "topic", `producer: topic: must contain only ASCII letters, digits, '.', '_' and '-', got "a b"`, func() error {
			_, err := producer.NewTyped(p, "a b", codec.Bytes(), codec.Bytes())
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { checkConfigError(t, tc.fn(), tc.field, tc.msg) })
	}
}

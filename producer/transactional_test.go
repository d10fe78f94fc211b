package producer_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/producer"
	"github.com/whippet-go/whippet/testkit"
)

func newTransactional(t *testing.T, kc *testkit.Cluster, id string, opts ...producer.Option) *producer.Transactional {
	t.Helper()
	tp, err := producer.NewTransactional(whippet.Connection{Brokers: kc.Brokers}, id, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tp.Close(context.Background()) })
	return tp
}

// readAll reads topic from the start at the isolation level until it holds
// want records and then one more second, and returns the values.
func readAll(t *testing.T, kc *testkit.Cluster, topic string, committedOnly bool, want int) []string {
	t.Helper()
	level := kgo.ReadUncommitted()
	if committedOnly {
		level = kgo.ReadCommitted()
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	recs := kc.ConsumeUntil(ctx, t, topic, func(all []*kgo.Record) bool { return len(all) >= want }, kgo.FetchIsolationLevel(level))
	cl := kc.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(level))
	more, cancel2 := context.WithTimeout(t.Context(), time.Second)
	defer cancel2()
	var extra []*kgo.Record
	for more.Err() == nil {
		extra = append(extra, cl.PollFetches(more).Records()...)
	}
	if len(extra) > len(recs) {
		recs = extra
	}
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Value))
	}
	return out
}

func TestTransactCommitsAllOrNothing(t *testing.T) {
	kc := realKafka(t)
	orders, items := kc.NewTopic(t, 1, nil), kc.NewTopic(t, 1, nil)
	tp := newTransactional(t, kc, orders+"-tx")
	ctx := context.Background()

	// Committed: both events visible to read_committed.
	if err := tp.Transact(ctx, func(tx *producer.Tx) error {
		if err := tx.Produce(&kgo.Record{Topic: orders, Value: []byte("order-1 created")}); err != nil {
			return err
		}
		return tx.Produce(&kgo.Record{Topic: items, Value: []byte("order-1 items reserved")})
	}); err != nil {
		t.Fatal(err)
	}
	// fn fails after producing: aborted, invisible.
	errNoStock := errors.New("no stock")
	err := tp.Transact(ctx, func(tx *producer.Tx) error {
		_ = tx.Produce(&kgo.Record{Topic: orders, Value: []byte("order-2 created")})
		_ = tx.Produce(&kgo.Record{Topic: items, Value: []byte("order-2 items reserved")})
		time.Sleep(100 * time.Millisecond) // let them reach the broker: the abort must hide them
		return errNoStock
	})
	if !errors.Is(err, producer.ErrAborted) || !errors.Is(err, errNoStock) {
		t.Fatalf("Transact = %v, want ErrAborted and fn's error", err)
	}
	// A record that fails aborts the others.
	raw := make([]byte, 3000)
	for i := range raw {
		raw[i] = byte(rand.IntN(256))
	}
	small := kc.NewTopic(t, 1, map[string]*string{"max.message.bytes": ptrTo("1000")})
	err = tp.Transact(ctx, func(tx *producer.Tx) error {
		_ = tx.Produce(&kgo.Record{Topic: orders, Value: []byte("order-3 created")})
		return tx.Produce(&kgo.Record{Topic: small, Value: raw})
	})
	if !errors.Is(err, producer.ErrAborted) || !strings.Contains(err.Error(), "MESSAGE_TOO_LARGE") {
		t.Fatalf("Transact with a failing record = %v, want ErrAborted with the record's error", err)
	}
	// A panic aborts too, and the panic goes on.
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the panic was swallowed")
			}
		}()
		_ = tp.Transact(ctx, func(tx *producer.Tx) error {
			_ = tx.Produce(&kgo.Record{Topic: orders, Value: []byte("order-4 created")})
			panic("bug")
		})
	}()
	if err := tp.Transact(ctx, func(tx *producer.Tx) error {
		return tx.Produce(&kgo.Record{Topic: orders, Value: []byte("order-5 created")})
	}); err != nil {
		t.Fatal(err)
	}
	var txLate *producer.Tx
	_ = tp.Transact(ctx, func(tx *producer.Tx) error { txLate = tx; return nil })
	if err := txLate.Produce(&kgo.Record{Topic: orders, Value: []byte("late")}); err == nil {
		t.Fatal("Produce on an ended transaction succeeded")
	}

	got := readAll(t, kc, orders, true, 2)
	if fmt.Sprint(got) != "[order-1 created order-5 created]" {
		t.Fatalf("read_committed %s: %q, want order-1 and order-5 only", orders, got)
	}
	if got := readAll(t, kc, items, true, 1); fmt.Sprint(got) != "[order-1 items reserved]" {
		t.Fatalf("read_committed %s: %q", items, got)
	}
	uncommitted := readAll(t, kc, orders, false, 3)
	if !strings.Contains(fmt.Sprint(uncommitted), "order-2 created") {
		t.Fatalf("read_uncommitted %q: the aborted order-2 should be in the log (so the abort is what hides it)", uncommitted)
	}
	t.Logf("read_committed: %q; read_uncommitted: %q", got, uncommitted)
}

func TestTransactFencedByANewerProducer(t *testing.T) {
	kc := realKafka(t)
	topic := kc.NewTopic(t, 1, nil)
	id := topic + "-tx"
	old := newTransactional(t, kc, id)
	ctx := context.Background()
	produce := func(tp *producer.Transactional, v string) error {
		return tp.Transact(ctx, func(tx *producer.Tx) error { return tx.Produce(&kgo.Record{Topic: topic, Value: []byte(v)}) })
	}
	if err := produce(old, "from the old one"); err != nil {
		t.Fatal(err)
	}
	newer := newTransactional(t, kc, id)
	if err := produce(newer, "from the newer one"); err != nil {
		t.Fatal(err)
	}
	err := produce(old, "zombie")
	if !errors.Is(err, producer.ErrFenced) {
		t.Fatalf("the old producer's Transact = %v, want ErrFenced", err)
	}
	if got := readAll(t, kc, topic, true, 2); fmt.Sprint(got) != "[from the old one from the newer one]" {
		t.Fatalf("read_committed: %q", got)
	}
	t.Logf("zombie: %v", err)
}

func TestNewTransactionalValidates(t *testing.T) {
	_, err := producer.NewTransactional(whippet.Connection{Brokers: []string{"127.0.0.1:9092"}}, "")
	var ce *producer.ConfigError
	if !errors.Is(err, producer.ErrInvalidConfig) || !errors.As(err, &ce) || ce.Field != "TransactionalID" {
		t.Fatalf("empty id: %v, want a ConfigError about TransactionalID", err)
	}
	if _, err := producer.NewTransactional(whippet.Connection{}, "id"); err == nil || !strings.Contains(err.Error(), "Connection.Brokers") {
		t.Fatalf("no brokers: %v", err)
	}
}

func ptrTo(s string) *string { return &s }

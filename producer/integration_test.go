package producer_test

// Integration tests: the producer against the test binary's shared Kafka
// (testkit.Shared: a real Apache Kafka broker; KAFKA_BROKERS=host:port
// selects an external one). Unit tests in this package use kfake directly.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/producer"
	"github.com/whippet-go/whippet/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// realKafka returns the shared cluster, logging which one it is.
func realKafka(t *testing.T) *testkit.Cluster {
	t.Helper()
	kc := testkit.Shared(t)
	if !kc.Real {
		t.Logf("NOTE: running on %s, not Apache Kafka", kc.Backend)
	}
	noLeaks(t) // after Shared: the shared cluster outlives the test
	return kc
}

func realProducer(t *testing.T, kc *testkit.Cluster, opts ...producer.Option) *producer.Producer {
	t.Helper()
	p, err := producer.New(whippet.Connection{Brokers: kc.Brokers}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func consumeCount(t *testing.T, kc *testkit.Cluster, topic string, n int) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	return kc.ConsumeUntil(ctx, t, topic, func(all []*kgo.Record) bool { return len(all) >= n })
}

// Sync Produce returns the partition and offset Kafka really stored the
// record at, and keys and headers (repeated keys, empty and binary values)
// survive the round trip.
func TestIntegrationSyncProduceReturnsRealOffsets(t *testing.T) {
	kc := realKafka(t)
	topic := kc.NewTopic(t, 3, nil)
	p := realProducer(t, kc)

	const n = 30
	sent := make(map[string]producer.Result, n)
	for i := range n {
		v := fmt.Sprintf("value-%d", i)
		res, err := p.Produce(t.Context(), &kgo.Record{
			Topic: topic,
			Key:   fmt.Appendf(nil, "key-%d", i%7),
			Value: []byte(v),
			Headers: []kgo.RecordHeader{
				producer.Header("trace-id", fmt.Sprintf("t-%d", i)),
				producer.Header("tag", "a"),
				producer.Header("tag", "b"),
				producer.Header("empty", ""),
				{Key: "bin", Value: []byte{0, 1, 0xff}},
			},
		})
		if err != nil {
			t.Fatalf("Produce %d: %v", i, err)
		}
		if res.Topic != topic || res.Partition < 0 || res.Partition > 2 || res.Offset < 0 {
			t.Fatalf("Produce %d: implausible %+v", i, res)
		}
		sent[v] = res
	}

	got := consumeCount(t, kc, topic, n)
	if len(got) != n {
		t.Fatalf("consumed %d records, want %d", len(got), n)
	}
	for _, r := range got {
		res, ok := sent[string(r.Value)]
		if !ok {
			t.Fatalf("consumed unexpected record %q", r.Value)
		}
		if r.Partition != res.Partition || r.Offset != res.Offset {
			t.Errorf("%s: Produce said %d@%d, Kafka has it at %d@%d", r.Value, res.Partition, res.Offset, r.Partition, r.Offset)
		}
		if !r.Timestamp.Equal(res.Timestamp) {
			t.Errorf("%s: timestamp %v, Produce said %v", r.Value, r.Timestamp, res.Timestamp)
		}
		var i int
		fmt.Sscanf(string(r.Value), "value-%d", &i)
		if string(r.Key) != fmt.Sprintf("key-%d", i%7) {
			t.Errorf("%s: key %q", r.Value, r.Key)
		}
		want := []kgo.RecordHeader{
			{Key: "trace-id", Value: fmt.Appendf(nil, "t-%d", i)},
			{Key: "tag", Value: []byte("a")},
			{Key: "tag", Value: []byte("b")},
			{Key: "empty", Value: []byte{}},
			{Key: "bin", Value: []byte{0, 1, 0xff}},
		}
		if len(r.Headers) != len(want) {
			t.Fatalf("%s: headers %v, want %v", r.Value, r.Headers, want)
		}
		for j, h := range r.Headers {
			if h.Key != want[j].Key || !bytes.Equal(h.Value, want[j].Value) {
				t.Errorf("%s: header %d = %s=%q, want %s=%q", r.Value, j, h.Key, h.Value, want[j].Key, want[j].Value)
			}
		}
	}
}

// The producer is idempotent with acks=all by default: the client is
// configured so, it holds a producer id, the records Kafka stored carry that
// producer id, and the broker tracks the producer's sequence numbers.
func TestIntegrationIdempotentAcksAllByDefault(t *testing.T) {
	kc := realKafka(t)
	topic := kc.NewTopic(t, 1, nil)
	p := realProducer(t, kc)
	cl := p.Client()

	if acks := cl.OptValue(kgo.RequiredAcks); acks != kgo.AllISRAcks() {
		t.Errorf("RequiredAcks = %v, want acks=all", acks)
	}
	if disabled, _ := cl.OptValue(kgo.DisableIdempotentWrite).(bool); disabled {
		t.Error("idempotent writes are disabled")
	}
	const n = 5
	for i := range n {
		if _, err := p.Produce(t.Context(), &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	pid, epoch, err := cl.ProducerID(t.Context())
	if err != nil || pid < 0 {
		t.Fatalf("ProducerID = %d/%d, %v; want an assigned producer id", pid, epoch, err)
	}
	for _, r := range consumeCount(t, kc, topic, n) {
		if r.ProducerID != pid || r.ProducerEpoch != epoch {
			t.Errorf("offset %d was written by producer %d/%d, want %d/%d (idempotent)", r.Offset, r.ProducerID, r.ProducerEpoch, pid, epoch)
		}
	}

	if !kc.Real {
		return // kfake does not describe idempotent producers
	}
	adm := kadm.NewClient(kc.Client(t))
	if vs, err := adm.ApiVersions(t.Context()); err == nil {
		vs.Each(func(v kadm.BrokerApiVersions) { t.Logf("broker %d: %s", v.NodeID, v.VersionGuess()) })
	}
	described, err := adm.DescribeProducers(t.Context(), kadm.TopicsSet{topic: {0: {}}})
	if err != nil {
		t.Fatalf("DescribeProducers: %v", err)
	}
	found := false
	described.EachProducer(func(d kadm.DescribedProducer) {
		if d.ProducerID == pid {
			found = true
			if d.LastSequence != n-1 {
				t.Errorf("broker's last sequence for producer %d = %d, want %d", pid, d.LastSequence, n-1)
			}
		}
	})
	if !found {
		t.Errorf("broker does not track producer %d on %s[0]", pid, topic)
	}
}

// Every ProduceAsync callback is called exactly once, successfully; within
// a partition callbacks come in produce order with consecutive offsets; and
// a consumer sees every record in that order.
func TestIntegrationAsyncAllDeliveredInOrder(t *testing.T) {
	kc := realKafka(t)
	topic := kc.NewTopic(t, 4, nil)
	p := realProducer(t, kc)

	const n, keys = 2000, 16
	cb := newCallbacks(t, n)
	var mu sync.Mutex
	seen := map[int32][]int{} // partition -> record indexes in callback order
	for i := range n {
		inner := cb.fn(i)
		p.ProduceAsync(t.Context(), &kgo.Record{
			Topic: topic,
			Key:   fmt.Appendf(nil, "k%d", i%keys),
			Value: fmt.Appendf(nil, "%d", i),
		}, func(res producer.Result, err error) {
			if err == nil {
				mu.Lock()
				seen[res.Partition] = append(seen[res.Partition], i)
				mu.Unlock()
			}
			inner(res, err)
		})
	}
	cb.wait(60 * time.Second)
	for i, err := range cb.errs {
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	for part, idx := range seen {
		for j := 1; j < len(idx); j++ {
			prev, cur := cb.res[idx[j-1]], cb.res[idx[j]]
			if idx[j] < idx[j-1] || cur.Offset != prev.Offset+1 {
				t.Fatalf("partition %d: callback for record %d (offset %d) after record %d (offset %d)",
					part, idx[j], cur.Offset, idx[j-1], prev.Offset)
			}
		}
	}

	byPartition := map[int32][]string{}
	for _, r := range consumeCount(t, kc, topic, n) {
		byPartition[r.Partition] = append(byPartition[r.Partition], string(r.Value))
	}
	for part, idx := range seen {
		got := byPartition[part]
		if len(got) != len(idx) {
			t.Fatalf("partition %d: consumed %d records, callbacks reported %d", part, len(got), len(idx))
		}
		for j, i := range idx {
			if got[j] != fmt.Sprint(i) {
				t.Fatalf("partition %d position %d: consumed %s, produced %d", part, j, got[j], i)
			}
		}
	}
}

// Close flushes records still lingering in the producer: Close returns after
// every callback reported success, and a consumer then sees all of them.
func TestIntegrationCloseFlushesPending(t *testing.T) {
	kc := realKafka(t)
	topic := kc.NewTopic(t, 2, nil)
	p, err := producer.New(whippet.Connection{Brokers: kc.Brokers}, producer.Linger(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	cb := newCallbacks(t, n)
	for i := range n {
		p.ProduceAsync(context.Background(), &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "%d", i)}, cb.fn(i))
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	cb.checkOnce() // Close returned, so every callback has already run
	for i, err := range cb.errs {
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if got := consumeCount(t, kc, topic, n); len(got) != n {
		t.Fatalf("consumed %d records after Close, want %d", len(got), n)
	}
}

// Typed keys and values, encoded with the package codecs, decode back from
// what Kafka stored.
func TestIntegrationTyped(t *testing.T) {
	kc := realKafka(t)
	topic := kc.NewTopic(t, 1, nil)
	p := realProducer(t, kc)
	orders, err := producer.NewTyped(p, topic, codec.String(), codec.JSON[order]())
	if err != nil {
		t.Fatal(err)
	}
	in := order{ID: "o-9", Amount: 99.5, Items: []int{3}}
	res, err := orders.Produce(t.Context(), "customer-1", in, producer.Header("source", "it"))
	if err != nil {
		t.Fatal(err)
	}
	r := consumeCount(t, kc, topic, 1)[0]
	key, kErr := codec.String().Decode(r.Key)
	out, verr := codec.JSON[order]().Decode(r.Value)
	if kErr != nil || verr != nil || key != "customer-1" || out.ID != in.ID || out.Amount != in.Amount || r.Offset != res.Offset {
		t.Errorf("decoded %q %+v (%v, %v) at %d, want %q %+v at %d", key, out, kErr, verr, r.Offset, "customer-1", in, res.Offset)
	}
	if src, _ := headerValue(r, "source"); src != "it" {
		t.Errorf("header source = %q", src)
	}
}

// A record for a topic that does not exist fails with Kafka's error; it is
// not dropped.
func TestIntegrationUnknownTopicFails(t *testing.T) {
	kc := realKafka(t)
	p := realProducer(t, kc)
	missing := testkit.TopicName(t.Name())
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	_, err := p.Produce(ctx, &kgo.Record{Topic: missing, Value: []byte("x")})
	if !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("Produce to a missing topic = %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
}

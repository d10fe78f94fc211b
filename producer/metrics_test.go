package producer_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/producer"
)

// metricValue returns the value of the counter, or the sample count of the
// histogram, named name whose labels include want.
func metricValue(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, want) {
				if h := m.GetHistogram(); h != nil {
					return float64(h.GetSampleCount()), true
				}
				return m.GetCounter().GetValue(), true
			}
		}
	}
	return 0, false
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok && v == lp.GetValue() {
			n++
		}
	}
	return n == len(want)
}

func countPrefix(t *testing.T, g prometheus.Gatherer, prefix string) int {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), prefix) {
			n++
		}
	}
	return n
}

func TestMetrics(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "a", "b")
	reg := prometheus.NewRegistry()
	p := newProducerWith(t, whippet.Connection{Brokers: c.ListenAddrs(), Registerer: reg, ClientID: "svc"})

	for _, topic := range []string{"a", "a", "a", "b"} {
		if _, err := p.Produce(t.Context(), &kgo.Record{Topic: topic}); err != nil {
			t.Fatal(err)
		}
	}
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := p.Produce(canceled, &kgo.Record{Topic: "b"}); err == nil {
		t.Fatal("produce with a canceled context succeeded")
	}

	for _, tc := range []struct {
		name  string
		topic string
		want  float64
	}{
		{"whippet_producer_records_produced_total", "a", 3},
		{"whippet_producer_records_produced_total", "b", 1},
		{"whippet_producer_records_failed_total", "b", 1},
		{"whippet_producer_produce_latency_seconds", "a", 3},
		{"whippet_producer_produce_latency_seconds", "b", 2},
	} {
		got, ok := metricValue(t, reg, tc.name, map[string]string{"topic": tc.topic, "client_id": "svc"})
		if !ok || got != tc.want {
			t.Errorf("%s{topic=%q} = %v (found %v), want %v", tc.name, tc.topic, got, ok, tc.want)
		}
	}
	if _, ok := metricValue(t, reg, "whippet_kafka_produce_bytes_total", map[string]string{"topic": "a", "component": "producer", "name": "svc"}); !ok {
		t.Error("franz-go (kprom) metric whippet_kafka_produce_bytes_total{topic=a} missing")
	}

	// A second producer needs its own ClientID on the same registerer.
	_, err := producer.New(whippet.Connection{Brokers: c.ListenAddrs(), Registerer: reg, ClientID: "svc"})
	var ce *producer.ConfigError
	if !errors.Is(err, producer.ErrInvalidConfig) || !errors.As(err, &ce) || ce.Field != "Connection.Registerer" {
		t.Fatalf("second producer with the same ClientID: err = %v, want a Registerer ConfigError", err)
	}
	other := newProducerWith(t, whippet.Connection{Brokers: c.ListenAddrs(), Registerer: reg, ClientID: "svc-2"})
	if _, err := other.Produce(t.Context(), &kgo.Record{Topic: "a"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := metricValue(t, reg, "whippet_producer_records_produced_total", map[string]string{"topic": "a", "client_id": "svc-2"}); got != 1 {
		t.Errorf("second producer's counter = %v, want 1", got)
	}

	// Close unregisters the franz-go collectors, so the ClientID can be
	// reused, while the producer's own counters keep counting.
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Produce(t.Context(), &kgo.Record{Topic: "a"}); !errors.Is(err, producer.ErrClosed) {
		t.Fatalf("Produce after Close = %v", err)
	}
	if got, _ := metricValue(t, reg, "whippet_producer_records_failed_total", map[string]string{"topic": "a", "client_id": "svc"}); got != 1 {
		t.Errorf("records_failed_total{svc,a} after a refused record = %v, want 1", got)
	}
	if err := other.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := countPrefix(t, reg, "whippet_kafka_"); n != 0 {
		t.Errorf("%d franz-go metric families still registered after Close", n)
	}
	again := newProducerWith(t, whippet.Connection{Brokers: c.ListenAddrs(), Registerer: reg, ClientID: "svc"})
	if _, err := again.Produce(t.Context(), &kgo.Record{Topic: "a"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := metricValue(t, reg, "whippet_producer_records_produced_total", map[string]string{"topic": "a", "client_id": "svc"}); got != 4 {
		t.Errorf("records_produced_total{svc,a} after re-creating the producer = %v, want 4", got)
	}
}

func TestMetricsWithNewFromClient(t *testing.T) {
	noLeaks(t)
	c := fakeCluster(t, 1, "a")
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ClientID("mine"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	reg := prometheus.NewRegistry()
	p, err := producer.NewFromClient(cl, whippet.Connection{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	if _, err := p.Produce(t.Context(), &kgo.Record{Topic: "a"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := metricValue(t, reg, "whippet_producer_records_produced_total", map[string]string{"topic": "a", "client_id": "mine"}); got != 1 {
		t.Errorf("records_produced_total = %v, want 1", got)
	}
}

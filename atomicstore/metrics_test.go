package atomicstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/testkit"
)

// metric returns the value of the metric name with label store=store in
// reg (a counter's value, a histogram's count), and whether it exists.
func metric(t *testing.T, reg *prometheus.Registry, name, store string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label(m, "store") != store {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// families returns the names of the metric families in reg with prefix.
func families(t *testing.T, reg *prometheus.Registry, prefix string) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), prefix) {
			out = append(out, mf.GetName())
		}
	}
	return out
}

// The metrics count what happened: commands sent, applied, rejected,
// answered from the dedup window, partitions rebuilt, Update latencies; a
// Store and a Processor of one name share a Registerer, two Stores do not;
// Close releases the metrics.
func TestMetrics(t *testing.T) {
	kc := testkit.Shared(t)
	name := testkit.TopicName(t.Name())
	reg := prometheus.NewRegistry()
	conn := whippet.Connection{Brokers: kc.Brokers, Registerer: reg}
	ctx := context.Background()
	p, err := atomicstore.NewProcessor(conn, name, codec.String(), atomicstore.Int64(), atomicstore.TransactionalID(name+"-p"), atomicstore.Partitions(3))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	s, err := atomicstore.Open(ctx, conn, name, codec.String(), atomicstore.Int64(), atomicstore.Partitions(3))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := atomicstore.Open(ctx, conn, name, codec.String(), atomicstore.Int64(), atomicstore.Partitions(3)); !errors.Is(err, atomicstore.ErrInvalidConfig) ||
		!strings.Contains(err.Error(), "atomicstore: Connection.Registerer: ") {
		t.Fatalf("a second store of one name on one Registerer: %v", err)
	}

	for range 3 {
		if _, err := s.Update(ctx, "a", atomicstore.Add(1)); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := s.Update(ctx, "a", atomicstore.Add(1).WithID("once")); err != nil || v != 4 {
		t.Fatalf("%d, %v", v, err)
	}
	if v, err := s.Update(ctx, "a", atomicstore.Add(1).WithID("once")); err != nil || v != 4 {
		t.Fatalf("sent again: %d, %v; want the first result, 4", v, err)
	}
	if _, err := s.Update(ctx, "b", atomicstore.CompareAndSet[int64](1, 2)); !errors.Is(err, atomicstore.ErrCASMismatch) {
		t.Fatalf("CAS on a missing key: %v", err)
	}
	if _, err := s.Send(ctx, "b", atomicstore.Set[int64](5)); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Update(ctx, "b", atomicstore.Add(0)); err != nil || v != 5 {
		t.Fatalf("%d, %v", v, err)
	}

	for _, c := range []struct {
		name string
		want float64
	}{
		{"whippet_atomicstore_commands_total", 8},
		{"whippet_atomicstore_update_seconds", 7},
		{"whippet_atomicstore_applied_total", 6},
		{"whippet_atomicstore_rejected_total", 1},
		{"whippet_atomicstore_duplicates_total", 1},
	} {
		// The processor's counters include commands of transactions
		// that aborted (none here: one processor, no rebalance).
		if got, ok := metric(t, reg, c.name, name); !ok || got != c.want {
			t.Errorf("%s{store=%q} = %v (exists %v), want %v", c.name, name, got, ok, c.want)
		}
	}
	// One rebuild per partition that received commands (one or two of 3).
	if got, _ := metric(t, reg, "whippet_atomicstore_rebuilds_total", name); got < 1 || got > 3 {
		t.Errorf("rebuilds_total = %v, want 1 to 3", got)
	}
	for _, prefix := range []string{"whippet_kafka_", "whippet_kvstore_", "whippet_consumer_"} {
		if len(families(t, reg, prefix)) == 0 {
			t.Errorf("no %s* metrics: the store's clients and the processor's consumer must report on the Connection's Registerer", prefix)
		}
	}

	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if left := families(t, reg, "whippet_"); len(left) != 0 {
		t.Errorf("after Close, still registered: %v", left)
	}
}

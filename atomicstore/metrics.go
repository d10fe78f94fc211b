package atomicstore

import (
	"errors"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// The metric names (see the package documentation): whippet_atomicstore_*.
const ns, sub = "whippet", "atomicstore"

// storeMetrics are a Store's: the client side.
type storeMetrics struct {
	commands prometheus.Counter
	update   prometheus.Histogram
	reg      registration
}

// processorMetrics are a Processor's. The processor counts in the
// transaction under way: a transaction that aborts is applied again, and
// counted again.
type processorMetrics struct {
	applied, rejected, duplicates, rebuilds prometheus.Counter
	reg                                     registration
}

func newStoreMetrics(store string, r prometheus.Registerer) (*storeMetrics, error) {
	labels := prometheus.Labels{"store": store}
	m := &storeMetrics{
		commands: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "commands_total", ConstLabels: labels,
			Help: "Commands this client sent (Send and Update; result queries not counted) that Kafka acknowledged."}),
		update: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "update_seconds", ConstLabels: labels,
			Help:    "Update's latency, from the call until the processor's answer (applied or rejected) reached this client's replica.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16), // 1ms .. 33s
		}),
	}
	return m, m.reg.register(r, store, "stores", m.commands, m.update)
}

func newProcessorMetrics(store string, r prometheus.Registerer) (*processorMetrics, error) {
	labels := prometheus.Labels{"store": store}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help, ConstLabels: labels})
	}
	m := &processorMetrics{
		applied:    counter("applied_total", "Commands the processor applied (new value written), counting again those of a transaction that aborted."),
		rejected:   counter("rejected_total", "Commands the processor rejected (update function error, unknown operation, compare-and-set mismatch): value unchanged."),
		duplicates: counter("duplicates_total", "Commands whose id the processor had applied before, answered from its dedup window with the original result and not applied again."),
		rebuilds:   counter("rebuilds_total", "Store partitions the processor rebuilt from the store topic (on a new assignment, after an aborted transaction)."),
	}
	return m, m.reg.register(r, store, "processors", m.applied, m.rejected, m.duplicates, m.rebuilds)
}

// registration is what was registered on the user's Registerer.
type registration struct {
	r    prometheus.Registerer
	done []prometheus.Collector
	once sync.Once
}

// register registers cs on r (nothing with a nil r). A clash is a config
// error naming Connection.Registerer.
func (g *registration) register(r prometheus.Registerer, store, kind string, cs ...prometheus.Collector) error {
	if r == nil {
		return nil
	}
	g.r = r
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			g.unregister()
			rule := "cannot register the metrics"
			if are := (prometheus.AlreadyRegisteredError{}); errors.As(err, &are) {
				rule = "metrics for store " + strconv.Quote(store) + " are already registered (" + kind + " sharing a Registerer need distinct names)"
			}
			return &ConfigError{Pkg: "atomicstore", Sentinel: ErrInvalidConfig, Field: "Connection.Registerer", Rule: rule, Err: err}
		}
		g.done = append(g.done, c)
	}
	return nil
}

// unregister removes what was registered, once.
func (g *registration) unregister() {
	g.once.Do(func() {
		for _, c := range g.done {
			g.r.Unregister(c)
		}
	})
}

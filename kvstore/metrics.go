package kvstore

import (
	"errors"
	"math"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// stats are the store's counters. They are plain atomics, updated by the
// loader (and the write path) with no label lookups; the Prometheus
// collectors read them when scraped.
type stats struct {
	entries       atomic.Int64
	bytes         atomic.Int64 // raw key + value bytes of the entries
	lag           atomic.Int64 // records between the applied position and the last stable offsets seen
	loadSeconds   atomic.Uint64
	ready         atomic.Bool
	applied       atomic.Int64 // records applied (puts and tombstones)
	decodeErrors  atomic.Int64
	fetchErrors   atomic.Int64
	writes        atomic.Int64
	writeFailures atomic.Int64
	subPending    atomic.Int64
	subscribers   atomic.Int64
	subPanics     atomic.Int64
}

func (s *stats) setLoadSeconds(v float64) { s.loadSeconds.Store(math.Float64bits(v)) }
func (s *stats) getLoadSeconds() float64  { return math.Float64frombits(s.loadSeconds.Load()) }

// metrics holds what was registered on the user's Registerer.
type metrics struct {
	reg             prometheus.Registerer
	registered      []prometheus.Collector
	unregisterKafka func() // the Kafka client metrics, once registered
	once            sync.Once
}

// newMetrics registers the store's collectors on reg; with a nil reg it
// registers nothing.
func newMetrics(st *stats, store, topic string, reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{reg: reg}
	if reg == nil {
		return m, nil
	}
	labels := prometheus.Labels{"store": store, "topic": topic}
	const ns, sub = "whippet", "kvstore"
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help, ConstLabels: labels}, f)
	}
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help, ConstLabels: labels},
			func() float64 { return float64(v.Load()) })
	}
	cs := []prometheus.Collector{
		gauge("entries", "Keys in the store.", func() float64 { return float64(st.entries.Load()) }),
		gauge("bytes", "Raw key + value bytes (as stored in Kafka) of the keys in the store.", func() float64 { return float64(st.bytes.Load()) }),
		gauge("lag_records", "Offsets between what the store applied and the partitions' last stable offsets, summed over partitions.",
			func() float64 { return float64(st.lag.Load()) }),
		gauge("load_duration_seconds", "How long the initial load took, from Open until the end offsets seen at start were applied; 0 while loading.",
			st.getLoadSeconds),
		gauge("ready", "1 once the initial load finished, else 0.", func() float64 {
			if st.ready.Load() {
				return 1
			}
			return 0
		}),
		counter("records_applied_total", "Records applied to the store (values and tombstones).", &st.applied),
		counter("decode_errors_total", "Records skipped because their key or value could not be decoded.", &st.decodeErrors),
		counter("fetch_errors_total", "Errors returned by fetches (the loader logs them and keeps going).", &st.fetchErrors),
		counter("writes_total", "Put and Delete calls that Kafka acknowledged.", &st.writes),
		counter("write_failures_total", "Put and Delete calls that failed (encode error, produce error, or not applied in time).", &st.writeFailures),
		counter("subscriber_panics_total", "Subscriber callbacks that panicked.", &st.subPanics),
		gauge("subscriber_pending", "Changes waiting to be delivered to subscribers, summed over subscribers.", func() float64 { return float64(st.subPending.Load()) }),
		gauge("subscribers", "Active subscriptions.", func() float64 { return float64(st.subscribers.Load()) }),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			m.unregister()
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, &ConfigError{Pkg: "kvstore", Sentinel: ErrInvalidConfig, Field: "Connection.Registerer",
					Rule: "metrics for store " + strconv.Quote(store) + " are already registered (stores sharing a Registerer need distinct Names)", Err: err}
			}
			return nil, &ConfigError{Pkg: "kvstore", Sentinel: ErrInvalidConfig, Field: "Connection.Registerer", Rule: "cannot register the store's metrics", Err: err}
		}
		m.registered = append(m.registered, c)
	}
	return m, nil
}

// unregister removes the collectors from the Registerer, once.
func (m *metrics) unregister() {
	m.once.Do(func() {
		for _, c := range m.registered {
			m.reg.Unregister(c)
		}
		if m.unregisterKafka != nil {
			m.unregisterKafka()
		}
	})
}

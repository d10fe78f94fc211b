package aggregator

import (
	"errors"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/kvstore"
)

// The metric names (see the package documentation): whippet_aggregator_*.
const ns, sub = "whippet", "aggregator"

type metrics struct {
	open      prometheus.Gauge
	completed prometheus.Counter

	reg  prometheus.Registerer
	done []prometheus.Collector
	once sync.Once
}

func newMetrics(name string, reg prometheus.Registerer) (*metrics, error) {
	labels := prometheus.Labels{"aggregator": name}
	m := &metrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "batches_open", ConstLabels: labels,
			Help: "Batches with a progress record (started or reported to) that are not completed."}),
		completed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "batches_completed_total", ConstLabels: labels,
			Help: "Batches this client saw complete, from the end of its initial load."}),
		reg: reg,
	}
	for _, c := range []prometheus.Collector{m.open, m.completed} {
		if err := reg.Register(c); err != nil {
			m.unregister()
			rule := "cannot register the metrics"
			if are := (prometheus.AlreadyRegisteredError{}); errors.As(err, &are) {
				rule = "metrics for aggregator " + strconv.Quote(name) + " are already registered (clients sharing a Registerer need distinct names)"
			}
			return nil, &atomicstore.ConfigError{Pkg: "aggregator", Sentinel: atomicstore.ErrInvalidConfig, Field: "Connection.Registerer", Rule: rule, Err: err}
		}
		m.done = append(m.done, c)
	}
	return m, nil
}

// observe follows one change of the replica, subscribed to once it is
// ready: the Initial changes are its contents then.
func (m *metrics) observe(c kvstore.Change[string, Progress]) {
	if c.Existed && !c.Old.Completed {
		m.open.Dec()
	}
	if !c.Deleted && !c.New.Completed {
		m.open.Inc()
	}
	if !c.Initial && !c.Deleted && c.New.Completed && !(c.Existed && c.Old.Completed) {
		m.completed.Inc()
	}
}

func (m *metrics) unregister() {
	m.once.Do(func() {
		for _, c := range m.done {
			m.reg.Unregister(c)
		}
	})
}

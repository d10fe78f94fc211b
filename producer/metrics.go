package producer

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const metricsNamespace = "whippet_producer"

// latencyBuckets spans 0.5ms to ~16s: a local broker with no linger answers
// in well under a millisecond, a struggling cluster takes seconds.
var latencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 16)

// metrics are the producer's own Prometheus metrics. A nil *metrics records
// nothing.
type metrics struct {
	produced *prometheus.CounterVec
	failed   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// newMetrics registers the producer's metrics on reg. If an identical metric
// is already registered (another producer with the same client_id on the same
// registerer), the existing one is reused so that both add to it.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "records_produced_total",
			Help:      "Records Kafka acknowledged, by topic.",
		}, []string{"topic"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace,
			Name:      "records_failed_total",
			Help:      "Records that failed to be produced or were refused because the producer was closed (the caller got an error), by topic.",
		}, []string{"topic"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace,
			Name:      "produce_latency_seconds",
			Help:      "Time from handing a record to the producer until Kafka acknowledged it or it failed, by topic.",
			Buckets:   latencyBuckets,
		}, []string{"topic"}),
	}
	var err error
	if m.produced, err = registerOrReuse(reg, m.produced); err != nil {
		return nil, err
	}
	if m.failed, err = registerOrReuse(reg, m.failed); err != nil {
		return nil, err
	}
	if m.latency, err = registerOrReuse(reg, m.latency); err != nil {
		return nil, err
	}
	return m, nil
}

func registerOrReuse[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

func (m *metrics) observe(topic string, start time.Time, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.failed.WithLabelValues(topic).Inc()
	} else {
		m.produced.WithLabelValues(topic).Inc()
	}
	m.latency.WithLabelValues(topic).Observe(time.Since(start).Seconds())
}

// rejected counts a record refused before reaching franz-go (ErrClosed).
func (m *metrics) rejected(topic string) {
	if m != nil {
		m.failed.WithLabelValues(topic).Inc()
	}
}

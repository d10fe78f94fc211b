package consumer

import (
	"errors"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are always built, so the hot path needs no nil checks; they are only
// exposed when the user gives a Registerer.
type metrics struct {
	handled  *prometheus.CounterVec
	failed   *prometheus.CounterVec
	latency  *latencyVec
	lag      *prometheus.GaugeVec
	inFlight prometheus.Gauge
	paused   prometheus.Gauge
	// retry and dead-letter metrics, not on the per-record path
	retries         *prometheus.CounterVec
	dlq             *prometheus.CounterVec
	forwardFailures *prometheus.CounterVec
	blocked         prometheus.Gauge
	lateness        *prometheus.HistogramVec
	txnCommitted    prometheus.Counter
	txnAborted      prometheus.Counter
	registered      []prometheus.Collector
	reg             prometheus.Registerer
	unregOnce       sync.Once
}

func newMetrics(group string, reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "whippet", "consumer"
	labels := prometheus.Labels{"group": group}
	m := &metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "records_handled_total", ConstLabels: labels,
			Help: "Records whose handler returned nil.",
		}, []string{"topic"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "records_failed_total", ConstLabels: labels,
			Help: "Records whose handler returned an error or panicked.",
		}, []string{"topic"}),
		latency: newLatencyVec(prometheus.BuildFQName(ns, sub, "handler_seconds"),
			"Time spent in the handler (with its middlewares) per record; fast calls in strict partition order are timed in groups of 16, each counted in the first bucket if the group fits it.", labels),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "partition_lag", ConstLabels: labels,
			Help: "High watermark minus the first offset not yet handled, per assigned partition.",
		}, []string{"topic", "partition"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "in_flight", ConstLabels: labels,
			Help: "Handlers running now.",
		}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "paused_partitions", ConstLabels: labels,
			Help: "Assigned partitions whose fetching is paused (backpressure or operator).",
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "retries_total", ConstLabels: labels,
			Help: "Retries by subscribed topic and the attempt they lead to (blocking retries and forwards to retry topics).",
		}, []string{"topic", "attempt"}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "dlq_forwards_total", ConstLabels: labels,
			Help: "Records dead-lettered (acknowledged by Kafka), by subscribed topic and reason.",
		}, []string{"topic", "reason"}),
		forwardFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "forward_failures_total", ConstLabels: labels,
			Help: "Failed forwards to retry or dead-letter topics (each is retried; the partition waits).",
		}, []string{"topic"}),
		blocked: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "blocked_partitions", ConstLabels: labels,
			Help: "Partitions held up by a record in blocking retries or by a failing forward.",
		}),
		lateness: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "retry_lateness_seconds", ConstLabels: labels,
			Help:    "How long after its due time a retry record was handled.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9), // 1ms .. 65s
		}, []string{"topic"}),
		txnCommitted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "transactions_committed_total", ConstLabels: labels,
			Help: "Transactions committed (transactional mode).",
		}),
		txnAborted: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "transactions_aborted_total", ConstLabels: labels,
			Help: "Transactions aborted (transactional mode): ErrAbort, a failed produce, a rebalance; their records are handled again.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	m.reg = reg
	for _, c := range []prometheus.Collector{m.handled, m.failed, m.latency, m.lag, m.inFlight, m.paused,
		m.retries, m.dlq, m.forwardFailures, m.blocked, m.lateness, m.txnCommitted, m.txnAborted} {
		if err := reg.Register(c); err != nil {
			m.unregister()
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, &ConfigError{Pkg: "consumer", Sentinel: ErrInvalidConfig, Field: "Connection.Registerer",
					Rule: "metrics for group " + strconv.Quote(group) + " are already registered (one Registerer per consumer of a group)", Err: err}
			}
			return nil, err
		}
		m.registered = append(m.registered, c)
	}
	return m, nil
}

// unregister removes the metrics from the Registerer, once.
func (m *metrics) unregister() {
	m.unregOnce.Do(func() {
		for _, c := range m.registered {
			m.reg.Unregister(c)
		}
	})
}

// partitionMetrics are the per-partition children, resolved once per
// assignment so the per-record path does no label lookups.
type partitionMetrics struct {
	handled prometheus.Counter
	failed  prometheus.Counter
	latency *latencyHistogram
	lag     prometheus.Gauge
}

func (m *metrics) forPartition(topic string, partition int32) partitionMetrics {
	return partitionMetrics{
		handled: m.handled.WithLabelValues(topic),
		failed:  m.failed.WithLabelValues(topic),
		latency: m.latency.forTopic(topic),
		lag:     m.lag.WithLabelValues(topic, strconv.Itoa(int(partition))),
	}
}

func (m *metrics) dropPartition(topic string, partition int32) {
	m.lag.DeleteLabelValues(topic, strconv.Itoa(int(partition)))
}

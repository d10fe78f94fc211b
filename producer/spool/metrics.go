package spool

import (
	"github.com/prometheus/client_golang/prometheus"
)

// registerMetrics registers the spool's metrics, read from p.Stats when
// scraped, and returns a function that unregisters them.
func registerMetrics(reg prometheus.Registerer, clientID string, p *Producer) (func(), error) {
	labels := prometheus.Labels{"client_id": clientID}
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "whippet", Subsystem: "spool", Name: name, Help: help, ConstLabels: labels}
	}
	counter := func(name, help string, f func(Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts(opts(name, help)), func() float64 { return float64(f(p.Stats())) })
	}
	gauge := func(name, help string, f func(Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts(name, help)), func() float64 { return f(p.Stats()) })
	}
	cs := []prometheus.Collector{
		counter("records_spooled_total", "Records made durable in the spool.", func(s Stats) uint64 { return s.Spooled }),
		counter("records_relayed_total", "Spooled records Kafka acknowledged.", func(s Stats) uint64 { return s.Relayed }),
		counter("records_dead_total", "Spooled records set aside as dead (expired or refused by Kafka).", func(s Stats) uint64 { return s.Dead }),
		counter("records_skipped_total", "Spooled records not relayed because their first attempt was acknowledged.", func(s Stats) uint64 { return s.Skipped }),
		counter("possible_duplicates_total", "Records that may reach Kafka twice (same whippet-record-id header).", func(s Stats) uint64 { return s.PossibleDuplicates }),
		gauge("records", "Records held in the spool, not yet relayed.", func(s Stats) float64 { return float64(s.Records) }),
		gauge("bytes", "Bytes of the spool's files on disk.", func(s Stats) float64 { return float64(s.Bytes) }),
		gauge("oldest_age_seconds", "Age of the oldest record held in the spool.", func(s Stats) float64 { return s.OldestAge.Seconds() }),
		gauge("dead_records", "Records set aside as dead in the spool directory.", func(s Stats) float64 { return float64(s.DeadRecords) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("ready", "1 while the spool accepts records (see Producer.Ready).")), func() float64 {
			if p.Ready() == nil {
				return 1
			}
			return 0
		}),
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, c := range cs[:i] {
				reg.Unregister(c)
			}
			return nil, err
		}
	}
	return func() {
		for _, c := range cs {
			reg.Unregister(c)
		}
	}, nil
}

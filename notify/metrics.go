package notify

import (
	"errors"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats are a Gateway's counters since it was created, as its metrics report
// them.
type Stats struct {
	// Connections is the number of open sockets.
	Connections int64
	// Delivered counts notifications written to sockets (one per socket).
	Delivered int64
	// Dropped counts notifications a socket did not get because it was
	// closed as too slow (its queue was full); the client gets them again
	// when it resumes.
	Dropped int64
	// SlowClosed counts sockets closed with CloseTooSlow.
	SlowClosed int64
	// Refused counts requests the Authorize hook refused.
	Refused int64
	// Resumed counts reconnects that resumed from their last id, and
	// ResumeUnavailable those closed with CloseResumeUnavailable.
	Resumed, ResumeUnavailable int64
	// Lag is how many offsets, summed over partitions, the gateway's reader
	// is behind the last stable offsets it last saw.
	Lag int64
}

// counters back Stats and, with a Registerer, the Prometheus metrics.
type counters struct {
	connections, delivered, dropped, slow, refused, resumed, unavailable, lag atomic.Int64
}

func (c *counters) stats() Stats {
	return Stats{
		Connections: c.connections.Load(), Delivered: c.delivered.Load(), Dropped: c.dropped.Load(),
		SlowClosed: c.slow.Load(), Refused: c.refused.Load(), Resumed: c.resumed.Load(),
		ResumeUnavailable: c.unavailable.Load(), Lag: c.lag.Load(),
	}
}

// register exposes c on reg (labelled topic) as whippet_notify_gateway_*
// and returns a function that unregisters them.
func (c *counters) register(reg prometheus.Registerer, topic string) (func(), error) {
	reg = prometheus.WrapRegistererWith(prometheus.Labels{"topic": topic}, reg)
	gauge := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "whippet", Subsystem: "notify_gateway", Name: name, Help: help},
			func() float64 { return float64(v.Load()) })
	}
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "whippet", Subsystem: "notify_gateway", Name: name, Help: help},
			func() float64 { return float64(v.Load()) })
	}
	cs := []prometheus.Collector{
		gauge("connections", "Open WebSocket connections.", &c.connections),
		counter("delivered_total", "Notifications written to sockets (one per socket).", &c.delivered),
		counter("dropped_total", "Notifications not written to a socket closed as too slow (the client resumes them).", &c.dropped),
		counter("slow_closes_total", "Sockets closed because their queue was full.", &c.slow),
		counter("refused_total", "Subscriptions the Authorize hook refused.", &c.refused),
		counter("resumes_total", "Reconnects resumed from their last id.", &c.resumed),
		counter("resumes_unavailable_total", "Reconnects whose last id was beyond the resume window.", &c.unavailable),
		gauge("lag_records", "Offsets the gateway's reader is behind the last stable offsets, summed over partitions.", &c.lag),
	}
	var done []prometheus.Collector
	unregister := func() {
		for _, col := range done {
			reg.Unregister(col)
		}
	}
	for _, col := range cs {
		if err := reg.Register(col); err != nil {
			unregister()
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("another gateway of this topic already registered its metrics on this Registerer")
			}
			return nil, err
		}
		done = append(done, col)
	}
	return unregister, nil
}

package consumer

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The handler latency histogram is on the per-record path, where
// prometheus.Histogram's Observe (a bucket search and several atomic
// operations) cost more than the rest of the consumer's work per record. So
// lanes count into a plain local latencyBatch and add it to the shared
// latencyHistogram every few hundred records; the Prometheus series is built
// at scrape time.

// latencyBuckets are the upper bounds: 100µs·4^i, i = 0..9 (100µs to ~26s).
const (
	latencyBuckets = 10
	firstBucket    = 100 * time.Microsecond
)

func bucketOf(d time.Duration) int {
	if d <= firstBucket {
		return 0
	}
	// ceil(log4(d / 100µs)) from the bit length of (d-1)/100µs.
	i := (bits.Len64(uint64((d-1)/firstBucket)) + 1) / 2
	return min(i, latencyBuckets) // latencyBuckets is the +Inf bucket
}

func bucketBound(i int) float64 { return 0.0001 * float64(uint64(1)<<(2*i)) }

// latencyBatch accumulates observations of one lane without synchronization.
type latencyBatch struct {
	counts [latencyBuckets + 1]uint64
	sum    time.Duration
	n      uint64
}

func (b *latencyBatch) observe(d time.Duration) {
	b.counts[bucketOf(d)]++
	b.sum += d
	b.n++
}

// observeGroup observes n calls that took d in all (see laneClock): each
// of them in the first bucket if d fits it, else one in d's bucket and the
// others in the first.
func (b *latencyBatch) observeGroup(n int, d time.Duration) {
	if d <= firstBucket {
		b.counts[0] += uint64(n)
	} else {
		b.counts[0] += uint64(n - 1)
		b.counts[bucketOf(d)]++
	}
	b.sum += d
	b.n += uint64(n)
}

// latencyHistogram is the shared histogram of one topic.
type latencyHistogram struct {
	counts   [latencyBuckets + 1]atomic.Uint64
	sumNanos atomic.Int64
	n        atomic.Uint64
}

// add moves a batch into the histogram and resets the batch.
func (h *latencyHistogram) add(b *latencyBatch) {
	for i, c := range b.counts {
		if c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.sumNanos.Add(int64(b.sum))
	h.n.Add(b.n)
	*b = latencyBatch{}
}

// latencyVec is a prometheus.Collector of one latencyHistogram per topic.
type latencyVec struct {
	desc   *prometheus.Desc
	mu     sync.Mutex
	topics map[string]*latencyHistogram
}

func newLatencyVec(fqName, help string, constLabels prometheus.Labels) *latencyVec {
	return &latencyVec{
		desc:   prometheus.NewDesc(fqName, help, []string{"topic"}, constLabels),
		topics: make(map[string]*latencyHistogram),
	}
}

func (v *latencyVec) forTopic(topic string) *latencyHistogram {
	v.mu.Lock()
	defer v.mu.Unlock()
	h := v.topics[topic]
	if h == nil {
		h = &latencyHistogram{}
		v.topics[topic] = h
	}
	return h
}

// Describe implements prometheus.Collector.
func (v *latencyVec) Describe(ch chan<- *prometheus.Desc) { ch <- v.desc }

// Collect implements prometheus.Collector.
func (v *latencyVec) Collect(ch chan<- prometheus.Metric) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for topic, h := range v.topics {
		buckets := make(map[float64]uint64, latencyBuckets)
		var cum uint64
		for i := 0; i < latencyBuckets; i++ {
			cum += h.counts[i].Load()
			buckets[bucketBound(i)] = cum
		}
		n := cum + h.counts[latencyBuckets].Load()
		ch <- prometheus.MustNewConstHistogram(v.desc, n, time.Duration(h.sumNanos.Load()).Seconds(), buckets, topic)
	}
}

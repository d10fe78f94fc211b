package consumer

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestBucketOf(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want int
	}{
		{0, 0}, {100 * time.Microsecond, 0}, {100*time.Microsecond + 1, 1}, {400 * time.Microsecond, 1},
		{400*time.Microsecond + 1, 2}, {1600 * time.Microsecond, 2}, {5 * time.Millisecond, 3},
		{25600 * time.Microsecond, 4}, {26 * time.Millisecond, 5}, {26 * time.Second, 9}, {27 * time.Second, 10}, {time.Hour, 10},
	}
	for _, c := range cases {
		if got := bucketOf(c.d); got != c.want {
			t.Errorf("bucketOf(%v) = %d, want %d", c.d, got, c.want)
		}
		if c.want < latencyBuckets && c.d > time.Duration(bucketBound(c.want)*float64(time.Second)) {
			t.Errorf("%v is above the bound %v of its bucket %d", c.d, bucketBound(c.want), c.want)
		}
	}
}

func TestLatencyVecExposesAPrometheusHistogram(t *testing.T) {
	v := newLatencyVec("whippet_test_seconds", "help", prometheus.Labels{"group": "g"})
	var b latencyBatch
	for _, d := range []time.Duration{50 * time.Microsecond, 300 * time.Microsecond, 2 * time.Millisecond, time.Minute} {
		b.observe(d)
	}
	v.forTopic("orders").add(&b)
	if b.n != 0 {
		t.Fatal("add did not reset the batch")
	}
	want := `
# HELP whippet_test_seconds help
# TYPE whippet_test_seconds histogram
whippet_test_seconds_bucket{group="g",topic="orders",le="0.0001"} 1
whippet_test_seconds_bucket{group="g",topic="orders",le="0.0004"} 2
whippet_test_seconds_bucket{group="g",topic="orders",le="0.0016"} 2
whippet_test_seconds_bucket{group="g",topic="orders",le="0.0064"} 3
whippet_test_seconds_bucket{group="g",topic="orders",le="0.0256"} 3
whippet_test_seconds_bucket{group="g",topic="orders",le="0.1024"} 3
whippet_test_seconds_bucket{group="g",topic="orders",le="0.4096"} 3
whippet_test_seconds_bucket{group="g",topic="orders",le="1.6384"} 3
whippet_test_seconds_bucket{group="g",topic="orders",le="6.5536"} 3
whippet_test_seconds_bucket{group="g",topic="orders",le="26.2144"} 3
whippet_test_seconds_bucket{group="g",topic="orders",le="+Inf"} 4
whippet_test_seconds_sum{group="g",topic="orders"} 60.00235
whippet_test_seconds_count{group="g",topic="orders"} 4
`
	if err := testutil.CollectAndCompare(v, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

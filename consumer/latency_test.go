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

// A lane's clock reads once per call until groupAfter calls in a row were
// fast, then once per groupCalls calls; the counts and the sum stay those
// of one read per call while a group fits the first bucket, a slow group
// puts one call in its bucket (an upper bound) and the lane reads per call
// again.
func TestLaneClockGroupsFastCalls(t *testing.T) {
	c := laneClock{group: true}
	var now time.Duration
	reads := 0
	call := func(d time.Duration) {
		now += d
		if c.count() {
			reads++
			c.read(now)
		}
	}
	for range groupAfter {
		call(time.Microsecond)
	}
	if reads != groupAfter {
		t.Fatalf("%d reads for the first %d calls, want one each", reads, groupAfter)
	}
	for range 2 * groupCalls {
		call(2 * time.Microsecond)
	}
	if reads != groupAfter+2 {
		t.Fatalf("%d reads after %d fast calls more, want 2 more (groups of %d)", reads, 2*groupCalls, groupCalls)
	}
	// A group with one slow call.
	for i := range groupCalls {
		if i == 5 {
			call(time.Millisecond)
		} else {
			call(time.Microsecond)
		}
	}
	if reads != groupAfter+3 {
		t.Fatalf("%d reads after a slow group, want %d", reads, groupAfter+3)
	}
	// Per call again.
	call(time.Microsecond)
	if reads != groupAfter+4 {
		t.Fatalf("no read for the call after a slow group (%d reads)", reads)
	}
	// A group under way is settled before a wait.
	for range groupAfter - 1 { // with the call above, groupAfter fast calls in a row
		call(time.Microsecond)
	}
	call(time.Microsecond)
	if c.pending != 1 {
		t.Fatalf("pending %d, want the one call of a new group", c.pending)
	}
	c.read(now) // what settle does, at now

	calls := uint64(groupAfter + 2*groupCalls + groupCalls + 1 + groupAfter - 1 + 1)
	if c.lat.n != calls {
		t.Errorf("n = %d, want %d", c.lat.n, calls)
	}
	if c.lat.counts[0] != calls-1 || c.lat.counts[bucketOf(time.Millisecond+(groupCalls-1)*time.Microsecond)] != 1 {
		t.Errorf("counts %v: want all but the slow call in the first bucket, it in its group's", c.lat.counts)
	}
	if c.lat.sum != now {
		t.Errorf("sum %v, want the whole time %v", c.lat.sum, now)
	}
}

package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkLanePerRecord is the consumer's own work per record in strict
// partition order, without Kafka: a lane handles fetches of 8192 records
// with a handler that does nothing (an op is one fetch), and a plain loop
// calls the same handler for as many records. lane-ns/record and
// loop-ns/record are the two, measured in the same run, and own-ns/record
// their difference. Run with: go test ./consumer -run '^$' -bench LanePerRecord
func BenchmarkLanePerRecord(b *testing.B) {
	var h Handler = nopHandler
	c, err := New(conn, h, Group("bench"), Topics("t"))
	if err != nil {
		b.Fatal(err)
	}
	c.handlerCtx = context.Background()
	// The partition marks its progress on this client, which never
	// connects: marks are kept in memory until a commit.
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	p := newPartition(c, cl, "t", 0)
	l := p.newLane("")
	p.callH = &l.h

	// One fetch's records, reused with new offsets: decoding them is
	// franz-go's work, the same with or without whippet.
	recs := make([]*kgo.Record, 8192)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: "t"}
	}
	var off int64
	fetch := func() {
		for _, r := range recs {
			r.Offset = off
			off++
		}
	}
	ctx := context.Background()
	start := time.Now()
	for range b.N {
		fetch()
		for _, r := range recs {
			_ = h.Handle(ctx, r)
		}
	}
	loop := time.Since(start)
	b.ResetTimer()
	for range b.N {
		fetch()
		p.handleRecords(l, recs)
	}
	b.StopTimer()
	if p.laneEnd != off {
		b.Fatalf("the lane finished the records up to offset %d, want %d", p.laneEnd, off)
	}
	n := float64(b.N * len(recs))
	lane, perLoop := float64(b.Elapsed().Nanoseconds())/n, float64(loop.Nanoseconds())/n
	b.ReportMetric(lane, "lane-ns/record")
	b.ReportMetric(perLoop, "loop-ns/record")
	b.ReportMetric(lane-perLoop, "own-ns/record")
}

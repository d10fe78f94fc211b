package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
)

// BenchmarkLanePerRecord is the consumer's own work per record in strict
// partition order, without Kafka: a lane handles fetched records with a
// handler that does nothing, and a plain loop calls the same handler for the
// same records. ns/op is the lane's per record; loop-ns/record is the plain
// loop's, measured in the same run, and own-ns/record the difference. Run
// with: go test ./consumer -run '^$' -bench LanePerRecord
func BenchmarkLanePerRecord(b *testing.B) {
	var h Handler = HandlerFunc(func(context.Context, *kgo.Record) error { return nil })
	c, err := New(whippet.Connection{Brokers: []string{"127.0.0.1:1"}}, h, Group("bench"), Topics("t"))
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

	// One fetch's worth of records, reused with new offsets: the cost of
	// decoding them is franz-go's, the same with or without whippet.
	recs := make([]*kgo.Record, 8192)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: "t"}
	}
	var off int64
	each := func(fn func([]*kgo.Record)) {
		for done := 0; done < b.N; done += len(recs) {
			batch := recs[:min(len(recs), b.N-done)]
			for _, r := range batch {
				r.Offset = off
				off++
			}
			fn(batch)
		}
	}
	ctx := context.Background()
	start := time.Now()
	each(func(batch []*kgo.Record) {
		for _, r := range batch {
			_ = h.Handle(ctx, r)
		}
	})
	loop := time.Since(start)
	b.ResetTimer()
	each(func(batch []*kgo.Record) { p.handleRecords(l, batch) })
	b.StopTimer()
	lane := b.Elapsed()
	if p.laneEnd != off {
		b.Fatalf("the lane finished records up to offset %d, want %d", p.laneEnd, off)
	}
	perLoop := float64(loop.Nanoseconds()) / float64(b.N)
	b.ReportMetric(perLoop, "loop-ns/record")
	b.ReportMetric(float64(lane.Nanoseconds())/float64(b.N)-perLoop, "own-ns/record")
}

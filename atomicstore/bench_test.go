package atomicstore_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/testkit"
)

// BenchmarkApply measures how many adds per second the processor applies on
// 6 partitions: b.N commands are sent first, then the processor is started
// and timed until it committed them all.
func BenchmarkApply(b *testing.B) {
	kc := testkit.Shared(b)
	name := testkit.TopicName(b.Name())
	s, err := atomicstore.Open(context.Background(), whippet.Connection{Brokers: kc.Brokers}, name, codec.String(), atomicstore.Int64(), atomicstore.Partitions(6))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close(context.Background())
	ctx := context.Background()
	var wg sync.WaitGroup
	const senders = 32
	for g := range senders {
		wg.Go(func() {
			for i := g; i < b.N; i += senders {
				if _, err := s.Send(ctx, fmt.Sprintf("counter-%04d", i%1000), atomicstore.Add(1)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	adm := kc.Admin(b)
	b.ResetTimer()
	begin := time.Now()
	pctx, cancel := context.WithCancel(ctx)
	p, err := atomicstore.NewProcessor(whippet.Connection{Brokers: kc.Brokers}, name, codec.String(), atomicstore.Int64(), atomicstore.TransactionalID(name+"-p"))
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	for {
		offs, err := adm.FetchOffsets(ctx, name+"-processor")
		var n int64
		if err == nil {
			offs.Each(func(o kadm.OffsetResponse) { n += o.At })
		}
		if n >= int64(b.N) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(begin)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/took.Seconds(), "updates/s")
	b.Logf("%d adds on 6 partitions applied in %v (processor start and group join included): %.0f updates/s", b.N, took.Round(time.Millisecond), float64(b.N)/took.Seconds())
}

// BenchmarkUpdateRoundTrip measures Update (send, apply, commit, see the
// result in the replica) with a warm processor, 8 concurrent callers, for
// two transaction intervals.
func BenchmarkUpdateRoundTrip(b *testing.B) {
	for _, interval := range []time.Duration{100 * time.Millisecond, 10 * time.Millisecond} {
		b.Run("interval="+interval.String(), func(b *testing.B) {
			kc := testkit.Shared(b)
			name := testkit.TopicName(b.Name())
			ctx, cancel := context.WithCancel(context.Background())
			p, err := atomicstore.NewProcessor(whippet.Connection{Brokers: kc.Brokers}, name, codec.String(), atomicstore.Int64(), atomicstore.TransactionalID(name+"-p"),
				atomicstore.TransactionBatch(10_000, interval))
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			s, err := atomicstore.Open(ctx, whippet.Connection{Brokers: kc.Brokers}, name, codec.String(), atomicstore.Int64())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close(context.Background())
			if _, err := s.Update(ctx, "warm-up", atomicstore.Add(1)); err != nil {
				b.Fatal(err)
			}
			const callers = 8
			lat := make([][]time.Duration, callers)
			b.ResetTimer()
			var wg sync.WaitGroup
			for g := range callers {
				wg.Go(func() {
					for i := g; i < b.N; i += callers {
						t0 := time.Now()
						if _, err := s.Update(ctx, fmt.Sprintf("k%d", i%64), atomicstore.Add(1)); err != nil {
							b.Error(err)
							return
						}
						lat[g] = append(lat[g], time.Since(t0))
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			all := slices.Concat(lat...)
			slices.Sort(all)
			if len(all) > 0 {
				p50, p99 := all[len(all)/2], all[min(len(all)-1, len(all)*99/100)]
				b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
				b.Logf("%d Updates, %d callers, transaction interval %v: p50 %v, p99 %v", len(all), callers, interval, p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond))
			}
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}

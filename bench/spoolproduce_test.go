package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/producer/spool"
)

// BenchmarkSpoolProduce prints, in one run on the broker of $KAFKA_BROKERS:
// produces acknowledged by Kafka through a spool Producer (direct), produces
// spooled to disk while Kafka is unreachable (fsync batching), and the
// relay's catch-up rate once Kafka is reachable again:
//
//	KAFKA_BROKERS=127.0.0.1:19092 go test -run '^$' -bench SpoolProduce -benchtime 1x ./bench/
func BenchmarkSpoolProduce(b *testing.B) {
	brokers := os.Getenv("KAFKA_BROKERS")
	if brokers == "" {
		b.Fatal("set KAFKA_BROKERS")
	}
	seeds := strings.Split(brokers, ",")
	const writers, perWriter = 64, 300
	for b.Loop() {
		topic := fmt.Sprintf("bench-spool-%d", time.Now().UnixNano())
		adm, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := kadm.NewClient(adm).CreateTopic(context.Background(), 3, 1, nil, topic); err != nil {
			b.Fatal(err)
		}
		var down atomic.Bool
		var mu sync.Mutex
		var conns []net.Conn
		dial := func(ctx context.Context, network, host string) (net.Conn, error) {
			mu.Lock()
			defer mu.Unlock()
			if down.Load() {
				return nil, errors.New("down")
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, host)
			if err == nil {
				conns = append(conns, c)
			}
			return c, err
		}
		cut := func() { // every broker unreachable: no dial, open connections cut
			mu.Lock()
			defer mu.Unlock()
			down.Store(true)
			for _, c := range conns {
				c.Close()
			}
			conns = nil
		}
		p, err := spool.New(whippet.Connection{Brokers: seeds, ClientOptions: []kgo.Opt{kgo.Dialer(dial)}}, b.TempDir(),
			spool.Threshold(100*time.Millisecond))
		if err != nil {
			b.Fatal(err)
		}
		run := func() float64 {
			start := time.Now()
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := range perWriter {
						if _, err := p.Produce(context.Background(), &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", w), Value: fmt.Appendf(nil, "%d", i)}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			return float64(writers*perWriter) / time.Since(start).Seconds()
		}
		direct := run()
		cut()
		spooled := run()
		held := p.Stats().Records
		down.Store(false)
		start := time.Now()
		for p.Stats().Records > 0 {
			time.Sleep(5 * time.Millisecond)
		}
		relay := float64(held) / time.Since(start).Seconds()
		_ = p.Close(context.Background())
		_, _ = kadm.NewClient(adm).DeleteTopics(context.Background(), topic)
		adm.Close()
		fmt.Printf("spool produce, %d writers × %d records: direct %.0f rec/s, spooled (Kafka unreachable) %.0f rec/s, spooled/direct %.2f; relay caught up %d records at %.0f rec/s\n",
			writers, perWriter, direct, spooled, spooled/direct, held, relay)
		b.ReportMetric(direct, "direct-rec/s")
		b.ReportMetric(spooled, "spooled-rec/s")
		b.ReportMetric(relay, "relay-rec/s")
	}
}

package main

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kafka is the harness's own client: it creates topics and produces the
// scenarios' data, the same bytes for every contender.
type kafka struct {
	brokers string
	cl      *kgo.Client
	liveCl  *kgo.Client // no linger: live records leave at once
	adm     *kadm.Client
	seq     int
}

func newKafka(brokers string) (*kafka, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.ProducerLinger(5*time.Millisecond), kgo.ProducerBatchMaxBytes(1<<20), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		return nil, fmt.Errorf("kafka client for %s: %w", brokers, err)
	}
	liveCl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("kafka client for %s: %w", brokers, err)
	}
	return &kafka{brokers: brokers, cl: cl, liveCl: liveCl, adm: kadm.NewClient(cl)}, nil
}

func (k *kafka) close() {
	k.cl.Close()
	k.liveCl.Close()
}

// topic creates a new topic named after the scenario.
func (k *kafka) topic(ctx context.Context, prefix string, partitions int32, configs map[string]*string) (string, error) {
	k.seq++
	name := fmt.Sprintf("bench-%s-%d-%d", prefix, time.Now().Unix(), k.seq)
	resp, err := k.adm.CreateTopic(ctx, partitions, 1, configs, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return "", fmt.Errorf("create topic %s: %w", name, err)
	}
	return name, nil
}

// produce produces n records made by mk, as fast as the client goes, and
// waits until all are acknowledged.
func (k *kafka) produce(ctx context.Context, n int, mk func(i int) *kgo.Record) error {
	var perr atomic.Value
	for i := range n {
		k.cl.Produce(ctx, mk(i), func(_ *kgo.Record, err error) {
			if err != nil {
				perr.Store(err)
			}
		})
	}
	if err := k.cl.Flush(ctx); err != nil {
		return err
	}
	if err, _ := perr.Load().(error); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	return nil
}

// producePaced produces n records at rate per second (in 10ms steps), each
// stamped with its produce time, which is what the contenders' latency is
// measured from.
func (k *kafka) producePaced(ctx context.Context, n, rate int, mk func(i int) *kgo.Record) error {
	var perr atomic.Value
	start := time.Now()
	for i := 0; i < n; {
		due := int(float64(time.Since(start)) / float64(time.Second) * float64(rate))
		for ; i < min(due+1, n); i++ {
			r := mk(i)
			r.Timestamp = time.Now()
			k.liveCl.Produce(ctx, r, func(_ *kgo.Record, err error) {
				if err != nil {
					perr.Store(err)
				}
			})
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := k.liveCl.Flush(ctx); err != nil {
		return err
	}
	if err, _ := perr.Load().(error); err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	return nil
}

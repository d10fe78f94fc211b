//go:build chaos

package chaos_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/producer"
)

// feed produces numbered records to a topic at a steady rate through
// whippet's producer (idempotent, acks=all, its defaults) until stopped, and
// remembers where Kafka acknowledged each one. Record i has key and value
// seqKey(i); keys spread the records over the partitions by hash.
type feed struct {
	p     *producer.Producer
	topic string
	rate  int // records per second
	acks  progress

	mu     sync.Mutex
	sent   int
	acked  map[string]producer.Result
	failed map[string]error

	stopCh chan struct{}
	done   chan struct{}
}

func seqKey(i int) string { return fmt.Sprintf("%07d", i) }

// newFeed creates the feed's producer: whippet's defaults plus the franz-go
// options extra.
func newFeed(t *testing.T, brokers []string, topic string, rate int, extra ...kgo.Opt) *feed {
	t.Helper()
	p, err := producer.New(whippet.Connection{Brokers: brokers, ClientID: "chaos-feed", ClientOptions: extra})
	if err != nil {
		t.Fatal(err)
	}
	return &feed{p: p, topic: topic, rate: rate, acked: map[string]producer.Result{}, failed: map[string]error{},
		stopCh: make(chan struct{}), done: make(chan struct{})}
}

// start produces records named by name(i) for i = 0, 1, ... until stop,
// or until limit records if limit > 0.
func (f *feed) start(name func(int) string, limit int) {
	go func() {
		defer close(f.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		begin := time.Now()
		for i := 0; limit <= 0 || i < limit; {
			select {
			case <-f.stopCh:
				return
			case <-tick.C:
			}
			// Catch up with the rate after a stall (ProduceAsync blocks
			// while franz-go's buffer is full).
			due := int(time.Since(begin).Seconds() * float64(f.rate))
			for ; i < due && (limit <= 0 || i < limit); i++ {
				key := name(i)
				f.mu.Lock()
				f.sent++
				f.mu.Unlock()
				f.p.ProduceAsync(context.Background(), &kgo.Record{Topic: f.topic, Key: []byte(key), Value: []byte(key)},
					func(res producer.Result, err error) {
						f.mu.Lock()
						defer f.mu.Unlock()
						if err != nil {
							f.failed[key] = err
							return
						}
						f.acked[key] = res
						f.acks.add(res.Partition, res.Offset)
					})
			}
		}
	}()
}

// stop ends producing, waits for every outstanding record's outcome and
// closes the producer.
func (f *feed) stop(t testing.TB) {
	t.Helper()
	select {
	case <-f.stopCh:
	default:
		close(f.stopCh)
	}
	<-f.done
	if err := f.p.Flush(ctxT(t, 2*time.Minute)); err != nil {
		t.Errorf("flushing the feed: %v", err)
	}
	if err := f.p.Close(ctxT(t, 30*time.Second)); err != nil {
		t.Errorf("closing the feed: %v", err)
	}
}

// counts returns how many records were sent, acknowledged and failed.
func (f *feed) counts() (sent, acked, failed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent, len(f.acked), len(f.failed)
}

// ackedKeys returns the acknowledged keys with where they were stored.
func (f *feed) ackedKeys() map[string]producer.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]producer.Result, len(f.acked))
	for k, v := range f.acked {
		out[k] = v
	}
	return out
}

// firstFailure returns one failure, for the error message.
func (f *feed) firstFailure() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, err := range f.failed {
		return k + ": " + err.Error()
	}
	return ""
}

// checkInput reads the feed's topic back and checks that it holds every
// acknowledged record exactly once, where the producer was told (the
// idempotent producer's promise across broker faults). It returns the
// records lost and duplicated.
func checkInput(t *testing.T, e *env, f *feed) (lost, dup int) {
	t.Helper()
	acked := f.ackedKeys()
	seen := map[string]int{}
	for _, r := range e.readAll(t, f.topic, false) {
		k := string(r.Key)
		seen[k]++
		if res, ok := acked[k]; ok && seen[k] == 1 && (res.Partition != r.Partition || res.Offset != r.Offset) {
			t.Errorf("%s acknowledged at %d/%d, found at %d/%d", k, res.Partition, res.Offset, r.Partition, r.Offset)
		}
	}
	for k := range acked {
		if seen[k] == 0 {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged record %s is not in %s", k, f.topic)
			}
		}
	}
	for k, n := range seen {
		if n > 1 {
			dup += n - 1
			if dup <= 5 {
				t.Errorf("%s is %d times in %s", k, n, f.topic)
			}
		}
	}
	return lost, dup
}

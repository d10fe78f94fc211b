//go:build linux

package spool_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/tmpfstest"
	"github.com/whippet-go/whippet/producer/spool"
	"github.com/whippet-go/whippet/testkit"
)

// TestDiskFull: the spool directory is on a 1 MiB tmpfs (MaxBytes, 1 GiB by
// default, does not stop it first) while Kafka is unreachable. Produces
// that run into the full disk fail with an error that says so (ENOSPC),
// so does every later one, and Ready reports it. Nothing acknowledged is
// lost and nothing that failed is delivered: reopened with Kafka back, the
// spool holds and relays exactly the acknowledged records, in order per
// key.
func TestDiskFull(t *testing.T) {
	tmpfstest.Run(t, 1<<20, func(t *testing.T, dir string) {
		noLeaks(t)
		kc := testkit.Shared(t)
		topic := kc.NewTopic(t, 3, nil)
		net := newNetwork()
		net.down()
		p, err := spool.New(whippet.Connection{Brokers: kc.Brokers, ClientOptions: []kgo.Opt{net.opt()}}, dir,
			spool.Threshold(20*time.Millisecond), spool.DefaultTopic(topic))
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		acked := map[string]bool{}
		var failures []error
		body := []byte(strings.Repeat("x", 1000))
		var wg sync.WaitGroup
		for k := range 8 {
			wg.Go(func() {
				for i := 0; ; i++ {
					res, err := p.Produce(context.Background(), &kgo.Record{Key: []byte(keyName(k)), Value: value(keyName(k), i),
						Headers: []kgo.RecordHeader{{Key: "padding", Value: body}}})
					mu.Lock()
					if err == nil {
						acked[res.ID] = true
					} else {
						failures = append(failures, err)
					}
					mu.Unlock()
					if err != nil {
						return
					}
					if !res.Spooled {
						t.Errorf("acknowledged by an unreachable Kafka: %+v", res)
						return
					}
				}
			})
		}
		wg.Wait()
		for _, err := range failures {
			if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), dir) {
				t.Errorf("produce on a full disk: %v; want ENOSPC and the directory named", err)
			}
		}
		t.Logf("%d produces acknowledged, then: %v", len(acked), failures[0])
		if _, err := p.Produce(context.Background(), &kgo.Record{Value: []byte("later")}); !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("produce after the disk filled: %v, want the same failure", err)
		}
		if err := p.Ready(); !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("Ready on a full disk: %v", err)
		}
		if err := p.Close(context.Background()); err != nil {
			t.Logf("Close: %v", err)
		}

		net.up()
		p, err = spool.New(whippet.Connection{Brokers: kc.Brokers}, dir)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close(context.Background())
		rec := p.Recovered()
		t.Logf("reopened: %d records, %d torn parts cut off", rec.Records, len(rec.Dropped))
		if rec.Records != int64(len(acked)) {
			t.Errorf("reopened spool holds %d records, %d were acknowledged", rec.Records, len(acked))
		}
		testkit.Eventually(t, 60*time.Second, func() error {
			if st := p.Stats(); st.Records != 0 {
				return fmt.Errorf("not drained: %+v", st)
			}
			return nil
		})
		checkDelivered(t, kc, topic, acked)
		if st := p.Stats(); st.Relayed != uint64(len(acked)) {
			t.Errorf("relayed %d records, %d were acknowledged: %+v", st.Relayed, len(acked), st)
		}
	})
}

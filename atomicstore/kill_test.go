package atomicstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/testkit"
)

// TestCountersExactAcrossKillsAndRebalances: 3 clients (each its own Kafka
// clients) × 10 goroutines add to 100 counters while two processor
// processes run; one or the other is SIGKILLed and restarted several times,
// so partitions move between live instances (rebalances) and transactions
// die half-way. Every counter must end exact.
func TestCountersExactAcrossKillsAndRebalances(t *testing.T) {
	kc := testkit.Shared(t)
	const clients, goroutines, counters, total, kills = 3, 10, 100, 100_000, 6
	name := testkit.TopicName(t.Name())
	begin := time.Now()
	stores := make([]*atomicstore.Store[string, int64], clients)
	for i := range stores {
		s, err := atomicstore.Open(context.Background(), whippet.Connection{Brokers: kc.Brokers}, name, codec.String(), atomicstore.Int64(), atomicstore.UpdateTimeout(90*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close(context.Background())
		stores[i] = s
	}

	start := func(id string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=1", "WHIPPET_TEST_NAME="+name, "WHIPPET_TEST_TXN_ID="+name+"-"+id,
			"WHIPPET_TEST_BROKERS="+strings.Join(kc.Brokers, ","))
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			s := bufio.NewScanner(stderr)
			for s.Scan() {
				t.Log("processor " + id + ": " + s.Text())
			}
		}()
		return cmd
	}
	procs := map[string]*exec.Cmd{"a": start("a"), "b": start("b")}

	var want [counters]atomic.Int64
	var sent, updates, unknown atomic.Int64
	var wg sync.WaitGroup
	ctx := context.Background()
	for c := range clients {
		for g := range goroutines {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(c), uint64(g)))
				for i := range total / clients / goroutines {
					k := r.IntN(counters)
					n := int64(1 + r.IntN(5))
					key := fmt.Sprintf("counter-%03d", k)
					if g == 0 && i%10 == 0 {
						// Some adds wait for their result across the kills.
						// ErrResultUnknown is a documented outcome there: the
						// add was applied once, but a rebuilt dedup window no
						// longer holds its result (compaction removed its
						// store record), so it counts as applied.
						_, err := stores[c].Update(ctx, key, atomicstore.Add(n))
						if errors.Is(err, atomicstore.ErrResultUnknown) {
							unknown.Add(1)
						} else if err != nil {
							t.Errorf("Update: %v", err)
							return
						}
						updates.Add(1)
					} else if _, err := stores[c].Send(ctx, key, atomicstore.Add(n)); err != nil {
						t.Errorf("Send: %v", err)
						return
					}
					want[k].Add(n)
					sent.Add(1)
					if i%200 == 0 {
						time.Sleep(20 * time.Millisecond) // spread the adds over the kills
					}
				}
			})
		}
	}

	adm := kc.Admin(t)
	applied := func() int64 {
		offs, err := adm.FetchOffsets(ctx, name+"-processor")
		if err != nil {
			return 0
		}
		var n int64
		offs.Each(func(o kadm.OffsetResponse) { n += o.At })
		return n
	}
	var killedAt []int64
	for i := range kills {
		target := int64(total / (kills + 1) * (i + 1))
		for deadline := time.Now().Add(60 * time.Second); applied() < target; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("applied %d commands, waiting for %d", applied(), target)
			}
		}
		time.Sleep(time.Duration(rand.IntN(100)) * time.Millisecond)
		id := []string{"a", "b"}[i%2]
		if err := procs[id].Process.Kill(); err != nil { // SIGKILL: no abort, no leave
			t.Fatal(err)
		}
		_ = procs[id].Wait()
		killedAt = append(killedAt, applied())
		if i%3 == 2 {
			time.Sleep(7 * time.Second) // let the group evict it: the other one takes its partitions
		}
		procs[id] = start(id)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	ends, err := adm.ListEndOffsets(ctx, atomicstore.CommandsTopic(name))
	if err != nil {
		t.Fatal(err)
	}
	var end int64
	ends.Each(func(o kadm.ListedOffset) { end += o.Offset })
	testkit.Eventually(t, 120*time.Second, func() error {
		if got := applied(); got != end {
			return fmt.Errorf("applied %d of %d commands", got, end)
		}
		return nil
	})
	for id, cmd := range procs {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("processor %s after SIGTERM: %v", id, err)
		}
	}
	took := time.Since(begin)

	// A fresh replica reads the store topic from the start.
	fresh, err := atomicstore.Open(ctx, whippet.Connection{Brokers: kc.Brokers}, name, codec.String(), atomicstore.Int64())
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close(context.Background())
	if err := fresh.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	var sum int64
	for k := range counters {
		key := fmt.Sprintf("counter-%03d", k)
		got, _ := fresh.Get(key)
		if got != want[k].Load() {
			t.Errorf("%s = %d, want %d", key, got, want[k].Load())
		}
		sum += got
	}
	t.Logf("%d adds (%d waited with Update, %d of them answered ErrResultUnknown) from %d clients × %d goroutines to %d counters, processors SIGKILLed %d times (applied %v at the kills): %d counters checked, failed=%v (sum %d); %v in all",
		sent.Load(), updates.Load(), unknown.Load(), clients, goroutines, counters, len(killedAt), killedAt, counters, t.Failed(), sum, took.Round(time.Second))
}

package aggregator_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/aggregator"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/testkit"
)

// TestCompletionExactlyOnce: 1,000 tasks reported by 4 worker processes
// (every third task twice), one worker SIGKILLed half-way and its whole
// range reported again by another (at-least-once workers), one of the two
// processor processes SIGKILLed too. The last task is held back: until it
// is reported there must be no completion event; after it (reported twice,
// concurrently), exactly one.
func TestCompletionExactlyOnce(t *testing.T) {
	kc := testkit.Shared(t)
	const total, workers = 1000, 4
	name := testkit.TopicName(t.Name())
	batch := "import-42"
	begin := time.Now()
	a, err := aggregator.Open(context.Background(), whippet.Connection{Brokers: kc.Brokers}, name,
		atomicstore.Partitions(3), atomicstore.UpdateTimeout(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())

	start := func(role, id string, env ...string) (*exec.Cmd, *syncCounter) {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(append(os.Environ(), childEnv+"="+role, "WHIPPET_TEST_NAME="+name, "WHIPPET_TEST_TXN_ID="+name+"-"+id,
			"WHIPPET_TEST_BATCH="+batch, "WHIPPET_TEST_BROKERS="+strings.Join(kc.Brokers, ",")), env...)
		stderr, _ := cmd.StderrPipe()
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := &syncCounter{}
		go func() {
			s := bufio.NewScanner(stderr)
			for s.Scan() {
				t.Log(role + " " + id + ": " + s.Text())
			}
		}()
		go func() {
			s := bufio.NewScanner(stdout)
			for s.Scan() {
				lines.inc()
			}
		}()
		return cmd, lines
	}
	procA, _ := start("processor", "a")
	procB, _ := start("processor", "b")
	ctx := context.Background()
	if _, err := a.Start(ctx, batch, total); err != nil {
		t.Fatal(err)
	}

	per := (total - 1) / workers // task total-1 is held back
	var ws []*exec.Cmd
	var victim *syncCounter
	for w := range workers {
		to := (w + 1) * per
		if w == workers-1 {
			to = total - 1
		}
		cmd, lines := start("worker", fmt.Sprint("w", w), fmt.Sprintf("WHIPPET_TEST_RANGE=%d-%d", w*per, to))
		ws = append(ws, cmd)
		if w == 0 {
			victim = lines
		}
	}
	// Kill worker 0 half-way through its range, and processor a.
	for deadline := time.Now().Add(60 * time.Second); victim.get() < per/2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("worker 0 made no progress")
		}
	}
	_ = ws[0].Process.Kill()
	_ = procA.Process.Kill()
	_ = procA.Wait()
	killedAfter := victim.get()
	procA, _ = start("processor", "a")
	// Its tasks are handed to another worker, which reports them all again.
	redo, _ := start("worker", "redo", fmt.Sprintf("WHIPPET_TEST_RANGE=%d-%d", 0, per))
	for _, w := range append(ws, redo) {
		_ = w.Wait()
	}

	testkit.Eventually(t, 90*time.Second, func() error {
		p, err := a.Done(ctx, batch, 0) // a duplicate report, read its result
		if err != nil {
			return err
		}
		if p.Done != total-1 {
			return fmt.Errorf("progress %d/%d", p.Done, p.Total)
		}
		return nil
	})
	if evs := events(t, kc, name, 2*time.Second); len(evs) != 0 {
		t.Fatalf("%d completion events before the last task", len(evs))
	}
	var wg sync.WaitGroup
	results := make([]aggregator.Progress, 2)
	for i := range results {
		wg.Go(func() {
			var err error
			if results[i], err = a.Done(ctx, batch, total-1); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if !results[0].Completed || !results[1].Completed || results[0].Done != total {
		t.Fatalf("after the last task: %+v / %+v", results[0].Done, results[1].Done)
	}
	evs := events(t, kc, name, 3*time.Second)
	if len(evs) != 1 {
		t.Fatalf("%d completion events, want 1", len(evs))
	}
	var c aggregator.Completion
	if err := json.Unmarshal(evs[0].Value, &c); err != nil || c.Batch != batch || c.Total != total {
		t.Fatalf("event %s: %v", evs[0].Value, err)
	}
	for _, p := range []*exec.Cmd{procA, procB} {
		_ = p.Process.Signal(syscall.SIGTERM)
		if err := p.Wait(); err != nil {
			t.Errorf("processor after SIGTERM: %v", err)
		}
	}
	t.Logf("%d tasks, %d worker processes + 1 redo (worker 0 and processor a SIGKILLed after %d of worker 0's reports), every third task reported twice, the last twice concurrently: 0 events before the last task, exactly 1 after (%s); %v in all",
		total, workers, killedAfter, evs[0].Value, time.Since(begin).Round(time.Second))
}

// events reads the committed completion events, until quiet passes with
// nothing new.
func events(t *testing.T, kc *testkit.Cluster, name string, quiet time.Duration) []*kgo.Record {
	t.Helper()
	cl := kc.Client(t, kgo.ConsumeTopics(aggregator.CompletedTopic(name)), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	var out []*kgo.Record
	for {
		ctx, cancel := context.WithTimeout(context.Background(), quiet)
		fs := cl.PollFetches(ctx)
		cancel()
		n := 0
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r); n++ })
		if n == 0 {
			return out
		}
	}
}

type syncCounter struct {
	mu sync.Mutex
	n  int
}

func (c *syncCounter) inc() { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *syncCounter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

package consumer_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
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
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// inputKey names an input record in its outputs: "<partition>/<offset>".
func inputKey(r *kgo.Record) []byte { return fmt.Appendf(nil, "%d/%d", r.Partition, r.Offset) }

// readExactly reads topic from the start with the given isolation level
// until it holds want records, then for quiet more to catch any extra, and
// returns what it read.
func readExactly(t *testing.T, kc *testkit.Cluster, topic string, want int, committedOnly bool, quiet time.Duration) []*kgo.Record {
	t.Helper()
	level := kgo.ReadUncommitted()
	if committedOnly {
		level = kgo.ReadCommitted()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(level), kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var all []*kgo.Record
	deadline := time.Now().Add(90 * time.Second)
	var quietUntil time.Time
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachError(func(tp string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				t.Logf("fetch %s[%d]: %v", tp, p, err)
			}
		})
		all = append(all, fs.Records()...)
		now := time.Now()
		if len(all) >= want && quietUntil.IsZero() {
			quietUntil = now.Add(quiet)
		}
		if !quietUntil.IsZero() && now.After(quietUntil) {
			return all
		}
		if now.After(deadline) {
			t.Fatalf("read %d records of %s, want %d", len(all), topic, want)
		}
	}
}

// onceEach checks that the records' keys are exactly want, each once.
func onceEach(t *testing.T, what string, recs []*kgo.Record, want map[string]bool) {
	t.Helper()
	seen := map[string]int{}
	for _, r := range recs {
		seen[string(r.Key)]++
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s: %s seen %d times", what, k, n)
		}
		if !want[k] {
			t.Errorf("%s: unexpected %s", what, k)
		}
	}
	for k := range want {
		if seen[k] == 0 {
			t.Errorf("%s: %s missing", what, k)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

func TestEmitAtLeastOnceCommitsOnlyAcknowledgedOutputs(t *testing.T) {
	kc := testkit.Shared(t)
	in := kc.NewTopic(t, 1, nil)
	out := kc.NewTopic(t, 1, map[string]*string{"max.message.bytes": ptr("1000")})
	group := in
	// Random, so that compression cannot bring it under the limit.
	raw := make([]byte, 3000)
	for i := range raw {
		raw[i] = byte(rand.IntN(256))
	}
	big := string(raw)
	cl := kc.Client(t)
	for _, v := range []string{"a", "b", "c", big, "d"} {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: in, Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	calls := map[int64]int{}
	var saved context.Context
	c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		mu.Lock()
		calls[r.Offset]++
		n := calls[r.Offset]
		saved = ctx
		mu.Unlock()
		if len(r.Value) > 100 {
			// Its own produce batch: the broker refuses a batch as a whole.
			time.Sleep(200 * time.Millisecond)
		}
		if err := consumer.Emit(ctx, &kgo.Record{Topic: out, Key: inputKey(r), Value: r.Value}); err != nil {
			return err
		}
		if string(r.Value) == "b" && n == 1 {
			return errors.New("the first attempt at b fails after emitting: its output must be dropped")
		}
		return nil
	}), group, consumer.Topics(in), consumer.CommitInterval(100*time.Millisecond),
		consumer.Retry(retry.Blocking(10*time.Millisecond)))
	run(t, c)

	testkit.Eventually(t, 30*time.Second, func() error {
		b := c.Blocked()
		if len(b) != 1 || !b[0].Forwarding || b[0].Offset != 3 || !strings.Contains(b[0].Error, "forward to "+out) {
			return fmt.Errorf("blocked %+v, want the failing output of offset 3", b)
		}
		return nil
	})
	time.Sleep(500 * time.Millisecond) // a few commit intervals
	if got := committed(t, kc.Admin(t), group, in); got[0] > 3 {
		t.Fatalf("committed %v while the output of offset 3 is not acknowledged", got)
	}
	if err := consumer.Emit(context.Background(), &kgo.Record{Topic: out}); !errors.Is(err, consumer.ErrNotInHandler) {
		t.Fatalf("Emit outside a handler: %v, want ErrNotInHandler", err)
	}
	mu.Lock()
	late := saved
	mu.Unlock()
	if err := consumer.Emit(late, &kgo.Record{Topic: out}); !errors.Is(err, consumer.ErrNotInHandler) {
		t.Fatalf("Emit after the handler returned: %v, want ErrNotInHandler", err)
	}
	if _, err := kc.Admin(t).AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Name: "max.message.bytes", Value: ptr("1000000")}}, out); err != nil {
		t.Fatal(err)
	}
	recs := readExactly(t, kc, out, 5, false, time.Second)
	onceEach(t, "outputs", recs, map[string]bool{"0/0": true, "0/1": true, "0/2": true, "0/3": true, "0/4": true})
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := committed(t, kc.Admin(t), group, in); got[0] != 5 {
			return fmt.Errorf("committed %v, want 5", got)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if calls[1] != 2 {
		t.Fatalf("b handled %d times, want 2 (one failed attempt, one retry)", calls[1])
	}
}

func ptr(s string) *string { return &s }

func newTxnConsumer(t *testing.T, kc *testkit.Cluster, h consumer.Handler, group, txnID string, opts ...consumer.Option) *consumer.Consumer {
	t.Helper()
	opts = append([]consumer.Option{consumer.Transactional(txnID)}, opts...)
	return newConsumer(t, kc, h, group, opts...)
}

func TestTransactionalAbortHandlesTheBatchAgain(t *testing.T) {
	kc := testkit.Shared(t)
	const parts, n = 3, 300
	in := kc.NewTopic(t, parts, nil)
	out := kc.NewTopic(t, parts, nil)
	produceSpread(t, kc, in, parts, n, nil)
	var mu sync.Mutex
	calls := map[string]int{}
	var aborted atomic.Bool
	h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		key := string(inputKey(r))
		mu.Lock()
		calls[key]++
		mu.Unlock()
		if err := consumer.Emit(ctx, &kgo.Record{Topic: out, Key: inputKey(r), Value: r.Value}); err != nil {
			return err
		}
		if key == "1/50" && aborted.CompareAndSwap(false, true) {
			// Let the outputs of the transaction so far reach the broker,
			// so the abort has something to undo.
			time.Sleep(300 * time.Millisecond)
			return fmt.Errorf("stock service says retry the whole batch: %w", consumer.ErrAbort)
		}
		return nil
	})
	c := newTxnConsumer(t, kc, h, in, in+"-txn", consumer.Topics(in))
	run(t, c)

	want := spreadIDs(parts, n)
	committedOut := readExactly(t, kc, out, n, true, time.Second)
	onceEach(t, "read_committed outputs", committedOut, want)
	all := readExactly(t, kc, out, n+1, false, time.Second)
	mu.Lock()
	again := 0
	for _, k := range calls {
		if k > 1 {
			again++
		}
	}
	twice := calls["1/50"]
	mu.Unlock()
	if twice != 2 || again < 1 {
		t.Fatalf("1/50 handled %d times, %d records handled again; want the aborted batch handled again", twice, again)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := committed(t, kc.Admin(t), in, in); sum(got) != n {
			return fmt.Errorf("committed %v, want %d", got, n)
		}
		return nil
	})
	t.Logf("abort: %d records handled again; read_committed holds %d outputs, each once; read_uncommitted %d (the aborted attempt's outputs are there, invisible to read_committed)",
		again, len(committedOut), len(all))
}

func TestTransactionalDeadLettersInTheTransaction(t *testing.T) {
	kc := testkit.Shared(t)
	const parts, n = 2, 200
	in := kc.NewTopic(t, parts, nil)
	out := kc.NewTopic(t, parts, nil)
	group := in
	produceSpread(t, kc, in, parts, n, func(i int) string {
		if i%20 == 7 {
			return fmt.Sprintf("bad-%d", i)
		}
		return fmt.Sprintf("ok-%d", i)
	})
	var attempts sync.Map
	h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		v, _ := attempts.LoadOrStore(string(r.Key), new(atomic.Int32))
		v.(*atomic.Int32).Add(1)
		if strings.HasPrefix(string(r.Key), "bad-") {
			// Emitted, then failed: the output must never be seen.
			_ = consumer.Emit(ctx, &kgo.Record{Topic: out, Key: r.Key, Value: []byte("must not be seen")})
			return errors.New("cannot check out " + string(r.Key))
		}
		return consumer.Emit(ctx, &kgo.Record{Topic: out, Key: r.Key, Value: r.Value})
	})
	// Transactions of at most 16 records: the 10 forwards to the retry
	// topic go out in several transactions, so commit markers lie between
	// them (as they do whenever the records arrive in several polls).
	c := newTxnConsumer(t, kc, h, group, group+"-txn", consumer.Topics(in), consumer.Retry(retry.NonBlocking(time.Second)),
		consumer.TransactionBatch(16, 100*time.Millisecond))
	run(t, c)

	wantOK, wantBad := map[string]bool{}, map[string]bool{}
	for i := 0; i < n; i++ {
		if i%20 == 7 {
			wantBad[fmt.Sprintf("bad-%d", i)] = true
		} else {
			wantOK[fmt.Sprintf("ok-%d", i)] = true
		}
	}
	dead := readExactly(t, kc, retry.DLQTopicName(in, group), len(wantBad), true, 2*time.Second)
	onceEach(t, "read_committed dead letters", dead, wantBad)
	for _, d := range dead {
		if info, ok := retry.InfoFor(d); !ok || info.Attempt != 2 || info.Reason != retry.ReasonExhausted {
			t.Fatalf("%s: dead-letter info %+v, want exhausted after 2 attempts", d.Key, info)
		}
	}
	onceEach(t, "read_committed outputs", readExactly(t, kc, out, len(wantOK), true, time.Second), wantOK)
	// The retry topic is written in transactions, so its offsets also count
	// the commit markers, as many as the transactions that forwarded to it:
	// everything in it is consumed when the group's offset on each partition
	// is past the partition's last record.
	retryTopic := retry.TopicName(in, group, 0)
	pastLast := map[int32]int64{}
	for _, r := range readExactly(t, kc, retryTopic, len(wantBad), true, time.Second) {
		pastLast[r.Partition] = max(pastLast[r.Partition], r.Offset+1)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := sum(committed(t, kc.Admin(t), group, in)); got != n {
			return fmt.Errorf("committed %d of %d", got, n)
		}
		if got := committed(t, kc.Admin(t), group, retryTopic); !maps.Equal(got, pastLast) {
			return fmt.Errorf("committed %v on the retry topic, want each partition past its last record %v", got, pastLast)
		}
		return nil
	})
	for k := range wantBad {
		v, _ := attempts.Load(k)
		if got := v.(*atomic.Int32).Load(); got != 2 {
			t.Errorf("%s handled %d times, want 2", k, got)
		}
	}
	t.Logf("%d failing records: each dead-lettered once after its retry, in the transaction of its offset; %d outputs once each; "+
		"the group's offsets on the retry topic %v", len(wantBad), len(wantOK), pastLast)
}

func TestTransactionalFencedZombieStops(t *testing.T) {
	kc := testkit.Shared(t)
	in := kc.NewTopic(t, 2, nil)
	out := kc.NewTopic(t, 2, nil)
	group, id := in, in+"-txn"
	h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		return consumer.Emit(ctx, &kgo.Record{Topic: out, Key: inputKey(r), Value: r.Value})
	})
	a := newTxnConsumer(t, kc, h, group, id, consumer.Topics(in), consumer.SessionTimeout(6*time.Second))
	errA := make(chan error, 1)
	go func() { errA <- a.Run(context.Background()) }()
	defer a.Close(context.Background())
	produceSpread(t, kc, in, 2, 20, nil)
	readExactly(t, kc, out, 20, true, 0)

	b := newTxnConsumer(t, kc, h, group, id, consumer.Topics(in), consumer.SessionTimeout(6*time.Second))
	run(t, b)
	deadline := time.After(60 * time.Second)
	for {
		produceSpread(t, kc, in, 2, 10, nil)
		select {
		case err := <-errA:
			if !errors.Is(err, consumer.ErrFenced) {
				t.Fatalf("the older instance's Run returned %v, want ErrFenced", err)
			}
			t.Logf("older instance stopped: %v", err)
			return
		case <-deadline:
			t.Fatal("the older instance was not fenced")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// runTxnChild is the transform process of TestExactlyOnceAcrossKill: one
// output per input, keyed by the input's partition/offset, in transactional
// mode.
func runTxnChild() {
	out := os.Getenv("WHIPPET_TEST_OUT_TOPIC")
	c, err := consumer.New(whippet.Connection{Brokers: strings.Split(os.Getenv("WHIPPET_TEST_BROKERS"), ",")}, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if r.Offset%5 == 0 {
			// About 20,000 records/s over 4 partitions, so that the kills
			// land in the middle of the stream and of transactions.
			time.Sleep(time.Millisecond)
		}
		return consumer.Emit(ctx, &kgo.Record{Topic: out, Key: inputKey(r), Value: r.Value})
	}), consumer.Group(os.Getenv("WHIPPET_TEST_GROUP")), consumer.Topics(os.Getenv("WHIPPET_TEST_TOPIC")),
		consumer.Transactional(os.Getenv("WHIPPET_TEST_TXN_ID")),
		// The broker's minimum, so a killed process leaves the group soon.
		consumer.SessionTimeout(6*time.Second))
	runChildConsumer(c, err)
}

func TestExactlyOnceAcrossKill(t *testing.T) {
	kc := testkit.Shared(t)
	const parts, n, kills = 4, 100_000, 6
	in := kc.NewTopic(t, parts, nil)
	out := kc.NewTopic(t, parts, nil)
	group := in
	begin := time.Now()
	produceSpread(t, kc, in, parts, n, nil)
	adm := kc.Admin(t)
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=txn", "WHIPPET_TEST_OUT_TOPIC="+out, "WHIPPET_TEST_TXN_ID="+group+"-transform",
			"WHIPPET_TEST_BROKERS="+strings.Join(kc.Brokers, ","), "WHIPPET_TEST_GROUP="+group, "WHIPPET_TEST_TOPIC="+in)
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
				t.Log("child: " + s.Text())
			}
		}()
		return cmd
	}
	progress := func() int64 { return sum(committed(t, adm, group, in)) }
	waitFor := func(target int64) {
		for deadline := time.Now().Add(90 * time.Second); progress() < target; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("committed %d, waiting for %d", progress(), target)
			}
		}
	}

	// Kill at random points spread over the run, each once the restarted
	// process has committed past the previous kill: every kill hits a
	// process that is transforming, not one still joining.
	var killedAt []int64
	for i := range kills {
		target := int64(n/(kills+1)*(i+1) + rand.IntN(n/(kills+1)/2))
		if len(killedAt) > 0 {
			target = max(target, killedAt[len(killedAt)-1]+500+int64(rand.IntN(1500)))
		}
		target = min(target, n-2000)
		cmd := start()
		waitFor(target)
		time.Sleep(time.Duration(rand.IntN(100)) * time.Millisecond) // at a random phase of a transaction
		if err := cmd.Process.Kill(); err != nil {                   // SIGKILL: no abort, no leave
			t.Fatal(err)
		}
		_ = cmd.Wait()
		killedAt = append(killedAt, progress())
	}
	recs := finishTransform(t, kc, start(), progress, out, parts, n, 120*time.Second)
	took := time.Since(begin)
	ends, err := adm.ListEndOffsets(context.Background(), out)
	if err != nil {
		t.Fatal(err)
	}
	var logged int64
	ends.Each(func(o kadm.ListedOffset) { logged += o.Offset })
	t.Logf("%d inputs, killed with SIGKILL %d times (committed %v at the kills): read_committed holds exactly %d outputs, one per input; the output log holds %d offsets (aborted outputs and transaction markers included); %v in all",
		n, len(killedAt), killedAt, len(recs), logged, took.Round(time.Second))
}

// finishTransform lets cmd, a transform child process started after the
// kills, commit every one of the n inputs (spread over parts partitions)
// within the given time, stops it with SIGTERM, and checks that the
// read_committed outputs in out hold each input exactly once; it returns
// them.
func finishTransform(t *testing.T, kc *testkit.Cluster, cmd *exec.Cmd, progress func() int64, out string, parts, n int, within time.Duration) []*kgo.Record {
	t.Helper()
	testkit.Eventually(t, within, func() error {
		if got := progress(); got != int64(n) {
			return fmt.Errorf("committed %d of %d", got, n)
		}
		return nil
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("transform process after SIGTERM: %v", err)
	}
	recs := readExactly(t, kc, out, n, true, 2*time.Second)
	onceEach(t, "read_committed outputs", recs, spreadIDs(parts, n))
	return recs
}

// TestTransactionalShutdownCommitsAndLeaksNothing closes a transactional
// consumer while a handler is in flight, both while the transaction is still
// taking records and after it stopped taking them (its interval passed) and
// waits for its handlers: in both, partition 0 stops right after the record
// in flight.
func TestTransactionalShutdownCommitsAndLeaksNothing(t *testing.T) {
	t.Run("while taking", func(t *testing.T) {
		// A 15s interval: the transaction is still taking records
		// when Close comes.
		testTransactionalShutdown(t, 150, 0, consumer.TransactionBatch(consumer.DefaultTransactionRecords, 15*time.Second))
	})
	t.Run("while waiting", func(t *testing.T) {
		// Every other record handled and the default 100ms interval long
		// past: the transaction waits for the handler in flight when Close
		// comes.
		testTransactionalShutdown(t, 260, time.Second)
	})
}

func testTransactionalShutdown(t *testing.T, handledBeforeClose int32, settle time.Duration, opts ...consumer.Option) {
	kc := testkit.Shared(t)
	const parts, n = 3, 300
	in := kc.NewTopic(t, parts, nil)
	out := kc.NewTopic(t, parts, nil)
	produceSpread(t, kc, in, parts, n, nil)
	adm := kc.Admin(t)
	ignore := goleak.IgnoreCurrent()

	var handled atomic.Int32
	release := make(chan struct{})
	c := newTxnConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if r.Partition == 0 && r.Offset == 60 {
			<-release // in flight when the shutdown begins
		}
		handled.Add(1)
		return consumer.Emit(ctx, &kgo.Record{Topic: out, Key: inputKey(r), Value: r.Value})
	}), in, in+"-txn", append([]consumer.Option{consumer.Topics(in)}, opts...)...)
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	testkit.Eventually(t, 60*time.Second, func() error {
		// The transaction under way waits for offset 60 of partition 0.
		if got := handled.Load(); got < handledBeforeClose {
			return fmt.Errorf("handled %d, waiting for %d", got, handledBeforeClose)
		}
		return nil
	})
	time.Sleep(settle)
	closed := make(chan struct{})
	go func() { c.Close(context.Background()); close(closed) }()
	// Give the shutdown time to reach the step that stops the partitions
	// before the handler in flight returns (nothing outside the consumer
	// can observe that step).
	time.Sleep(2 * time.Second)
	close(release)
	<-closed
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := committed(t, adm, in, in)
	outs := readExactly(t, kc, out, int(sum(got)), true, time.Second)
	if len(outs) != int(sum(got)) {
		t.Fatalf("committed %v (%d) but read_committed holds %d outputs", got, sum(got), len(outs))
	}
	want := map[string]bool{}
	for p, next := range got {
		for o := int64(0); o < next; o++ {
			want[fmt.Sprintf("%d/%d", p, o)] = true
		}
	}
	onceEach(t, "read_committed outputs", outs, want)
	if got[0] != 61 {
		t.Fatalf("committed %v: partition 0 must stop right after the record in flight at the shutdown (61)", got)
	}
	t.Logf("shutdown with a handler in flight: committed %v, %d outputs, each input once", got, len(outs))
	goleak.VerifyNone(t, ignore,
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).read"),
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).read.func1"),
		goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).write"))
}

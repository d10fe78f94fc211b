package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/kvstore"
	"github.com/whippet-go/whippet/retry"
)

// The Go contenders run in their own process (this binary re-executed as
// "bench contender ..."), so that peak RSS is theirs alone. Each prints at
// most one "BACKLOG-DONE" line and then one JSON result line on stdout.

// result is what every contender prints as its last line, Go or JVM.
type result struct {
	Records float64  `json:"records"`
	Seconds float64  `json:"seconds"`
	P50     *float64 `json:"p50_ms"`
	P99     *float64 `json:"p99_ms"`
	// PeakRSS is the contender's VmHWM from /proc/self/status, in kB, read
	// just before it prints the result (in S7, the benchmark process's, see
	// s7Gateway). (wait4's ru_maxrss cannot be used: a
	// child started with vfork and exec carries its parent's high-water mark.)
	PeakRSS int64 `json:"peak_rss_kb"`
	// Extra, scenario-specific counts (retried, dead_lettered, order_violations, ...).
	Extra map[string]any `json:"extra,omitempty"`
}

// vmHWM reads this process's peak resident set size, in kB.
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb); err == nil {
				return kb
			}
		}
	}
	return 0
}

// contenderFlags are the flags of "bench contender".
type contenderFlags struct {
	scenario, who        string
	brokers, topic, out  string
	liveTopic            string
	group                string
	records, live        int
	concurrency          int
	handler, retryDelay  time.Duration
	callCost, recordCost time.Duration
	limit                time.Duration
	binary               string // notify's test binary (S7)
	clients, channels    int    // S7
}

func runContender(args []string) error {
	var f contenderFlags
	fs := flag.NewFlagSet("contender", flag.ContinueOnError)
	fs.StringVar(&f.scenario, "scenario", "", "S1..S7")
	fs.StringVar(&f.who, "who", "", "contender name")
	fs.StringVar(&f.brokers, "brokers", "", "seed brokers, comma-separated")
	fs.StringVar(&f.topic, "topic", "", "input topic")
	fs.StringVar(&f.out, "out", "", "output topic (S5)")
	fs.StringVar(&f.liveTopic, "live-topic", "", "topic of the live records (S1, S3)")
	fs.StringVar(&f.group, "group", "", "consumer group / transactional id")
	fs.IntVar(&f.records, "records", 0, "backlog records (keys in S4)")
	fs.IntVar(&f.live, "live", 0, "live records the harness produces to -live-topic after BACKLOG-DONE")
	fs.IntVar(&f.concurrency, "concurrency", 0, "key-parallel concurrency (S3)")
	fs.DurationVar(&f.handler, "handler", 0, "handler time per record (S3)")
	fs.DurationVar(&f.retryDelay, "retry-delay", time.Second, "retry interval (S2)")
	fs.DurationVar(&f.callCost, "call-cost", 2*time.Millisecond, "the sink's cost per call (S6)")
	fs.DurationVar(&f.recordCost, "record-cost", 2*time.Microsecond, "the sink's cost per record (S6)")
	fs.DurationVar(&f.limit, "limit", 0, "stop after this long on the records/s clock and report the part handled (S6 per record; 0: no limit)")
	fs.StringVar(&f.binary, "binary", "", "notify's test binary (S7)")
	fs.IntVar(&f.clients, "clients", 0, "WebSocket clients (S7)")
	fs.IntVar(&f.channels, "channels", 0, "channels (S7)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// BENCH_CPUPROFILE=prefix writes prefix-<scenario>-<who>.pprof, for
	// looking into a contender's run.
	if prefix := os.Getenv("BENCH_CPUPROFILE"); prefix != "" {
		pf, err := os.Create(fmt.Sprintf("%s-%s-%s.pprof", prefix, f.scenario, f.who))
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	// BENCH_TRACE=prefix writes the run's runtime/trace to
	// prefix-<scenario>-<who>.trace (go tool trace).
	if prefix := os.Getenv("BENCH_TRACE"); prefix != "" {
		tf, err := os.Create(fmt.Sprintf("%s-%s-%s.trace", prefix, f.scenario, f.who))
		if err != nil {
			return err
		}
		if err := trace.Start(tf); err != nil {
			return err
		}
		defer trace.Stop()
	}
	if f.brokers == "" || (f.topic == "" && f.scenario != "S7") || f.records <= 0 {
		return errors.New("contender: -brokers, -topic (but in S7, whose benchmark makes its own) and -records (> 0) are required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var (
		res result
		err error
	)
	switch f.scenario + "/" + f.who {
	case "S1/whippet":
		res, err = s1Whippet(ctx, f)
	case "S1/franz-go":
		res, err = s1Franz(ctx, f)
	case "S2/whippet":
		res, err = s2Whippet(ctx, f)
	case "S3/whippet":
		res, err = s3Whippet(ctx, f)
	case "S3/go-floor":
		res, err = s3Floor(f)
	case "S4/whippet":
		res, err = s4Store(ctx, f)
	case "S4/franz-go":
		res, err = s4Franz(ctx, f, true)
	case "S4/franz-go-consume":
		res, err = s4Franz(ctx, f, false)
	case "S5/whippet":
		res, err = s5Whippet(ctx, f)
	case "S5/franz-go":
		res, err = s5Franz(ctx, f)
	case "S6/whippet-batch":
		res, err = s6WhippetBatch(ctx, f)
	case "S6/whippet-per-record":
		res, err = s6WhippetRecord(ctx, f)
	case "S7/whippet-gateway":
		res, err = s7Gateway(ctx, f)
	default:
		return fmt.Errorf("contender: no Go contender %q for scenario %q", f.who, f.scenario)
	}
	if err != nil {
		return err
	}
	if res.PeakRSS == 0 { // S7's is its benchmark process's
		res.PeakRSS = vmHWM()
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	return nil
}

// topics is the input topic and, if there is one, the live topic.
func (f contenderFlags) topics() []string {
	if f.liveTopic == "" {
		return []string{f.topic}
	}
	return []string{f.topic, f.liveTopic}
}

// epoch anchors the contenders' timestamps; time.Since reads the monotonic clock.
var epoch = time.Now()

// tracker follows a backlog (the records of the input topic below the end
// offsets listed at start) and the live records the harness produces to the
// live topic (a new one per run) after BACKLOG-DONE. A
// backlog record costs a map read and a comparison, with no write shared
// between partitions; a live record (a few thousand per run) records its
// latency, handler end minus the record's timestamp, under a mutex.
type tracker struct {
	liveTopic  string
	lastOffset map[int32]int64 // per partition, the offset of its last backlog record
	backlog    int64
	started    atomic.Bool
	first      atomic.Int64
	mu         sync.Mutex
	finished   int
	last       time.Duration
	backlogC   chan struct{}
	live       int
	lat        []float64
	liveC      chan struct{}
}

func newTracker(ctx context.Context, f contenderFlags) (*tracker, error) {
	brokers, topic, live := f.brokers, f.topic, f.live
	if live > 0 && f.liveTopic == "" {
		return nil, errors.New("contender: -live needs -live-topic")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	t := &tracker{liveTopic: f.liveTopic, lastOffset: map[int32]int64{}, backlogC: make(chan struct{}), live: live, liveC: make(chan struct{})}
	ends.Each(func(o kadm.ListedOffset) {
		t.lastOffset[o.Partition] = o.Offset - 1
		t.backlog += o.Offset
	})
	if live == 0 {
		close(t.liveC)
	}
	return t, nil
}

func (t *tracker) record(r *kgo.Record) {
	if !t.started.Load() && t.started.CompareAndSwap(false, true) {
		t.first.Store(int64(time.Since(epoch)))
	}
	if r.Topic == t.liveTopic {
		ms := float64(time.Now().UnixMilli() - r.Timestamp.UnixMilli())
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.lat = append(t.lat, ms); len(t.lat) == t.live {
			close(t.liveC)
		}
		return
	}
	if r.Offset == t.lastOffset[r.Partition] {
		now := time.Since(epoch)
		t.mu.Lock()
		defer t.mu.Unlock()
		t.last = max(t.last, now)
		if t.finished++; t.finished == len(t.lastOffset) {
			close(t.backlogC)
		}
	}
}

// wait announces the end of the backlog, waits for the live records and
// returns the result.
func (t *tracker) wait(ctx context.Context) (result, error) {
	select {
	case <-t.backlogC:
	case <-ctx.Done():
		return result{}, fmt.Errorf("backlog: %d of %d partitions finished: %w", t.finished, len(t.lastOffset), ctx.Err())
	}
	fmt.Println("BACKLOG-DONE")
	select {
	case <-t.liveC:
	case <-ctx.Done():
		return result{}, fmt.Errorf("live: %d of %d records: %w", len(t.lat), t.live, ctx.Err())
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	res := result{Records: float64(t.backlog), Seconds: (t.last - time.Duration(t.first.Load())).Seconds()}
	res.P50, res.P99 = percentiles(t.lat)
	return res, nil
}

func percentiles(xs []float64) (p50, p99 *float64) {
	if len(xs) == 0 {
		return nil, nil
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	a, b := s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]
	return &a, &b
}

func runConsumer(ctx context.Context, c *consumer.Consumer, t *tracker) (result, error) {
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	res, err := t.wait(ctx)
	_ = c.Close(context.Background())
	if rerr := <-errc; err == nil && rerr != nil && !errors.Is(rerr, context.Canceled) {
		err = rerr
	}
	return res, err
}

func s1Whippet(ctx context.Context, f contenderFlags) (result, error) {
	t, err := newTracker(ctx, f)
	if err != nil {
		return result{}, err
	}
	h := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error { t.record(r); return nil })
	c, err := consumer.New(whippet.Connection{Brokers: strings.Split(f.brokers, ",")}, h, consumer.Group(f.group), consumer.Topics(f.topics()...))
	if err != nil {
		return result{}, err
	}
	return runConsumer(ctx, c, t)
}

// s1Franz is the plain franz-go group consumer a user writes without a
// library: a PollFetches loop with autocommit.
func s1Franz(ctx context.Context, f contenderFlags) (result, error) {
	t, err := newTracker(ctx, f)
	if err != nil {
		return result{}, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(f.brokers, ",")...), kgo.ConsumerGroup(f.group),
		kgo.ConsumeTopics(f.topics()...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return result{}, err
	}
	defer cl.Close()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for pctx.Err() == nil {
			cl.PollFetches(pctx).EachRecord(t.record)
		}
	}()
	return t.wait(ctx)
}

// s2Whippet: non-blocking retries; records whose key starts with 'f' fail on
// the main topic and succeed on their retry. Timed from the first record
// handled to the last success; the latency is a retried record's lateness:
// handled minus due (first failure + retry delay).
func s2Whippet(ctx context.Context, f contenderFlags) (result, error) {
	var (
		first, last atomic.Int64
		mu          sync.Mutex
		handled     = map[string]bool{} // keys handled successfully: a redelivery counts once
		failedAt    = map[string]time.Duration{}
		late        []float64
		done        = make(chan struct{})
	)
	errFail := errors.New("fails on its first attempt")
	finish := func(key []byte, now time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if handled[string(key)] {
			return
		}
		handled[string(key)] = true
		last.Store(max(last.Load(), int64(now)))
		if len(handled) == f.records {
			close(done)
		}
	}
	h := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		now := time.Since(epoch)
		first.CompareAndSwap(0, int64(now))
		if len(r.Key) > 0 && r.Key[0] == 'f' {
			mu.Lock()
			if r.Topic == f.topic {
				if _, seen := failedAt[string(r.Key)]; !seen {
					failedAt[string(r.Key)] = now
				}
				mu.Unlock()
				return errFail
			}
			if at, seen := failedAt[string(r.Key)]; seen && !handled[string(r.Key)] {
				late = append(late, float64(now-at-f.retryDelay)/float64(time.Millisecond))
			}
			mu.Unlock()
		}
		finish(r.Key, now)
		return nil
	})
	c, err := consumer.New(whippet.Connection{Brokers: strings.Split(f.brokers, ",")}, h, consumer.Group(f.group), consumer.Topics(f.topic),
		consumer.Retry(retry.NonBlocking(f.retryDelay)), consumer.RetryReplicationFactor(1))
	if err != nil {
		return result{}, err
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	var werr error
	select {
	case <-done:
	case <-ctx.Done():
		mu.Lock()
		werr = fmt.Errorf("handled %d of %d: %w", len(handled), f.records, ctx.Err())
		mu.Unlock()
	case err := <-errc:
		return result{}, fmt.Errorf("consumer stopped: %w", err)
	}
	_ = c.Close(context.Background())
	if err := <-errc; werr == nil && err != nil {
		werr = err
	}
	if werr != nil {
		return result{}, werr
	}
	mu.Lock()
	defer mu.Unlock()
	res := result{Records: float64(f.records), Seconds: time.Duration(last.Load() - first.Load()).Seconds(),
		Extra: map[string]any{"retried": len(late), "dead_lettered": 0}}
	res.P50, res.P99 = percentiles(late)
	return res, nil
}

// s3Whippet: key-parallel mode with the handler sleeping f.handler; it also
// counts per-key order violations (none expected).
func s3Whippet(ctx context.Context, f contenderFlags) (result, error) {
	t, err := newTracker(ctx, f)
	if err != nil {
		return result{}, err
	}
	var (
		mu         sync.Mutex
		lastOffset = map[string]int64{} // per topic/partition and key
		violations int
	)
	h := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
		time.Sleep(f.handler)
		mu.Lock()
		k := fmt.Sprintf("%s/%d/%s", r.Topic, r.Partition, r.Key)
		if prev, seen := lastOffset[k]; seen && prev >= r.Offset {
			violations++
		}
		lastOffset[k] = r.Offset
		mu.Unlock()
		t.record(r)
		return nil
	})
	c, err := consumer.New(whippet.Connection{Brokers: strings.Split(f.brokers, ",")}, h, consumer.Group(f.group), consumer.Topics(f.topics()...),
		consumer.KeyParallel(f.concurrency))
	if err != nil {
		return result{}, err
	}
	res, err := runConsumer(ctx, c, t)
	mu.Lock()
	res.Extra = map[string]any{"order_violations": violations}
	mu.Unlock()
	return res, err
}

// s3Floor is S3 without Kafka: s3Whippet's handler (the sleep, then the
// order check's lock, key and map) run f.records times by f.concurrency
// goroutines, timed like the contenders (first record handled → last). It
// is the rate the Go runtime allows this handler on this machine: a 5 ms
// time.Sleep wakes late by a fraction of a millisecond (timers fire from
// the scheduler and from epoll waits of whole milliseconds), so no Go
// consumer reaches the ideal rate of the title.
func s3Floor(f contenderFlags) (result, error) {
	if f.concurrency <= 0 || f.handler <= 0 {
		return result{}, errors.New("contender: S3/go-floor needs -concurrency and -handler")
	}
	var (
		next, first, last atomic.Int64
		mu                sync.Mutex
		lastOffset        = map[string]int64{}
		wg                sync.WaitGroup
	)
	first.Store(math.MaxInt64)
	for range f.concurrency {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(f.records); i = next.Add(1) - 1 {
				time.Sleep(f.handler)
				mu.Lock()
				k := fmt.Sprintf("%s/%d/key-%d", f.topic, 0, i%1000)
				lastOffset[k] = i
				mu.Unlock()
				now := int64(time.Since(epoch))
				for old := first.Load(); now < old && !first.CompareAndSwap(old, now); old = first.Load() {
				}
				for old := last.Load(); now > old && !last.CompareAndSwap(old, now); old = last.Load() {
				}
			}
		})
	}
	wg.Wait()
	return result{Records: float64(f.records), Seconds: time.Duration(last.Load() - first.Load()).Seconds()}, nil
}

// s4Store loads the compacted topic into a kvstore.Store, timed from Open to
// WaitReady.
func s4Store(ctx context.Context, f contenderFlags) (result, error) {
	start := time.Now()
	s, err := kvstore.Open(ctx, whippet.Connection{Brokers: strings.Split(f.brokers, ",")}, f.topic, codec.String(), codec.String())
	if err != nil {
		return result{}, err
	}
	defer func() { _ = s.Close(context.Background()) }()
	if err := s.WaitReady(ctx); err != nil {
		return result{}, err
	}
	d := time.Since(start)
	if s.Len() != f.records {
		return result{}, fmt.Errorf("store has %d entries, want %d", s.Len(), f.records)
	}
	return result{Records: float64(f.records), Seconds: d.Seconds()}, nil
}

// s4Franz is the loader a user writes with plain franz-go: a direct consumer
// from the start into a map[string]string (keep), until the end offsets
// listed at start, timed from client creation. Without keep it is a plain
// consume of the topic that keeps nothing: the yardstick of a cold load.
func s4Franz(ctx context.Context, f contenderFlags, keep bool) (result, error) {
	start := time.Now()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(f.brokers, ",")...), kgo.ConsumeTopics(f.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return result{}, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, f.topic)
	if err != nil {
		return result{}, err
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset - 1
		}
	})
	m := map[string]string{}
	seen := 0
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return result{}, ctx.Err()
		}
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			seen += len(p.Records)
			for _, r := range p.Records {
				if !keep {
					break
				}
				if r.Value == nil {
					delete(m, string(r.Key))
				} else {
					m[string(r.Key)] = string(r.Value)
				}
			}
			if n := len(p.Records); n > 0 && p.Records[n-1].Offset >= left[p.Partition] {
				delete(left, p.Partition)
			}
		})
	}
	d := time.Since(start)
	if keep && len(m) != f.records || seen < f.records {
		return result{}, fmt.Errorf("map has %d entries from %d records, want %d", len(m), seen, f.records)
	}
	return result{Records: float64(f.records), Seconds: d.Seconds()}, nil
}

// committed polls the group's committed offsets on topic every 10ms until
// they add up to n, and returns when that was seen.
func committed(ctx context.Context, brokers, group, topic string, n int64) (time.Duration, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	var done int64
	for ctx.Err() == nil {
		offs, err := adm.FetchOffsets(ctx, group)
		done = 0
		if err == nil {
			offs.Each(func(o kadm.OffsetResponse) {
				if o.Topic == topic && o.Err == nil {
					done += o.At
				}
			})
		}
		if done == n {
			return time.Since(epoch), nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, fmt.Errorf("committed %d of %d: %w", done, n, ctx.Err())
}

// s5Whippet: exactly-once transform with consumer.Transactional and Emit, one
// output per input; timed from the first handler call until every input
// offset is committed.
func s5Whippet(ctx context.Context, f contenderFlags) (result, error) {
	var first atomic.Int64
	h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		first.CompareAndSwap(0, int64(time.Since(epoch)))
		return consumer.Emit(ctx, &kgo.Record{Topic: f.out, Key: r.Key, Value: r.Value})
	})
	opts := []consumer.Option{consumer.Group(f.group), consumer.Topics(f.topic),
		consumer.Transactional(f.group)}
	// BENCH_S5_TXN_RECORDS sets TransactionBatch's record bound (the
	// interval stays the default), to look into what the batch size costs;
	// the table is made with whippet's defaults.
	if v := os.Getenv("BENCH_S5_TXN_RECORDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return result{}, fmt.Errorf("BENCH_S5_TXN_RECORDS=%q: %w", v, err)
		}
		opts = append(opts, consumer.TransactionBatch(n, consumer.DefaultTransactionInterval))
	}
	c, err := consumer.New(whippet.Connection{Brokers: strings.Split(f.brokers, ",")}, h, opts...)
	if err != nil {
		return result{}, err
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	last, werr := committed(ctx, f.brokers, f.group, f.topic, int64(f.records))
	_ = c.Close(context.Background())
	if err := <-errc; werr == nil && err != nil {
		werr = err
	}
	if werr != nil {
		return result{}, werr
	}
	return result{Records: float64(f.records), Seconds: (last - time.Duration(first.Load())).Seconds()}, nil
}

// s5Franz is the plain franz-go exactly-once loop from franz-go's
// transactions example: a GroupTransactSession, each poll's records
// transformed inside one transaction, ended with TryCommit.
func s5Franz(ctx context.Context, f contenderFlags) (result, error) {
	s, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(strings.Split(f.brokers, ",")...),
		kgo.TransactionalID(f.group),
		kgo.ConsumerGroup(f.group),
		kgo.ConsumeTopics(f.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	if err != nil {
		return result{}, err
	}
	defer s.Close()
	var first atomic.Int64
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	loopErr := make(chan error, 1)
	go func() {
		for lctx.Err() == nil {
			fs := s.PollFetches(lctx)
			if lctx.Err() != nil {
				loopErr <- nil
				return
			}
			if fs.Empty() {
				continue
			}
			first.CompareAndSwap(0, int64(time.Since(epoch)))
			if err := s.Begin(); err != nil {
				loopErr <- fmt.Errorf("begin: %w", err)
				return
			}
			var perr atomic.Value
			fs.EachRecord(func(r *kgo.Record) {
				s.Produce(lctx, &kgo.Record{Topic: f.out, Key: r.Key, Value: r.Value}, func(_ *kgo.Record, err error) {
					if err != nil {
						perr.Store(err)
					}
				})
			})
			if err := s.Client().Flush(lctx); err != nil && lctx.Err() == nil {
				perr.Store(err)
			}
			commit := kgo.TransactionEndTry(perr.Load() == nil)
			if _, err := s.End(lctx, commit); err != nil && lctx.Err() == nil {
				loopErr <- fmt.Errorf("end: %w", err)
				return
			}
		}
		loopErr <- nil
	}()
	last, werr := committed(ctx, f.brokers, f.group, f.topic, int64(f.records))
	cancel()
	if err := <-loopErr; werr == nil && err != nil {
		werr = err
	}
	if werr != nil {
		return result{}, werr
	}
	return result{Records: float64(f.records), Seconds: (last - time.Duration(first.Load())).Seconds()}, nil
}

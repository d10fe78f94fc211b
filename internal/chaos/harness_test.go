//go:build chaos

package chaos_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/testkit"
	"github.com/whippet-go/whippet/testkit/localkafka"
)

// childEnv makes this test binary a child process (a consumer the tests
// SIGKILL) instead of running the tests; its value is the child's mode.
const childEnv = "WHIPPET_CHAOS_CHILD"

func TestMain(m *testing.M) {
	switch mode := os.Getenv(childEnv); mode {
	case "":
	case "consumer":
		runConsumerChild()
		return
	case "retry":
		runRetryChild()
		return
	case "spool":
		runSpoolChild()
		return
	default:
		fmt.Fprintf(os.Stderr, "%s=%q: unknown child mode\n", childEnv, mode)
		os.Exit(2)
	}
	goleak.VerifyTestMain(m)
}

// runChildConsumer is the end of a child process's main: it runs a
// consumer of $WHIPPET_CHAOS_BROKERS, logging to childLogger, until SIGTERM
// (or until the test SIGKILLs the process), and exits 2 if the consumer
// cannot be made, 1 if Run fails.
func runChildConsumer(h consumer.Handler, opts ...consumer.Option) {
	conn := whippet.Connection{Brokers: strings.Split(os.Getenv("WHIPPET_CHAOS_BROKERS"), ","), Logger: childLogger()}
	c, err := consumer.New(conn, h, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := c.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// reservedBase is the base port tried first (nodes at +0, +10, +20 and the
// controllers at +1); the others are looked for as localkafka's own tests
// do: below the ephemeral range, away from 19092 and 29092.
const reservedBase = 25192

// env is the 3-node cluster the scenarios share, and an admin client with
// short timeouts for watching it: a frozen broker must not hang the test's
// own observations for kgo's default 10s request overhead.
type env struct {
	lk  *localkafka.Cluster
	kc  *testkit.Cluster
	mon *kadm.Client
}

// startCluster starts a fresh 3-node cluster (replication 3,
// min.insync.replicas 2) in WHIPPET_CHAOS_STATE_DIR (default
// <tmp>/whippet-chaos-<uid>), stopping whatever an aborted run left there,
// and stops it when the test ends.
func startCluster(t *testing.T) *env {
	t.Helper()
	dir := os.Getenv("WHIPPET_CHAOS_STATE_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "whippet-chaos-"+strconv.Itoa(os.Getuid()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// WHIPPET_CHAOS_REUSE=1 (for working on the tests) reuses a healthy
	// cluster left running in the state dir and leaves it running.
	reuse := os.Getenv("WHIPPET_CHAOS_REUSE") != ""
	if !reuse {
		if err := localkafka.Down(ctx, dir); err != nil && !errors.Is(err, localkafka.ErrNotRunning) {
			t.Fatalf("stopping the cluster a previous run left in %s: %v", dir, err)
		}
	}
	cfg := localkafka.Config{
		Version:      os.Getenv("KAFKA_VERSION"),
		Nodes:        3,
		StateDir:     dir,
		BasePort:     freeBase(t, dir, reuse),
		StartTimeout: 3 * time.Minute,
		Overrides: map[string]string{
			// Kafka's defaults rather than localkafka's faster 500ms/3s:
			// on a loaded 2-core machine the controller then fences live
			// brokers that missed a few heartbeats, chaos the scenarios did
			// not ask for; and recovery times are what a production
			// cluster with default settings gives.
			"broker.heartbeat.interval.ms": "2000",
			"broker.session.timeout.ms":    "9000",
			// Kafka's default (24h) rather than localkafka's 100ms: a
			// restarted broker catching up from a leader that already
			// dropped a tombstone never gets it and keeps the older value,
			// which it serves when it leads again (a deleted key came
			// back in the KV scenario).
			"log.cleaner.delete.retention.ms": "86400000",
			// A restarted broker takes back the leadership of its
			// partitions within seconds (default 300s), so a restart also
			// moves leaders back under the clients' feet, as in production
			// where the default interval has long passed.
			"leader.imbalance.check.interval.seconds": "5",
		},
	}
	if testing.Verbose() {
		cfg.Stdout = os.Stdout
	}
	start := time.Now()
	lk, err := localkafka.Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for i, alive := range lk.Alive() {
			if alive {
				_ = lk.Resume(i + 1) // a failed scenario may leave a node frozen
			}
		}
		if reuse {
			return
		}
		if err := localkafka.Down(ctx, dir); err != nil {
			t.Errorf("stopping the cluster: %v", err)
		}
	})
	t.Logf("Apache Kafka %s, 3 nodes at %v, ready in %v (logs: %s)", lk.Version, lk.Brokers,
		time.Since(start).Round(100*time.Millisecond), strings.Join(lk.LogPaths, " "))

	cl, err := kgo.NewClient(watchOpts(lk.Brokers)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &env{
		lk:  lk,
		kc:  &testkit.Cluster{Brokers: lk.Brokers, Backend: testkit.BackendLocal, Version: lk.Version, Real: true},
		mon: kadm.NewClient(cl),
	}
}

// watchOpts are the options of the test's own observing clients: they give
// up on a silent broker after 2s instead of kgo's 10s overhead, so that the
// test measures the recovery of whippet's clients rather than its own.
func watchOpts(brokers []string) []kgo.Opt {
	return []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.DialTimeout(time.Second),
		kgo.RequestTimeoutOverhead(2 * time.Second),
		kgo.RetryTimeout(5 * time.Second),
		kgo.MetadataMinAge(250 * time.Millisecond),
	}
}

// freeBase returns WHIPPET_CHAOS_BASE_PORT, or reservedBase if its ports
// are free, or the first free base of localkafka's test range.
func freeBase(t *testing.T, dir string, reuse bool) int {
	t.Helper()
	if c, err := localkafka.Load(dir); reuse && err == nil {
		if _, port, err := net.SplitHostPort(c.Brokers[0]); err == nil {
			n, _ := strconv.Atoi(port)
			return n
		}
	}
	if s := os.Getenv("WHIPPET_CHAOS_BASE_PORT"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("WHIPPET_CHAOS_BASE_PORT=%q is not a number", s)
		}
		return n
	}
	for _, base := range append([]int{reservedBase}, rangeBases()...) {
		if portsFree(base) {
			return base
		}
	}
	t.Fatal("no free range of ports for 3 nodes in 21092..29000")
	return 0
}

func rangeBases() []int {
	var b []int
	for base := 21092; base < 29000; base += 500 {
		b = append(b, base)
	}
	return b
}

func portsFree(base int) bool {
	for node := range 3 {
		for _, port := range []int{base + node*10, base + node*10 + 1} {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err != nil {
				return false
			}
			l.Close()
		}
	}
	return true
}

// ctxT is a context bounded by d and canceled when the test ends.
func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// leaderOf returns the node (1-based, = broker id) leading partition p of
// topic.
func (e *env) leaderOf(t testing.TB, topic string, p int32) int {
	t.Helper()
	var leader int
	testkit.Eventually(t, 30*time.Second, func() error {
		td, err := e.mon.ListTopics(ctxT(t, 5*time.Second), topic)
		if err != nil {
			return err
		}
		pd, ok := td[topic].Partitions[p]
		if !ok || pd.Leader < 1 {
			return fmt.Errorf("%s[%d] has no leader yet", topic, p)
		}
		leader = int(pd.Leader)
		return nil
	})
	return leader
}

// roles describes what node does for the logs: the partitions it leads.
func (e *env) roles(t testing.TB, node int, topics ...string) string {
	td, err := e.mon.ListTopics(ctxT(t, 5*time.Second), topics...)
	if err != nil {
		return "unknown roles: " + err.Error()
	}
	var led []string
	for _, topic := range td.Sorted() {
		for _, p := range topic.Partitions.Sorted() {
			if int(p.Leader) == node {
				led = append(led, fmt.Sprintf("%s[%d]", topic.Topic, p.Partition))
			}
		}
	}
	return fmt.Sprintf("node %d leads %d partition(s): %s", node, len(led), strings.Join(led, " "))
}

// waitHealthy waits until every node runs and every partition of the
// topics (and of the internal topics) has its 3 replicas in sync, so that
// the next fault starts from a healthy cluster.
func (e *env) waitHealthy(t testing.TB, topics ...string) {
	t.Helper()
	testkit.Eventually(t, 3*time.Minute, func() error {
		for i, alive := range e.lk.Alive() {
			if !alive {
				return fmt.Errorf("node %d is not running", i+1)
			}
		}
		td, err := e.mon.ListTopics(ctxT(t, 5*time.Second), append(topics, "__consumer_offsets", "__transaction_state")...)
		if err != nil {
			return err
		}
		for _, topic := range td.Sorted() {
			if topic.Err != nil {
				return fmt.Errorf("%s: %w", topic.Topic, topic.Err)
			}
			for _, p := range topic.Partitions.Sorted() {
				if len(p.ISR) != 3 || p.Leader < 1 {
					return fmt.Errorf("%s[%d]: leader %d, ISR %v", topic.Topic, p.Partition, p.Leader, p.ISR)
				}
			}
		}
		return nil
	})
}

// restart starts node again after a kill. localkafka's Start once reported
// "node 3 exited after restart" for a node that ran on (its log shows it
// registering, and no second launch): when Start fails but the node runs,
// the test goes on and waitHealthy checks that the node is back.
func (e *env) restart(t testing.TB, node int) {
	t.Helper()
	begin := time.Now()
	if err := e.lk.Start(ctxT(t, 3*time.Minute), node); err != nil {
		if !e.lk.Alive()[node-1] {
			t.Fatal(err)
		}
		t.Logf("localkafka Start: %v; but node %d runs: waiting for it to rejoin", err, node)
	}
	t.Logf("node %d restarted in %v", node, time.Since(begin).Round(100*time.Millisecond))
}

// endOffsets returns the end offset of each partition of topic.
func (e *env) endOffsets(t testing.TB, topic string) map[int32]int64 {
	t.Helper()
	var out map[int32]int64
	testkit.Eventually(t, 30*time.Second, func() error {
		ends, err := e.mon.ListEndOffsets(ctxT(t, 5*time.Second), topic)
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			return err
		}
		out = map[int32]int64{}
		ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
		return nil
	})
	return out
}

// committed returns group's committed offset of each partition of topic
// (missing partitions have none), or an error.
func (e *env) committed(ctx context.Context, group, topic string) (map[int32]int64, error) {
	offs, err := e.mon.FetchOffsets(ctx, group)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			out[o.Partition] = o.At
		}
	})
	return out, nil
}

// waitCommitted waits until group committed every partition of topic to its
// end offset (topics without transaction markers only).
func (e *env) waitCommitted(t testing.TB, d time.Duration, group string, topics ...string) {
	t.Helper()
	testkit.Eventually(t, d, func() error {
		for _, topic := range topics {
			ends := e.endOffsets(t, topic)
			got, err := e.committed(ctxT(t, 5*time.Second), group, topic)
			if err != nil {
				return err
			}
			for p, end := range ends {
				if got[p] != end && end > 0 {
					return fmt.Errorf("%s committed %v of %s, end offsets %v", group, got, topic, ends)
				}
			}
		}
		return nil
	})
}

// readAll reads topic from the start up to its end offsets as they are now
// (read_committed or not), with a direct (group-less) client.
func (e *env) readAll(t testing.TB, topic string, committedOnly bool) []*kgo.Record {
	t.Helper()
	ctx := ctxT(t, 2*time.Minute)
	level := kgo.ReadUncommitted()
	if committedOnly {
		level = kgo.ReadCommitted()
	}
	var left map[int32]int64
	testkit.Eventually(t, 30*time.Second, func() error {
		var ends kadm.ListedOffsets
		var err error
		if committedOnly {
			ends, err = e.mon.ListCommittedOffsets(ctx, topic) // last stable offsets
		} else {
			ends, err = e.mon.ListEndOffsets(ctx, topic)
		}
		if err == nil {
			err = ends.Error()
		}
		if err != nil {
			return err
		}
		left = map[int32]int64{}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Offset > 0 {
				left[o.Partition] = o.Offset
			}
		})
		return nil
	})
	cl := e.kc.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(level), kgo.KeepControlRecords(), kgo.FetchMaxWait(200*time.Millisecond))
	defer cl.Close()
	var all []*kgo.Record
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("reading %s: %v; partitions not read to their end: %v", topic, err, left)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				all = append(all, r)
			}
			if end, ok := left[r.Partition]; ok && r.Offset >= end-1 {
				delete(left, r.Partition)
			}
		})
	}
	return all
}

// child is this test binary run as a consumer process, for a test to
// SIGKILL. Its stderr goes to the test log.
type child struct {
	name string
	cmd  *exec.Cmd
}

// startChild runs this binary in mode with vars added to the environment.
// The child is killed when the test ends if it still runs.
func startChild(t *testing.T, name, mode string, vars ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"="+mode), vars...)
	cmd.Stdout = &logWriter{t: t, prefix: name + ": "}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{name: name, cmd: cmd}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return c
}

// kill SIGKILLs the child (no shutdown, no commit, no leave) and waits for
// it to be gone.
func (c *child) kill(t testing.TB) time.Time {
	t.Helper()
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	at := time.Now()
	_ = c.cmd.Wait()
	return at
}

// stop SIGTERMs the child and fails the test unless it exits cleanly.
func (c *child) stop(t testing.TB) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	if err := c.cmd.Wait(); err != nil {
		t.Errorf("%s after SIGTERM: %v", c.name, err)
	}
}

// childLogger is the logger of the consumers in child processes: errors
// only, or everything from info up with WHIPPET_CHAOS_DEBUG=1.
func childLogger() *zap.Logger {
	level := zap.ErrorLevel
	if os.Getenv("WHIPPET_CHAOS_DEBUG") != "" {
		level = zap.InfoLevel
	}
	cfg := zap.NewDevelopmentConfig()
	cfg.Level = zap.NewAtomicLevelAt(level)
	cfg.DisableStacktrace = true
	cfg.EncoderConfig.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
	l, err := cfg.Build()
	if err != nil {
		return zap.NewNop()
	}
	return l
}

// logWriter sends each line written to it to the test log. exec.Cmd's
// copying goroutine is its only writer, and Wait waits for it, so nothing
// is logged after the test ends.
type logWriter struct {
	t      testing.TB
	prefix string
	buf    []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.t.Log(w.prefix + string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

// tail reads the lines appended to a file since its last call, as fields.
type tail struct {
	path    string
	pos     int64
	partial []byte
}

func (tl *tail) next(t testing.TB) [][]string {
	t.Helper()
	f, err := os.Open(tl.path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, tl.pos, 1<<40))
	if err != nil {
		t.Fatal(err)
	}
	tl.pos += int64(len(b))
	b = append(tl.partial, b...)
	var out [][]string
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		out = append(out, strings.Fields(string(b[:i])))
		b = b[i+1:]
	}
	tl.partial = slices.Clone(b)
	return out
}

// event is one unit of progress of a component: a record of partition p at
// offset off acknowledged, handled or committed at time at.
type event struct {
	at  time.Time
	p   int32
	off int64
}

// progress records a component's events.
type progress struct {
	mu sync.Mutex
	ev []event
}

func (g *progress) add(p int32, off int64) { g.addAt(time.Now(), p, off) }

func (g *progress) addAt(at time.Time, p int32, off int64) {
	g.mu.Lock()
	g.ev = append(g.ev, event{at, p, off})
	g.mu.Unlock()
}

func (g *progress) events() []event {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.ev)
}

// recovery returns how long after the fault at t0 the component made
// progress again on every partition of parts: for each partition, the time
// from t0 to the first event past the highest offset it had reached before
// t0 (duplicates of older records do not count), and the largest of these.
// ok is false if a partition never progressed after t0.
func recovery(ev []event, t0 time.Time, parts int32) (d time.Duration, ok bool) {
	reached := make([]int64, parts)
	first := make([]time.Time, parts)
	for i := range reached {
		reached[i] = -1
	}
	for _, e := range ev {
		if e.at.Before(t0) && e.off > reached[e.p] {
			reached[e.p] = e.off
		}
	}
	for _, e := range ev {
		if !e.at.Before(t0) && e.off > reached[e.p] && (first[e.p].IsZero() || e.at.Before(first[e.p])) {
			first[e.p] = e.at
		}
	}
	for _, f := range first {
		if f.IsZero() {
			return 0, false
		}
		d = max(d, f.Sub(t0))
	}
	return d, true
}

// row is one line of the table TestChaos prints.
type row struct {
	scenario string
	records  int
	lost     int
	dup      int
	recover  string
	notes    string
}

var results struct {
	mu   sync.Mutex
	rows []row
}

func report(r row) {
	results.mu.Lock()
	results.rows = append(results.rows, r)
	results.mu.Unlock()
}

// table renders the rows as a Markdown table.
func table(rows []row) string {
	var b strings.Builder
	b.WriteString("| scenario | records | lost | duplicated | time to recover | notes |\n")
	b.WriteString("|---|---:|---:|---:|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %s |\n", r.scenario, r.records, r.lost, r.dup, r.recover, r.notes)
	}
	return b.String()
}

// secs formats a duration as seconds with one decimal.
func secs(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

// spread formats recovery times: the largest, and the median when there
// are several.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n/a"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 1 {
		return secs(s[0])
	}
	return fmt.Sprintf("max %s, median %s (%d faults)", secs(s[len(s)-1]), secs(s[len(s)/2]), len(s))
}

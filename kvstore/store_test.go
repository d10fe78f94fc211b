package kvstore_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/kvstore"
	"github.com/whippet-go/whippet/testkit"
)

// Value is the value type of most tests.
type Value struct {
	Version int    `json:"version"`
	Text    string `json:"text"`
}

// kfakeGoroutines are the in-process kfake broker's connection goroutines
// (not the store's) when the tests run on kfake.
var kfakeGoroutines = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).read"),
	goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).read.func1"),
	goleak.IgnoreAnyFunction("github.com/twmb/franz-go/pkg/kfake.(*clientConn).write"),
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// openStore opens a store on topic (which it creates unless it exists),
// waits until it is ready, and closes it when the test ends.
func openStore(t testing.TB, kc *testkit.Cluster, topic string, opts ...kvstore.Option) *kvstore.Store[string, Value] {
	t.Helper()
	return openStoreConn(t, whippet.Connection{Brokers: kc.Brokers}, topic, opts...)
}

// openStoreConn is openStore with a Connection of the test's own (a Logger,
// a Registerer, ...).
func openStoreConn(t testing.TB, conn whippet.Connection, topic string, opts ...kvstore.Option) *kvstore.Store[string, Value] {
	t.Helper()
	s := openStoreNoWaitConn(t, conn, topic, opts...)
	if err := s.WaitReady(ctxT(t, 60*time.Second)); err != nil {
		t.Fatal(err)
	}
	return s
}

func openStoreNoWait(t testing.TB, kc *testkit.Cluster, topic string, opts ...kvstore.Option) *kvstore.Store[string, Value] {
	t.Helper()
	return openStoreNoWaitConn(t, whippet.Connection{Brokers: kc.Brokers}, topic, opts...)
}

func openStoreNoWaitConn(t testing.TB, conn whippet.Connection, topic string, opts ...kvstore.Option) *kvstore.Store[string, Value] {
	t.Helper()
	s, err := kvstore.Open(ctxT(t, 30*time.Second), conn, topic, codec.String(), codec.JSON[Value](), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// newCompactedTopic creates a compacted topic for a test and deletes it
// afterwards.
func newCompactedTopic(t testing.TB, kc *testkit.Cluster, partitions int32, extra ...string) string {
	t.Helper()
	cfg := map[string]*string{"cleanup.policy": new("compact")}
	for i := 0; i+1 < len(extra); i += 2 {
		cfg[extra[i]] = new(extra[i+1])
	}
	return kc.NewTopic(t, partitions, cfg)
}

func TestPutGetDeleteReadsYourWrites(t *testing.T) {
	kc := testkit.Shared(t)
	ignore := goleak.IgnoreCurrent()
	topic := newCompactedTopic(t, kc, 3)
	s := openStore(t, kc, topic)
	ctx := ctxT(t, 60*time.Second)
	if s.Len() != 0 || !s.Ready() {
		t.Fatalf("empty topic: Len %d Ready %v", s.Len(), s.Ready())
	}
	for i := range 50 {
		k := fmt.Sprintf("k%02d", i)
		if err := s.Put(ctx, k, Value{Version: 1, Text: k}); err != nil {
			t.Fatal(err)
		}
		// Read your writes: no waiting.
		if v, ok := s.Get(k); !ok || v.Version != 1 {
			t.Fatalf("Get(%q) right after Put = %v, %v", k, v, ok)
		}
	}
	if err := s.Put(ctx, "k07", Value{Version: 2}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "k08"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "never-there"); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Get("k07"); v.Version != 2 {
		t.Fatalf("k07 = %v after update", v)
	}
	if _, ok := s.Get("k08"); ok {
		t.Fatal("k08 still there after Delete")
	}
	if s.Len() != 49 {
		t.Fatalf("Len = %d, want 49", s.Len())
	}
	snap := s.Snapshot()
	n := 0
	for k, v := range s.All() {
		n++
		if snap[k] != v {
			t.Fatalf("All gives %q=%v, Snapshot %v", k, v, snap[k])
		}
	}
	if n != 49 || len(snap) != 49 {
		t.Fatalf("All gave %d, Snapshot %d, want 49", n, len(snap))
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "x", Value{}); !errors.Is(err, kvstore.ErrClosed) {
		t.Fatalf("Put after Close = %v, want ErrClosed", err)
	}
	if v, ok := s.Get("k07"); !ok || v.Version != 2 {
		t.Fatal("a closed store still answers Get from memory")
	}
	goleak.VerifyNone(t, append([]goleak.Option{ignore}, kfakeGoroutines...)...)
}

// Two stores on one topic converge: each applies the other's writes, and a
// store opened later loads the same state.
func TestStoresConverge(t *testing.T) {
	kc := testkit.Shared(t)
	topic := newCompactedTopic(t, kc, 3)
	a := openStore(t, kc, topic)
	b := openStore(t, kc, topic)
	ctx := ctxT(t, 60*time.Second)
	var wg sync.WaitGroup
	for w, s := range []*kvstore.Store[string, Value]{a, b} {
		wg.Go(func() {
			for i := range 100 {
				k := fmt.Sprintf("k%03d", i%40) // both write the same keys
				if err := s.Put(ctx, k, Value{Version: i, Text: fmt.Sprint("writer", w)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	testkit.Eventually(t, 30*time.Second, func() error {
		if sa, sb := a.Snapshot(), b.Snapshot(); !equal(sa, sb) || len(sa) != 40 {
			return fmt.Errorf("a has %d keys, b %d, equal %v", len(sa), len(sb), equal(sa, sb))
		}
		return nil
	})
	c := openStore(t, kc, topic)
	if !equal(a.Snapshot(), c.Snapshot()) {
		t.Fatal("a store opened later loaded a different state")
	}
}

func equal[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestLoadsExistingRecordsAndSkipsBadOnes(t *testing.T) {
	kc := testkit.Shared(t)
	topic := newCompactedTopic(t, kc, 2)
	var recs []*kgo.Record
	for i := range 300 {
		recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%03d", i%100), Value: fmt.Appendf(nil, `{"version":%d}`, i)})
	}
	recs = append(recs,
		&kgo.Record{Topic: topic, Key: []byte("k005"), Value: []byte("not json")},        // skipped: k005 keeps version 205
		&kgo.Record{Topic: topic, Key: []byte("k006")},                                   // tombstone
		&kgo.Record{Topic: topic, Key: []byte("k007"), Value: []byte(`{"version":"x"}`)}, // wrong type: skipped
	)
	kc.Produce(t, recs...)
	var (
		mu      sync.Mutex
		skipped []string
	)
	s := openStore(t, kc, topic, kvstore.OnDecodeError(func(r *kgo.Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		if !errors.Is(err, codec.ErrDecode) {
			t.Errorf("decode error %v does not match codec.ErrDecode", err)
		}
		skipped = append(skipped, string(r.Key))
	}))
	if s.Len() != 99 {
		t.Fatalf("Len = %d, want 99", s.Len())
	}
	if v, _ := s.Get("k005"); v.Version != 205 {
		t.Fatalf("k005 = %v, want version 205 (the undecodable record is skipped)", v)
	}
	if _, ok := s.Get("k006"); ok {
		t.Fatal("k006 was deleted by a tombstone")
	}
	if v, _ := s.Get("k099"); v.Version != 299 {
		t.Fatalf("k099 = %v, want version 299", v)
	}
	mu.Lock()
	defer mu.Unlock()
	// The two may be in different partitions, which franz-go fetches in
	// no set order: only each partition's records come in order.
	slices.Sort(skipped)
	if strings.Join(skipped, ",") != "k005,k007" {
		t.Fatalf("OnDecodeError saw %v, want k005 and k007", skipped)
	}
}

func TestSubscribe(t *testing.T) {
	kc := testkit.Shared(t)
	ignore := goleak.IgnoreCurrent()
	topic := newCompactedTopic(t, kc, 1)
	reg := prometheus.NewRegistry()
	s := openStoreConn(t, whippet.Connection{Brokers: kc.Brokers, Registerer: reg}, topic)
	ctx := ctxT(t, 60*time.Second)
	for i := range 3 {
		if err := s.Put(ctx, fmt.Sprint("a", i), Value{Version: i}); err != nil {
			t.Fatal(err)
		}
	}
	changes := make(chan kvstore.Change[string, Value], 100)
	subCtx, unsubscribe := context.WithCancel(ctx)
	if err := s.Subscribe(subCtx, func(c kvstore.Change[string, Value]) { changes <- c }); err != nil {
		t.Fatal(err)
	}
	initial := map[string]int{}
	for range 3 {
		c := <-changes
		if !c.Initial || c.Existed || c.Deleted {
			t.Fatalf("replayed change %+v", c)
		}
		initial[c.Key] = c.New.Version
	}
	if len(initial) != 3 || initial["a2"] != 2 {
		t.Fatalf("replay %v", initial)
	}
	_ = s.Put(ctx, "a1", Value{Version: 10})
	_ = s.Delete(ctx, "a0")
	_ = s.Delete(ctx, "absent") // no change: not delivered
	_ = s.Put(ctx, "b", Value{Version: 20})
	want := []string{"a1 1->10 existed", "a0 0->deleted", "b 0->20 new"}
	for _, w := range want {
		select {
		case c := <-changes:
			if got := describe(c); got != w {
				t.Fatalf("change %q, want %q", got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no change, want %q", w)
		}
	}
	unsubscribe()
	testkit.Eventually(t, 10*time.Second, func() error {
		if n := testutil.ToFloat64(gaugeOf(t, reg, "whippet_kvstore_subscribers")); n != 0 {
			return fmt.Errorf("%v subscribers", n)
		}
		return nil
	})
	_ = s.Put(ctx, "c", Value{})
	select {
	case c := <-changes:
		t.Fatalf("change %+v after the subscription's context ended", c)
	case <-time.After(200 * time.Millisecond):
	}
	if err := s.Subscribe(ctx, func(kvstore.Change[string, Value]) {}, kvstore.SkipExisting()); err != nil {
		t.Fatal(err)
	}
	_ = s.Close(context.Background())
	if err := s.Subscribe(ctx, func(kvstore.Change[string, Value]) {}); !errors.Is(err, kvstore.ErrClosed) {
		t.Fatalf("Subscribe after Close = %v", err)
	}
	goleak.VerifyNone(t, append([]goleak.Option{ignore}, kfakeGoroutines...)...)
}

func describe(c kvstore.Change[string, Value]) string {
	switch {
	case c.Deleted:
		return fmt.Sprintf("%s %d->deleted", c.Key, c.Old.Version)
	case c.Existed:
		return fmt.Sprintf("%s %d->%d existed", c.Key, c.Old.Version, c.New.Version)
	}
	return fmt.Sprintf("%s %d->%d new", c.Key, c.Old.Version, c.New.Version)
}

// A slow subscriber never holds the store up: while it is busy, changes of
// one key are merged, and it ends with every key's latest value.
func TestSlowSubscriberIsMergedNotBlocking(t *testing.T) {
	kc := testkit.Shared(t)
	topic := newCompactedTopic(t, kc, 1)
	s := openStore(t, kc, topic)
	ctx := ctxT(t, 60*time.Second)
	release := make(chan struct{})
	var (
		mu    sync.Mutex
		seen  = map[string]Value{}
		calls atomic.Int64
	)
	if err := s.Subscribe(ctx, func(c kvstore.Change[string, Value]) {
		if calls.Add(1) == 1 {
			<-release // stuck on the first change
		}
		mu.Lock()
		defer mu.Unlock()
		if c.Deleted {
			delete(seen, c.Key)
		} else {
			seen[c.Key] = c.New
		}
	}, kvstore.SkipExisting()); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range 2000 {
		recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i%10), Value: fmt.Appendf(nil, `{"version":%d}`, i)})
	}
	recs = append(recs, &kgo.Record{Topic: topic, Key: []byte("k3")}) // deleted at the end
	kc.Produce(t, recs...)
	// The store applies everything although its subscriber is stuck.
	testkit.Eventually(t, 30*time.Second, func() error {
		if v, _ := s.Get("k9"); v.Version != 1999 {
			return fmt.Errorf("k9 = %v", v)
		}
		return nil
	})
	close(release)
	testkit.Eventually(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if !equal(seen, s.Snapshot()) {
			return fmt.Errorf("subscriber saw %d keys %v, store has %v", len(seen), seen, s.Snapshot())
		}
		return nil
	})
	if n := calls.Load(); n > 100 {
		t.Fatalf("%d calls for 2001 changes of 10 keys behind a stuck subscriber: not merged", n)
	} else {
		t.Logf("2001 changes of 10 keys delivered in %d calls", n)
	}
}

func TestPanickingSubscriberKeepsGoing(t *testing.T) {
	kc := testkit.Shared(t)
	topic := newCompactedTopic(t, kc, 1)
	reg := prometheus.NewRegistry()
	s := openStoreConn(t, whippet.Connection{Brokers: kc.Brokers, Registerer: reg}, topic)
	ctx := ctxT(t, 60*time.Second)
	got := make(chan string, 10)
	if err := s.Subscribe(ctx, func(c kvstore.Change[string, Value]) {
		if c.Key == "boom" {
			panic("subscriber bug")
		}
		got <- c.Key
	}); err != nil {
		t.Fatal(err)
	}
	_ = s.Put(ctx, "boom", Value{})
	_ = s.Put(ctx, "fine", Value{})
	select {
	case k := <-got:
		if k != "fine" {
			t.Fatalf("got %q", k)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("delivery stopped after a panic")
	}
	if n := testutil.ToFloat64(gaugeOf(t, reg, "whippet_kvstore_subscriber_panics_total")); n != 1 {
		t.Fatalf("subscriber_panics_total = %v", n)
	}
}

// gaugeOf returns the collector reading one metric of a registry.
func gaugeOf(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	return collectorFunc(func(ch chan<- prometheus.Metric) {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			m := mf.GetMetric()[0]
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, "", nil, nil), prometheus.GaugeValue, v)
		}
	})
}

type collectorFunc func(chan<- prometheus.Metric)

func (f collectorFunc) Describe(chan<- *prometheus.Desc)    {}
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) { f(ch) }

func TestMetricsAndReadiness(t *testing.T) {
	kc := testkit.Shared(t)
	topic := newCompactedTopic(t, kc, 2)
	var recs []*kgo.Record
	for i := range 100 {
		recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%03d", i), Value: []byte(`{"version":1}`)})
	}
	kc.Produce(t, recs...)
	reg := prometheus.NewRegistry()
	s := openStoreNoWaitConn(t, whippet.Connection{Brokers: kc.Brokers, Registerer: reg}, topic, kvstore.Name("countries"))
	h := s.ReadyHandler()
	if err := s.WaitReady(ctxT(t, 60*time.Second)); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ready", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "ready, 100 entries") {
		t.Fatalf("ready handler: %d %q", rec.Code, rec.Body.String())
	}
	for name, want := range map[string]float64{
		"whippet_kvstore_entries":               100,
		"whippet_kvstore_bytes":                 100 * float64(len("k000")+len(`{"version":1}`)),
		"whippet_kvstore_lag_records":           0,
		"whippet_kvstore_ready":                 1,
		"whippet_kvstore_records_applied_total": 100,
	} {
		if got := testutil.ToFloat64(gaugeOf(t, reg, name)); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if d := testutil.ToFloat64(gaugeOf(t, reg, "whippet_kvstore_load_duration_seconds")); d <= 0 {
		t.Errorf("load_duration_seconds = %v", d)
	}
	mfs, _ := reg.Gather()
	var kafkaMetrics int
	for _, mf := range mfs {
		kafka := strings.HasPrefix(mf.GetName(), "whippet_kafka_")
		if kafka {
			kafkaMetrics++
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if kafka && (labels["component"] != "kvstore" || labels["name"] != "countries") ||
				!kafka && (labels["store"] != "countries" || labels["topic"] != topic) {
				t.Fatalf("%s has labels %v", mf.GetName(), labels)
			}
		}
	}
	if kafkaMetrics == 0 {
		t.Error("no whippet_kafka_* (kprom) metrics")
	}
	// A second store with the same name on the same registry is a config error.
	_, err := kvstore.Open(ctxT(t, 30*time.Second), whippet.Connection{Brokers: kc.Brokers, Registerer: reg}, topic, codec.String(), codec.JSON[Value](), kvstore.Name("countries"))
	var ce *kvstore.ConfigError
	if !errors.Is(err, kvstore.ErrInvalidConfig) || !errors.As(err, &ce) || ce.Field != "Connection.Registerer" {
		t.Fatalf("second store with the same Name: %v", err)
	}
	_ = s.Close(context.Background())
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ready", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("ready handler after Close: %d", rec.Code)
	}
	if mfs, _ := reg.Gather(); len(mfs) != 0 {
		t.Fatalf("%d metric families still registered after Close", len(mfs))
	}
}

func TestTopicCreatedCompactedOrRefused(t *testing.T) {
	kc := testkit.Shared(t)
	adm := kc.Admin(t)
	ctx := ctxT(t, 60*time.Second)

	// Missing: created with cleanup.policy=compact and the options' layout.
	topic := testkit.TopicName(t.Name())
	t.Cleanup(func() { _, _ = adm.DeleteTopic(context.Background(), topic) })
	s := openStore(t, kc, topic, kvstore.Partitions(3), kvstore.ReplicationFactor(1), kvstore.TopicConfig("min.compaction.lag.ms", "0"))
	_ = s.Close(context.Background())
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := rcs.On(topic, nil)
	got := map[string]string{}
	for _, c := range rc.Configs {
		got[c.Key] = c.MaybeValue()
	}
	if got["cleanup.policy"] != "compact" {
		t.Fatalf("created topic has cleanup.policy=%q", got["cleanup.policy"])
	}
	td, err := adm.ListTopics(ctx, topic)
	if err != nil || len(td[topic].Partitions) != 3 {
		t.Fatalf("created topic: %v partitions, %v", len(td[topic].Partitions), err)
	}

	// Existing and not compacted: refused, unless allowed.
	plain := kc.NewTopic(t, 1, nil)
	_, err = kvstore.Open(ctx, whippet.Connection{Brokers: kc.Brokers}, plain, codec.String(), codec.JSON[Value]())
	if !errors.Is(err, kvstore.ErrNotCompacted) || !strings.Contains(err.Error(), `cleanup.policy="delete"`) {
		t.Fatalf("Open on a non-compacted topic: %v", err)
	}
	openStore(t, kc, plain, kvstore.AllowNotCompacted(true))

	// Missing with CreateTopic(false).
	_, err = kvstore.Open(ctx, whippet.Connection{Brokers: kc.Brokers}, testkit.TopicName("missing"), codec.String(), codec.JSON[Value](), kvstore.CreateTopic(false))
	if !errors.Is(err, kvstore.ErrTopicNotFound) {
		t.Fatalf("Open on a missing topic with CreateTopic(false): %v", err)
	}
}

// Records of aborted transactions are not applied, and a partition that ends
// with a transaction marker still counts as loaded.
func TestTransactionalWriters(t *testing.T) {
	kc := testkit.Shared(t)
	topic := newCompactedTopic(t, kc, 1)
	txn := func(commit bool, key, value string) {
		cl := kc.Client(t, kgo.TransactionalID(testkit.TopicName("txn")))
		ctx := ctxT(t, 30*time.Second)
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(value)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	txn(true, "committed", `{"version":1}`)
	txn(false, "aborted", `{"version":2}`)
	s := openStore(t, kc, topic) // ready although the last offset is an abort marker
	if _, ok := s.Get("aborted"); ok || s.Len() != 1 {
		t.Fatalf("Len %d, aborted present: %v", s.Len(), ok)
	}
	txn(true, "later", `{"version":3}`)
	testkit.Eventually(t, 30*time.Second, func() error {
		if _, ok := s.Get("later"); !ok {
			return errors.New("the committed record is not applied")
		}
		return nil
	})
}

func TestWriteWaitsEndWithContext(t *testing.T) {
	kc := testkit.Shared(t)
	topic := newCompactedTopic(t, kc, 1)
	s := openStore(t, kc, topic, kvstore.AwaitApplied(false))
	ctx := ctxT(t, 30*time.Second)
	if err := s.Put(ctx, "k", Value{Version: 1}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		if _, ok := s.Get("k"); !ok {
			return errors.New("not applied yet")
		}
		return nil
	})
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Put(canceled, "k", Value{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a canceled context: %v", err)
	}
}

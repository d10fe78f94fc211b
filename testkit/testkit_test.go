package testkit_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/whippet-go/whippet/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// fatalRecorder stands in for a testing.TB to observe a helper failing.
type fatalRecorder struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (r *fatalRecorder) Helper() {}
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.msg = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}
func (r *fatalRecorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

// expectFatal runs fn with a recorder and returns the failure message.
func expectFatal(t *testing.T, fn func(tb testing.TB)) string {
	t.Helper()
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(r)
	}()
	<-done
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.msg == "" {
		t.Fatal("expected the helper to fail the test")
	}
	return r.msg
}

func noLeaks(t *testing.T) {
	opts := []goleak.Option{goleak.IgnoreCurrent()}
	t.Cleanup(func() { goleak.VerifyNone(t, opts...) }) // registered first, runs last
}

func TestFakeHelpers(t *testing.T) {
	noLeaks(t)
	kc := testkit.Fake(t)
	if kc.Backend != testkit.BackendKfake || kc.Real || kc.Version != "kfake" || len(kc.Brokers) != 1 || kc.Kfake() == nil {
		t.Fatalf("Fake = %+v", kc)
	}
	topic := kc.NewTopic(t, 3, nil)
	if !strings.HasPrefix(topic, "TestFakeHelpers-") {
		t.Errorf("topic %q not named after the test", topic)
	}
	td, err := kc.Admin(t).ListTopics(t.Context(), topic)
	if err != nil || len(td[topic].Partitions) != 3 {
		t.Fatalf("ListTopics = %v, %v", td, err)
	}

	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i%4), Value: fmt.Appendf(nil, "v%d", i)})
	}
	kc.Produce(t, recs...)
	got := kc.ConsumeUntil(t.Context(), t, topic, func(all []*kgo.Record) bool { return len(all) >= 10 })
	seen := map[string]bool{}
	for _, r := range got {
		seen[string(r.Value)] = true
	}
	if len(got) != 10 || len(seen) != 10 {
		t.Fatalf("consumed %d records, %d distinct", len(got), len(seen))
	}

	// A client from Client is usable and closed on cleanup.
	cl := kc.Client(t, kgo.DefaultProduceTopic(topic))
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func TestNewTopicDeletedOnCleanup(t *testing.T) {
	kc := testkit.Fake(t)
	var topic string
	t.Run("sub test/with spaces", func(t *testing.T) {
		topic = kc.NewTopic(t, 1, nil)
		if !strings.HasPrefix(topic, "TestNewTopicDeletedOnCleanup-sub_test-with_spaces-") {
			t.Errorf("topic name %q", topic)
		}
	})
	td, err := kc.Admin(t).ListTopics(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if td.Has(topic) {
		t.Fatalf("topic %q still exists after its test ended", topic)
	}
}

func TestCreateTopicTwiceFails(t *testing.T) {
	kc := testkit.Fake(t)
	kc.CreateTopic(t, "fixed-name", 1, nil)
	msg := expectFatal(t, func(tb testing.TB) { kc.CreateTopic(tb, "fixed-name", 1, nil) })
	if !strings.Contains(msg, "TOPIC_ALREADY_EXISTS") || !strings.Contains(msg, "NewTopic") {
		t.Fatalf("message %q", msg)
	}
}

func TestProduceToMissingTopicFails(t *testing.T) {
	kc := testkit.Fake(t)
	msg := expectFatal(t, func(tb testing.TB) {
		kc.Produce(tb, &kgo.Record{Topic: "missing", Value: []byte("x")})
	})
	if !strings.Contains(msg, `"missing"`) {
		t.Fatalf("message %q", msg)
	}
}

func TestConsumeUntilGivesUp(t *testing.T) {
	kc := testkit.Fake(t)
	topic := kc.NewTopic(t, 1, nil)
	kc.Produce(t, &kgo.Record{Topic: topic, Value: []byte("only")})
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	msg := expectFatal(t, func(tb testing.TB) {
		kc.ConsumeUntil(ctx, tb, topic, func(all []*kgo.Record) bool { return len(all) >= 2 })
	})
	if !strings.Contains(msg, "after 1 record(s)") {
		t.Fatalf("message %q", msg)
	}
	// done(empty) true returns at once, without a client.
	if got := kc.ConsumeUntil(t.Context(), t, topic, func([]*kgo.Record) bool { return true }); len(got) != 0 {
		t.Fatalf("got %d records", len(got))
	}
}

func TestEventually(t *testing.T) {
	n := 0
	testkit.Eventually(t, time.Second, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if n != 3 {
		t.Fatalf("cond called %d times", n)
	}
	start := time.Now()
	msg := expectFatal(t, func(tb testing.TB) {
		testkit.Eventually(tb, 100*time.Millisecond, func() error { return errors.New("still broken") })
	})
	if !strings.Contains(msg, "still broken") || time.Since(start) > 2*time.Second {
		t.Fatalf("message %q after %s", msg, time.Since(start))
	}
}

func TestTopicName(t *testing.T) {
	a, b := testkit.TopicName("TestX/a b.c"), testkit.TopicName("TestX/a b.c")
	if a == b || !strings.HasPrefix(a, "TestX-a-b-c-") {
		t.Fatalf("names %q %q", a, b)
	}
	long := testkit.TopicName(strings.Repeat("x", 500))
	if len(long) > 249 {
		t.Fatalf("name of %d chars", len(long))
	}
}

func TestStartKfakeFromEnv(t *testing.T) {
	t.Setenv("WHIPPET_KAFKA", "kfake")
	t.Setenv("CI", "")
	kc, stop, err := testkit.Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer stop(context.Background())
	if kc.Backend != testkit.BackendKfake || kc.Real {
		t.Fatalf("Start = %+v", kc)
	}
}

func TestStartRefusesKfakeInCI(t *testing.T) {
	t.Setenv("WHIPPET_KAFKA", "kfake")
	t.Setenv("CI", "true")
	if _, _, err := testkit.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "CI=true") {
		t.Fatalf("err = %v", err)
	}
}

func TestExternalBackendNeedsAnsweringBrokers(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the external brokers' bounded retry")
	}
	// A kfake broker stands in for an external cluster.
	fake := testkit.Fake(t)
	t.Setenv("WHIPPET_KAFKA", "external")
	t.Setenv("KAFKA_BROKERS", strings.Join(fake.Brokers, ","))
	t.Setenv("KAFKA_VERSION", "")
	t.Setenv("KAFKA_STATE_DIR", "")
	kc, stop, err := testkit.Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer stop(context.Background())
	if kc.Backend != testkit.BackendExternal || !kc.Real || kc.Version != "unknown" {
		t.Fatalf("Start = %+v", kc)
	}
}

// TestShared runs against whatever the environment provides: on a machine
// with Java and Maven, a real Apache Kafka started from Maven jars.
func TestShared(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("may start a real broker; skipped with -short")
	}
	kc := testkit.Shared(t)
	if again := testkit.Shared(t); again != kc {
		t.Fatal("Shared returned a different cluster")
	}
	if os.Getenv("CI") == "true" && !kc.Real {
		t.Fatal("CI=true got a fake broker")
	}
	t.Logf("backend %s, version %s, brokers %v, log %s", kc.Backend, kc.Version, kc.Brokers, kc.LogPath)
	topic := kc.NewTopic(t, 2, nil)
	kc.Produce(t, &kgo.Record{Topic: topic, Key: []byte("a"), Value: []byte("1")},
		&kgo.Record{Topic: topic, Key: []byte("b"), Value: []byte("2")})
	got := kc.ConsumeUntil(t.Context(), t, topic, func(all []*kgo.Record) bool { return len(all) == 2 })
	if len(got) != 2 {
		t.Fatalf("got %d records", len(got))
	}
}

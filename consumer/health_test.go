package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/internal/securetest"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
	"github.com/whippet-go/whippet/testkit/localkafka"
)

// probe asks h as a Kubernetes probe would and returns the status and body.
func probe(h http.Handler) (int, string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	return rec.Code, rec.Body.String()
}

// wantProbe waits until h answers code, and returns the body.
func wantProbe(t *testing.T, what string, h http.Handler, code int, within time.Duration) string {
	t.Helper()
	var body string
	testkit.Eventually(t, within, func() error {
		var got int
		got, body = probe(h)
		if got != code {
			return fmt.Errorf("%s: %d %q, want %d", what, got, body, code)
		}
		return nil
	})
	return body
}

// ownKafka starts a 1-node Apache Kafka of the test's own (the shared one
// must not be stopped), in a temporary state dir at free ports, and stops
// it when the test ends.
func ownKafka(t *testing.T) *localkafka.Cluster {
	t.Helper()
	cfg := localkafka.Config{Version: os.Getenv("KAFKA_VERSION"), StateDir: t.TempDir(), StartTimeout: 3 * time.Minute}
	if err := localkafka.Available(cfg); err != nil {
		t.Fatalf("a broker of the test's own is needed: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for try := 0; ; try++ {
		cfg.BasePort = securetest.FreeBasePort()
		lk, err := localkafka.Up(ctx, cfg)
		if errors.Is(err, localkafka.ErrPortInUse) && try < 5 {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := localkafka.Down(ctx, cfg.StateDir); err != nil {
				t.Errorf("stopping the test's broker: %v", err)
			}
		})
		return lk
	}
}

// TestHealthFollowsTheBroker runs a consumer against a broker of its own,
// on real Kafka, and stops the broker: readiness fails once the consumer is
// no longer a member of its group, while liveness holds (a restart would
// not bring Kafka back); when the broker returns, the consumer rejoins,
// readiness comes back and new records are handled.
func TestHealthFollowsTheBroker(t *testing.T) {
	lk := ownKafka(t)
	kc := &testkit.Cluster{Brokers: lk.Brokers, Backend: testkit.BackendLocal, Version: lk.Version, Real: true}
	topic := kc.NewTopic(t, 2, nil)
	produceSpread(t, kc, topic, 2, 10, nil)

	var handled atomic.Int64
	c := newConsumer(t, kc, consumer.HandlerFunc(func(context.Context, *kgo.Record) error {
		handled.Add(1)
		return nil
	}), topic, consumer.Topics(topic))
	ready, live := c.ReadyHandler(), c.LiveHandler()
	if code, body := probe(ready); code != http.StatusServiceUnavailable || !strings.Contains(body, "not running") {
		t.Errorf("ready before Run: %d %q", code, body)
	}
	if code, body := probe(live); code != http.StatusServiceUnavailable || !strings.Contains(body, "not running") {
		t.Errorf("live before Run: %d %q", code, body)
	}
	run(t, c)
	body := wantProbe(t, "ready", ready, http.StatusOK, 60*time.Second)
	if !strings.Contains(body, "2 partitions") {
		t.Errorf("ready: %q, want it to count 2 partitions", body)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if n := handled.Load(); n != 10 {
			return fmt.Errorf("handled %d of 10", n)
		}
		return nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	stopped := time.Now()
	if err := lk.Stop(ctx, 1); err != nil {
		t.Fatal(err)
	}
	body = wantProbe(t, "ready with the broker stopped", ready, http.StatusServiceUnavailable, 2*time.Minute)
	t.Logf("not ready %v after the broker stopped: %q", time.Since(stopped).Round(100*time.Millisecond), body)
	if !strings.Contains(body, "not a member of group "+topic) {
		t.Errorf("not ready: %q, want it to say the consumer is not a member of its group", body)
	}
	if code, body := probe(live); code != http.StatusOK {
		t.Errorf("live with the broker stopped: %d %q, want 200", code, body)
	}

	started := time.Now()
	if err := lk.Start(ctx, 1); err != nil {
		t.Fatal(err)
	}
	wantProbe(t, "ready with the broker back", ready, http.StatusOK, 2*time.Minute)
	t.Logf("ready again %v after the broker started", time.Since(started).Round(100*time.Millisecond))
	kc.Produce(t, &kgo.Record{Topic: topic, Value: []byte("after")})
	testkit.Eventually(t, 60*time.Second, func() error {
		if n := handled.Load(); n < 11 {
			return fmt.Errorf("handled %d of 11", n)
		}
		return nil
	})
}

// TestReadinessSeesBlockedPartitions checks, on real Kafka, that a
// partition blocked longer than HealthBlockedLimit makes the consumer not
// ready, naming it: a record failing in blocking retries, a handler call
// that does not return. A retry waiting for its due time (hours away) is
// not blocked. Liveness holds all along; readiness comes back once the
// operator skips the failing record and the handler returns.
func TestReadinessSeesBlockedPartitions(t *testing.T) {
	kc := testkit.Shared(t)
	blocking := kc.NewTopic(t, 2, nil)
	later := kc.NewTopic(t, 1, nil)
	group := blocking
	cl := kc.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	release := make(chan struct{})
	var released atomic.Bool
	t.Cleanup(func() {
		if released.CompareAndSwap(false, true) {
			close(release)
		}
	})
	c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		switch string(r.Key) {
		case "fail", "later":
			return errors.New("the billing system is down")
		case "stuck":
			<-release
		}
		return nil
	}), group, consumer.Topics(blocking, later), consumer.HealthBlockedLimit(2*time.Second),
		consumer.RetryFor(blocking, retry.Blocking(100*time.Millisecond, 100*time.Millisecond, time.Hour)),
		consumer.RetryFor(later, retry.NonBlocking(time.Hour)))
	run(t, c)
	ready, live := c.ReadyHandler(), c.LiveHandler()
	wantProbe(t, "ready", ready, http.StatusOK, 60*time.Second)

	if err := cl.ProduceSync(context.Background(),
		&kgo.Record{Topic: blocking, Partition: 0, Key: []byte("fail")},
		&kgo.Record{Topic: blocking, Partition: 1, Key: []byte("ok")},
		&kgo.Record{Topic: blocking, Partition: 1, Key: []byte("ok")},
		&kgo.Record{Topic: blocking, Partition: 1, Key: []byte("stuck")},
		&kgo.Record{Topic: later, Partition: 0, Key: []byte("later")},
	).FirstErr(); err != nil {
		t.Fatal(err)
	}
	body := wantProbe(t, "ready with blocked partitions", ready, http.StatusServiceUnavailable, 60*time.Second)
	testkit.Eventually(t, 30*time.Second, func() error {
		_, body = probe(ready)
		for _, want := range []string{
			fmt.Sprintf("%s[0] blocked at offset 0", blocking),
			fmt.Sprintf("%s[1] blocked at offset 2", blocking), // after two handled
		} {
			if !strings.Contains(body, want) {
				return fmt.Errorf("not ready: %q, want it to say %q", body, want)
			}
		}
		var waiting bool
		for _, b := range c.Blocked() {
			waiting = waiting || b.Waiting
		}
		if !waiting {
			return fmt.Errorf("no retry waiting for its due time yet: %+v", c.Blocked())
		}
		return nil
	})
	retryTopic := retry.TopicName(later, group, 0)
	if strings.Contains(body, retryTopic) {
		t.Errorf("not ready: %q names %s, whose retry only waits for its due time", body, retryTopic)
	}
	if code, body := probe(live); code != http.StatusOK {
		t.Errorf("live while partitions are blocked: %d %q", code, body)
	}

	if err := c.Skip(blocking, 0); err != nil {
		t.Fatal(err)
	}
	released.Store(true)
	close(release)
	wantProbe(t, "ready once skipped and released", ready, http.StatusOK, 30*time.Second)
	var waiting bool
	for _, b := range c.Blocked() {
		waiting = waiting || (b.Waiting && b.Topic == retryTopic)
	}
	if !waiting {
		t.Errorf("ready, but the retry no longer waits: %+v", c.Blocked())
	}
}

// TestReadinessTimesTheCallUnderWayAfterASlowOne checks, on real Kafka, that
// a handler call that has not returned counts as blocked from its own
// start, also right after a slow call among fast ones (a strict-order lane
// times fast calls in groups, with one clock reading per group): 200
// fast records, one that takes longer than HealthBlockedLimit but returns,
// then one that does not return. While probes run, readiness comes back
// once the slow call returns and stays until the stuck call has run for the
// limit.
func TestReadinessTimesTheCallUnderWayAfterASlowOne(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	const limit = 2 * time.Second
	release := make(chan struct{})
	stuck := make(chan time.Time, 1)
	c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		switch string(r.Key) {
		case "slow":
			time.Sleep(limit + 500*time.Millisecond)
		case "stuck":
			stuck <- time.Now()
			<-release
		}
		return nil
	}), topic, consumer.Topics(topic), consumer.HealthBlockedLimit(limit))

	// One produce request, so the lane gets the records in one batch and
	// its clock has grouped the fast calls by the time the slow one comes.
	recs := make([]*kgo.Record, 0, 202)
	for i := range 200 {
		recs = append(recs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "fast-%d", i)})
	}
	recs = append(recs, &kgo.Record{Topic: topic, Key: []byte("slow")}, &kgo.Record{Topic: topic, Key: []byte("stuck")})
	if err := kc.Client(t, kgo.ProducerLinger(time.Second)).ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	run(t, c)
	t.Cleanup(func() { close(release) }) // before the consumer's Close, which would wait for the call
	ready := c.ReadyHandler()

	// Probe as Kubernetes would, only more often.
	var started time.Time
	for deadline := time.Now().Add(60 * time.Second); started.IsZero(); {
		if time.Now().After(deadline) {
			t.Fatal("the stuck record was not handled within 60s")
		}
		select {
		case started = <-stuck:
		case <-time.After(50 * time.Millisecond):
			probe(ready)
		}
	}
	for time.Since(started) < limit-500*time.Millisecond {
		if code, body := probe(ready); code != http.StatusOK {
			t.Fatalf("not ready %v into a call (HealthBlockedLimit %v): %d %q", time.Since(started).Round(time.Millisecond), limit, code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	body := wantProbe(t, "not ready once the stuck call ran for the limit", ready, http.StatusServiceUnavailable, 10*time.Second)
	if want := fmt.Sprintf("%s[0] blocked at offset 201", topic); !strings.Contains(body, want) {
		t.Errorf("not ready: %q, want it to say %q", body, want)
	}
}

// TestLivenessSeesAWedgedLoop checks, on real Kafka, that a consumer whose
// loop is held up longer than HealthPollLimit is not live: in transactional
// mode, a handler that does not return holds the transaction, and the loop
// with it.
func TestLivenessSeesAWedgedLoop(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	release := make(chan struct{})
	var released atomic.Bool
	c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if string(r.Key) == "stuck" {
			<-release
		}
		return nil
	}), topic, consumer.Topics(topic), consumer.Transactional(topic),
		consumer.TransactionTimeout(2*time.Second), consumer.HealthPollLimit(2*time.Second))
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	t.Cleanup(func() {
		if released.CompareAndSwap(false, true) {
			close(release)
		}
		c.Close(context.Background())
		<-errc
	})
	live := c.LiveHandler()
	wantProbe(t, "live", live, http.StatusOK, 60*time.Second)
	wantProbe(t, "ready", c.ReadyHandler(), http.StatusOK, 60*time.Second)
	kc.Produce(t, &kgo.Record{Topic: topic, Key: []byte("stuck")})
	body := wantProbe(t, "live with a handler that does not return", live, http.StatusServiceUnavailable, 60*time.Second)
	if !strings.Contains(body, "has not polled for") {
		t.Errorf("not live: %q, want it to say the loop has not polled", body)
	}
	released.Store(true)
	close(release)
	c.Close(context.Background())
	// The transaction outlived its timeout: the broker may have fenced it.
	if err := <-errc; err != nil && !errors.Is(err, consumer.ErrFenced) {
		t.Errorf("Run: %v", err)
	}
	errc <- nil // for the cleanup
	if code, body := probe(live); code != http.StatusServiceUnavailable || !strings.Contains(body, "not running") {
		t.Errorf("live after Run returned: %d %q", code, body)
	}
}

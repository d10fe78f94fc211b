package browsertest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/consumer/admin"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// The dashboard of package consumer/admin, driven in Chromium. The fixture is
// a trimmed copy of consumer/admin's test helpers (helpers_test.go there).

// app is a service under test: a consumer whose handler fails on records
// whose value is "poison" until fixed, with blocking retries, on real Kafka.
type app struct {
	kc       *testkit.Cluster
	topic    string
	group    string
	dlqTopic string
	c        *consumer.Consumer
	reg      *prometheus.Registry
	dlq      *dlq.Client
	fixed    atomic.Bool

	mu      sync.Mutex
	handled []*kgo.Record
}

func startApp(t *testing.T, kc *testkit.Cluster, partitions int32) *app {
	t.Helper()
	a := &app{kc: kc, reg: prometheus.NewRegistry()}
	a.topic = kc.NewTopic(t, partitions, nil)
	a.group = a.topic + "-svc"
	a.dlqTopic = retry.DLQTopicName(a.topic, a.group)
	c, err := consumer.New(whippet.Connection{Brokers: kc.Brokers, Registerer: a.reg}, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if string(r.Value) == "poison" && !a.fixed.Load() {
			return errors.New("renewal failed: card declined")
		}
		a.mu.Lock()
		a.handled = append(a.handled, r)
		a.mu.Unlock()
		return nil
	}),
		consumer.Group(a.group), consumer.Topics(a.topic),
		consumer.Retry(retry.BlockingBackoff(retry.Exponential{Initial: 200 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2, Retries: retry.Forever})),
	)
	if err != nil {
		t.Fatal(err)
	}
	a.c = c
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	t.Cleanup(func() {
		_ = c.Close(context.Background())
		if err := <-errc; err != nil {
			t.Errorf("consumer.Run: %v", err)
		}
		adm := kc.Admin(t)
		if _, err := adm.DeleteTopic(context.Background(), a.dlqTopic); err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
			t.Logf("delete %s: %v", a.dlqTopic, err)
		}
	})
	a.dlq, err = dlq.New(whippet.Connection{Brokers: kc.Brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.dlq.Close(context.Background()) })
	return a
}

// produce writes values (with keys) to one partition.
func (a *app) produce(t *testing.T, partition int32, kv ...string) {
	t.Helper()
	cl := a.kc.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	for i := 0; i+1 < len(kv); i += 2 {
		recs = append(recs, &kgo.Record{Topic: a.topic, Partition: partition, Key: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func (a *app) handledValues(partition int32) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, r := range a.handled {
		if r.Partition == partition {
			out = append(out, string(r.Value))
		}
	}
	return out
}

func (a *app) handledRecords() []*kgo.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*kgo.Record(nil), a.handled...)
}

// serve mounts h under /whippet on a test server.
func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/whippet/", http.StripPrefix("/whippet", h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestDashboardInChromium is the operator's story on the page, against a real
// consumer on Kafka: a blocked partition shows, Skip unblocks it, the record
// shows in the dead-letter view, once the bug is fixed it is replayed, and a
// partition is moved back to its start (Seek).
func TestDashboardInChromium(t *testing.T) {
	chromium(t)
	kc := testkit.Shared(t)
	leakCheck(t)
	a := startApp(t, kc, 3)
	h, err := admin.New(
		admin.Consumer("renewals", a.c),
		admin.DLQ(a.dlq),
		admin.Metrics(a.reg),
		admin.Title("renewal-service"),
		admin.Refresh(time.Second),
		admin.Authorize(func(r *http.Request, act admin.Action) (string, error) { return "oncall@example.com", nil }),
	)
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, h)
	a.produce(t, 0, "user-1", "renew", "user-7", "poison", "user-2", "renew")
	a.produce(t, 1, "user-3", "renew", "user-4", "renew")
	a.produce(t, 2, "user-5", "renew")

	ro, err := admin.New(admin.Consumer("renewals", a.c), admin.DLQ(a.dlq))
	if err != nil {
		t.Fatal(err)
	}
	roSrv := serve(t, ro)

	ctx, pageErrs := browser(t)
	row := fmt.Sprintf(`#blocked tr.blocked-row[data-pos="%s/0/1"]`, a.topic)

	// Without an authorization hook the page shows, and offers no action.
	if err := chromedp.Run(ctx, chromedp.Navigate(roSrv.URL+"/whippet/")); err != nil {
		t.Fatal(err)
	}
	waitText(ctx, t, "#who", "read-only")
	waitText(ctx, t, row+" button.skip[disabled]", "Skip")
	waitText(ctx, t, "#consumers button.pause[disabled]", "Pause")
	// ... and no payload: the key and the error text are hidden, and so
	// are the filters that would tell them apart.
	if text := waitText(ctx, t, row, a.topic+"/0", "hidden"); strings.Contains(text, "user-7") || strings.Contains(text, "card declined") {
		t.Errorf("the read-only page shows the blocked record's payload: %q", text)
	}
	waitText(ctx, t, `#dlq-filter input[name="key"][disabled]`)
	waitText(ctx, t, `#dlq-filter input[name="error"][disabled]`)

	if err := chromedp.Run(ctx, chromedp.Navigate(srv.URL+"/whippet/")); err != nil {
		t.Fatal(err)
	}
	text := waitText(ctx, t, row, "renewals", a.topic+"/0", "user-7", "renewal failed: card declined", "Skip")
	t.Logf("blocked row: %q", text)
	waitText(ctx, t, "#who", "signed in as oncall@example.com")
	waitText(ctx, t, fmt.Sprintf(`#consumers tr.part-row[data-tp="%s/0"]`, a.topic), "blocked")
	waitText(ctx, t, fmt.Sprintf(`#consumers tr.part-row[data-tp="%s/2"]`, a.topic), "running")
	waitText(ctx, t, "#summary", "1\nBLOCKED") // CSS upper-cases the labels
	waitText(ctx, t, "#dlq-list", "No dead-letter record in "+a.dlqTopic)
	screenshot(ctx, t, "dashboard-blocked.png")

	// Skip, through the confirmation dialog.
	click(ctx, t, row+" button.skip")
	waitText(ctx, t, "#confirm[open]", "Skip "+a.topic+"/0/1?", "user-7")
	screenshot(ctx, t, "dialog-confirm-skip.png")
	click(ctx, t, "#confirm-ok")
	waitText(ctx, t, "#blocked", "No partition is blocked.")
	dlqRow := `#dlq-list tr.dlq-row`
	waitText(ctx, t, dlqRow, "user-7", "skipped", "renewal failed: card declined", a.topic+"/0/1")
	waitText(ctx, t, "#actions tr.action-row", "oncall@example.com", "skip", a.topic+"/0")
	if got := a.handledValues(0); len(got) != 2 {
		t.Fatalf("partition 0 handled %q after the skip, want both renewals", got)
	}

	// The record, in full.
	click(ctx, t, dlqRow+" button.view")
	waitText(ctx, t, "#record[open]", "poison", "user-7", "skipped", a.group)
	screenshot(ctx, t, "dialog-record.png")
	click(ctx, t, `#record button[value="close"]`)

	// The bug is fixed: replay the selected record.
	a.fixed.Store(true)
	click(ctx, t, dlqRow+" td.check input")
	waitText(ctx, t, "#dlq-replay-selected", "Replay selected (1)")
	click(ctx, t, "#dlq-replay-selected")
	waitText(ctx, t, "#confirm[open]", "Replay 1 selected record(s)?")
	click(ctx, t, "#confirm-ok")
	waitText(ctx, t, "#toasts", "Replayed 1 record(s)")
	testkit.Eventually(t, 30*time.Second, func() error {
		for _, r := range a.handledRecords() {
			if m, ok := dlq.ReplayMarkOf(r); ok && string(r.Key) == "user-7" && m.From.Topic == a.dlqTopic {
				return nil
			}
		}
		return errors.New("the replayed record was not handled")
	})
	waitText(ctx, t, "#actions tr.action-row", "dlq-replay", "replayed 1 of 1 selected record(s)")

	// Handle partition 1 again from its start: Seek…, to offset 0.
	part1 := fmt.Sprintf(`#consumers tr.part-row[data-tp="%s/1"]`, a.topic)
	n1 := len(a.handledValues(1))
	click(ctx, t, part1+" button.seek")
	waitText(ctx, t, "#confirm[open]", "Seek "+a.topic+"/1?", "every partition of "+a.topic)
	screenshot(ctx, t, "dialog-seek.png")
	if err := chromedp.Run(ctx, chromedp.SetValue(`#confirm input[name="seek-offset"]`, "0", chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	click(ctx, t, "#confirm-ok")
	waitText(ctx, t, "#actions tr.action-row", "seek", a.topic+"/1", "from 2 to 0")
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := a.handledValues(1)[n1:]; len(got) != 2 {
			return fmt.Errorf("partition 1 handled %q again after the seek to 0, want both renewals", got)
		}
		return nil
	})
	screenshot(ctx, t, "dashboard-after.png")
	pageErrs.check(t)
}

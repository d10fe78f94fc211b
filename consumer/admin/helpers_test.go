package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/consumer/admin"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// leakCheck fails the test if it leaves goroutines behind. Call it first, so
// that its check runs after every other cleanup.
func leakCheck(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

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
	}), consumer.Group(a.group), consumer.Topics(a.topic),
		consumer.Retry(retry.BlockingBackoff(retry.Exponential{Initial: 200 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2, Retries: retry.Forever})))
	if err != nil {
		t.Fatal(err)
	}
	a.c = c
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	t.Cleanup(func() {
		c.Close(context.Background())
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

// client calls the API as one operator.
type client struct {
	t    *testing.T
	srv  *httptest.Server
	user string // sent as X-User; "" sends none
}

// do calls the API and decodes a 2xx answer into out (or an error answer
// into an ErrorResponse it returns).
func (c client) do(method, path string, body, out any) (int, admin.ErrorResponse) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.srv.URL+"/whippet"+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.user != "" {
		req.Header.Set("X-User", c.user)
	}
	res, err := c.srv.Client().Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		c.t.Fatalf("%s %s: Content-Type %q, body %s", method, path, ct, data)
	}
	var e admin.ErrorResponse
	if res.StatusCode >= 300 {
		if err := json.Unmarshal(data, &e); err != nil || e.Error == "" {
			c.t.Fatalf("%s %s: %d with body %s: not an ErrorResponse", method, path, res.StatusCode, data)
		}
		return res.StatusCode, e
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			c.t.Fatalf("%s %s: decoding %s: %v", method, path, data, err)
		}
	}
	return res.StatusCode, e
}

// must calls the API and fails the test unless it answers 200.
func (c client) must(method, path string, body, out any) {
	c.t.Helper()
	if code, e := c.do(method, path, body, out); code != http.StatusOK {
		c.t.Fatalf("%s %s: %d %+v", method, path, code, e)
	}
}

// headerAuth is an authorization hook: views for everyone, actions for
// requests naming a user in X-User.
func headerAuth(r *http.Request, a admin.Action) (string, error) {
	who := r.Header.Get("X-User")
	if a.Name != admin.ActionView && who == "" {
		return "", errors.New("name yourself in X-User")
	}
	return who, nil
}

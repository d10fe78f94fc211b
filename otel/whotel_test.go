package whotel_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/dlq"
	whotel "github.com/whippet-go/whippet/otel"
	"github.com/whippet-go/whippet/producer"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// rig is a traced whippet on the shared broker: spans go to an in-memory
// exporter as they end.
type rig struct {
	kc   *testkit.Cluster
	exp  *tracetest.InMemoryExporter
	tp   *sdktrace.TracerProvider
	tr   *whotel.Tracing
	conn whippet.Connection
}

func newRig(t *testing.T) *rig {
	t.Helper()
	kc := testkit.Shared(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tr := whotel.New(whotel.TracerProvider(tp))
	return &rig{kc: kc, exp: exp, tp: tp, tr: tr,
		conn: whippet.Connection{Brokers: kc.Brokers, ClientOptions: tr.ClientOptions()}}
}

// consume runs a traced consumer of topic until the test ends.
func (r *rig) consume(t *testing.T, topic string, h consumer.HandlerFunc, opts ...consumer.Option) {
	t.Helper()
	group := topic
	opts = append([]consumer.Option{consumer.Group(group), consumer.Topics(topic),
		consumer.WithMiddleware(r.tr.Middleware(group))}, opts...)
	c, err := consumer.New(whippet.Connection{Brokers: r.kc.Brokers, ClientOptions: r.conn.ClientOptions}, h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
}

// run runs c until the test ends.
func run(t *testing.T, c *consumer.Consumer) {
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	t.Cleanup(func() {
		_ = c.Close(context.Background())
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// produce produces one record in the span of a "request" (the service call
// that caused it) and returns that span's context.
func (r *rig) produce(t *testing.T, topic string) trace.SpanContext {
	t.Helper()
	p, err := producer.New(r.conn)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	ctx, request := r.tp.Tracer("test").Start(context.Background(), "request")
	defer request.End()
	if _, err := p.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte("user-1"), Value: []byte("renew")}); err != nil {
		t.Fatal(err)
	}
	return request.SpanContext()
}

// calls records what each handler call saw.
type calls struct {
	mu   sync.Mutex
	seen []call
}

type call struct {
	attempt     int
	span        trace.SpanContext // the span of the handler's ctx
	traceparent string
	topic       string
	offset      int64
}

func (c *calls) add(ctx context.Context, r *kgo.Record) {
	info, _ := retry.InfoFrom(ctx)
	cl := call{attempt: info.Attempt, span: trace.SpanContextFromContext(ctx), topic: r.Topic, offset: r.Offset}
	for _, h := range r.Headers {
		if h.Key == "traceparent" {
			cl.traceparent = string(h.Value)
		}
	}
	c.mu.Lock()
	c.seen = append(c.seen, cl)
	c.mu.Unlock()
}

func (c *calls) snapshot() []call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]call(nil), c.seen...)
}

// waitSpans waits until each name has exactly its count of ended spans and
// returns them by name, in the order they ended.
func (r *rig) waitSpans(t *testing.T, want map[string]int) map[string]tracetest.SpanStubs {
	t.Helper()
	var got map[string]tracetest.SpanStubs
	testkit.Eventually(t, 60*time.Second, func() error {
		got = map[string]tracetest.SpanStubs{}
		for _, s := range r.exp.GetSpans() {
			got[s.Name] = append(got[s.Name], s)
		}
		for name, n := range want {
			if len(got[name]) != n {
				return fmt.Errorf("%d spans named %q, want %d (all: %v)", len(got[name]), name, n, names(r.exp.GetSpans()))
			}
		}
		return nil
	})
	return got
}

func names(spans tracetest.SpanStubs) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name
	}
	return out
}

func attr(s tracetest.SpanStub, k attribute.Key) (attribute.Value, bool) {
	for _, a := range s.Attributes {
		if a.Key == k {
			return a.Value, true
		}
	}
	return attribute.Value{}, false
}

// wantAttrs fails unless s has each attribute with the value given (an
// int, int64 or string), and none of absent.
func wantAttrs(t *testing.T, s tracetest.SpanStub, want map[attribute.Key]any, absent ...attribute.Key) {
	t.Helper()
	for k, v := range want {
		got, ok := attr(s, k)
		if !ok {
			t.Errorf("span %q: no attribute %s", s.Name, k)
			continue
		}
		var match bool
		switch v := v.(type) {
		case int:
			match = got.Type() == attribute.INT64 && got.AsInt64() == int64(v)
		case int64:
			match = got.Type() == attribute.INT64 && got.AsInt64() == v
		case string:
			match = got.Type() == attribute.STRING && got.AsString() == v
		}
		if !match {
			t.Errorf("span %q: %s = %v, want %v", s.Name, k, got.String(), v)
		}
	}
	for _, k := range absent {
		if v, ok := attr(s, k); ok {
			t.Errorf("span %q: unexpected %s = %v", s.Name, k, v.String())
		}
	}
}

// wantChild fails unless child's parent is parent (same trace).
func wantChild(t *testing.T, child, parent tracetest.SpanStub) {
	t.Helper()
	if child.Parent.SpanID() != parent.SpanContext.SpanID() || child.SpanContext.TraceID() != parent.SpanContext.TraceID() {
		t.Errorf("span %q: parent %s/%s, want %q %s/%s", child.Name, child.Parent.TraceID(), child.Parent.SpanID(),
			parent.Name, parent.SpanContext.TraceID(), parent.SpanContext.SpanID())
	}
}

// wantLinkedRoot fails unless s starts a trace of its own, linked to
// exactly the span to.
func wantLinkedRoot(t *testing.T, s tracetest.SpanStub, to tracetest.SpanStub) {
	t.Helper()
	if s.Parent.IsValid() {
		t.Errorf("span %q has parent %s/%s; want a new trace", s.Name, s.Parent.TraceID(), s.Parent.SpanID())
	}
	if s.SpanContext.TraceID() == to.SpanContext.TraceID() {
		t.Errorf("span %q is in the trace of %q; want a trace of its own", s.Name, to.Name)
	}
	if len(s.Links) != 1 || !s.Links[0].SpanContext.Equal(to.SpanContext.WithRemote(true)) && !s.Links[0].SpanContext.Equal(to.SpanContext) {
		t.Errorf("span %q links to %v; want only %q %s/%s", s.Name, s.Links, to.Name, to.SpanContext.TraceID(), to.SpanContext.SpanID())
	}
}

func traceparent(sc trace.SpanContext) string {
	return fmt.Sprintf("00-%s-%s-%s", sc.TraceID(), sc.SpanID(), sc.TraceFlags())
}

// produce → the handler fails → retry topic → handled: the failed attempt's
// span is the parent of the forward's publish span, and the next attempt is
// a trace of its own linked to that publish span.
func TestRetryTopicHopIsTraced(t *testing.T) {
	r := newRig(t)
	topic := r.kc.NewTopic(t, 1, nil)
	group := topic
	retryTopic := retry.TopicName(topic, group, 0)
	var c calls
	r.consume(t, topic, func(ctx context.Context, rec *kgo.Record) error {
		c.add(ctx, rec)
		if info, _ := retry.InfoFrom(ctx); info.Attempt == 1 {
			return errors.New("billing is down")
		}
		return nil
	}, consumer.Retry(retry.NonBlocking(200*time.Millisecond)))
	request := r.produce(t, topic)

	got := r.waitSpans(t, map[string]int{
		"request": 1, topic + " publish": 1, topic + " process": 1, retryTopic + " publish": 1, retryTopic + " process": 1,
	})
	produced, attempt1 := got[topic+" publish"][0], got[topic+" process"][0]
	forward, attempt2 := got[retryTopic+" publish"][0], got[retryTopic+" process"][0]

	if produced.Parent.SpanID() != request.SpanID() {
		t.Errorf("the produce's span is not the child of the request's")
	}
	wantLinkedRoot(t, attempt1, produced)
	if attempt1.Status.Code != codes.Error || attempt1.Status.Description != "billing is down" {
		t.Errorf("attempt 1: status %+v, want the handler's error", attempt1.Status)
	}
	wantAttrs(t, attempt1, map[attribute.Key]any{
		whotel.AttrAttempt: 1, "messaging.consumer.group.name": group, "messaging.destination.name": topic,
		"messaging.destination.partition.id": "0", "messaging.kafka.offset": 0, "messaging.system": "kafka",
	}, whotel.AttrRetryStage, whotel.AttrDLQReason)

	wantChild(t, forward, attempt1)
	wantAttrs(t, forward, map[attribute.Key]any{whotel.AttrAttempt: 2, whotel.AttrRetryStage: 0}, whotel.AttrDLQReason)

	wantLinkedRoot(t, attempt2, forward)
	if attempt2.Status.Code != codes.Unset {
		t.Errorf("attempt 2: status %+v, want unset (handled)", attempt2.Status)
	}
	wantAttrs(t, attempt2, map[attribute.Key]any{
		whotel.AttrAttempt: 2, whotel.AttrRetryStage: 0, "messaging.consumer.group.name": group,
		"messaging.destination.name": retryTopic, "messaging.kafka.offset": 0,
	}, whotel.AttrDLQReason)

	// The handler's ctx is the process span; each record carries its
	// publish span's trace context.
	seen := c.snapshot()
	if len(seen) != 2 {
		t.Fatalf("handler calls: %+v, want 2", seen)
	}
	for i, want := range []struct {
		process, publish tracetest.SpanStub
	}{{attempt1, produced}, {attempt2, forward}} {
		if !seen[i].span.Equal(want.process.SpanContext) {
			t.Errorf("attempt %d: the handler's ctx holds span %s, want the process span %s", i+1, seen[i].span.SpanID(), want.process.SpanContext.SpanID())
		}
		if seen[i].traceparent != traceparent(want.publish.SpanContext) {
			t.Errorf("attempt %d: traceparent %q, want %q's %q", i+1, seen[i].traceparent, want.publish.Name, traceparent(want.publish.SpanContext))
		}
	}
}

// produce → exhausted → dead-letter topic → dlq.Replay → handled: the dead
// letter is published in a span that is the failed attempt's child and says
// why; the replay's publish span is the dead letter's child; the replayed
// record's process span links to it and names the dead letter.
func TestDeadLetterReplayIsTraced(t *testing.T) {
	r := newRig(t)
	topic := r.kc.NewTopic(t, 1, nil)
	group := topic
	dlqTopic := retry.DLQTopicName(topic, group)
	var c calls
	r.consume(t, topic, func(ctx context.Context, rec *kgo.Record) error {
		c.add(ctx, rec)
		if _, replayed := dlq.ReplayMarkOf(rec); !replayed {
			return errors.New("billing is down") // until the operator replays it
		}
		return nil
	})
	r.produce(t, topic)
	r.waitSpans(t, map[string]int{topic + " process": 1, dlqTopic + " publish": 1}) // the dead letter is written

	dc, err := dlq.New(r.conn)
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close(context.Background())
	res, err := dc.Replay(context.Background(), dlqTopic, dlq.Filter{})
	if err != nil || len(res.Replayed) != 1 {
		t.Fatalf("Replay = %+v, %v; want 1 record replayed", res, err)
	}
	deadLetter := res.Replayed[0].From

	got := r.waitSpans(t, map[string]int{
		"request": 1, topic + " publish": 2, topic + " process": 2, dlqTopic + " publish": 1,
	})
	produced, replay := got[topic+" publish"][0], got[topic+" publish"][1]
	attempt1, replayed := got[topic+" process"][0], got[topic+" process"][1]
	dead := got[dlqTopic+" publish"][0]

	wantLinkedRoot(t, attempt1, produced)
	if attempt1.Status.Code != codes.Error {
		t.Errorf("attempt 1: status %+v, want error", attempt1.Status)
	}
	wantChild(t, dead, attempt1)
	wantAttrs(t, dead, map[attribute.Key]any{whotel.AttrAttempt: 1, whotel.AttrDLQReason: string(retry.ReasonExhausted)},
		whotel.AttrRetryStage)

	wantChild(t, replay, dead)
	wantLinkedRoot(t, replayed, replay)
	wantAttrs(t, replayed, map[attribute.Key]any{
		whotel.AttrAttempt: 1, whotel.AttrReplayedFrom: deadLetter.String(), "messaging.destination.name": topic,
		"messaging.kafka.offset": 1,
	}, whotel.AttrRetryStage, whotel.AttrDLQReason)
	if replayed.Status.Code != codes.Unset {
		t.Errorf("the replayed record: status %+v, want unset (handled)", replayed.Status)
	}

	seen := c.snapshot()
	if len(seen) != 2 || !seen[1].span.Equal(replayed.SpanContext) || seen[1].traceparent != traceparent(replay.SpanContext) {
		t.Errorf("handler calls %+v: want the replayed record handled in its process span, carrying the replay's trace context", seen)
	}

	// A replay made in a span of its own (an operator's request) is
	// published in that span, and links to the dead letter instead.
	ctx, operator := r.tp.Tracer("test").Start(context.Background(), "operator replays")
	res, err = dc.Replay(ctx, dlqTopic, dlq.Filter{})
	operator.End()
	if err != nil || len(res.Replayed) != 1 {
		t.Fatalf("second Replay = %+v, %v; want 1 record replayed", res, err)
	}
	got = r.waitSpans(t, map[string]int{"operator replays": 1, topic + " publish": 3, topic + " process": 3})
	again := got[topic+" publish"][2]
	wantChild(t, again, got["operator replays"][0])
	if len(again.Links) != 1 || !again.Links[0].SpanContext.Equal(dead.SpanContext.WithRemote(true)) {
		t.Errorf("the second replay's publish span links to %v, want only the dead letter's span %s", again.Links, dead.SpanContext.SpanID())
	}
	wantLinkedRoot(t, got[topic+" process"][2], again)
}

// Blocking retries, then a retry topic, then the dead-letter topic: each
// forward's publish span is the child of the attempt that failed last before
// it, not of an earlier one.
func TestForwardsAreChildrenOfTheLastFailedAttempt(t *testing.T) {
	r := newRig(t)
	topic := r.kc.NewTopic(t, 1, nil)
	group := topic
	retryTopic, dlqTopic := retry.TopicName(topic, group, 0), retry.DLQTopicName(topic, group)
	r.consume(t, topic, func(ctx context.Context, rec *kgo.Record) error {
		info, _ := retry.InfoFrom(ctx)
		return fmt.Errorf("attempt %d failed", info.Attempt)
	}, consumer.Retry(retry.BlockingThenNonBlocking(retry.Blocking(50*time.Millisecond), retry.NonBlocking(100*time.Millisecond))))
	r.produce(t, topic)

	got := r.waitSpans(t, map[string]int{
		topic + " process": 2, retryTopic + " publish": 1, retryTopic + " process": 1, dlqTopic + " publish": 1,
	})
	first, inPlace := got[topic+" process"][0], got[topic+" process"][1]
	forward, third, dead := got[retryTopic+" publish"][0], got[retryTopic+" process"][0], got[dlqTopic+" publish"][0]
	for i, s := range []tracetest.SpanStub{first, inPlace, third} {
		wantAttrs(t, s, map[attribute.Key]any{whotel.AttrAttempt: i + 1})
		if want := fmt.Sprintf("attempt %d failed", i+1); s.Status.Code != codes.Error || s.Status.Description != want {
			t.Errorf("attempt %d: status %+v, want error %q", i+1, s.Status, want)
		}
	}
	if !inPlace.Links[0].SpanContext.Equal(first.Links[0].SpanContext) {
		t.Errorf("the in-place retry links to %v, the first attempt to %v: want the same producer span", inPlace.Links, first.Links)
	}
	wantChild(t, forward, inPlace)
	wantAttrs(t, forward, map[attribute.Key]any{whotel.AttrAttempt: 3, whotel.AttrRetryStage: 0})
	wantLinkedRoot(t, third, forward)
	wantChild(t, dead, third)
	wantAttrs(t, dead, map[attribute.Key]any{whotel.AttrAttempt: 3, whotel.AttrDLQReason: string(retry.ReasonExhausted)})
}

// A handler that panics: its span ends as failed, and the panic goes on,
// unrecovered, to the consumer (which makes it a failure with its stack).
func TestMiddlewarePanicEndsSpanAndPanicsOn(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	h := whotel.New(whotel.TracerProvider(tp)).Middleware("g")(consumer.HandlerFunc(func(context.Context, *kgo.Record) error {
		panic("boom")
	}))
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want the handler's panic", v)
			}
		}()
		_ = h.Handle(context.Background(), &kgo.Record{Topic: "orders", Offset: 7})
	}()
	spans := exp.GetSpans()
	if len(spans) != 1 || spans[0].Name != "orders process" || spans[0].Status.Code != codes.Error ||
		!strings.Contains(spans[0].Status.Description, "panicked") {
		t.Fatalf("spans %+v, want one ended \"orders process\" span with an error status", spans)
	}
}

// A batch call is one process span linked to the publish span of each of
// its records; the forward of a record it failed is a child of that span.
func TestBatchCallIsOneSpanLinkedToEachRecord(t *testing.T) {
	r := newRig(t)
	topic := r.kc.NewTopic(t, 1, nil)
	group := topic
	dlqTopic := retry.DLQTopicName(topic, group)
	for range 3 {
		r.produce(t, topic)
	}
	h := consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) error {
		if !trace.SpanContextFromContext(ctx).IsValid() {
			return errors.New("no span in the batch call's ctx")
		}
		errs := make([]error, len(recs))
		for i, rec := range recs {
			if rec.Offset == 1 {
				errs[i] = errors.New("offset 1 fails")
			}
		}
		return consumer.RecordErrors(errs)
	})
	c, err := consumer.NewBatch(r.conn, h, consumer.Group(group), consumer.Topics(topic),
		consumer.BatchSize(3, 10*time.Second), // one call of the 3 records, however they are fetched
		consumer.WithBatchMiddleware(r.tr.BatchMiddleware(group)))
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)

	got := r.waitSpans(t, map[string]int{topic + " process": 1, dlqTopic + " publish": 1, topic + " publish": 3})
	call, dead := got[topic+" process"][0], got[dlqTopic+" publish"][0]
	wantAttrs(t, call, map[attribute.Key]any{"messaging.batch.message_count": 3, "messaging.consumer.group.name": group})
	if call.Parent.IsValid() {
		t.Errorf("the batch span has parent %v; want a new trace", call.Parent)
	}
	if len(call.Links) != 3 {
		t.Fatalf("the batch span has %d links, want 3 (one per record)", len(call.Links))
	}
	for i, pub := range got[topic+" publish"] {
		if !call.Links[i].SpanContext.Equal(pub.SpanContext.WithRemote(true)) && !call.Links[i].SpanContext.Equal(pub.SpanContext) {
			t.Errorf("link %d: %s/%s, want record %d's publish span %s/%s", i, call.Links[i].SpanContext.TraceID(), call.Links[i].SpanContext.SpanID(),
				i, pub.SpanContext.TraceID(), pub.SpanContext.SpanID())
		}
	}
	if call.Status.Code == codes.Error {
		t.Errorf("the batch span's status is %+v; some records were handled, so it must not be Error", call.Status)
	}
	wantChild(t, dead, call)
	wantAttrs(t, dead, map[attribute.Key]any{whotel.AttrDLQReason: string(retry.ReasonExhausted)})
}

// TestNilOptionIsIgnored checks that New skips a nil Option, as every
// constructor of whippet does, and applies the options around it.
func TestNilOptionIsIgnored(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tr := whotel.New(nil, whotel.TracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))), nil)
	h := tr.Middleware("g")(consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil }))
	if err := h.Handle(context.Background(), &kgo.Record{Topic: "orders"}); err != nil {
		t.Fatal(err)
	}
	if n := len(exp.GetSpans()); n != 1 {
		t.Errorf("%d spans in the given provider, want the handler call's 1", n)
	}
}

package whotel

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/whippet-go/whippet/retry"
)

// The attributes whippet adds to spans, besides OpenTelemetry's messaging
// attributes.
const (
	// AttrAttempt is the number of the handling attempt (1 for the first),
	// on process spans; on the publish span of a forward, the attempt the
	// forwarded record is for (on a dead letter: the attempts made).
	AttrAttempt = attribute.Key("whippet.attempt")
	// AttrRetryStage is the retry stage n (from 0) of a record of retry
	// topic "<topic>-<group>-retry-<n>", on process spans and on the publish
	// span of a forward to that topic.
	AttrRetryStage = attribute.Key("whippet.retry.stage")
	// AttrDLQReason is why a record was dead-lettered (retry.Reason), on the
	// publish span of the forward to the dead-letter topic and on the process
	// span of a dead letter handled by a consumer of that topic.
	AttrDLQReason = attribute.Key("whippet.dlq.reason")
	// AttrReplayedFrom is the dead letter a replayed record came from,
	// "<dlq topic>/<partition>/<offset>" (dlq.HeaderReplayedFrom), on its
	// process span.
	AttrReplayedFrom = attribute.Key("whippet.dlq.replayed_from")
)

// Option configures a Tracing.
type Option func(*config)

type config struct {
	provider   trace.TracerProvider
	propagator propagation.TextMapPropagator
}

// TracerProvider sets where spans go. Default: the global provider
// (otel.GetTracerProvider()), which records nothing until the service sets
// one.
func TracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.provider = tp }
}

// Propagator sets how trace context is written to and read from record
// headers. Default: W3C Trace Context and Baggage ("traceparent",
// "tracestate", "baggage"), rather than OpenTelemetry's global propagator,
// which propagates nothing until the service sets one; pass
// otel.GetTextMapPropagator() to use the global one.
func Propagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.propagator = p }
}

// Tracing traces whippet's clients and handlers: ClientOptions for every
// client made with a whippet.Connection, Middleware for each consumer. Make
// one per service and use it in both places: it is what connects a failed
// attempt to the forward of its record. It is safe for concurrent use.
type Tracing struct {
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	kotel      *kotel.Tracer
	failures   failures
}

// instrumentation names whippet's spans (kotel names its own).
const instrumentation = "github.com/whippet-go/whippet/otel"

// New returns a Tracing. It does no I/O.
func New(opts ...Option) *Tracing {
	cfg := config{}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.provider == nil {
		cfg.provider = otel.GetTracerProvider()
	}
	if cfg.propagator == nil {
		cfg.propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	return &Tracing{
		tracer:     cfg.provider.Tracer(instrumentation),
		propagator: cfg.propagator,
		kotel: kotel.NewTracer(kotel.TracerProvider(cfg.provider), kotel.TracerPropagator(cfg.propagator),
			kotel.LinkSpans()),
		failures: failures{m: map[attemptKey]failedAttempt{}},
	}
}

// ClientOptions returns the franz-go options that trace a client: add them
// to whippet.Connection.ClientOptions (or pass them to kgo.NewClient), and
// every client made with that Connection publishes and receives records in
// spans and writes trace context into the headers of what it produces.
func (t *Tracing) ClientOptions() []kgo.Opt {
	return []kgo.Opt{kgo.WithHooks(before{t}, t.kotel, after{t})}
}

// before runs ahead of kotel's produce hook, which starts the publish span
// from the record's context and overwrites the trace context in its
// headers. It chooses that span's parent when the context has no span: the
// failed attempt of a record the consumer forwards, else the trace context
// the record already carries, so that the trace is not cut.
type before struct{ t *Tracing }

// OnProduceRecordBuffered implements kgo.HookProduceRecordBuffered.
func (b before) OnProduceRecordBuffered(r *kgo.Record) {
	t := b.t
	ctx := r.Context
	if trace.SpanContextFromContext(ctx).IsValid() {
		carried := trace.SpanContextFromContext(t.propagator.Extract(context.Background(), kotel.NewRecordCarrier(r)))
		if carried.IsValid() && carried.TraceID() != trace.SpanContextFromContext(ctx).TraceID() {
			r.Context = context.WithValue(ctx, carriedKey{}, carried) // linked by after
		}
		return
	}
	if f, ok := forwardOf(r); ok {
		if sc, ok := t.failures.take(f.key, f.failedAttempt); ok {
			r.Context = trace.ContextWithSpanContext(ctx, sc)
			return
		}
	}
	r.Context = t.propagator.Extract(ctx, kotel.NewRecordCarrier(r))
}

type carriedKey struct{}

// after runs behind kotel's produce hook: the publish span exists.
type after struct{ t *Tracing }

// OnProduceRecordBuffered implements kgo.HookProduceRecordBuffered.
func (after) OnProduceRecordBuffered(r *kgo.Record) {
	span := trace.SpanFromContext(r.Context)
	if !span.IsRecording() {
		return
	}
	if sc, ok := r.Context.Value(carriedKey{}).(trace.SpanContext); ok {
		span.AddLink(trace.Link{SpanContext: sc})
	}
	if f, ok := forwardOf(r); ok {
		span.SetAttributes(AttrAttempt.Int(f.info.Attempt))
		if f.info.Reason != "" {
			span.SetAttributes(AttrDLQReason.String(string(f.info.Reason)))
		} else if _, n, ok := retry.ParseTopicName(r.Topic, f.info.Group); ok {
			span.SetAttributes(AttrRetryStage.Int(n))
		}
	}
}

// forward is what the retry headers of a record the consumer forwards say.
type forward struct {
	info          retry.Info
	key           attemptKey
	failedAttempt int // the attempt whose failure made the forward
}

// forwardOf reads r's retry headers, if it is a forward: a record to a retry
// topic carries the attempt it is for, a dead letter the attempts made.
func forwardOf(r *kgo.Record) (forward, bool) {
	var isForward bool
	for _, h := range r.Headers {
		if h.Key == retry.HeaderGroup {
			isForward = true
			break
		}
	}
	if !isForward {
		return forward{}, false
	}
	info, ok := retry.InfoFor(r)
	if !ok || info.Group == "" {
		return forward{}, false
	}
	if _, _, ok := retry.ParseTopicName(r.Topic, info.Group); !ok && !retry.IsDLQTopicName(r.Topic, info.Group) {
		return forward{}, false // e.g. an output whose headers were copied from a retry
	}
	failed := info.Attempt
	if info.Reason == "" {
		failed--
	}
	return forward{info: info, failedAttempt: failed, key: attemptKey{group: info.Group, topic: info.OriginalTopic,
		partition: info.OriginalPartition, offset: info.OriginalOffset}}, true
}

// attemptKey names a record as the consumer's retry headers do: its group
// and where it was first consumed.
type attemptKey struct {
	group     string
	topic     string
	partition int32
	offset    int64
}

type failedAttempt struct {
	attempt int
	span    trace.SpanContext
	at      time.Time
}

// failures remembers the span of each record's last failed attempt until the
// consumer forwards the record, so that the forward's publish span can be its
// child: the consumer builds the forwarded record without the handler's
// context. An entry lives from a failure to the forward that follows at once,
// or to the next attempt of a blocking retry, which replaces it; entries of
// partitions revoked in between are left behind, so the map is bounded.
type failures struct {
	mu sync.Mutex
	m  map[attemptKey]failedAttempt
}

const (
	// maxFailures bounds the failures remembered; beyond it a forward's
	// publish span falls back to the trace context in the record's headers.
	maxFailures = 10000
	// failureTTL is the age after which an entry is dropped when the map
	// is full.
	failureTTL = 10 * time.Minute
)

func (f *failures) put(k attemptKey, attempt int, sc trace.SpanContext) {
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.m[k]; !ok && len(f.m) >= maxFailures {
		for k, v := range f.m {
			if now.Sub(v.at) > failureTTL {
				delete(f.m, k)
			}
		}
		if len(f.m) >= maxFailures {
			return
		}
	}
	f.m[k] = failedAttempt{attempt: attempt, span: sc, at: now}
}

// take returns and forgets the span of attempt of k.
func (f *failures) take(k attemptKey, attempt int) (trace.SpanContext, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.m[k]
	if !ok || v.attempt != attempt {
		return trace.SpanContext{}, false
	}
	delete(f.m, k)
	return v.span, true
}

func (f *failures) forget(k attemptKey) {
	f.mu.Lock()
	delete(f.m, k)
	f.mu.Unlock()
}

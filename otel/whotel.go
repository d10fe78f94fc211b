package whotel

import (
	"context"

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

// Option configures a Tracing. A nil Option is ignored.
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
// one per service and use it in both places. It is safe for concurrent use.
type Tracing struct {
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	kotel      *kotel.Tracer
}

// instrumentation names whippet's spans (kotel names its own).
const instrumentation = "github.com/whippet-go/whippet/otel"

// New returns a Tracing. It does no I/O.
func New(opts ...Option) *Tracing {
	cfg := config{}
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
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
// headers. A record produced in a span (the consumer produces its forwards
// and Emit outputs with the handler call's context, which holds the process
// span) is published as its child, linked to another trace it carries in its
// headers. A record produced without a span but with trace context in its
// headers (a dlq.Replay from a dead letter) is published as the child of
// that trace context, so that the trace is not cut.
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
	if info, ok := forwardOf(r); ok {
		span.SetAttributes(AttrAttempt.Int(info.Attempt))
		if info.Reason != "" {
			span.SetAttributes(AttrDLQReason.String(string(info.Reason)))
		} else if _, n, ok := retry.ParseTopicName(r.Topic, info.Group); ok {
			span.SetAttributes(AttrRetryStage.Int(n))
		}
	}
}

// forwardOf reads r's retry headers, if it is a forward: a record to a retry
// topic carries the attempt it is for, a dead letter the attempts made.
func forwardOf(r *kgo.Record) (retry.Info, bool) {
	var isForward bool
	for _, h := range r.Headers {
		if h.Key == retry.HeaderGroup {
			isForward = true
			break
		}
	}
	if !isForward {
		return retry.Info{}, false
	}
	info, ok := retry.InfoFor(r)
	if !ok || info.Group == "" {
		return retry.Info{}, false
	}
	if _, _, ok := retry.ParseTopicName(r.Topic, info.Group); !ok && !retry.IsDLQTopicName(r.Topic, info.Group) {
		return retry.Info{}, false // e.g. an output whose headers were copied from a retry
	}
	return info, true
}

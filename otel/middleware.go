package whotel

import (
	"context"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/retry"
)

// Middleware returns the consumer middleware that handles each record in a
// "<topic> process" span (kind consumer): a new trace, linked to the span
// whose trace context the record carries in its headers (the producer's
// publish span), with the baggage it carries. The handler's ctx holds the
// span; it ends when the handler returns, with status Error and the error
// recorded if the handler failed or panicked (the panic goes on, unrecovered,
// to the consumer, which makes it a failure).
//
// group is the consumer's group (consumer.Group): it names the group
// attribute and tells retry topics, and their stage, by name. Put the
// middleware first (outermost), so that the span covers the others.
func (t *Tracing) Middleware(group string) consumer.Middleware {
	return func(next consumer.Handler) consumer.Handler {
		return consumer.HandlerFunc(func(ctx context.Context, rec *kgo.Record) (err error) {
			info, _ := retry.InfoFrom(ctx)
			// The span of ctx, if Run's ctx had one, is no producer's.
			ctx = t.propagator.Extract(trace.ContextWithSpanContext(ctx, trace.SpanContext{}), kotel.NewRecordCarrier(rec))
			opts := []trace.SpanStartOption{
				trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithNewRoot(),
				trace.WithAttributes(
					semconv.MessagingSystemKafka,
					semconv.MessagingOperationTypeProcess,
					semconv.MessagingOperationName("process"),
					semconv.MessagingDestinationName(rec.Topic),
					semconv.MessagingDestinationPartitionID(strconv.Itoa(int(rec.Partition))),
					semconv.MessagingKafkaOffset(int(rec.Offset)),
					semconv.MessagingConsumerGroupName(group),
					AttrAttempt.Int(info.Attempt),
				),
			}
			if producer := trace.SpanContextFromContext(ctx); producer.IsValid() {
				opts = append(opts, trace.WithLinks(trace.Link{SpanContext: producer}))
			}
			if _, n, ok := retry.ParseTopicName(rec.Topic, group); ok {
				opts = append(opts, trace.WithAttributes(AttrRetryStage.Int(n)))
			}
			for _, h := range rec.Headers {
				switch h.Key {
				case retry.HeaderDLQReason:
					opts = append(opts, trace.WithAttributes(AttrDLQReason.String(string(h.Value))))
				case dlq.HeaderReplayedFrom:
					opts = append(opts, trace.WithAttributes(AttrReplayedFrom.String(string(h.Value))))
				}
			}
			ctx, span := t.tracer.Start(ctx, rec.Topic+" process", opts...)
			returned := false
			defer func() {
				switch {
				case !returned: // a panic: not recovered here, so the consumer sees its stack
					failed(span, consumer.ErrHandlerPanic)
				case err != nil:
					failed(span, err)
				}
				span.End()
			}()
			err = next.Handle(ctx, rec)
			returned = true
			return err
		})
	}
}

// failed marks span as failed with err.
func failed(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

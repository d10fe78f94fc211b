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
			info, retried := retry.InfoFrom(ctx)
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
					t.failed(span, group, rec, info, retried, consumer.ErrHandlerPanic)
				case err != nil:
					t.failed(span, group, rec, info, retried, err)
				case retried:
					t.failures.forget(original(group, rec, info, retried))
				}
				span.End()
			}()
			err = next.Handle(ctx, rec)
			returned = true
			return err
		})
	}
}

// failed marks span as failed and remembers it as the last failed attempt
// of rec, for the publish span of rec's forward (see before).
func (t *Tracing) failed(span trace.Span, group string, rec *kgo.Record, info retry.Info, retried bool, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	t.failures.put(original(group, rec, info, retried), info.Attempt, span.SpanContext())
}

// original names rec as the consumer's retry headers will: a first attempt
// is at rec itself.
func original(group string, rec *kgo.Record, info retry.Info, retried bool) attemptKey {
	if !retried {
		return attemptKey{group: group, topic: rec.Topic, partition: rec.Partition, offset: rec.Offset}
	}
	return attemptKey{group: group, topic: info.OriginalTopic, partition: info.OriginalPartition, offset: info.OriginalOffset}
}

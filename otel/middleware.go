package whotel

import (
	"context"
	"errors"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
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
			opts := processSpanOptions(group, rec.Topic, rec.Partition,
				semconv.MessagingKafkaOffset(int(rec.Offset)), AttrAttempt.Int(info.Attempt))
			if producer := trace.SpanContextFromContext(ctx); producer.IsValid() {
				opts = append(opts, trace.WithLinks(trace.Link{SpanContext: producer}))
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

// processSpanOptions start a "<topic> process" span of group's records of
// a partition (kind consumer, a new trace) with the messaging attributes,
// extra, and the retry stage when topic is one of group's retry topics.
func processSpanOptions(group, topic string, partition int32, extra ...attribute.KeyValue) []trace.SpanStartOption {
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithNewRoot(),
		trace.WithAttributes(
			semconv.MessagingSystemKafka,
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingOperationName("process"),
			semconv.MessagingDestinationName(topic),
			semconv.MessagingDestinationPartitionID(strconv.Itoa(int(partition))),
			semconv.MessagingConsumerGroupName(group),
		),
		trace.WithAttributes(extra...),
	}
	if _, n, ok := retry.ParseTopicName(topic, group); ok {
		opts = append(opts, trace.WithAttributes(AttrRetryStage.Int(n)))
	}
	return opts
}

// failed marks span as failed with err.
func failed(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// BatchMiddleware is Middleware for batch handlers (consumer.NewBatch,
// consumer.WithBatchMiddleware): each call is a "<topic> process" span
// (kind consumer, a new trace) linked to the span whose trace context each
// of its records carries (up to the SDK's link limit, 128 by default), with
// the batch's size and the partition. It ends when the call returns, with
// status Error if every record failed (a plain error or a panic); a
// *consumer.BatchError is recorded as an event, the call's status staying
// unset, since some records were handled. Forwards of the call's failed
// records are children of the span.
func (t *Tracing) BatchMiddleware(group string) consumer.BatchMiddleware {
	return func(next consumer.BatchHandler) consumer.BatchHandler {
		return consumer.BatchHandlerFunc(func(ctx context.Context, recs []*kgo.Record) (err error) {
			first := recs[0]
			opts := processSpanOptions(group, first.Topic, first.Partition, semconv.MessagingBatchMessageCount(len(recs)))
			links := make([]trace.Link, 0, len(recs))
			for _, rec := range recs {
				pctx := t.propagator.Extract(context.Background(), kotel.NewRecordCarrier(rec))
				if producer := trace.SpanContextFromContext(pctx); producer.IsValid() {
					links = append(links, trace.Link{SpanContext: producer})
				}
			}
			opts = append(opts, trace.WithLinks(links...))
			ctx, span := t.tracer.Start(trace.ContextWithSpanContext(ctx, trace.SpanContext{}), first.Topic+" process", opts...)
			returned := false
			defer func() {
				var be *consumer.BatchError
				switch {
				case !returned:
					failed(span, consumer.ErrHandlerPanic)
				case errors.As(err, &be):
					span.RecordError(err)
				case err != nil:
					failed(span, err)
				}
				span.End()
			}()
			err = next.HandleBatch(ctx, recs)
			returned = true
			return err
		})
	}
}

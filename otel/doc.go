// Package whotel traces whippet with OpenTelemetry. It is a module of its
// own (github.com/whippet-go/whippet/otel), so a service that does not trace
// pulls no OpenTelemetry into its build.
//
// A service makes one Tracing and adds it in two places:
//
//	tr := whotel.New(whotel.TracerProvider(tp))
//	kafka.ClientOptions = append(kafka.ClientOptions, tr.ClientOptions()...) // kafka is the whippet.Connection
//	c, err := consumer.New(kafka, handler, consumer.Group("renewals"), consumer.Topics("renewals"),
//		consumer.WithMiddleware(tr.Middleware("renewals")))
//
// ClientOptions installs franz-go's kotel hooks on every client made with the
// Connection (producers, consumers and their forwarding clients, dlq, kvstore,
// ...): a "<topic> publish" span per produced record, whose trace context goes
// into the record's headers (W3C traceparent by default), and a "<topic>
// receive" span per fetched record.
//
// Middleware starts a "<topic> process" span per handler call; the handler's
// ctx carries it, so what the handler produces with that ctx, and the spans
// it starts, belong to it. The process span is a new trace linked to the
// producer's span from the record's headers, not its child (kotel's
// LinkSpans): a retry handled minutes later, or a dead letter replayed days
// later, would otherwise stretch the producer's trace over all that time.
// Its attributes are the messaging ones (topic, partition, offset, group)
// and whippet's: AttrAttempt, AttrRetryStage for records of retry topics,
// AttrDLQReason for dead letters, AttrReplayedFrom for replayed records.
//
// Retries and dead letters stay connected. The consumer produces what it
// produces for a handler call with that call's context: a record it
// forwards to a retry topic or the dead-letter topic with the context of the
// attempt that failed, as the middlewares passed it on (so add Middleware
// with consumer.WithMiddleware, not by wrapping the handler yourself), and
// an output of consumer.Emit with the ctx given to Emit. So the forward's
// publish span is the child of the failed attempt's process span, and the
// next attempt (linked to that publish span) leads back to the failure, and
// from there to the original producer; an output's publish span is the child
// of the span that emitted it. This needs only kotel's hooks. A record
// produced in a span but carrying the trace context of another trace in its
// headers (a forward carries its previous publish span's) is also linked to
// that one. A record produced without a span but with trace context in its
// headers, such as one dlq.Replay produces from a dead letter, is published
// as the child of that trace context instead of starting a trace of its own:
// the replayed record's process span links to the replay's publish span,
// whose parent is the dead letter's.
package whotel

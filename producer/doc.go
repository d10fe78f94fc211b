// Package producer is whippet's Kafka producer: a thin, safe layer over a
// franz-go [kgo.Client] that produces records synchronously or
// asynchronously, encodes typed keys and values with a [Codec], and never
// loses track of a record.
//
// # Delivery guarantees
//
// A [Producer] is idempotent by default and waits for acks from all in-sync
// replicas (acks=all): these are franz-go's defaults and whippet keeps them.
// Retried produce requests therefore never duplicate or reorder records of a
// partition. [ClientOptions] is an escape hatch that can change this (for
// example kgo.DisableIdempotentWrite); doing so is the caller's choice.
//
// No record is dropped without an error reaching the caller:
//
//   - [Producer.Produce] returns either the record's [Result] or an error.
//   - [Producer.ProduceAsync] calls its callback exactly once, with either a
//     Result or an error, including when the producer is closed, ctx is
//     canceled, or the cluster is unreachable.
//   - [Producer.Close] flushes pending records within [FlushTimeout] (or
//     until its context is done); records still undelivered then are failed
//     with an error matching [ErrClosed], and Close returns only after every
//     callback has returned. (With [NewFromClient], whose client the
//     Producer does not own, they stay with the client; see Close.)
//   - A synchronous produce whose context ends before Kafka answers returns
//     an error matching [ErrUnconfirmed]: the outcome is not known yet.
//
// # Codecs
//
// [Typed] pairs a producer with a topic and key/value codecs from package
// codec ([codec.String], [codec.JSON], [codec.Bytes] or your own
// [codec.Codec]); encode failures wrap [codec.ErrEncode].
//
// # Observability
//
// [Logger] routes franz-go's logs (through kzap) and the producer's own
// logs to a zap logger. [Registerer] enables Prometheus metrics: franz-go's
// client metrics (kprom) under whippet_producer_kgo_*, plus
// whippet_producer_records_produced_total, whippet_producer_records_failed_total
// and whippet_producer_produce_latency_seconds, all labeled by topic and by
// the producer's client_id.
package producer

// Package dlq is the tooling for whippet's dead-letter queues: list, inspect,
// replay and purge the records a consumer gave up on.
//
// # Dead-letter records
//
// When a whippet consumer gives up on a record (its retries are exhausted,
// the error is not retriable, the record cannot be decoded, or an operator
// skipped it), it produces the record to "<topic>-<group>-dlq"
// (retry.DLQTopicName) with the same key and value, the original headers,
// and the retry headers that retry.Info encodes: attempts made, original
// topic/partition/offset/timestamp, group, first and last failure, last
// error and the reason (retry.HeaderDLQReason). [Parse] reads such a record
// back into a [Record].
//
// # Operations
//
//   - [Client.List] reads a dead-letter topic directly, without a consumer
//     group (no committed offset moves), up to the end offsets seen when the
//     call began, and filters by key, error text, reason, partition and time
//     ([Filter]); it pages with Filter.Limit and a cursor ([Page.Next]).
//   - [Client.Get] returns the record at one position, or [ErrNotFound].
//   - [Client.Replay] produces selected records back to their original
//     topic, without the retry headers (the consumer handles them as fresh
//     first attempts) and with replay headers ([HeaderReplayedFrom],
//     [HeaderReplayedAt], [HeaderReplayCount]) that say where they came
//     from. The dead-letter topic is not changed: replaying twice produces
//     twice, visibly. [DryRun] shows what would be replayed. Records go
//     only to the topic the dead-letter topic belongs to, whatever their
//     original-topic header says, unless [ReplayTo] names the target.
//   - [Client.Purge] deletes records for good. Kafka can only delete every
//     record before an offset of a partition, so a purge takes everything
//     ([PurgeAll]) or everything dead-lettered before a time
//     ([PurgeBefore]); records cannot be purged selectively by key or
//     error.
//
// Times are the dead-letter records' Kafka timestamps (when they were
// dead-lettered), for the time filters and for PurgeBefore alike. [ParseTime]
// reads the times operators type ("2h", "7d", RFC 3339), and [Record.View]
// gives a record's JSON form ([RecordView]): the whippet CLI and the admin
// API (package consumer/admin) both use them, so they take and print the
// same.
//
// # Connecting
//
// [New] takes the service's [whippet.Connection] (brokers, TLS, SASL, client
// id, logger, registerer), as every whippet constructor does:
//
//	d, err := dlq.New(kafka)
//	defer d.Close(ctx)
//
// [NewFromClient] works through a franz-go client the service already has.
// [Client.Close] refuses new calls and waits for those in progress.
//
// The `whippet dlq` command (cmd/whippet) wraps this package for operators.
package dlq

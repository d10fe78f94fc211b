// Package atomicstore is a key-value store whose updates are serialized per
// key through Kafka, so that read-modify-write updates from many processes
// (counters, sets of finished tasks) are exact.
//
// A store named name is two topics with the same partition count:
// "<name>-commands", where clients (Store) send commands keyed by the entity
// key, and "<name>-store", compacted, holding each key's current value. A
// Processor (a consumer group on the commands topic in the consumer
// package's Transactional mode) applies each command to the key's current
// value and writes the new value to the store topic in the same Kafka
// transaction that commits the command's offset: across crashes and
// rebalances no command is lost or applied twice. Built-in operations: Add
// (int64 counters), Set and CompareAndSet; user-defined ones are registered
// by name (Processor.Register) and invoked with Call. An update function may
// Emit records (a completion event) into the same transaction.
//
// Update sends a command and waits for its result: the processor copies the
// command id onto the store record (header HeaderCommandID), and the
// client's replica of the store topic (a kvstore.Store, read_committed)
// matches it as it fetches it. Get reads that replica.
//
// # Sending a command again
//
// Kafka's transactions make each command record count once, but a client
// that sends the same update twice (again after ErrUpdateTimeout, or after a
// produce error although Kafka stored the record) makes two records. So the
// processor deduplicates by command id: per partition it remembers the
// outcomes of the last DedupWindow ids it applied (10,000 by default), and
// answers a command whose id is among them with a store record that leaves
// the value as it is and carries the original result (HeaderDuplicate), so
// every Update with that id returns the same value and outcome. Give the
// command a stable id with Command.WithID to retry safely. The window is
// rebuilt with the values from the store records, which carry the ids; an
// id whose record compaction removed, or that is older than the last
// DedupWindow commands of its partition, is forgotten, and a command sent
// again then is applied again.
//
// A result can be missed: a replica that lags (its store partition's leader
// restarting) may find that compaction removed the record with its result,
// replaced by a later record of the same key. The replica sees the offsets
// it skipped, and each Update waiting on that partition then sends a result
// query (OpQuery, never applied) that the processor answers from its window,
// or with ErrResultUnknown if the id left it.
//
// # Where the processor gets the current value
//
// The processor must know each key's current value before it applies a
// command. Commands and store records are co-partitioned: same partition
// count and Kafka's default key hash (murmur2), so key k's commands and value
// both live in partition p = hash(k) mod n of their topic (Store sends with
// that partition explicitly and the processor refuses a command on another).
// So the owner of commands partition p is the only writer of store partition
// p, and keeps it in memory:
//
//   - On the first command of an assignment (recognized by
//     consumer.Assignment of the handler's context), it
//     rebuilds partition p from the store topic: it waits until the
//     partition's last stable offset equals its high watermark (no
//     transaction open on it: the previous owner's — or a killed zombie's —
//     was committed or aborted and its markers written), then reads it
//     read_committed up to that offset. Because the consumer only gets its
//     records after the previous owner's offsets are stable (KIP-447), the
//     rebuilt values are exactly those of the commands before its position.
//   - It then updates the copy as it emits. A transaction that aborts
//     leaves the copy ahead of Kafka; the consumer then rewinds to the last
//     committed offset, so the next command of the partition has an offset
//     at or below the last one applied: that triggers a rebuild too.
//   - A rebuild that cannot finish within LoadTimeout (a transaction of a
//     dead instance stays open until the broker times it out) aborts the
//     transaction (consumer.ErrAbort), and it is tried again.
//
// The alternative, a kvstore.Store caught up to the store topic's end before
// each transaction, was not chosen: values written by the transaction under
// way are not readable (read_committed) until it commits, so the processor
// would need an overlay of its own writes anyway, plus hooks at transaction
// begin and abort that the consumer does not expose; and every processor
// would replicate every partition instead of only those it owns.
//
// Rejected commands (update function error, unknown operation, compare-and-
// set mismatch) leave the value unchanged; the processor still writes the
// value with HeaderError so that Update learns the outcome.
package atomicstore

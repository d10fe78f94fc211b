// Package atomicstore is a key-value store whose updates are serialized per
// key through Kafka, so that read-modify-write updates from many processes
// (counters, sets of finished tasks) are exact.
//
// A store named name is two topics with the same partition count:
// "<name>-commands", where clients (Store) send commands keyed by the entity
// key, and "<name>-store", compacted, holding each key's current value. A
// Processor (a consumer group "<name>-processor" on the commands topic, in
// the consumer package's Transactional mode) applies each command to the
// key's current value and writes the new value to the store topic in the
// same Kafka transaction that commits the command's offset: across crashes
// and rebalances no command is lost or applied twice. Built-in operations:
// Add (int64 counters), Set and CompareAndSet; user-defined ones are
// registered by name (Processor.Register) and invoked with Call. An update
// function may Emit records (a completion event) into the same transaction.
// Rejected commands (update function error, unknown operation,
// compare-and-set mismatch) leave the value unchanged; Update reports them
// with ErrRejected.
//
// Update sends a command and waits for its result: the processor copies the
// command id onto the store record (header HeaderCommandID), and the
// client's replica of the store topic (a kvstore.Store, read_committed)
// matches it as it fetches it. Get reads that replica.
//
// Both sides take a whippet.Connection; Store.Close and Processor.Close
// release them. A key's commands and value must live in the same partition
// of their topics (Kafka's default key hash): the store and the processor
// place their records so, whatever partitioner Connection.ClientOptions
// names, and the processor refuses (dead-letters) a command found on
// another partition.
//
// # Sending a command again
//
// Kafka's transactions make each command record count once, but a client
// that sends the same update twice (again after ErrUpdateTimeout, or after a
// produce error although Kafka stored the record) makes two records. So the
// processor deduplicates by command id: per partition it remembers the
// outcomes of the last DedupWindow ids it applied (DefaultDedupWindow,
// 10,000), and answers a command whose id is among them with a store record
// that leaves the value as it is and carries the original result
// (HeaderDuplicate), so every Update with that id returns the same value and
// outcome. Give the command a stable id with Command.WithID to retry safely.
// An id older than the last DedupWindow commands of its partition, or whose
// store record compaction removed before a processor rebuilt the partition,
// is forgotten: a command sent again then is applied again.
//
// If the replica misses the record with an Update's result (compaction
// removed it before a lagging replica fetched it), Update asks the
// processor for it (OpQuery, never applied), which answers from its window,
// or with ErrResultUnknown if the id left it.
//
// # Metrics
//
// On Connection.Registerer, labelled store=<name>:
//
//	whippet_atomicstore_commands_total    Store: commands sent (Send, Update) that Kafka acknowledged
//	whippet_atomicstore_update_seconds    Store: histogram of Update's latency, call to answer
//	whippet_atomicstore_applied_total     Processor: commands applied (new value written)
//	whippet_atomicstore_rejected_total    Processor: commands rejected (value unchanged)
//	whippet_atomicstore_duplicates_total  Processor: commands sent again, answered from the dedup window
//	whippet_atomicstore_rebuilds_total    Processor: store partitions rebuilt from the store topic
//
// The processor counts in the transaction under way: commands of a
// transaction that aborts are applied, and counted, again. The clients'
// own metrics are whippet_kafka_*{component="atomicstore", name=<name>}
// (the store's producer), the replica's (see kvstore.Open, store <name>)
// and the processor's consumer's (group "<name>-processor"). A Store and a
// Processor of one name share a Registerer; two Stores, or two Processors,
// of one name on one Registerer are a config error (Connection.Registerer).
//
// # Defaults
//
// Partitions: DefaultPartitions (6). UpdateTimeout: DefaultUpdateTimeout
// (30s). LoadTimeout: DefaultLoadTimeout (15s). DedupWindow:
// DefaultDedupWindow (10,000). TransactionBatch: the consumer's,
// consumer.DefaultTransactionRecords (100,000 records) and
// consumer.DefaultTransactionInterval (100ms). TransactionalID: required by
// the processor, no default.
//
// How the processor keeps each key's current value (rebuilding a partition
// from the store topic when it gets it, and after an aborted transaction),
// and why, is in docs/design.md ("atomicstore") in the repository.
package atomicstore

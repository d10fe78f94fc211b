// Package kvstore replicates a compacted Kafka topic into memory: a
// Store[K, V] for small shared data sets (countries, time zones,
// configuration) that every service reading the topic can share, read with
// no network I/O, and update live.
//
// Each Store reads every partition of its topic directly (no consumer group,
// so any number of instances each get everything), from the earliest offset,
// with read-committed isolation. A record with a value sets its key; a
// tombstone (nil value) deletes it. Open creates the topic if it is missing,
// with cleanup.policy=compact, and refuses a topic that is not compacted
// unless AllowNotCompacted is set.
//
// Semantics:
//   - Ready. A store is ready once it applied every record up to the end
//     offsets (last stable offsets) its partitions had when it was opened.
//     WaitReady blocks until then; Ready and ReadyHandler expose it to health
//     checks. Reads before that answer from what was loaded so far.
//   - Reads. Get, Len, All and Snapshot read memory only. The entries are
//     spread over 64 independently locked shards, so parallel readers do
//     not contend on one lock. The loader applies each fetched batch shard
//     by shard (and, for large batches, shards in parallel): each key's
//     values appear in offset order, but two keys updated in one batch may
//     become visible in either order. Snapshot is always a consistent cut.
//   - Memory. With string keys (codec.String()), a store keeps the key
//     bytes, and the value bytes of string values (codec.String()) and
//     []byte values (codec.Bytes()), in byte chunks (keys and values
//     apart), found through an open-addressing index of key hashes: no Go
//     pointer per entry, so the garbage collector has nothing to scan
//     however many entries there are (with Go maps of strings, every GC
//     cycle of a load would rescan all that was loaded so far). Keys are
//     copied into chunks of up to 256 KiB, dense, so that lookups stay in
//     the CPU caches. Values are copied too, except while the store loads:
//     a value then stays where franz-go put it (the buffer a compressed
//     record batch was decompressed into, or the fetch response holding an
//     uncompressed one), which becomes one of the store's chunks: a cold
//     load writes each value once instead of twice. Such a chunk also holds
//     its batch's framing and keys; if those ever outweigh the values in
//     such chunks, the values are copied out. Get returns strings and
//     slices that point into the chunks, with no copy: do not modify a
//     []byte value. Stored bytes are never overwritten: an update appends,
//     and a shard's chunks are compacted (live bytes copied to new chunks)
//     once they hold as much garbage as live data; a value a caller keeps
//     keeps its chunk alive. Values of other codecs are decoded once, when
//     the record is loaded, and kept as decoded. Other key types are kept in
//     Go maps of decoded keys and values (more memory per entry, slower
//     loads). bench/RESULTS.md has the memory per entry and load speed
//     measured; docs/design.md why the store is built this way.
//   - Fetch size. The store reads 256 KiB a partition per fetch from a
//     topic of compressed batches and 512 KiB from one of uncompressed
//     batches (it looks at the topic's compression.type and, if the
//     producers choose, at its first batch); raise it over a slow link with
//     Connection.ClientOptions (kgo.FetchMaxPartitionBytes).
//   - Writes. Put and Delete produce to the topic through whippet's
//     idempotent producer (acks=all), keyed so that Kafka's default
//     partitioner puts every write of a key on the same partition, and by
//     default wait until this store applied them: a Get after a Put sees the
//     new value. Every other store on the topic applies the same records in
//     the same per-partition order, so all converge to the same state. Other
//     writers must partition by key the same way (any Kafka client's default
//     partitioner does).
//   - Changes. Subscribe delivers each change (key, old value, new value) in
//     order on the subscriber's own goroutine; a slow subscriber never holds
//     the store up: its pending changes are merged per key.
//   - Failures. The loader never stops on an error: fetch errors are logged
//     and counted, and franz-go reconnects through broker restarts and
//     leader moves. A record whose key or value cannot be decoded is logged,
//     counted and skipped (see OnDecodeError).
//   - Deletes and compaction. The log cleaner drops a tombstone once it is
//     older than the topic's delete.retention.ms (Kafka's default: 24h); a
//     store or replica that reads the partition later than that after the
//     delete may keep (or bring back) the deleted key's older value. Keep
//     delete.retention.ms above the longest a store may be down or behind
//     (TopicConfig sets it when the store creates the topic).
//
// Metrics (with Connection.Registerer; constant labels store and topic):
// whippet_kvstore_entries, _bytes (raw key + value bytes), _lag_records,
// _load_duration_seconds, _ready, _records_applied_total,
// _decode_errors_total, _fetch_errors_total, _writes_total,
// _write_failures_total, _subscriber_pending, _subscribers,
// _subscriber_panics_total, and franz-go's client metrics as
// whippet_kafka_*{component="kvstore", name=<store name>}.
package kvstore

// Package spool is an opt-in producer that keeps accepting records while
// Kafka is unreachable: a produce returns once Kafka acknowledged the
// record, or, when that does not happen within [Threshold], once the record
// is durable (fsync'd) in a spool directory on local disk. A relay delivers
// spooled records to Kafka in order and deletes them only after Kafka
// acknowledged them; a process started after a crash (SIGKILL included)
// relays what the last one left.
//
// # Order
//
// While the spool holds anything, every produce goes to the spool, and the
// switch to spooling moves the records still waiting for Kafka there first,
// in produce order. The relay sends in spool order through one idempotent
// client, so records of one key (one partition) never overtake each other,
// across the memory/disk boundary too. Once the spool is empty, produces go
// to Kafka directly again.
//
// # Duplicates
//
// Every record carries an [IDHeader]. A record may reach Kafka twice when
// its first attempt was sent before it was spooled, or when the process
// died after the relay sent it and before the acknowledgement was recorded;
// both are counted ([Stats].PossibleDuplicates, [Recovery]). Consumers that
// must see each record once drop duplicates by the header.
//
// # Limits and failures
//
// [MaxBytes] and [MaxRecords] cap the spool: past them a produce fails
// with [ErrFull], and nothing is ever acknowledged that is not durable (a
// failed write or fsync, e.g. syscall.ENOSPC on a full disk, fails the
// produce and every later one, and is cut off the file: a record whose
// produce failed is not relayed by a later process either). Records
// older than [Expiry] are set aside as dead (see [Producer.Dead] and
// [Inspect]), never dropped. A torn tail after a crash is cut off at the
// last good record and logged at Error level.
//
// # Not for a consumer's outputs
//
// A consumer commits an input's offset once its handler returned (or, in
// transactional mode, with its outputs); an output that is only on local
// disk then could be lost with the machine. Produce refuses a handler's
// context with [ErrInHandler]: emit outputs with consumer.Emit.
package spool

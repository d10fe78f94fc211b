package consumer

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

var (
	// ErrNotAssigned is returned by an operator action on a partition this
	// consumer does not own now.
	ErrNotAssigned = errors.New("consumer: partition not assigned to this consumer")
	// ErrNotBlocked is returned by Skip when no record of the partition is in
	// blocking retries or waiting for its due time.
	ErrNotBlocked = errors.New("consumer: partition not blocked")
)

// BlockedRecord is a record that holds up its partition.
type BlockedRecord struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	// Error is the last error: the handler's, or the failing forward's; for
	// a record of another group found in a retry topic whose name collides
	// with one of this group's (see retry.TopicName), why it is not handled.
	Error string
	// Attempts counts the handling attempts made (or, for a failing forward,
	// the failed forwards).
	Attempts int
	// Since is when the record started to block.
	Since time.Time
	// NextAttempt is when the record (or its forward) is tried again.
	NextAttempt time.Time
	// Forwarding is true when the record itself is done with, but its forward
	// to a retry or dead-letter topic fails: it is retried until it succeeds
	// and cannot be skipped, since skipping it would lose the record.
	Forwarding bool
	// Waiting is true when the record is a retry waiting for its due time,
	// NextAttempt (at most its timestamp plus its stage's interval plus
	// DueTolerance): its partition is paused meanwhile, which is how
	// non-blocking retries work, so this is normal unless the wait is long.
	// Error and Attempts are those of the attempts before. Skip dead-letters
	// the record (reason "skipped") without handling it; SkipAll leaves it.
	Waiting bool
}

// Blocked lists the records that hold up their partition now: records in
// blocking retries, records whose forward fails, and retries waiting for
// their due time (Waiting).
func (c *Consumer) Blocked() []BlockedRecord {
	var out []BlockedRecord
	for _, p := range c.assigned() {
		p.mu.Lock()
		for b := range p.blocked {
			out = append(out, BlockedRecord{
				Topic: b.rec.Topic, Partition: b.rec.Partition, Offset: b.rec.Offset, Key: b.rec.Key,
				Error: b.err, Attempts: b.attempts, Since: b.since, NextAttempt: b.next, Forwarding: b.forwarding,
				Waiting: b.waiting,
			})
		}
		p.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b BlockedRecord) int {
		if a.Topic != b.Topic {
			return strings.Compare(a.Topic, b.Topic)
		}
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return int(a.Offset - b.Offset)
	})
	return out
}

// Skip sends the records of the partition that are in blocking retries now,
// are retries waiting for their due time, or are another group's records
// refused in a retry topic, to the dead-letter topic (reason "skipped"), and
// the partition goes on. It returns ErrNotBlocked if none is,
// ErrNotAssigned if the partition is not this consumer's.
func (c *Consumer) Skip(topic string, partition int32) error {
	return c.skip(topic, partition, true)
}

// skip is Skip; waits says whether retries waiting for their due time are
// skipped too.
func (c *Consumer) skip(topic string, partition int32, waits bool) error {
	p := c.partition(topic, partition)
	if p == nil {
		return fmt.Errorf("skip %s[%d]: %w", topic, partition, ErrNotAssigned)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for b := range p.blocked {
		if b.skip != nil && !b.skipped && (waits || !b.waiting) {
			b.skipped = true
			close(b.skip)
			n++
			if b.parked {
				// Fetch it again now: it is dead-lettered when it comes back.
				if p.parkTimer != nil {
					p.parkTimer.Stop()
				}
				p.setPausedLocked(p.paused &^ pausedDue)
			}
		}
	}
	if n == 0 {
		return fmt.Errorf("skip %s[%d]: %w", topic, partition, ErrNotBlocked)
	}
	return nil
}

// SkipAll sends every failing record of the partition straight to the
// dead-letter topic instead of retrying it in place (the ones in blocking
// retries now too), and so another group's records refused in a retry topic,
// until Block. Non-blocking retries are not affected, nor
// retries waiting for their due time. The setting is kept if the partition
// is revoked and assigned again.
func (c *Consumer) SkipAll(topic string, partition int32) {
	c.setSkipAll(TopicPartition{topic, partition}, true)
	_ = c.skip(topic, partition, false) // nothing to skip now is fine
}

// Block undoes SkipAll: failing records of the partition are retried in place
// again, as the retry policy says.
func (c *Consumer) Block(topic string, partition int32) {
	c.setSkipAll(TopicPartition{topic, partition}, false)
}

func (c *Consumer) setSkipAll(tp TopicPartition, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if on {
		c.skipAll[tp] = true
	} else {
		delete(c.skipAll, tp)
	}
	if p := c.parts[tp]; p != nil {
		p.skipAll.Store(on)
	}
}

func (c *Consumer) partition(topic string, id int32) *partition {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.parts[TopicPartition{topic, id}]
}

func (c *Consumer) assigned() []*partition {
	c.mu.Lock()
	defer c.mu.Unlock()
	ps := make([]*partition, 0, len(c.parts))
	for _, p := range c.parts {
		ps = append(ps, p)
	}
	return ps
}

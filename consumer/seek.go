package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// AllPartitions, as SeekTo's partition, moves every partition of the topic
// that is assigned to this consumer now.
const AllPartitions int32 = -1

// ErrInvalidSeek is returned by SeekTo for a target it cannot move to: the
// zero SeekTarget, a negative offset, the zero time.
var ErrInvalidSeek = errors.New("consumer: invalid seek target")

type seekKind uint8

const (
	seekOffset seekKind = iota + 1
	seekTime
	seekEnd
)

// SeekTarget is where SeekTo moves a partition: SeekOffset, SeekTime or
// SeekEnd. The zero value is invalid.
type SeekTarget struct {
	kind   seekKind
	offset int64
	at     time.Time
}

// SeekOffset moves a partition to offset n, kept within the partition's
// records: below the log start offset it moves to the log start, past the
// end to the end (as kafka-consumer-groups --reset-offsets --to-offset
// does).
func SeekOffset(n int64) SeekTarget { return SeekTarget{kind: seekOffset, offset: n} }

// SeekTime moves a partition to its first record whose timestamp is at or
// after t (Kafka's ListOffsets by timestamp), or to its end if it has none.
// With timestamps the producer sets (CreateTime) out of order, a record after
// that one with an earlier timestamp is handled again too.
func SeekTime(t time.Time) SeekTarget { return SeekTarget{kind: seekTime, at: t} }

// SeekEnd moves a partition to its end as of the seek: the high watermark,
// or under ReadCommitted and Transactional the last stable offset (so that
// the records of a transaction open now are handled when it commits). The
// records there now are not handled; those that come after are.
func SeekEnd() SeekTarget { return SeekTarget{kind: seekEnd} }

// String says where the target is: "offset 42", "time 2006-01-02T15:04:05Z",
// "end".
func (t SeekTarget) String() string {
	switch t.kind {
	case seekOffset:
		return fmt.Sprintf("offset %d", t.offset)
	case seekTime:
		return "time " + t.at.Format(time.RFC3339Nano)
	case seekEnd:
		return "end"
	}
	return "invalid"
}

func (t SeekTarget) validate() error {
	switch {
	case t.kind == 0:
		return fmt.Errorf("%w: the zero SeekTarget: use SeekOffset, SeekTime or SeekEnd", ErrInvalidSeek)
	case t.kind == seekOffset && t.offset < 0:
		return fmt.Errorf("%w: offset %d is negative", ErrInvalidSeek, t.offset)
	case t.kind == seekTime && t.at.IsZero():
		return fmt.Errorf("%w: the zero time", ErrInvalidSeek)
	}
	return nil
}

// SeekResult is what SeekTo did to one partition.
type SeekResult struct {
	Topic     string
	Partition int32
	// From is the first offset the partition had not finished before the
	// seek (its NextOffset then; -1 if nothing was fetched yet).
	From int64
	// To is where the partition goes on: the offset committed for it.
	To int64
	// Abandoned are the offsets of the records that held the partition up
	// (Blocked) when it moved: in blocking retries, or retries waiting for
	// their due time. They were neither handled nor dead-lettered by the
	// seek; if To is at or before one of them, it is handled again.
	Abandoned []int64
}

// SeekTo moves a partition of the running consumer (or, with AllPartitions,
// every partition of topic assigned to it now) to target, and goes on from
// there.
func (c *Consumer) SeekTo(ctx context.Context, topic string, partition int32, target SeekTarget) ([]SeekResult, error) {
	if err := target.validate(); err != nil {
		return nil, err
	}
	return nil, errors.New("consumer: SeekTo: not implemented")
}

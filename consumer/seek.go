package consumer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
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
// every partition of topic assigned to this consumer now) to target, and the
// consumer goes on from there: the records from the new position on are
// handled (again), in offset order, and the new position is the partition's
// committed offset.
//
// SeekTo resolves target to an offset per partition (Kafka's ListOffsets),
// then stops each partition as a revocation does: the handlers under way
// finish (bounded by DrainTimeout) and what they finished is marked, the
// records buffered are dropped, and a record that holds the partition up (in
// blocking retries, a retry waiting for its due time, a failing forward) is
// let go, neither handled nor dead-lettered, and reported in
// SeekResult.Abandoned. Seeking past a blocked record thus unblocks its
// partition, and seeking to or before it handles it again. Then the fetch
// position moves (franz-go's SetOffsets, between two polls, so no record of
// the old position is handled after the seek), the new position is committed,
// and the partition starts again with its pause and SkipAll settings. The
// other partitions are not stopped.
//
// In transactional mode the transaction under way ends first: it commits what
// its handlers finished, with each stopped partition's offset at its first
// record not handled; the seek then commits the new position, after that
// transaction's offsets, so that no transaction commits an older offset over
// it. A record in blocking retries holds its transaction open, so a seek of
// another partition waits for it (seek or skip that one too, or give ctx a
// deadline).
//
// Errors: ErrInvalidSeek for a bad target; ErrNotAssigned when the partition
// (with AllPartitions, every partition of topic) is not assigned to this
// consumer now, or franz-go does not hold its position yet (a partition just
// assigned, whose offsets are being fetched); ErrClosed once Run has
// returned. With AllPartitions, a partition that could not be moved (revoked
// meanwhile, or its commit failed) is in the error, and the results hold the
// others. If ctx ends first, SeekTo returns ctx's error and the seek still
// happens. SeekTo moves only this instance's partitions: to move a group
// spread over several instances, call it on each (the admin API of each, see
// package consumer/admin); to move a stopped group, use
// kafka-consumer-groups --reset-offsets.
func (c *Consumer) SeekTo(ctx context.Context, topic string, partition int32, target SeekTarget) ([]SeekResult, error) {
	if err := target.validate(); err != nil {
		return nil, err
	}
	where := fmt.Sprintf("%s[%d]", topic, partition)
	if partition == AllPartitions {
		where = topic + " (every partition assigned)"
	}
	select {
	case <-c.done:
		return nil, fmt.Errorf("consumer: seek %s: %w", where, ErrClosed)
	default:
	}
	cl := c.cl.Load()
	ids := c.seekable(cl, topic, partition)
	if cl == nil || len(ids) == 0 {
		return nil, fmt.Errorf("consumer: seek %s: %w (or its position is not known yet)", where, ErrNotAssigned)
	}
	to, err := c.seekOffsets(ctx, cl, topic, ids, target)
	if err != nil {
		return nil, fmt.Errorf("consumer: seek %s to %v: %w", where, target, err)
	}
	r := &seekReq{topic: topic, target: target, to: to, abandoned: make(map[int32][]int64), done: make(chan seekDone, 1)}
	// Stop them now, so that a transaction under way ends without them,
	// and a blocked record lets go at once; the loop drains and moves them.
	for _, id := range ids {
		if p := c.partition(topic, id); p != nil {
			r.abandoned[id] = p.stopForSeek()
		}
	}
	c.seeks.submit(r)
	select {
	case d := <-r.done:
		return d.res, d.err
	case <-c.done:
		return nil, fmt.Errorf("consumer: seek %s to %v: %w", where, target, ErrClosed)
	case <-ctx.Done():
		return nil, fmt.Errorf("consumer: seek %s to %v: waiting for the partitions' work under way to end (the seek still happens): %w", where, target, ctx.Err())
	}
}

// seekable returns the partitions of topic a seek of partition moves: those
// assigned to the consumer whose position franz-go holds (see SetOffsets:
// it sets only partitions it consumes).
func (c *Consumer) seekable(cl *kgo.Client, topic string, partition int32) []int32 {
	if cl == nil {
		return nil
	}
	held := cl.CommittedOffsets()[topic]
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []int32
	for tp := range c.parts {
		if _, ok := held[tp.Partition]; ok && tp.Topic == topic && (partition == AllPartitions || tp.Partition == partition) {
			ids = append(ids, tp.Partition)
		}
	}
	slices.Sort(ids)
	return ids
}

// seekOffsets resolves target to an offset of each partition.
func (c *Consumer) seekOffsets(ctx context.Context, cl *kgo.Client, topic string, ids []int32, target SeekTarget) (map[int32]int64, error) {
	adm := kadm.NewClient(cl)
	var (
		listed, floor kadm.ListedOffsets
		err           error
	)
	switch target.kind {
	case seekEnd:
		if c.cfg.readCommitted || c.cfg.txnSet {
			listed, err = adm.ListCommittedOffsets(ctx, topic) // the last stable offset
		} else {
			listed, err = adm.ListEndOffsets(ctx, topic)
		}
	case seekTime:
		// The end offset where no record is at or after it.
		listed, err = adm.ListOffsetsAfterMilli(ctx, target.at.UnixMilli(), topic)
	case seekOffset:
		if listed, err = adm.ListEndOffsets(ctx, topic); err == nil {
			floor, err = adm.ListStartOffsets(ctx, topic)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("listing offsets: %w", err)
	}
	to := make(map[int32]int64, len(ids))
	for _, id := range ids {
		lo, ok := listed.Lookup(topic, id)
		if !ok {
			return nil, fmt.Errorf("listing offsets: %s[%d] not in the answer", topic, id)
		}
		if lo.Err != nil {
			return nil, fmt.Errorf("listing offsets of %s[%d]: %w", topic, id, lo.Err)
		}
		to[id] = lo.Offset
		if target.kind == seekOffset {
			start, ok := floor.Lookup(topic, id)
			if !ok || start.Err != nil {
				return nil, fmt.Errorf("listing the start offset of %s[%d]: %v", topic, id, start.Err)
			}
			to[id] = min(max(target.offset, start.Offset), lo.Offset)
		}
	}
	return to, nil
}

// stopForSeek stops the partition for a seek and returns the offsets of the
// records that hold it up, which the seek abandons.
func (p *partition) stopForSeek() []int64 {
	p.mu.Lock()
	var offs []int64
	for b := range p.blocked {
		offs = append(offs, b.rec.Offset)
	}
	p.mu.Unlock()
	p.stop()
	slices.Sort(offs)
	return slices.Compact(offs)
}

// seeker queues seeks for the goroutine that polls, which applies them
// between two polls while rebalances are held (at-least-once), or between two
// transactions: franz-go's SetOffsets wants no poll and no revocation
// running with it.
type seeker struct {
	mu   sync.Mutex
	reqs []*seekReq
	wake context.CancelFunc // ends the poll under way
}

type seekReq struct {
	topic     string
	target    SeekTarget
	to        map[int32]int64
	abandoned map[int32][]int64
	done      chan seekDone // buffered: the caller may be gone
}

type seekDone struct {
	res []SeekResult
	err error
}

// pollContext returns the context of the next poll: canceled when a seek
// comes (at once if one waits).
func (s *seeker) pollContext(ctx context.Context) (context.Context, context.CancelFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pctx, cancel := context.WithCancel(ctx)
	if len(s.reqs) > 0 {
		cancel()
	}
	s.wake = cancel
	return pctx, cancel
}

func (s *seeker) submit(r *seekReq) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, r)
	if s.wake != nil {
		s.wake()
	}
}

func (s *seeker) take() []*seekReq {
	s.mu.Lock()
	defer s.mu.Unlock()
	reqs := s.reqs
	s.reqs = nil
	return reqs
}

// wokenBy reports whether err is the cancellation of a poll woken for a
// seek, not a fetch error.
func wokenBy(pollCtx context.Context, err error) bool {
	return pollCtx.Err() != nil && errors.Is(err, context.Canceled)
}

// applySeeks applies the seeks waiting, on the goroutine that polls.
func (c *Consumer) applySeeks(cl *kgo.Client) {
	for _, r := range c.seeks.take() {
		res, err := c.applySeek(cl, r)
		r.done <- seekDone{res, err}
	}
}

func (c *Consumer) applySeek(cl *kgo.Client, r *seekReq) ([]SeekResult, error) {
	var (
		errs []error
		olds []*partition
	)
	held := cl.CommittedOffsets()[r.topic]
	c.mu.Lock()
	for _, id := range slices.Sorted(maps.Keys(r.to)) {
		p := c.parts[TopicPartition{r.topic, id}]
		if p == nil {
			errs = append(errs, fmt.Errorf("%s[%d]: %w (revoked before the seek)", r.topic, id, ErrNotAssigned))
			continue
		}
		p.stop() // a partition assigned again since SeekTo stopped it
		olds = append(olds, p)
	}
	c.mu.Unlock()
	c.stopPartitions(context.Background(), cl, olds, false)

	set := map[string]map[int32]kgo.EpochOffset{r.topic: {}}
	var res []SeekResult
	c.mu.Lock()
	for _, old := range olds {
		tp := TopicPartition{old.topic, old.id}
		if c.parts[tp] != old {
			errs = append(errs, fmt.Errorf("%s[%d]: %w (revoked during the seek)", tp.Topic, tp.Partition, ErrNotAssigned))
			continue
		}
		old.mu.Lock()
		from, hwm := old.next, old.hwm
		old.mu.Unlock()
		p := c.addPartitionLocked(cl, tp)
		if _, ok := held[tp.Partition]; !ok {
			// Cannot happen (SeekTo checked), unless revoked and assigned
			// again meanwhile: start it afresh where franz-go starts it.
			errs = append(errs, fmt.Errorf("%s[%d]: %w (assigned again, its position not known yet)", tp.Topic, tp.Partition, ErrNotAssigned))
			continue
		}
		to := r.to[tp.Partition]
		p.next, p.hwm = to, hwm
		set[tp.Topic][tp.Partition] = kgo.EpochOffset{Epoch: -1, Offset: to}
		res = append(res, SeekResult{Topic: tp.Topic, Partition: tp.Partition, From: from, To: to, Abandoned: r.abandoned[tp.Partition]})
	}
	c.mu.Unlock()
	// Not under c.mu: SetOffsets waits for franz-go's offset loads, which
	// call startPositions. In at-least-once mode no revocation runs until
	// the poll allows it; in transactional mode one may take a partition
	// meanwhile, and then SetOffsets leaves it alone (franz-go dropped its
	// position) and the commit below is refused for the old generation,
	// or lands before the new owner fetches its offset.
	if len(set[r.topic]) > 0 {
		cl.SetOffsets(set)
	}
	if len(res) == 0 {
		return nil, errors.Join(errs...)
	}

	// Committed after SetOffsets, which tells franz-go the position is
	// committed: no autocommit of an older mark follows, and
	// CommitOffsetsSync waits for one under way. In transactional mode, the
	// transaction that committed the old position ended before.
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.drainTimeout)
	defer cancel()
	var commitErr error
	cl.CommitOffsetsSync(ctx, set, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		commitErr = commitResponseErr(resp, err)
	})
	if commitErr != nil {
		c.log.Error("seek: committing the new position failed; the consumer goes on from it, and commits it with the next record it finishes",
			zap.String("topic", r.topic), zap.Any("positions", set[r.topic]), zap.Error(commitErr))
		errs = append(errs, fmt.Errorf("committing %s at %v: %w (the consumer goes on from there; the commit follows its next finished record)", r.topic, set[r.topic], commitErr))
	}
	for _, s := range res {
		c.log.Info("seek: partition moved", zap.String("topic", s.Topic), zap.Int32("partition", s.Partition), zap.Stringer("target", r.target),
			zap.Int64("from", s.From), zap.Int64("to", s.To), zap.Int64s("abandoned", s.Abandoned))
	}
	return res, errors.Join(errs...)
}

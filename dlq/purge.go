package dlq

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// PurgeScope says which records Purge deletes: PurgeAll or PurgeBefore. The
// zero PurgeScope is invalid, so that nothing is purged by accident.
type PurgeScope struct {
	all    bool
	before time.Time
}

// PurgeAll selects every record up to the end of each partition when Purge
// starts (its last stable offset: records of a transaction still open are
// kept).
func PurgeAll() PurgeScope { return PurgeScope{all: true} }

// PurgeBefore selects, in each partition, the records before the first one
// dead-lettered at or after t (by Kafka timestamp, as Filter.Since and
// Until). Kafka can only delete a prefix of a partition, so a record
// dead-lettered before t that follows a later one (timestamps that do not
// grow) is kept: PurgeBefore never deletes a record dead-lettered at or
// after t.
func PurgeBefore(t time.Time) PurgeScope { return PurgeScope{before: t} }

// String describes the scope: "all" or "before <RFC3339 time>".
func (s PurgeScope) String() string {
	switch {
	case s.all:
		return "all"
	case !s.before.IsZero():
		return "before " + s.before.Format(time.RFC3339Nano)
	}
	return "none"
}

// PurgeResult is what Purge deleted (or, in a dry run, would delete).
type PurgeResult struct {
	// Topic is the purged topic.
	Topic string
	// Partitions has one entry per partition, by partition number.
	Partitions []PartitionPurge
	// Deleted is the sum of the partitions' Deleted.
	Deleted int64
	// DryRun reports whether this was a dry run.
	DryRun bool
}

// PartitionPurge is what Purge did in one partition.
type PartitionPurge struct {
	// Partition is the partition number.
	Partition int32
	// From and To are the deleted offsets, [From, To): From is where the
	// partition started, To where it starts now. From == To if nothing was
	// deleted.
	From, To int64
	// Deleted is To - From: the records deleted (a transactional producer's
	// commit markers among them count too, as they use offsets).
	Deleted int64
}

// Purge deletes records of dlqTopic for good, with Kafka's DeleteRecords:
// Kafka cannot delete single records, only every record before an offset of
// a partition, so a purge selects by position or time (see PurgeAll and
// PurgeBefore), never by key, error or reason. To get rid of some records
// only, replay or inspect them first, then purge up to a time.
//
// With PurgeBefore, the broker finds each partition's first offset at or
// after t (ListOffsets by time). Where it finds none, Purge does not take
// that on trust before deleting the whole partition (a broker can answer so
// wrongly just after a purge): it checks the partition's largest timestamp
// or, failing that, reads the records up to the first one at or after t.
//
// Purge refuses (ErrNotDLQTopic) a topic whose name does not end in "-dlq",
// the suffix of retry.DLQTopicName, so that a business topic is not emptied
// by mistake. With DryRun it only reports what it would delete.
func (c *Client) Purge(ctx context.Context, dlqTopic string, scope PurgeScope, opts ...ActionOption) (PurgeResult, error) {
	act := newAction(opts)
	if err := c.enter(); err != nil {
		return PurgeResult{}, err
	}
	defer c.leave()
	if err := act.forPurge(); err != nil {
		return PurgeResult{}, err
	}
	if err := checkTopic("dlqTopic", dlqTopic); err != nil {
		return PurgeResult{}, err
	}
	if !scope.all && scope.before.IsZero() {
		return PurgeResult{}, &ConfigError{Pkg: "dlq", Sentinel: ErrInvalidArgument, Field: "scope",
			Rule: "must be PurgeAll() or PurgeBefore(t) with a non-zero t"}
	}
	if !strings.HasSuffix(dlqTopic, "-dlq") {
		return PurgeResult{}, fmt.Errorf("%w: %q does not end in \"-dlq\"; refusing to purge it", ErrNotDLQTopic, dlqTopic)
	}
	tds, err := c.adm.ListTopics(ctx, dlqTopic)
	if err != nil {
		return PurgeResult{}, fmt.Errorf("dlq: metadata of %q: %w", dlqTopic, err)
	}
	if td, ok := tds[dlqTopic]; !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		return PurgeResult{}, unknownTopic(dlqTopic)
	} else if td.Err != nil {
		return PurgeResult{}, fmt.Errorf("dlq: metadata of %q: %w", dlqTopic, td.Err)
	}
	list := func(what string, fn func(context.Context, ...string) (kadm.ListedOffsets, error)) (kadm.ListedOffsets, error) {
		return c.listOffsets(ctx, dlqTopic, what, fn)
	}
	starts, err := list("start", c.adm.ListStartOffsets)
	if err != nil {
		return PurgeResult{}, err
	}
	ends, err := list("end", c.adm.ListCommittedOffsets)
	if err != nil {
		return PurgeResult{}, err
	}
	var after kadm.ListedOffsets
	if !scope.all {
		// Not kadm's ListOffsetsAfterMilli: it turns the broker's "no record
		// at or after this time" (-1) into the end offset, and that answer
		// can be wrong (see settleNone).
		after, err = list("time", c.rawListOffsets(scope.before.UnixMilli(), 1, partitionsOf(starts, dlqTopic)))
		if err != nil {
			return PurgeResult{}, err
		}
	}

	res := PurgeResult{Topic: dlqTopic, DryRun: act.dryRun}
	none := map[int32]offsetRange{} // partitions whose time lookup found nothing
	for p, start := range starts[dlqTopic] {
		end, ok := ends.Lookup(dlqTopic, p)
		if !ok {
			return PurgeResult{}, fmt.Errorf("dlq: no end offset for %s[%d]", dlqTopic, p)
		}
		to := end.Offset
		if !scope.all {
			a, ok := after.Lookup(dlqTopic, p)
			switch {
			case !ok:
				return PurgeResult{}, fmt.Errorf("dlq: no offset for time %s in %s[%d]; nothing deleted",
					scope.before.Format(time.RFC3339Nano), dlqTopic, p)
			case a.Offset >= 0:
				to = min(to, a.Offset)
			case to > start.Offset: // -1: settled below
				none[p] = offsetRange{start: start.Offset, end: to}
			}
		}
		to = max(to, start.Offset)
		res.Partitions = append(res.Partitions, PartitionPurge{Partition: p, From: start.Offset, To: to, Deleted: to - start.Offset})
	}
	if len(none) > 0 {
		tos, err := c.settleNone(ctx, dlqTopic, scope.before, none)
		if err != nil {
			return PurgeResult{}, err
		}
		for i := range res.Partitions {
			pp := &res.Partitions[i]
			if to, ok := tos[pp.Partition]; ok {
				pp.To, pp.Deleted = to, to-pp.From
			}
		}
	}
	del := kadm.Offsets{}
	for _, pp := range res.Partitions {
		if pp.To > pp.From {
			del.Add(kadm.Offset{Topic: dlqTopic, Partition: pp.Partition, At: pp.To, LeaderEpoch: -1})
		}
	}
	sort.Slice(res.Partitions, func(i, j int) bool { return res.Partitions[i].Partition < res.Partitions[j].Partition })
	if !act.dryRun && len(del) > 0 {
		if err := c.deleteRecords(ctx, dlqTopic, del); err != nil {
			// Report only what was deleted: the partitions del still holds failed.
			for i := range res.Partitions {
				if pp := &res.Partitions[i]; del[dlqTopic][pp.Partition].At > 0 {
					pp.To, pp.Deleted = pp.From, 0
				}
			}
			res.sum()
			return res, err
		}
	}
	res.sum()
	c.log.Info("dlq: purge", zap.String("topic", dlqTopic), zap.Stringer("scope", scope),
		zap.Int64("deleted", res.Deleted), zap.Bool("dry_run", act.dryRun))
	return res, nil
}

// offsetRange is [start, end) of a partition.
type offsetRange struct{ start, end int64 }

// settleNone finds, in each partition of ranges, the first offset in [start,
// end) whose record is dead-lettered at or after t, or end if there is none:
// the partitions for which the broker answered the time lookup with -1, "no
// record at or after t".
//
// That answer can be false. A broker looks in the first log segment whose
// largest timestamp is >= t and only there, skipping the records below the
// log start offset; after DeleteRecords, the segments left wholly below the
// log start stay until the next retention check (log.retention.check.
// interval.ms, 5 minutes by default), and if one of them is that first
// segment the broker answers -1 although later segments hold records at or
// after t. Deleting up to the end offset then would delete them too.
//
// So the answer is checked. If the record with the largest timestamp in the
// partition (ListOffsets -3, Kafka 3.0+) is older than t and every record of
// [start, end) is on the broker's disk (ListOffsets -4, Kafka 3.4+: the
// local log start, which tiered storage moves up), there is indeed none; else
// [start, end) is read from start to the first record at or after t. A record
// of an aborted transaction is never read: it is not a dead letter.
func (c *Client) settleNone(ctx context.Context, topic string, t time.Time, ranges map[int32]offsetRange) (map[int32]int64, error) {
	ms := t.UnixMilli() // the broker compares milliseconds; so do Since below
	parts := make([]int32, 0, len(ranges))
	for p := range ranges {
		parts = append(parts, p)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i] < parts[j] })

	tos := make(map[int32]int64, len(ranges))
	maxes, err := c.listOffsets(ctx, topic, "max timestamp", c.rawListOffsets(-3, 7, parts))
	var locals kadm.ListedOffsets
	if err == nil {
		locals, err = c.listOffsets(ctx, topic, "local start", c.rawListOffsets(-4, 8, parts))
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var read []int32
	for _, p := range parts {
		r := ranges[p]
		m, ok1 := maxes.Lookup(topic, p)
		l, ok2 := locals.Lookup(topic, p)
		if err == nil && ok1 && ok2 && m.Err == nil && l.Err == nil &&
			m.Offset >= 0 && m.Timestamp >= 0 && m.Timestamp < ms && l.Offset >= 0 && l.Offset <= r.start {
			tos[p] = r.end
			continue
		}
		read = append(read, p)
	}
	c.log.Debug("dlq: purge: no offset for the time; checking", zap.String("topic", topic),
		zap.Int32s("partitions", parts), zap.Int32s("reading", read), zap.NamedError("max_timestamp_error", err))
	if len(read) == 0 {
		return tos, nil
	}

	s, err := c.openScan(ctx, topic, &Filter{Partitions: read, Since: time.UnixMilli(ms)}, nil)
	if err != nil {
		return nil, err
	}
	for _, p := range read {
		ps := s.byPart[p]
		if ps == nil {
			return nil, fmt.Errorf("dlq: no offsets for %s[%d]", topic, p)
		}
		r := ranges[p]
		// Read [start, end) only, or less if records were deleted meanwhile.
		ps.end = r.end
		ps.next = min(max(ps.next, r.start), r.end)
		ps.buf = nil
	}
	if err := s.fill(ctx); err != nil {
		return nil, fmt.Errorf("dlq: purge %q: reading for the first record at or after %s: %w",
			topic, t.Format(time.RFC3339Nano), err)
	}
	for _, p := range read {
		ps, r := s.byPart[p], ranges[p]
		tos[p] = r.end
		if len(ps.buf) > 0 {
			tos[p] = min(max(ps.buf[0].Offset, r.start), r.end)
		}
	}
	return tos, nil
}

// rawListOffsets returns, for c.listOffsets, a function that lists the
// offsets of parts at ts (Unix milliseconds, or one of ListOffsets' negative
// special values) as the partitions' leaders answer, unchanged. A broker
// answering with a ListOffsets version below minVersion (too old to know a
// special ts) counts as a partition error.
func (c *Client) rawListOffsets(ts int64, minVersion int16, parts []int32) func(context.Context, ...string) (kadm.ListedOffsets, error) {
	return func(ctx context.Context, topics ...string) (kadm.ListedOffsets, error) {
		req := kmsg.NewPtrListOffsetsRequest()
		for _, topic := range topics {
			rt := kmsg.NewListOffsetsRequestTopic()
			rt.Topic = topic
			for _, p := range parts {
				rp := kmsg.NewListOffsetsRequestTopicPartition()
				rp.Partition = p
				rp.Timestamp = ts
				rt.Partitions = append(rt.Partitions, rp)
			}
			req.Topics = append(req.Topics, rt)
		}
		l := make(kadm.ListedOffsets)
		var errs []error
		for _, sh := range c.cl.RequestSharded(ctx, req) {
			if sh.Err != nil {
				errs = append(errs, sh.Err)
				continue
			}
			resp := sh.Resp.(*kmsg.ListOffsetsResponse)
			var old error
			if resp.Version < minVersion {
				old = fmt.Errorf("broker %d answered ListOffsets v%d; timestamp %d needs v%d+", sh.Meta.NodeID, resp.Version, ts, minVersion)
			}
			for _, rt := range resp.Topics {
				for _, rp := range rt.Partitions {
					lo := kadm.ListedOffset{Topic: rt.Topic, Partition: rp.Partition, Timestamp: rp.Timestamp,
						Offset: rp.Offset, LeaderEpoch: rp.LeaderEpoch, Err: kerr.ErrorForCode(rp.ErrorCode)}
					if old != nil {
						lo.Err = old
					}
					if l[rt.Topic] == nil {
						l[rt.Topic] = map[int32]kadm.ListedOffset{}
					}
					l[rt.Topic][rp.Partition] = lo
				}
			}
		}
		return l, errors.Join(errs...)
	}
}

// partitionsOf returns the partitions of topic in l, in order.
func partitionsOf(l kadm.ListedOffsets, topic string) []int32 {
	ps := make([]int32, 0, len(l[topic]))
	for p := range l[topic] {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}

func (r *PurgeResult) sum() {
	r.Deleted = 0
	for _, p := range r.Partitions {
		r.Deleted += p.Deleted
	}
}

// deleteRecords deletes the records before the offsets in del, retrying the
// partitions whose error goes away by itself (a leader that just moved);
// deleting up to the same offset twice is harmless. It removes from del the
// partitions done, so on error del holds the partitions that failed.
func (c *Client) deleteRecords(ctx context.Context, topic string, del kadm.Offsets) error {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		resps, err := c.adm.DeleteRecords(ctx, del)
		var errs []error
		retriable := err == nil || kerr.IsRetriable(err)
		if err != nil {
			errs = append(errs, err)
		}
		for p := range del[topic] {
			r, ok := resps.Lookup(topic, p)
			switch {
			case !ok:
				if err == nil {
					errs = append(errs, fmt.Errorf("%s[%d]: no answer", topic, p))
				}
			case r.Err != nil:
				errs = append(errs, fmt.Errorf("%s[%d]: %w", topic, p, r.Err))
				retriable = retriable && kerr.IsRetriable(r.Err)
			default:
				delete(del[topic], p)
			}
		}
		if len(del[topic]) == 0 {
			return nil
		}
		if !retriable || attempt >= maxFailedRounds {
			return fmt.Errorf("dlq: purge %q: %w", topic, errors.Join(errs...))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dlq: purge %q: %w", topic, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

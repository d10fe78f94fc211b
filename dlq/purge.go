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
// Purge refuses (ErrNotDLQTopic) a topic whose name does not end in "-dlq",
// the suffix of retry.DLQTopicName, so that a business topic is not emptied
// by mistake. With DryRun it only reports what it would delete.
func (c *Client) Purge(ctx context.Context, dlqTopic string, scope PurgeScope, opts ...ActionOption) (PurgeResult, error) {
	act := newAction(opts)
	if err := c.checkOpen(); err != nil {
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
		after, err = list("time", func(ctx context.Context, ts ...string) (kadm.ListedOffsets, error) {
			return c.adm.ListOffsetsAfterMilli(ctx, scope.before.UnixMilli(), ts...)
		})
		if err != nil {
			return PurgeResult{}, err
		}
	}

	res := PurgeResult{Topic: dlqTopic, DryRun: act.dryRun}
	del := kadm.Offsets{}
	for p, start := range starts[dlqTopic] {
		end, ok := ends.Lookup(dlqTopic, p)
		if !ok {
			return PurgeResult{}, fmt.Errorf("dlq: no end offset for %s[%d]", dlqTopic, p)
		}
		to := end.Offset
		if !scope.all {
			if a, ok := after.Lookup(dlqTopic, p); ok && a.Offset >= 0 {
				to = min(to, a.Offset)
			}
		}
		to = max(to, start.Offset)
		res.Partitions = append(res.Partitions, PartitionPurge{Partition: p, From: start.Offset, To: to, Deleted: to - start.Offset})
		if to > start.Offset {
			del.Add(kadm.Offset{Topic: dlqTopic, Partition: p, At: to, LeaderEpoch: -1})
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

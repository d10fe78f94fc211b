package dlq

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet/internal/check"
)

// replayBatch is how many records Replay produces before waiting for their
// acknowledgements.
const replayBatch = 500

// ActionOption changes how Replay or Purge runs.
type ActionOption func(*action)

type action struct{ dryRun bool }

func newAction(opts []ActionOption) action {
	var a action
	for _, o := range opts {
		if o != nil {
			o(&a)
		}
	}
	return a
}

// DryRun makes Replay or Purge report what it would do without producing or
// deleting anything.
func DryRun() ActionOption { return func(a *action) { a.dryRun = true } }

// ReplayResult is what Replay did (or, in a dry run, would do).
type ReplayResult struct {
	// Replayed lists the records produced back to their original topic,
	// in the order they were selected (see Page.Records).
	Replayed []Replayed
	// Skipped lists the selected records that cannot be replayed, and why.
	Skipped []Skipped
	// Next, if not empty, continues a replay limited by Filter.Limit: pass
	// it as Filter.Cursor with the same filter.
	Next string
	// DryRun reports whether this was a dry run.
	DryRun bool
}

// Replayed is one replayed record.
type Replayed struct {
	// From is the dead-letter record.
	From Position
	// To is where the replayed record was written; in a dry run, its
	// Partition and Offset are -1.
	To Position
}

// Skipped is a selected record Replay did not replay.
type Skipped struct {
	// From is the dead-letter record.
	From Position
	// Reason says why, e.g. that it carries no retry headers, or that its
	// original topic does not exist.
	Reason string
}

// Replay produces every record of dlqTopic that f selects back to its
// original topic (retry.Info.OriginalTopic) so that the consumer handles it
// again as a fresh first attempt: the same key, value and original headers,
// WITHOUT the retry headers, plus the replay headers (HeaderReplayedFrom,
// HeaderReplayedAt, HeaderReplayCount). The record gets a new timestamp, and
// the partition the client's partitioner picks (by key hash by default, as
// for the original record if it was produced with a default partitioner).
// Records are selected as List selects them, in the same order, so records
// of one key are replayed in the order they were dead-lettered.
//
// Replay waits for Kafka's acknowledgements (acks=all, idempotent, with a
// Client from New). It does not change the dead-letter topic: replaying a
// record twice produces it twice, and each copy says where it came from;
// use Filter.Cursor/Limit to resume, and Purge to clean up. If a produce
// fails, Replay returns the records acknowledged so far in the result, with
// the error; records after the failed one may have been written too, and
// are listed.
//
// A record is skipped (see ReplayResult.Skipped) if it carries no retry
// headers, names no original topic, names the dead-letter topic itself, or
// names a topic that does not exist (Replay never creates topics).
func (c *Client) Replay(ctx context.Context, dlqTopic string, f Filter, opts ...ActionOption) (ReplayResult, error) {
	act := newAction(opts)
	s, err := c.scan(ctx, dlqTopic, &f)
	if err != nil {
		return ReplayResult{}, err
	}
	res := ReplayResult{DryRun: act.dryRun}
	targets := map[string]string{} // original topic -> why it cannot be used ("" if it can)
	var (
		batch []*kgo.Record
		from  []Position
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		var (
			first  error
			failed int
		)
		// ProduceSync answers in the order Kafka acknowledged, not the
		// order given: pair each result with its record, and list them in
		// the order selected.
		idx := make(map[*kgo.Record]int, len(batch))
		for i, r := range batch {
			idx[r] = i
		}
		done := make([]*kgo.ProduceResult, len(batch))
		results := c.cl.ProduceSync(ctx, batch...)
		for i := range results {
			done[idx[results[i].Record]] = &results[i]
		}
		for i, r := range done {
			if r.Err != nil {
				if failed++; first == nil {
					first = fmt.Errorf("%s to %q: %w", from[i], r.Record.Topic, r.Err)
				}
				continue
			}
			res.Replayed = append(res.Replayed, Replayed{From: from[i],
				To: Position{Topic: r.Record.Topic, Partition: r.Record.Partition, Offset: r.Record.Offset}})
		}
		n := len(batch)
		clear(batch)
		batch, from = batch[:0], from[:0]
		if first != nil {
			return fmt.Errorf("dlq: replay: %d of %d records failed; first: %w", failed, n, first)
		}
		return nil
	}
	now := c.now()
	for selected := 0; f.Limit == 0 || selected < f.Limit; selected++ {
		rec, ok, err := s.pop(ctx)
		if err == nil && !ok {
			break
		}
		if err == nil {
			var why string
			if why, err = c.replayable(ctx, dlqTopic, &rec, targets); err == nil && why != "" {
				res.Skipped = append(res.Skipped, Skipped{From: rec.Position, Reason: why})
				continue
			}
		}
		if err != nil {
			return res, errors.Join(err, flush())
		}
		if act.dryRun {
			res.Replayed = append(res.Replayed, Replayed{From: rec.Position,
				To: Position{Topic: rec.Info.OriginalTopic, Partition: -1, Offset: -1}})
			continue
		}
		batch = append(batch, replayRecord(&rec, now.UnixMilli()))
		from = append(from, rec.Position)
		if len(batch) >= replayBatch {
			if err := flush(); err != nil {
				return res, err
			}
		}
	}
	if err := flush(); err != nil {
		return res, err
	}
	if f.Limit > 0 {
		if ps, err := s.peek(ctx); err != nil {
			return res, err
		} else if ps != nil {
			res.Next = s.cursor()
		}
	}
	c.log.Info("dlq: replay", zap.String("topic", dlqTopic), zap.Int("replayed", len(res.Replayed)),
		zap.Int("skipped", len(res.Skipped)), zap.Bool("dry_run", act.dryRun))
	return res, nil
}

// replayable returns why rec cannot be replayed, or "".
func (c *Client) replayable(ctx context.Context, dlqTopic string, rec *Record, targets map[string]string) (string, error) {
	to := rec.Info.OriginalTopic
	switch {
	case !rec.DeadLetter:
		return "not a dead letter: it carries no retry headers", nil
	case to == "":
		return "no original topic in its headers", nil
	case to == dlqTopic:
		return "its original topic is the dead-letter topic itself", nil
	case check.TopicRule(to) != "":
		return fmt.Sprintf("invalid original topic %q: %s", to, check.TopicRule(to)), nil
	}
	why, ok := targets[to]
	if !ok {
		tds, err := c.adm.ListTopics(ctx, to)
		if err != nil {
			return "", fmt.Errorf("dlq: metadata of %q: %w", to, err)
		}
		td, found := tds[to]
		switch {
		case !found || errors.Is(td.Err, kerr.UnknownTopicOrPartition):
			why = fmt.Sprintf("its original topic %q does not exist", to)
		case td.Err != nil:
			return "", fmt.Errorf("dlq: metadata of %q: %w", to, td.Err)
		}
		targets[to] = why
	}
	return why, nil
}

// replayRecord builds the record Replay produces for rec.
func replayRecord(rec *Record, nowMillis int64) *kgo.Record {
	count := 1
	if rec.Replayed != nil {
		count = rec.Replayed.Count + 1
	}
	hdrs := make([]kgo.RecordHeader, 0, len(rec.Headers)+3)
	hdrs = append(hdrs, rec.Headers...)
	hdrs = append(hdrs,
		kgo.RecordHeader{Key: HeaderReplayedFrom, Value: []byte(rec.Position.String())},
		kgo.RecordHeader{Key: HeaderReplayedAt, Value: strconv.AppendInt(nil, nowMillis, 10)},
		kgo.RecordHeader{Key: HeaderReplayCount, Value: strconv.AppendInt(nil, int64(count), 10)},
	)
	return &kgo.Record{Topic: rec.Info.OriginalTopic, Key: rec.Key, Value: rec.Value, Headers: hdrs}
}

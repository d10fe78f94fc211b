package dlq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

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

type action struct {
	dryRun bool
	// to and source, with their Set flags, are Replay's: ReplayTo and
	// ReplaySource.
	to, source       string
	toSet, sourceSet bool
}

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

// ReplayTo makes Replay produce every selected record to topic, whatever
// topic its headers name: the operator's explicit choice of a target other
// than the one the dead-letter topic belongs to (see Replay). topic must
// exist and must not be the dead-letter topic itself. For Replay only: Purge
// refuses it (ErrInvalidArgument). Default: each record goes back to its
// original topic, if that is the dead-letter topic's source.
func ReplayTo(topic string) ActionOption {
	return func(a *action) { a.to, a.toSet = topic, true }
}

// ReplaySource names the topic whose dead letters the dead-letter topic
// holds (the consumed topic: "orders" for "orders-billing-dlq", see
// retry.DLQTopicName). Replay then sends a record back only if its original
// topic is that one. Give it when you know it (the whippet CLI does with
// -source and -group, the admin API for its consumers' dead-letter topics):
// it does not rely on the record's group header. For Replay only: Purge
// refuses it (ErrInvalidArgument). Default: the source is read from the
// dead-letter topic's name and each record's group header.
func ReplaySource(topic string) ActionOption {
	return func(a *action) { a.source, a.sourceSet = topic, true }
}

// forPurge refuses Replay's options.
func (a *action) forPurge() error {
	errs := check.NewErrors("dlq", ErrInvalidArgument)
	if a.toSet {
		errs.Add("ReplayTo", "is an option of Replay, not of Purge")
	}
	if a.sourceSet {
		errs.Add("ReplaySource", "is an option of Replay, not of Purge")
	}
	return errs.Err()
}

// ReplayResult is what Replay did (or, in a dry run, would do).
type ReplayResult struct {
	// Replayed lists the records produced back to their original topic
	// (or the ReplayTo topic), in the order they were selected (see
	// Page.Records).
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
	// OtherTopic is true when the record was skipped because its headers
	// name an original topic that is not the dead-letter topic's source
	// (Reason names both): ReplayTo replays it if that is meant.
	OtherTopic bool
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
// A dead-letter topic holds the dead letters of one topic, its source, so
// Replay sends records only there. The original-topic header is not proof:
// a producer of the consumed topic can set it, and the consumer keeps it,
// so without this rule "replay everything" would write wherever a forged
// header points. The source is ReplaySource's topic if given, else read
// from the dead-letter topic's name and the record's group header (which
// the consumer writes itself): "<source>-<group>-dlq". A record whose
// original topic is another is skipped (Skipped.OtherTopic), unless
// ReplayTo names the target, which then takes every selected record.
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
// headers, names no original topic, names the dead-letter topic itself or
// another topic than the source (without ReplayTo), or names a topic that
// does not exist (Replay never creates topics). A ReplayTo topic that does
// not exist is an error matching ErrUnknownTopic.
func (c *Client) Replay(ctx context.Context, dlqTopic string, f Filter, opts ...ActionOption) (ReplayResult, error) {
	if err := c.enter(); err != nil {
		return ReplayResult{}, err
	}
	defer c.leave()
	act := newAction(opts)
	errs := check.NewErrors("dlq", ErrInvalidArgument)
	if act.toSet {
		if rule := check.TopicRule(act.to); rule != "" {
			errs.Add("ReplayTo", "%s", rule)
		} else if act.to == dlqTopic {
			errs.Add("ReplayTo", "%q is the dead-letter topic itself", act.to)
		}
	}
	if act.sourceSet {
		if rule := check.TopicRule(act.source); rule != "" {
			errs.Add("ReplaySource", "%s", rule)
		} else if act.source == dlqTopic {
			errs.Add("ReplaySource", "%q is the dead-letter topic itself", act.source)
		}
	}
	if err := errs.Err(); err != nil {
		return ReplayResult{}, err
	}
	s, err := c.scan(ctx, dlqTopic, &f)
	if err != nil {
		return ReplayResult{}, err
	}
	targets := map[string]string{} // target topic -> why it cannot be used ("" if it can)
	if act.toSet {
		why, err := c.targetMissing(ctx, act.to, targets)
		if err != nil {
			return ReplayResult{}, err
		}
		if why != "" {
			return ReplayResult{}, fmt.Errorf("%w: ReplayTo %q: %w", ErrUnknownTopic, act.to, kerr.UnknownTopicOrPartition)
		}
	}
	res := ReplayResult{DryRun: act.dryRun}
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
		var to string
		if err == nil {
			var skip *Skipped
			if to, skip, err = c.replayTarget(ctx, dlqTopic, &act, &rec, targets); err == nil && skip != nil {
				res.Skipped = append(res.Skipped, *skip)
				continue
			}
		}
		if err != nil {
			return res, errors.Join(err, flush())
		}
		if act.dryRun {
			res.Replayed = append(res.Replayed, Replayed{From: rec.Position,
				To: Position{Topic: to, Partition: -1, Offset: -1}})
			continue
		}
		batch = append(batch, replayRecord(&rec, to, now.UnixMilli()))
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
	c.log.Info("dlq: replay", zap.String("topic", dlqTopic), zap.String("to", act.to), zap.Int("replayed", len(res.Replayed)),
		zap.Int("skipped", len(res.Skipped)), zap.Bool("dry_run", act.dryRun))
	return res, nil
}

// replayTarget returns the topic rec is replayed to, or why it is skipped.
func (c *Client) replayTarget(ctx context.Context, dlqTopic string, act *action, rec *Record, targets map[string]string) (string, *Skipped, error) {
	skip := func(other bool, format string, args ...any) (string, *Skipped, error) {
		return "", &Skipped{From: rec.Position, Reason: fmt.Sprintf(format, args...), OtherTopic: other}, nil
	}
	orig := rec.Info.OriginalTopic
	switch {
	case !rec.DeadLetter:
		return skip(false, "not a dead letter: it carries no retry headers")
	case act.toSet:
		return act.to, nil, nil // checked once, up front
	case orig == "":
		return skip(false, "no original topic in its headers")
	case orig == dlqTopic:
		return skip(false, "its original topic is the dead-letter topic itself")
	case check.TopicRule(orig) != "":
		return skip(false, "invalid original topic %q: %s", orig, check.TopicRule(orig))
	}
	source := act.source
	if !act.sourceSet {
		s, ok := strings.CutSuffix(dlqTopic, "-"+rec.Info.Group+"-dlq")
		if rec.Info.Group == "" || !ok || s == "" {
			return skip(true, "its headers name original topic %q and group %q, but %s is no dead-letter topic of that group, so where the record belongs is unknown",
				orig, rec.Info.Group, dlqTopic)
		}
		source = s
	}
	if orig != source {
		return skip(true, "its original-topic header names %q, but %s holds the dead letters of %q", orig, dlqTopic, source)
	}
	why, err := c.targetMissing(ctx, orig, targets)
	if err != nil {
		return "", nil, err
	}
	if why != "" {
		return skip(false, "%s", why)
	}
	return orig, nil, nil
}

// targetMissing returns why topic cannot be replayed to ("" if it can),
// remembering the answer in targets.
func (c *Client) targetMissing(ctx context.Context, topic string, targets map[string]string) (string, error) {
	why, ok := targets[topic]
	if ok {
		return why, nil
	}
	tds, err := c.adm.ListTopics(ctx, topic)
	if err != nil {
		return "", fmt.Errorf("dlq: metadata of %q: %w", topic, err)
	}
	td, found := tds[topic]
	switch {
	case !found || errors.Is(td.Err, kerr.UnknownTopicOrPartition):
		why = fmt.Sprintf("its original topic %q does not exist", topic)
	case td.Err != nil:
		return "", fmt.Errorf("dlq: metadata of %q: %w", topic, td.Err)
	}
	targets[topic] = why
	return why, nil
}

// replayRecord builds the record Replay produces for rec to topic.
func replayRecord(rec *Record, topic string, nowMillis int64) *kgo.Record {
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
	return &kgo.Record{Topic: topic, Key: rec.Key, Value: rec.Value, Headers: hdrs}
}

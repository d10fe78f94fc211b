package dlq

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The scanner reads a topic with its own Fetch requests sent to each
// partition's leader, decoded by kgo.ProcessFetchPartition. It needs no
// consumer group and no consuming client, so it works through any
// *kgo.Client, and it knows the exact next offset after every fetch
// (aborted records and transaction markers included), so it stops at the end
// offsets it captured without waiting for a fetch timeout.
//
// It reads read_committed up to the last stable offset: records of aborted
// transactions (a transactional consumer that failed to commit its
// dead-letter forward) are never listed or replayed.

const (
	fetchMaxWait      = 250 * time.Millisecond
	fetchMaxBytes     = 50 << 20
	fetchPartMaxBytes = 1 << 20
	maxFailedRounds   = 10  // consecutive rounds that failed with an error
	maxEmptyRounds    = 200 // consecutive rounds that advanced nothing
)

type partScan struct {
	p    int32
	next int64    // next offset to fetch
	end  int64    // stop before this offset
	buf  []Record // selected records not taken yet, in offset order
}

func (ps *partScan) done() bool { return ps.next >= ps.end }

type scanner struct {
	c       *Client
	topic   string
	id      kadm.TopicID
	leaders map[int32]int32 // partition -> leader broker, -1 if none
	epochs  map[int32]int32
	f       *Filter
	parts   []*partScan // by partition
	byPart  map[int32]*partScan
	decomp  kgo.Decompressor
	round   int
}

// openScan reads the topic's metadata and offsets and prepares to read every
// partition f wants from its log start (or cursor) up to its last stable
// offset now.
func (c *Client) openScan(ctx context.Context, topic string, f *Filter, cursor map[int32]int64) (*scanner, error) {
	s := &scanner{c: c, topic: topic, f: f, byPart: map[int32]*partScan{}, decomp: kgo.DefaultDecompressor()}
	if err := s.refresh(ctx); err != nil {
		return nil, err
	}
	starts, err := c.listOffsets(ctx, topic, "start", c.adm.ListStartOffsets)
	if err != nil {
		return nil, err
	}
	ends, err := c.listOffsets(ctx, topic, "end", c.adm.ListCommittedOffsets)
	if err != nil {
		return nil, err
	}
	for p := range s.leaders {
		if !f.wants(p) {
			continue
		}
		start, ok1 := starts.Lookup(topic, p)
		end, ok2 := ends.Lookup(topic, p)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("dlq: no offsets for %s[%d]", topic, p)
		}
		ps := &partScan{p: p, next: start.Offset, end: end.Offset}
		if o, ok := cursor[p]; ok && o > ps.next {
			ps.next = min(o, ps.end)
		}
		s.parts = append(s.parts, ps)
		s.byPart[p] = ps
	}
	sort.Slice(s.parts, func(i, j int) bool { return s.parts[i].p < s.parts[j].p })
	return s, nil
}

// refresh reloads the topic's id and partition leaders.
func (s *scanner) refresh(ctx context.Context) error {
	tds, err := s.c.adm.ListTopics(ctx, s.topic)
	if err != nil {
		return fmt.Errorf("dlq: metadata of %q: %w", s.topic, err)
	}
	td, ok := tds[s.topic]
	if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		return unknownTopic(s.topic)
	}
	if td.Err != nil {
		return fmt.Errorf("dlq: metadata of %q: %w", s.topic, td.Err)
	}
	s.id = td.ID
	s.leaders = make(map[int32]int32, len(td.Partitions))
	s.epochs = make(map[int32]int32, len(td.Partitions))
	for p, pd := range td.Partitions {
		s.leaders[p] = pd.Leader
		s.epochs[p] = pd.LeaderEpoch
		if pd.Err != nil {
			s.leaders[p] = -1
		}
	}
	return nil
}

// peek returns the partition whose first buffered record is next in
// (timestamp, partition, offset) order, fetching as needed, or nil when no
// selected record is left.
func (s *scanner) peek(ctx context.Context) (*partScan, error) {
	if err := s.fill(ctx); err != nil {
		return nil, err
	}
	var best *partScan
	for _, ps := range s.parts {
		if len(ps.buf) == 0 {
			continue
		}
		if best == nil || before(&ps.buf[0], &best.buf[0]) {
			best = ps
		}
	}
	return best, nil
}

func before(a, b *Record) bool {
	if !a.Timestamp.Equal(b.Timestamp) {
		return a.Timestamp.Before(b.Timestamp)
	}
	if a.Partition != b.Partition {
		return a.Partition < b.Partition
	}
	return a.Offset < b.Offset
}

// pop takes the next selected record; ok is false when none is left.
func (s *scanner) pop(ctx context.Context) (rec Record, ok bool, err error) {
	ps, err := s.peek(ctx)
	if err != nil || ps == nil {
		return Record{}, false, err
	}
	rec = ps.buf[0]
	ps.buf[0] = Record{}
	ps.buf = ps.buf[1:]
	return rec, true, nil
}

// cursor says where a next call continues: everything before it in each
// partition was taken or not selected.
func (s *scanner) cursor() string {
	next := make(map[int32]int64, len(s.parts))
	for _, ps := range s.parts {
		if len(ps.buf) > 0 {
			next[ps.p] = ps.buf[0].Offset
		} else {
			next[ps.p] = ps.next
		}
	}
	return formatCursor(next)
}

// fill fetches until every partition has a buffered record or is done.
func (s *scanner) fill(ctx context.Context) error {
	failed, empty := 0, 0
	backoff := 50 * time.Millisecond
	for {
		var need []*partScan
		for _, ps := range s.parts {
			if len(ps.buf) == 0 && !ps.done() {
				need = append(need, ps)
			}
		}
		if len(need) == 0 {
			return nil
		}
		progress, stale, err := s.fetchRound(ctx, need)
		switch {
		case err != nil && !stale:
			return err
		case progress:
			failed, empty, backoff = 0, 0, 50*time.Millisecond
			if stale {
				if err := s.refresh(ctx); err != nil {
					return err
				}
			}
			continue
		case err != nil:
			if failed++; failed > maxFailedRounds {
				return fmt.Errorf("dlq: fetch %q: giving up after %d attempts: %w", s.topic, failed, err)
			}
		default:
			if empty++; empty > maxEmptyRounds {
				return fmt.Errorf("dlq: fetch %q: no progress after %d fetches", s.topic, empty)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
		if stale {
			if err := s.refresh(ctx); err != nil {
				return err
			}
		}
	}
}

type fetchResult struct {
	parts []*partScan
	resp  *kmsg.FetchResponse
	err   error
}

// fetchRound sends one Fetch request to the leader of each partition in
// need, concurrently, and buffers what they return. progress reports whether
// any partition advanced; stale whether metadata should be refreshed (err
// then is the last retriable error); a non-nil err with stale false is
// fatal.
func (s *scanner) fetchRound(ctx context.Context, need []*partScan) (progress, stale bool, err error) {
	s.round++
	byLeader := map[int32][]*partScan{}
	for i := range need {
		// Rotate the order so that no partition is always last in a request
		// (a broker may leave late partitions empty when MaxBytes runs out).
		ps := need[(i+s.round)%len(need)]
		leader := s.leaders[ps.p]
		if leader < 0 {
			stale, err = true, fmt.Errorf("%s[%d]: %w", s.topic, ps.p, kerr.LeaderNotAvailable)
			continue
		}
		byLeader[leader] = append(byLeader[leader], ps)
	}
	results := make([]fetchResult, 0, len(byLeader))
	for _, parts := range byLeader {
		results = append(results, fetchResult{parts: parts})
	}
	var wg sync.WaitGroup
	for i := range results {
		r := &results[i]
		leader := s.leaders[r.parts[0].p]
		wg.Go(func() { r.resp, r.err = s.fetch(ctx, leader, r.parts) })
	}
	wg.Wait()

	for _, r := range results {
		if r.err == nil && r.resp.ErrorCode != 0 {
			r.err = kerr.ErrorForCode(r.resp.ErrorCode)
		}
		if r.err != nil {
			if ctx.Err() != nil {
				return progress, false, ctx.Err()
			}
			stale, err = true, r.err // connection or broker trouble: retry
			continue
		}
		got := map[int32]*kmsg.FetchResponseTopicPartition{}
		for ti := range r.resp.Topics {
			t := &r.resp.Topics[ti]
			if t.Topic != s.topic && t.TopicID != s.id {
				continue
			}
			for pi := range t.Partitions {
				got[t.Partitions[pi].Partition] = &t.Partitions[pi]
			}
		}
		for _, ps := range r.parts {
			rp, ok := got[ps.p]
			if !ok {
				continue
			}
			advanced, perr := s.process(ctx, ps, rp)
			progress = progress || advanced
			if perr != nil {
				var fatal *fatalErr
				if errors.As(perr, &fatal) {
					return progress, false, fatal.err
				}
				stale, err = true, perr
			}
		}
	}
	return progress, stale, err
}

type fatalErr struct{ err error }

func (e *fatalErr) Error() string { return e.err.Error() }

// fetch sends one Fetch request for parts to broker leader.
func (s *scanner) fetch(ctx context.Context, leader int32, parts []*partScan) (*kmsg.FetchResponse, error) {
	req := kmsg.NewPtrFetchRequest()
	req.MaxWaitMillis = int32(fetchMaxWait / time.Millisecond)
	req.MinBytes = 1
	req.MaxBytes = fetchMaxBytes
	req.IsolationLevel = 1 // read_committed
	t := kmsg.NewFetchRequestTopic()
	t.Topic = s.topic
	t.TopicID = s.id
	for _, ps := range parts {
		p := kmsg.NewFetchRequestTopicPartition()
		p.Partition = ps.p
		p.FetchOffset = ps.next
		p.PartitionMaxBytes = fetchPartMaxBytes
		p.CurrentLeaderEpoch = s.epochs[ps.p]
		t.Partitions = append(t.Partitions, p)
	}
	req.Topics = append(req.Topics, t)
	return req.RequestWith(ctx, s.c.cl.Broker(int(leader)))
}

// process buffers the selected records of one fetched partition and
// advances it. It returns a *fatalErr for errors a retry cannot fix.
func (s *scanner) process(ctx context.Context, ps *partScan, rp *kmsg.FetchResponseTopicPartition) (advanced bool, err error) {
	if rp.ErrorCode != 0 {
		ferr := kerr.ErrorForCode(rp.ErrorCode)
		if errors.Is(ferr, kerr.OffsetOutOfRange) {
			return s.outOfRange(ctx, ps, ferr)
		}
		if kerr.IsRetriable(ferr) || errors.Is(ferr, kerr.UnknownTopicID) || errors.Is(ferr, kerr.FencedLeaderEpoch) ||
			errors.Is(ferr, kerr.UnknownLeaderEpoch) || errors.Is(ferr, kerr.NotLeaderForPartition) {
			return false, fmt.Errorf("%s[%d]: %w", s.topic, ps.p, ferr)
		}
		return false, &fatalErr{fmt.Errorf("dlq: fetch %s[%d] at offset %d: %w", s.topic, ps.p, ps.next, ferr)}
	}
	fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
		KeepControlRecords: true, // so that every offset is accounted for
		Offset:             ps.next,
		IsolationLevel:     kgo.ReadCommitted(),
		Topic:              s.topic,
		Partition:          ps.p,
	}, rp, s.decomp, nil)
	for _, r := range fp.Records {
		if r.Offset >= ps.end {
			break
		}
		if r.Attrs.IsControl() {
			continue
		}
		rec := Parse(r)
		if s.f.match(&rec) {
			ps.buf = append(ps.buf, rec)
		}
	}
	if fp.Err != nil && len(fp.Records) == 0 && next <= ps.next {
		return false, &fatalErr{fmt.Errorf("dlq: decode %s[%d] at offset %d: %w", s.topic, ps.p, ps.next, fp.Err)}
	}
	if next > ps.next {
		ps.next = min(next, ps.end)
		return true, nil
	}
	return false, nil
}

// outOfRange handles a fetch offset that left the log: records deleted by
// retention or a purge meanwhile (skip to the new log start), or a log
// truncated below what we meant to read (stop there).
func (s *scanner) outOfRange(ctx context.Context, ps *partScan, ferr error) (bool, error) {
	starts, err := s.c.listOffsets(ctx, s.topic, "start", s.c.adm.ListStartOffsets)
	if err != nil {
		return false, &fatalErr{err}
	}
	ends, err := s.c.listOffsets(ctx, s.topic, "end", s.c.adm.ListEndOffsets)
	if err != nil {
		return false, &fatalErr{err}
	}
	start, ok1 := starts.Lookup(s.topic, ps.p)
	end, ok2 := ends.Lookup(s.topic, ps.p)
	switch {
	case !ok1 || !ok2 || start.Err != nil || end.Err != nil:
		return false, fmt.Errorf("%s[%d]: %w", s.topic, ps.p, ferr)
	case start.Offset > ps.next:
		ps.next = min(start.Offset, ps.end)
		return true, nil
	case end.Offset <= ps.next:
		ps.end = ps.next
		return true, nil
	}
	return false, fmt.Errorf("%s[%d] at offset %d: %w", s.topic, ps.p, ps.next, ferr)
}

// listOffsets calls list (one of kadm's List*Offsets) for topic and retries
// partition errors that go away by themselves, such as a leader that just
// moved. what names the offsets in errors.
func (c *Client) listOffsets(ctx context.Context, topic, what string, list func(context.Context, ...string) (kadm.ListedOffsets, error)) (kadm.ListedOffsets, error) {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		l, err := list(ctx, topic)
		if err == nil {
			err = l.Error()
		}
		if err == nil {
			return l, nil
		}
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			return nil, unknownTopic(topic)
		}
		if !kerr.IsRetriable(err) || attempt >= maxFailedRounds {
			return nil, fmt.Errorf("dlq: list %s offsets of %q: %w", what, topic, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

package notify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var (
	errKicked     = errors.New("notify: socket queue overflowed during resume")
	errOutOfRange = errors.New("notify: resume offset no longer in Kafka")
)

// catchUp writes s's notifications of offsets from..to of its partition.
// It sends Fetch requests (no wait) to the partition leader through the
// gateway's resume client: one client serves every resume (a consumer per
// resume would cost connections and a metadata round trip each), and not the
// reader's, whose long-polling fetches would hold each request up to 5s, as a
// broker answers one connection's requests in order. It uses
// kgo.ProcessFetchPartition for its next offset, which steps over
// transaction markers and aborted batches that a consumer never shows.
func (g *Gateway) catchUp(ctx context.Context, s *socket, from, to int64) error {
	off, failures := from, 0
	retry := func(err error) error {
		failures++
		if failures > 5 {
			return err
		}
		g.forgetLeader(s.part)
		select {
		case <-time.After(time.Duration(failures) * 100 * time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for off <= to {
		select {
		case <-s.kicked:
			return errKicked
		default:
		}
		leader, err := g.leader(ctx, s.part)
		if err != nil {
			if err := retry(err); err != nil {
				return err
			}
			continue
		}
		rp, err := g.fetch(ctx, leader, s.part, off)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			if err := retry(err); err != nil {
				return err
			}
			continue
		}
		switch err := kerr.ErrorForCode(rp.ErrorCode); {
		case err == nil:
		case errors.Is(err, kerr.OffsetOutOfRange):
			return fmt.Errorf("%w: offset %d of partition %d (log start %d): %w", errOutOfRange, off, s.part, rp.LogStartOffset, err)
		case kerr.IsRetriable(err):
			if err := retry(err); err != nil {
				return err
			}
			continue
		default:
			return fmt.Errorf("fetch partition %d at %d: %w", s.part, off, err)
		}
		fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
			Offset: off, IsolationLevel: kgo.ReadCommitted(), Topic: g.topic, Partition: s.part,
		}, rp, kgo.DefaultDecompressor(), nil)
		if fp.Err != nil {
			return fmt.Errorf("fetch partition %d at %d: %w", s.part, off, fp.Err)
		}
		for _, r := range fp.Records {
			if r.Offset > to {
				break
			}
			if string(r.Key) == s.ch {
				if err := g.deliver(ctx, s, &frame{off: r.Offset, b: notificationFrame(r)}); err != nil {
					return err
				}
			}
		}
		if next <= off { // nothing below the last stable offset: not expected as to < LSO
			if err := retry(fmt.Errorf("fetch partition %d at %d: no progress (last stable offset %d)", s.part, off, rp.LastStableOffset)); err != nil {
				return err
			}
			continue
		}
		off, failures = next, 0
	}
	return nil
}

func (g *Gateway) fetch(ctx context.Context, leader, part int32, off int64) (*kmsg.FetchResponseTopicPartition, error) {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MinBytes = 1
	req.MaxBytes = 4 << 20
	req.IsolationLevel = 1 // read_committed, as the reader
	req.SessionEpoch = -1  // no fetch session
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = g.topic, g.topicID
	rpq := kmsg.NewFetchRequestTopicPartition()
	rpq.Partition, rpq.FetchOffset, rpq.PartitionMaxBytes = part, off, 1<<20
	rpq.CurrentLeaderEpoch, rpq.LogStartOffset = -1, -1
	rt.Partitions = append(rt.Partitions, rpq)
	req.Topics = append(req.Topics, rt)
	kresp, err := g.rcl.Broker(int(leader)).Request(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("fetch partition %d at %d from broker %d: %w", part, off, leader, err)
	}
	resp := kresp.(*kmsg.FetchResponse)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, fmt.Errorf("fetch partition %d at %d: %w", part, off, err)
	}
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			if rp := &resp.Topics[i].Partitions[j]; rp.Partition == part {
				return rp, nil
			}
		}
	}
	return nil, fmt.Errorf("fetch partition %d at %d: not in the response", part, off)
}

func (g *Gateway) leader(ctx context.Context, part int32) (int32, error) {
	g.leaderMu.Lock()
	l, ok := g.leaders[part]
	g.leaderMu.Unlock()
	if ok && l >= 0 {
		return l, nil
	}
	md, err := g.radm.Metadata(ctx, g.topic) // teaches rcl the brokers
	if err != nil {
		return 0, fmt.Errorf("metadata: %w", err)
	}
	td := md.Topics[g.topic]
	pd, ok := td.Partitions[part]
	if !ok || pd.Leader < 0 {
		return 0, fmt.Errorf("partition %d has no leader", part)
	}
	g.leaderMu.Lock()
	for _, p := range td.Partitions {
		g.leaders[p.Partition] = p.Leader
	}
	g.leaderMu.Unlock()
	return pd.Leader, nil
}

func (g *Gateway) forgetLeader(part int32) {
	g.leaderMu.Lock()
	delete(g.leaders, part)
	g.leaderMu.Unlock()
}

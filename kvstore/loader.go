package kvstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
)

// ensureTopic checks that the topic exists and is compacted, creating it if
// it is missing (and CreateTopic is on). It uses a short-lived client, so
// that the store's consuming client is created only once the topic exists
// (a direct consumer of a missing topic waits for its next metadata refresh).
func (s *Store[K, V]) ensureTopic(ctx context.Context) error {
	cl, err := kgo.NewClient(append(s.kc.Plain(), kgo.SeedBrokers(s.cfg.conn.Brokers...))...)
	if err != nil {
		return &ConfigError{Pkg: "kvstore", Sentinel: ErrInvalidConfig, Field: "Connection.ClientOptions", Rule: "franz-go rejected the client configuration", Err: err}
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for attempt := 0; ; attempt++ {
		policy, compression, err := s.topicConfig(ctx, adm)
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			if !s.cfg.createTopic {
				return fmt.Errorf("kvstore %q: %w: %q (CreateTopic is off)", s.cfg.name, ErrTopicNotFound, s.topic)
			}
			created, err := s.createTopic(ctx, adm)
			if err != nil {
				return err
			}
			if created {
				s.compacted = true
				s.fetchSize = compressedFetchBytes // empty: either will do
				return nil
			}
			if attempt < 3 {
				continue // created by someone else meanwhile: check it
			}
		}
		if err != nil {
			return fmt.Errorf("kvstore %q: describing topic %q: %w", s.cfg.name, s.topic, err)
		}
		s.compacted = hasCompact(policy)
		if !s.compacted {
			if !s.cfg.allowNotCompacted {
				return fmt.Errorf("kvstore %q: %w: topic %q has cleanup.policy=%q; a store needs \"compact\" "+
					"(alter the topic, or open with AllowNotCompacted(true))", s.cfg.name, ErrNotCompacted, s.topic, policy)
			}
			s.log.Warn("topic is not compacted (AllowNotCompacted): a load reads every old value, and keys disappear when retention deletes their last record",
				zap.String("cleanup.policy", policy))
		} else if policy != "compact" {
			s.log.Warn("topic is compacted and also deleted by retention: keys whose last record is older than retention.ms disappear",
				zap.String("cleanup.policy", policy))
		}
		s.fetchSize = s.fetchBytes(ctx, cl, adm, compression)
		return nil
	}
}

// topicConfig returns the topic's cleanup.policy and compression.type, or
// an error matching kerr.UnknownTopicOrPartition if the topic does not
// exist.
func (s *Store[K, V]) topicConfig(ctx context.Context, adm *kadm.Client) (policy, compression string, err error) {
	rcs, err := adm.DescribeTopicConfigs(ctx, s.topic)
	if err != nil {
		return "", "", err
	}
	rc, err := rcs.On(s.topic, nil)
	if err != nil {
		return "", "", err
	}
	if rc.Err != nil {
		return "", "", rc.Err
	}
	policy, compression = "delete", "producer" // Kafka's defaults
	for _, c := range rc.Configs {
		switch c.Key {
		case "cleanup.policy":
			policy = c.MaybeValue()
		case "compression.type":
			compression = c.MaybeValue()
		}
	}
	return policy, compression, nil
}

// createTopic creates the topic; false with no error means it already
// existed.
func (s *Store[K, V]) createTopic(ctx context.Context, adm *kadm.Client) (bool, error) {
	configs := map[string]*string{"cleanup.policy": new("compact")}
	for k, v := range s.cfg.topicConfigs {
		configs[k] = new(v)
	}
	resp, err := adm.CreateTopic(ctx, s.cfg.partitions, s.cfg.replication, configs, s.topic)
	if err == nil {
		err = resp.Err
	}
	switch {
	case err == nil:
		s.log.Info("created the store's topic", zap.Int32("partitions", resp.NumPartitions), zap.Int16("replicationFactor", resp.ReplicationFactor))
		return true, s.awaitLeaders(ctx, adm)
	case errors.Is(err, kerr.TopicAlreadyExists):
		return false, nil
	}
	return false, fmt.Errorf("kvstore %q: creating topic %q: %w", s.cfg.name, s.topic, err)
}

// awaitLeaders waits until the metadata of a topic just created shows a
// leader for every partition. Otherwise the store's client could see the
// topic without leaders, and franz-go waits its metadata min age (5s) before
// it asks again.
func (s *Store[K, V]) awaitLeaders(ctx context.Context, adm *kadm.Client) error {
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		td, err := adm.ListTopics(ctx, s.topic)
		if err == nil {
			err = ready(td[s.topic])
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kvstore %q: topic %q created, but its partitions have no leader yet: %w: %w", s.cfg.name, s.topic, err, context.Cause(ctx))
		case <-time.After(wait):
		}
	}
}

func ready(d kadm.TopicDetail) error {
	if d.Err != nil {
		return d.Err
	}
	if len(d.Partitions) == 0 {
		return errors.New("no partitions in the metadata")
	}
	for _, p := range d.Partitions {
		if p.Err != nil {
			return fmt.Errorf("partition %d: %w", p.Partition, p.Err)
		}
		if p.Leader < 0 {
			return fmt.Errorf("partition %d has no leader", p.Partition)
		}
	}
	return nil
}

// load is the loader goroutine: it lists where the initial load ends, then
// applies every fetched record until Close. It never gives up: fetch errors
// (a broker restarting, a leader moving) are logged and counted, and
// franz-go reconnects and goes on where it was.
func (s *Store[K, V]) load() {
	defer close(s.loaderEnd)
	targets, ok := s.listTargets()
	if !ok {
		return
	}
	lso := make(map[int32]int64, len(targets))
	maps.Copy(lso, targets)
	s.checkReady(targets)
	var (
		backoff  time.Duration
		logLimit rateLimit
	)
	for {
		fs := s.cl.PollFetches(s.loadCtx)
		if s.loadCtx.Err() != nil || fs.IsClientClosed() {
			return
		}
		var fetchErr error
		fs.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			s.st.fetchErrors.Add(1)
			fetchErr = fmt.Errorf("fetching partition %d: %w", partition, err)
			if n, ok := logLimit.allow(); ok {
				s.log.Warn("fetch error; the store keeps going", zap.Int32("partition", partition), zap.Error(err), zap.Int("suppressed", n))
			}
		})
		if fetchErr != nil {
			s.setLastErr(fetchErr)
		}
		s.apply(fs, lso)
		if s.pool != nil {
			// The records are applied: their memory can take the next
			// polls' records.
			s.pool.reuse(fs, s.handedOut)
			clear(s.handedOut)
			s.handedOut = s.handedOut[:0]
		}
		if targets != nil {
			s.checkReady(targets)
			if len(targets) == 0 {
				targets = nil
			}
		}
		if fetchErr != nil && fs.NumRecords() == 0 {
			// Errors only: do not spin.
			backoff = min(max(2*backoff, 50*time.Millisecond), time.Second)
			select {
			case <-time.After(backoff):
			case <-s.loadCtx.Done():
				return
			}
		} else {
			backoff = 0
		}
	}
}

// listTargets returns, per partition, the offset the initial load must reach:
// the last stable offset (the end offset for read-committed readers) at
// start. It retries until it succeeds or the store closes (false).
func (s *Store[K, V]) listTargets() (map[int32]int64, bool) {
	var backoff time.Duration
	for attempt := 1; ; attempt++ {
		starts, ends, err := s.listOffsets()
		if err == nil {
			targets := make(map[int32]int64, len(ends))
			var records int64
			s.applyMu.Lock()
			for p, end := range ends {
				start := starts[p]
				if _, ok := s.pos[p]; !ok {
					s.pos[p] = start
				}
				targets[p] = end
				records += max(0, end-start)
			}
			s.applyMu.Unlock()
			s.st.lag.Store(records)
			s.listed.Store(true)
			if s.compacted {
				s.tab.presize(records)
			}
			s.log.Info("loading the store", zap.Int("partitions", len(ends)), zap.Int64("records", records))
			return targets, true
		}
		s.setLastErr(err)
		if attempt == 1 || attempt%10 == 0 {
			s.log.Warn("listing the topic's offsets; retrying", zap.Int("attempt", attempt), zap.Error(err))
		}
		backoff = min(max(2*backoff, 50*time.Millisecond), 2*time.Second)
		select {
		case <-time.After(backoff):
		case <-s.loadCtx.Done():
			return nil, false
		}
	}
}

func (s *Store[K, V]) listOffsets() (starts, ends map[int32]int64, err error) {
	ctx, cancel := context.WithTimeout(s.loadCtx, 15*time.Second)
	defer cancel()
	get := func(list func(context.Context, ...string) (kadm.ListedOffsets, error)) (map[int32]int64, error) {
		lo, err := list(ctx, s.topic)
		if err == nil {
			err = lo.Error()
		}
		if err != nil {
			return nil, err
		}
		out := map[int32]int64{}
		lo.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
		if len(out) == 0 {
			return nil, fmt.Errorf("topic %q: %w", s.topic, kerr.UnknownTopicOrPartition)
		}
		return out, nil
	}
	if starts, err = get(s.adm.ListStartOffsets); err != nil {
		return nil, nil, fmt.Errorf("listing start offsets: %w", err)
	}
	if ends, err = get(s.adm.ListCommittedOffsets); err != nil {
		return nil, nil, fmt.Errorf("listing end offsets: %w", err)
	}
	return starts, ends, nil
}

// checkReady drops the partitions that caught up from targets and marks the
// store ready when none is left.
func (s *Store[K, V]) checkReady(targets map[int32]int64) {
	if targets == nil {
		return
	}
	s.applyMu.Lock()
	for p, t := range targets {
		if s.pos[p] >= t {
			delete(targets, p)
		}
	}
	s.applyMu.Unlock()
	if len(targets) > 0 || s.st.ready.Load() {
		return
	}
	s.tab.rightSize() // before ready: the memory a ready store holds is what it keeps
	d := time.Since(s.opened)
	s.st.setLoadSeconds(d.Seconds())
	s.st.ready.Store(true)
	close(s.ready)
	s.log.Info("store loaded", zap.Int64("entries", s.st.entries.Load()), zap.Int64("bytes", s.st.bytes.Load()),
		zap.Int64("records", s.st.applied.Load()), zap.Duration("took", d))
}

// apply applies a poll's records and wakes the writes and subscribers
// waiting for them. Records are decoded in offset order, applied shard by
// shard (each key's records in offset order), and their changes passed to
// subscribers in offset order per partition.
func (s *Store[K, V]) apply(fs kgo.Fetches, lso map[int32]int64) {
	type partEnd struct {
		partition int32
		next      int64
	}
	var ends []partEnd
	s.tab.begin(fs.NumRecords())
	fs.EachPartition(func(p kgo.FetchTopicPartition) {
		if p.Err != nil && len(p.Records) == 0 {
			return
		}
		if stable := p.LastStableOffset; stable >= 0 {
			lso[p.Partition] = stable
		} else if p.HighWatermark >= 0 {
			lso[p.Partition] = p.HighWatermark
		}
		if len(p.Records) == 0 {
			return
		}
		ends = append(ends, partEnd{p.Partition, p.Records[len(p.Records)-1].Offset + 1})
		s.tab.partition(p.Records)
		for _, r := range p.Records {
			var err error
			switch {
			case r.Attrs.IsControl():
			case r.Key == nil:
				err = errors.New("record has no key")
			default:
				err = s.tab.add(r)
			}
			if err != nil {
				s.decodeFailed(r, err)
			}
		}
	})

	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	var emit func(Change[K, V])
	if len(s.subs) > 0 {
		emit = func(c Change[K, V]) {
			for _, sub := range s.subs {
				sub.push(c)
			}
		}
	}
	entries, size, applied := s.tab.flush(emit)
	s.st.entries.Add(entries)
	s.st.bytes.Add(size)
	s.st.applied.Add(applied)
	for _, e := range ends {
		s.pos[e.partition] = e.next
		if ws := s.waiters[e.partition]; len(ws) > 0 {
			keep := ws[:0]
			for _, w := range ws {
				if w.offset < e.next {
					close(w.done)
				} else {
					keep = append(keep, w)
				}
			}
			clear(ws[len(keep):])
			s.waiters[e.partition] = keep
		}
	}
	var lag int64
	for p, end := range lso {
		lag += max(0, end-s.pos[p])
	}
	s.st.lag.Store(lag)
}

// decodeFailed reports a record the store skipped.
func (s *Store[K, V]) decodeFailed(r *kgo.Record, err error) {
	s.st.decodeErrors.Add(1)
	err = fmt.Errorf("partition %d offset %d: %w", r.Partition, r.Offset, err)
	s.setLastErr(err)
	if n, ok := s.decodeLog.allow(); ok {
		s.log.Warn("skipping a record the codecs cannot decode; the key keeps its previous value",
			zap.Error(err), zap.Int("suppressed", n))
	}
	if s.cfg.onDecodeError != nil {
		s.cfg.onDecodeError(r, err)
		s.handedOut = append(s.handedOut, r) // the callback may keep it
	}
}

func (s *Store[K, V]) setLastErr(err error) {
	msg := err.Error()
	s.lastErr.Store(&msg)
}

// rateLimit lets one event a second through and counts the others. It is
// used by one goroutine (the loader).
type rateLimit struct {
	last       time.Time
	suppressed int
}

// allow reports whether to log now, and how many events were suppressed
// since the last one logged.
func (l *rateLimit) allow() (int, bool) {
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < time.Second {
		l.suppressed++
		return 0, false
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return n, true
}

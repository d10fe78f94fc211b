package consumer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet/internal/secure"
	"github.com/whippet-go/whippet/retry"
)

// retryTopics are the retry topics the consumer subscribes to, sorted.
func (c *Consumer) retryTopics() []string {
	names := make([]string, 0, len(c.stages))
	for name := range c.stages {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// ensureTopics creates the missing retry and dead-letter topics of every
// subscribed topic before the consumer joins its group, so that a forward
// never waits for a topic. With TopicRegex the topics are not known yet: a
// dead-letter topic is then created by the first forward that needs it.
func (c *Consumer) ensureTopics(ctx context.Context) error {
	if len(c.cfg.topics) == 0 {
		// TopicRegex only: nothing below talks to Kafka, so check here that
		// it lets us in; otherwise a wrong password or certificate would
		// leave Run polling in silence.
		if err := c.fwd.Ping(ctx); secure.IsAuthError(err) {
			return fmt.Errorf("consumer: connecting to Kafka: %w", err)
		}
	}
	for _, topic := range c.cfg.topics {
		names := []string{retry.DLQTopicName(topic, c.cfg.group)}
		for n := range c.cfg.policyFor(topic).NonBlockingIntervals() {
			names = append(names, retry.TopicName(topic, c.cfg.group, n))
		}
		if err := c.createTopics(ctx, topic, names...); err != nil {
			return err
		}
	}
	return nil
}

// headerRoom is how much larger than its source topic's max.message.bytes a
// retry or dead-letter topic is created: room for the retry headers a
// forward adds (at most retry.MaxErrorLength bytes of error text, the
// original topic and group names, and a few numbers).
const headerRoom = 16 << 10

// defaultBatchMaxBytes is franz-go's default kgo.ProducerBatchMaxBytes.
const defaultBatchMaxBytes = 1_000_012

// topicLimits holds, per retry and dead-letter topic, how large a batch the
// forwarding client may send it.
type topicLimits struct {
	mu sync.Mutex
	m  map[string]int32
}

func (l *topicLimits) set(topic string, n int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[string]int32)
	}
	l.m[topic] = n
}

// batchMaxBytes is the forwarding client's kgo.ProducerBatchMaxBytesFn:
// franz-go's default, or more for a retry or dead-letter topic that takes
// larger records. franz-go reads it once per partition, when it first
// produces to it.
func (l *topicLimits) batchMaxBytes(topic string) int32 {
	l.mu.Lock()
	n := l.m[topic]
	l.mu.Unlock()
	return min(max(n, defaultBatchMaxBytes), 1<<30)
}

// option names what sets the forwarding client's batch limit for topic, for
// the error of a record too large for it.
func (l *topicLimits) option(topic string) string {
	l.mu.Lock()
	_, ours := l.m[topic]
	l.mu.Unlock()
	if ours {
		return "the forwarding client's batch limit for the topic (the larger of its max.message.bytes and its source topic's plus 16 KiB, as read when the topic was created or the consumer started; kgo.ProducerBatchMaxBytes in ClientOptions overrides it)"
	}
	return "kgo.ProducerBatchMaxBytes (ClientOptions)"
}

// createTopics creates those of names that do not exist, with RetryTopics'
// settings; partitions default to the source topic's count, and
// max.message.bytes to the source topic's plus headerRoom, so that every
// record of the source topic can be forwarded. Existing topics are left as
// they are, with a warning if they take smaller records than that.
func (c *Consumer) createTopics(ctx context.Context, source string, names ...string) error {
	adm := kadm.NewClient(c.fwd)
	details, err := adm.ListTopics(ctx, append([]string{source}, names...)...)
	if err != nil {
		return fmt.Errorf("consumer: listing retry and dead-letter topics: %w", err)
	}
	var missing, existing []string
	for _, name := range names {
		if d, ok := details[name]; !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			missing = append(missing, name)
		} else {
			existing = append(existing, name)
		}
	}
	need := c.checkLimits(ctx, adm, source, existing)
	if len(missing) == 0 {
		return nil
	}
	configs := c.cfg.retryConfigs
	if v, ok := configs["max.message.bytes"]; ok {
		// The user's choice; the forwarding client follows it.
		if n, err := strconv.ParseInt(derefOr(v, ""), 10, 32); err == nil {
			need = int32(n)
		}
	} else if need > 0 {
		configs = maps.Clone(configs)
		if configs == nil {
			configs = make(map[string]*string, 1)
		}
		v := strconv.Itoa(int(need))
		configs["max.message.bytes"] = &v
	}
	partitions := c.cfg.retryPartitions
	if partitions == 0 {
		partitions = -1 // the broker's num.partitions, unless the source topic tells
		if d, ok := details[source]; ok && d.Err == nil && len(d.Partitions) > 0 {
			partitions = int32(len(d.Partitions))
		}
	}
	if need > 0 {
		// Before the topics exist: franz-go reads a partition's batch limit
		// once, when it first sees the partition.
		for _, name := range missing {
			c.limits.set(name, need)
		}
	}
	resps, err := adm.CreateTopics(ctx, partitions, c.cfg.retryReplication, configs, missing...)
	if err != nil {
		return fmt.Errorf("consumer: creating retry and dead-letter topics %v: %w", missing, err)
	}
	for _, r := range resps.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("consumer: creating topic %s: %w", r.Topic, r.Err)
		}
	}
	c.log.Info("created retry and dead-letter topics", zap.Strings("topics", missing), zap.Int32("partitions", partitions),
		zap.Int32("maxMessageBytes", need))
	return nil
}

// checkLimits reads the max.message.bytes of source and of the existing
// retry and dead-letter topics, and returns what a retry or dead-letter
// topic needs (the source's plus headerRoom; 0 if it could not be read). An
// existing topic that takes less is warned about, not altered (its settings
// are its owner's); the forwarding client still sends it records up to what
// it needs, so that such a record blocks its partition with Kafka's
// MESSAGE_TOO_LARGE and the topic's limit in Blocked, and goes through as
// soon as an operator raises that limit.
func (c *Consumer) checkLimits(ctx context.Context, adm *kadm.Client, source string, existing []string) int32 {
	rcs, err := adm.DescribeTopicConfigs(ctx, append([]string{source}, existing...)...)
	if err != nil {
		c.log.Warn("reading max.message.bytes of a topic and its retry and dead-letter topics failed; new retry and dead-letter topics get the broker's default, which may refuse records the topic takes",
			zap.String("topic", source), zap.Error(err))
		return 0
	}
	limits := make(map[string]int32, len(rcs))
	for _, rc := range rcs {
		if rc.Err != nil {
			continue
		}
		for _, cfg := range rc.Configs {
			if cfg.Key == "max.message.bytes" && cfg.Value != nil {
				if n, err := strconv.ParseInt(*cfg.Value, 10, 32); err == nil {
					limits[rc.Name] = int32(n)
				}
			}
		}
	}
	src, ok := limits[source]
	if !ok {
		c.log.Warn("reading max.message.bytes of a topic failed; new retry and dead-letter topics get the broker's default, which may refuse records the topic takes",
			zap.String("topic", source))
		return 0
	}
	need := int32(min(int64(src)+headerRoom, 1<<30))
	for _, name := range existing {
		have, ok := limits[name]
		if !ok {
			continue
		}
		c.limits.set(name, max(have, need))
		if have < need {
			c.log.Warn("retry or dead-letter topic takes smaller records than its source topic (max.message.bytes): a failing record larger than it blocks its partition until the topic's max.message.bytes is raised",
				zap.String("topic", name), zap.Int32("maxMessageBytes", have),
				zap.String("source", source), zap.Int32("sourceMaxMessageBytes", src), zap.Int32("want", need))
		}
	}
	return need
}

func derefOr(p *string, or string) string {
	if p == nil {
		return or
	}
	return *p
}

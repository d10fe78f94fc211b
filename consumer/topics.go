package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"

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

// createTopics creates those of names that do not exist, with RetryTopics'
// settings; partitions default to the source topic's count.
func (c *Consumer) createTopics(ctx context.Context, source string, names ...string) error {
	adm := kadm.NewClient(c.fwd)
	details, err := adm.ListTopics(ctx, append([]string{source}, names...)...)
	if err != nil {
		return fmt.Errorf("consumer: listing retry and dead-letter topics: %w", err)
	}
	var missing []string
	for _, name := range names {
		if d, ok := details[name]; !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			missing = append(missing, name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	partitions := c.cfg.retryPartitions
	if partitions == 0 {
		partitions = -1 // the broker's num.partitions, unless the source topic tells
		if d, ok := details[source]; ok && d.Err == nil && len(d.Partitions) > 0 {
			partitions = int32(len(d.Partitions))
		}
	}
	resps, err := adm.CreateTopics(ctx, partitions, c.cfg.retryReplication, c.cfg.retryConfigs, missing...)
	if err != nil {
		return fmt.Errorf("consumer: creating retry and dead-letter topics %v: %w", missing, err)
	}
	for _, r := range resps.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("consumer: creating topic %s: %w", r.Topic, r.Err)
		}
	}
	c.log.Info("created retry and dead-letter topics", zap.Strings("topics", missing), zap.Int32("partitions", partitions))
	return nil
}

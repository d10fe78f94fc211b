package consumer

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"

	"go.uber.org/zap"
)

// OnAssigned sets a function called with the partitions assigned to the
// consumer, before any of their records is handled (see the guarantees
// above). ctx ends when the consumer's Kafka client closes. Default: none.
func OnAssigned(fn func(ctx context.Context, partitions []TopicPartition)) Option {
	return func(c *config) { c.onAssigned = fn }
}

// OnRevoked sets a function called with the partitions taken from the
// consumer by a rebalance, or given up at shutdown, once their handlers have
// returned and their offsets are committed (see Rebalance hooks in the package documentation).
// Default: none.
func OnRevoked(fn func(ctx context.Context, partitions []TopicPartition)) Option {
	return func(c *config) { c.onRevoked = fn }
}

// OnLost sets a function called with the partitions taken from the consumer
// without a commit of their finished records, once their handlers have
// stopped (see Rebalance hooks in the package documentation). Default: none (OnRevoked is not called
// for them either).
func OnLost(fn func(ctx context.Context, partitions []TopicPartition)) Option {
	return func(c *config) { c.onLost = fn }
}

// ended reports stopped partitions to OnRevoked if their offsets are
// committed, else to OnLost.
func (c *Consumer) ended(ctx context.Context, ps []*partition, committed bool) {
	if len(ps) == 0 {
		return
	}
	tps := make([]TopicPartition, len(ps))
	for i, p := range ps {
		tps[i] = TopicPartition{p.topic, p.id}
	}
	sortPartitions(tps)
	if committed {
		c.hook(ctx, "OnRevoked", c.cfg.onRevoked, tps)
	} else {
		c.hook(ctx, "OnLost", c.cfg.onLost, tps)
	}
}

// hook calls fn, a rebalance hook, unless it is nil or tps is empty; a
// panic is logged.
func (c *Consumer) hook(ctx context.Context, name string, fn func(context.Context, []TopicPartition), tps []TopicPartition) {
	if fn == nil || len(tps) == 0 {
		return
	}
	c.hookMu.Lock()
	defer c.hookMu.Unlock()
	defer func() {
		if v := recover(); v != nil {
			c.log.Error("rebalance hook panicked", zap.String("hook", name), zap.String("panic", fmt.Sprint(v)),
				zap.ByteString("stack", debug.Stack()))
		}
	}()
	fn(ctx, tps)
}

// topicPartitions lists a franz-go partition map, sorted.
func topicPartitions(m map[string][]int32) []TopicPartition {
	var tps []TopicPartition
	for topic, ids := range m {
		for _, id := range ids {
			tps = append(tps, TopicPartition{topic, id})
		}
	}
	sortPartitions(tps)
	return tps
}

func sortPartitions(tps []TopicPartition) {
	slices.SortFunc(tps, func(a, b TopicPartition) int {
		if a.Topic != b.Topic {
			return strings.Compare(a.Topic, b.Topic)
		}
		return int(a.Partition - b.Partition)
	})
}

package atomicstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/codec"
)

// CommandsTopic returns the commands topic of the store named name.
func CommandsTopic(name string) string { return name + "-commands" }

// StoreTopic returns the compacted store topic of the store named name.
func StoreTopic(name string) string { return name + "-store" }

// ensureTopics creates the two topics if missing (the store topic
// compacted) and checks that they have the same partition count, which
// co-partitioning needs. It returns that count.
func ensureTopics(ctx context.Context, adm *kadm.Client, name string, cfg *config) (int32, error) {
	compact := "compact"
	for _, t := range []struct {
		topic string
		conf  map[string]*string
	}{{CommandsTopic(name), nil}, {StoreTopic(name), map[string]*string{"cleanup.policy": &compact}}} {
		resp, err := adm.CreateTopic(ctx, cfg.partitions, cfg.replication, t.conf, t.topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return 0, fmt.Errorf("atomicstore: creating topic %s: %w", t.topic, err)
		}
	}
	var details kadm.TopicDetails
	var err error
	// A topic just created may take a moment to show in metadata with its
	// partitions and their leaders, more on a loaded broker.
	for range 300 {
		details, err = adm.ListTopics(ctx, CommandsTopic(name), StoreTopic(name))
		if err == nil && ready(details, CommandsTopic(name)) && ready(details, StoreTopic(name)) {
			break
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		sleep(ctx, 100)
	}
	if err != nil {
		return 0, fmt.Errorf("atomicstore: listing topics: %w", err)
	}
	nc, ns := int32(len(details[CommandsTopic(name)].Partitions)), int32(len(details[StoreTopic(name)].Partitions))
	if nc == 0 || nc != ns {
		return 0, fmt.Errorf("atomicstore: %s has %d partitions and %s has %d: they must have the same count (co-partitioned)",
			CommandsTopic(name), nc, StoreTopic(name), ns)
	}
	return nc, nil
}

// ensureOutputs creates the output topics that are missing.
func ensureOutputs(ctx context.Context, adm *kadm.Client, cfg *config) error {
	for _, t := range cfg.outputs {
		resp, err := adm.CreateTopic(ctx, cfg.partitions, cfg.replication, nil, t)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("atomicstore: creating output topic %s: %w", t, err)
		}
	}
	return nil
}

// partitionOf returns the partition Kafka's default partitioner (murmur2 of
// the key) gives key among n.
func partitionOf(key []byte, n int32) int32 {
	return int32(kgo.StickyKeyPartitioner(nil).ForTopic("").Partition(&kgo.Record{Key: key}, int(n)))
}

// Int64 returns a codec for int64 values, as decimal text (readable with any
// Kafka tool). It is the value codec of counter stores (see Add).
func Int64() codec.Codec[int64] { return int64Codec{} }

type int64Codec struct{}

func (int64Codec) Encode(v int64) ([]byte, error) { return strconv.AppendInt(nil, v, 10), nil }
func (int64Codec) Decode(b []byte) (int64, error) {
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: int64: %w", codec.ErrDecode, err)
	}
	return v, nil
}

// ready reports whether metadata shows topic with partitions that all have a
// leader.
func ready(details kadm.TopicDetails, topic string) bool {
	d, ok := details[topic]
	if !ok || d.Err != nil || len(d.Partitions) == 0 {
		return false
	}
	for _, p := range d.Partitions {
		if p.Err != nil || p.Leader < 0 {
			return false
		}
	}
	return true
}

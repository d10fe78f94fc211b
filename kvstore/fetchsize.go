package kvstore

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// The store client's FetchMaxPartitionBytes, by the compression of the
// topic's record batches. Kafka counts fetch limits in bytes as stored, so
// a fetch of compressed batches carries several times the records of an
// uncompressed one, and the right limit differs (measurements in
// docs/design.md). Over a slow link, raise it with Connection.ClientOptions.
const (
	compressedFetchBytes   = 256 << 10
	uncompressedFetchBytes = 512 << 10
)

// fetchBytes returns the FetchMaxPartitionBytes for the topic, whose
// compression.type is compression: if that is "producer" (Kafka's default:
// batches are stored as their producers sent them), it looks at the first
// batch of the partitions that partition 0's leader leads. Anything it
// cannot tell counts as compressed.
func (s *Store[K, V]) fetchBytes(ctx context.Context, cl *kgo.Client, adm *kadm.Client, compression string) int32 {
	switch compression {
	case "uncompressed":
		return uncompressedFetchBytes
	case "producer":
	default:
		return compressedFetchBytes
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	codec, ok, err := firstBatchCompression(ctx, cl, adm, s.topic)
	if err != nil {
		s.log.Debug("cannot look at the topic's first record batch to pick the fetch size", zap.Error(err))
	}
	if ok && codec == 0 {
		return uncompressedFetchBytes
	}
	return compressedFetchBytes
}

// firstBatchCompression returns the compression codec of the first data
// batch (not a transaction marker) of the partitions led by partition 0's
// leader; ok is false if there is none.
func firstBatchCompression(ctx context.Context, cl *kgo.Client, adm *kadm.Client, topic string) (codec int8, ok bool, err error) {
	topics, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return 0, false, err
	}
	detail := topics[topic]
	if detail.Err != nil {
		return 0, false, detail.Err
	}
	p0, found := detail.Partitions[0]
	if !found || p0.Leader < 0 {
		return 0, false, nil
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, false, err
	}
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MinBytes = 1
	req.MaxBytes = 1 << 20
	req.IsolationLevel = 1 // read committed: no batch of an aborted transaction
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = topic, detail.ID
	for _, p := range detail.Partitions {
		start, listed := starts.Lookup(topic, p.Partition)
		if p.Leader != p0.Leader || !listed || start.Err != nil {
			continue
		}
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = p.Partition
		rp.FetchOffset = start.Offset
		rp.PartitionMaxBytes = 16 << 10 // the first batch comes whole however big
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl.Broker(int(p0.Leader)))
	if err != nil {
		return 0, false, err
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			for rem := p.RecordBatches; len(rem) > 0; {
				var b kmsg.RecordBatch
				if err := b.ReadFrom(rem); err != nil || 12+int(b.Length) > len(rem) {
					break // a batch cut at the size limit
				}
				if b.Attributes&0x20 == 0 { // not a control batch
					return int8(b.Attributes & 0x07), true, nil
				}
				rem = rem[12+int(b.Length):]
			}
		}
	}
	return 0, false, nil
}

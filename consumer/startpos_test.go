package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/testkit"
)

// openTxn is a transaction of a plain franz-go transactional producer, left
// open by the test: not a member of any group.
type openTxn struct {
	cl *kgo.Client
}

// beginTxn begins a transaction and produces recs in it.
func beginTxn(t *testing.T, kc *testkit.Cluster, recs ...*kgo.Record) *openTxn {
	t.Helper()
	cl := kc.Client(t, kgo.TransactionalID(testkit.TopicName(t.Name())+"-open"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return &openTxn{cl: cl}
}

// commitOffset adds to the transaction group's offset offset for
// topic[partition] (a TxnOffsetCommit without generation, as the Java
// producer's sendOffsetsToTransaction(offsets, groupId) sends it).
func (o *openTxn) commitOffset(t *testing.T, kc *testkit.Cluster, group, topic string, partition int32, offset int64) {
	t.Helper()
	ctx := context.Background()
	id, epoch, err := o.cl.ProducerID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	txnID := o.cl.OptValue(kgo.TransactionalID).(string)
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID, add.ProducerID, add.ProducerEpoch, add.Group = txnID, id, epoch, group
	addResp, err := add.RequestWith(ctx, o.cl)
	if err == nil {
		err = kerr.ErrorForCode(addResp.ErrorCode)
	}
	if err != nil {
		t.Fatalf("AddOffsetsToTxn: %v", err)
	}
	meta, err := kc.Admin(t).Metadata(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID, req.Group, req.ProducerID, req.ProducerEpoch, req.Generation = txnID, group, id, epoch, -1
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic, rt.TopicID = topic, meta.Topics[topic].ID
	rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset, rp.LeaderEpoch = partition, offset, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, o.cl)
	if err != nil {
		t.Fatalf("TxnOffsetCommit: %v", err)
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				t.Fatalf("TxnOffsetCommit %s[%d]: %v", rt.Topic, rp.Partition, err)
			}
		}
	}
}

func (o *openTxn) commit(t *testing.T) {
	t.Helper()
	if err := o.cl.EndTransaction(context.Background(), kgo.TryCommit); err != nil {
		t.Fatalf("committing the open transaction: %v", err)
	}
}

// stableCommitted returns group's committed offset of topic[partition] (-1
// if none) as a new owner sees it: a fetch naming the partition with
// RequireStable, retried while a transaction holds a pending offset.
func stableCommitted(t *testing.T, kc *testkit.Cluster, group, topic string, partition int32) int64 {
	t.Helper()
	ctx := context.Background()
	adm := kc.Admin(t)
	meta, err := adm.Metadata(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	cl := kc.Client(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.RequireStable = true
		rg := kmsg.NewOffsetFetchRequestGroup()
		rg.Group = group
		rt := kmsg.NewOffsetFetchRequestGroupTopic()
		rt.Topic, rt.TopicID, rt.Partitions = topic, meta.Topics[topic].ID, []int32{partition}
		rg.Topics = append(rg.Topics, rt)
		req.Groups = append(req.Groups, rg)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Groups) != 1 {
			t.Fatalf("OffsetFetch answered %d groups", len(resp.Groups))
		}
		g := resp.Groups[0]
		if err := kerr.ErrorForCode(g.ErrorCode); err != nil {
			t.Fatalf("OffsetFetch: %v", err)
		}
		for _, rt := range g.Topics {
			for _, rp := range rt.Partitions {
				err := kerr.ErrorForCode(rp.ErrorCode)
				switch {
				case errors.Is(err, kerr.UnstableOffsetCommit) && time.Now().Before(deadline):
				case err != nil:
					t.Fatalf("OffsetFetch %s[%d]: %v", topic, partition, err)
				default:
					return rp.Offset
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// handledOffsets lists the offsets handled, in order.
func handledOffsets(h *handled) []int64 {
	var out []int64
	for _, e := range h.snapshot() {
		out = append(out, e.offset)
	}
	return out
}

// A member that takes over a partition whose only offset is a pending
// TxnOffsetCommit must neither commit over it nor handle what it covers:
// the start-position commit on assignment must wait for the transaction.
func TestStartPositionWaitsForPendingTransactionalOffset(t *testing.T) {
	for _, mode := range []string{"at-least-once", "transactional"} {
		t.Run(mode, func(t *testing.T) {
			kc := testkit.Shared(t)
			topic := kc.NewTopic(t, 1, nil)
			out := kc.NewTopic(t, 1, nil)
			group := topic
			produceSpread(t, kc, topic, 1, 10, nil)

			// Another transactional producer handled records 0-9: its
			// output and its offset 10 for the group are in a transaction
			// not committed yet.
			txn := beginTxn(t, kc, &kgo.Record{Topic: out, Value: []byte("output of 0-9")})
			txn.commitOffset(t, kc, group, topic, 0, 10)

			var h handled
			opts := []consumer.Option{consumer.Topics(topic)}
			if mode == "transactional" {
				opts = append(opts, consumer.Transactional(group+"-txn"))
			}
			c := newConsumer(t, kc, h.handler("c"), group, opts...)
			run(t, c)
			waitAssigned(t, c, 1)

			txn.commit(t)
			if got := stableCommitted(t, kc, group, topic, 0); got != 10 {
				t.Fatalf("after the transaction committed offset 10, the group's offset is %d: the consumer committed over it", got)
			}
			// A record after the transaction's offset: the consumer handles
			// it, and it alone.
			produceSpread(t, kc, topic, 1, 1, nil)
			testkit.Eventually(t, 30*time.Second, func() error {
				if got := stableCommitted(t, kc, group, topic, 0); got != 11 {
					return fmt.Errorf("committed %d, want 11", got)
				}
				return nil
			})
			if got := handledOffsets(&h); !slices.Equal(got, []int64{10}) {
				t.Fatalf("handled offsets %v, want only 10: records 0-9 were handled by the committed transaction", got)
			}
		})
	}
}

// With Latest under read_committed, a partition starts at the last stable
// offset: records of a transaction open at assignment are handled once it
// commits.
func TestLatestReadCommittedStartsAtLastStableOffset(t *testing.T) {
	for _, mode := range []string{"read-committed", "transactional"} {
		t.Run(mode, func(t *testing.T) {
			kc := testkit.Shared(t)
			topic := kc.NewTopic(t, 1, nil)
			group := topic
			recs := make([]*kgo.Record, 5)
			for i := range recs {
				recs[i] = &kgo.Record{Topic: topic, Value: fmt.Appendf(nil, "in-txn-%d", i)}
			}
			txn := beginTxn(t, kc, recs...)

			var h handled
			opts := []consumer.Option{consumer.Topics(topic), consumer.ResetOffset(consumer.Latest)}
			if mode == "transactional" {
				opts = append(opts, consumer.Transactional(group+"-txn"))
			} else {
				opts = append(opts, consumer.ReadCommitted(true))
			}
			c := newConsumer(t, kc, h.handler("c"), group, opts...)
			run(t, c)
			// The consumer committed its start position.
			testkit.Eventually(t, 30*time.Second, func() error {
				if got := stableCommitted(t, kc, group, topic, 0); got < 0 {
					return errors.New("no start position committed yet")
				}
				return nil
			})
			if got := stableCommitted(t, kc, group, topic, 0); got != 0 {
				t.Fatalf("start position %d committed while a transaction holds offsets 0-4: want the last stable offset, 0", got)
			}

			txn.commit(t)
			testkit.Eventually(t, 30*time.Second, func() error {
				if got := handledOffsets(&h); len(got) != 5 {
					return fmt.Errorf("handled %v, want the 5 records of the committed transaction", got)
				}
				return nil
			})
		})
	}
}

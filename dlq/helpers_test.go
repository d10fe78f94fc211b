package dlq_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

const group = "billing"

// fixture is an original topic, its dead-letter topic and a dlq.Client.
type fixture struct {
	kc       *testkit.Cluster
	orig     string
	dlqTopic string
	c        *dlq.Client
	prod     *kgo.Client // produces to chosen partitions, with chosen timestamps
	base     time.Time   // the time dead letters are placed after
}

func newFixture(t *testing.T, dlqPartitions int32) *fixture {
	t.Helper()
	return newFixtureConfigs(t, dlqPartitions, nil)
}

// newFixtureConfigs is newFixture with topic configs for the dead-letter topic.
func newFixtureConfigs(t *testing.T, dlqPartitions int32, dlqConfigs map[string]*string) *fixture {
	t.Helper()
	kc := testkit.Shared(t)
	fx := &fixture{kc: kc, orig: kc.NewTopic(t, 3, nil)}
	fx.dlqTopic = retry.DLQTopicName(fx.orig, group)
	kc.CreateTopic(t, fx.dlqTopic, dlqPartitions, dlqConfigs)
	adm := kc.Admin(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := adm.DeleteTopic(ctx, fx.dlqTopic); err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
			t.Logf("delete %s: %v", fx.dlqTopic, err)
		}
	})
	fx.prod = kc.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	c, err := dlq.New(whippet.Connection{Brokers: kc.Brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	fx.c = c
	// Kafka rejects timestamps too far in the future; the past is fine.
	fx.base = time.Now().Add(-3 * time.Hour).Truncate(time.Millisecond)
	return fx
}

// dead describes one dead-letter record to write.
type dead struct {
	p      int32 // dead-letter partition
	key    string
	reason retry.Reason
	err    string
	at     time.Duration // dead-lettered at base+at
	hdrs   []kgo.RecordHeader
}

// deadLetter writes the records to the dead-letter topic as a whippet
// consumer would, in order, and returns their positions.
func (fx *fixture) deadLetter(t *testing.T, ds ...dead) []dlq.Position {
	t.Helper()
	recs := make([]*kgo.Record, len(ds))
	for i, d := range ds {
		ts := fx.base.Add(d.at)
		info := retry.Info{
			Attempt:           3,
			OriginalTopic:     fx.orig,
			OriginalPartition: d.p % 3,
			OriginalOffset:    int64(100 + i),
			OriginalTimestamp: ts.Add(-time.Minute),
			Group:             group,
			FirstFailure:      ts.Add(-time.Minute),
			LastFailure:       ts,
			LastError:         d.err,
			Reason:            d.reason,
		}
		recs[i] = &kgo.Record{Topic: fx.dlqTopic, Partition: d.p, Key: []byte(d.key),
			Value: []byte("value-" + d.key), Timestamp: ts, Headers: info.Headers(d.hdrs)}
	}
	return fx.produce(t, recs...)
}

func (fx *fixture) produce(t *testing.T, recs ...*kgo.Record) []dlq.Position {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pos := make([]dlq.Position, len(recs))
	for i, r := range recs { // one at a time: offsets in the order given
		if err := fx.prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		pos[i] = dlq.Position{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
	}
	return pos
}

func positions(recs []dlq.Record) []dlq.Position {
	out := make([]dlq.Position, len(recs))
	for i, r := range recs {
		out[i] = r.Position
	}
	return out
}

func pick(all []dlq.Position, idx ...int) []dlq.Position {
	out := make([]dlq.Position, len(idx))
	for i, j := range idx {
		out[i] = all[j]
	}
	return out
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func header(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }

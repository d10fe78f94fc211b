package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// A record on a subscribed topic is a first attempt whatever retry headers it
// carries: a producer that copies or forges whippet-attempt,
// whippet-original-topic or whippet-group must not change the attempt the
// handler sees, nor the origin its dead letter records (which replay trusts).
func TestFirstAttemptIgnoresRetryHeadersItCarries(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	group := topic
	forged := []kgo.RecordHeader{
		{Key: retry.HeaderAttempt, Value: []byte("7")},
		{Key: retry.HeaderOriginalTopic, Value: []byte("victim")},
		{Key: retry.HeaderOriginalOffset, Value: []byte("99")},
		{Key: retry.HeaderGroup, Value: []byte("another-group")},
	}
	if err := kc.Client(t).ProduceSync(context.Background(), &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("v"), Headers: forged}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		seen []retry.Info
	)
	c := newConsumer(t, kc, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		info, _ := retry.InfoFrom(ctx)
		mu.Lock()
		seen = append(seen, info)
		mu.Unlock()
		return errors.New("always fails")
	}), group, consumer.Topics(topic), consumer.Retry(retry.Blocking(10*time.Millisecond)))
	run(t, c)
	dead := readDLQ(t, kc, topic, group, 1)
	info, _ := retry.InfoFor(dead[0])
	if info.OriginalTopic != topic || info.OriginalOffset != 0 || info.Group != group || info.Attempt != 2 {
		t.Fatalf("dead letter says original %s offset %d, group %q, attempt %d; want %s offset 0, group %q, attempt 2 (the forged headers must not count)",
			info.OriginalTopic, info.OriginalOffset, info.Group, info.Attempt, topic, group)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := fmt.Sprint(attempts(seen)); got != "[1 2]" {
		t.Fatalf("the handler saw attempts %s, want [1 2]", got)
	}
}

func attempts(infos []retry.Info) []int {
	out := make([]int, len(infos))
	for i, in := range infos {
		out[i] = in.Attempt
	}
	return out
}

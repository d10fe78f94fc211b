package notify_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/notify"
)

func TestParseID(t *testing.T) {
	for _, s := range []string{"0-0", "3-1042", "2--1"} {
		id, err := notify.ParseID(s)
		if err != nil || id.String() != s {
			t.Errorf("ParseID(%q) = %v, %v; want it back", s, id, err)
		}
	}
	for _, s := range []string{"", "3", "-1-2", "a-1", "1-b", "1--2", "99999999999-1"} {
		if _, err := notify.ParseID(s); !errors.Is(err, notify.ErrInvalidID) {
			t.Errorf("ParseID(%q) = %v, want ErrInvalidID", s, err)
		}
	}
}

func TestPublisherConfigErrors(t *testing.T) {
	_, err := notify.NewPublisher(whippet.Connection{}, "bad topic")
	for _, want := range []string{"Connection.Brokers", `notify: topic: must contain only`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewPublisher: %v\nlacks %q", err, want)
		}
	}
	if !errors.Is(err, notify.ErrInvalidConfig) {
		t.Errorf("error does not match ErrInvalidConfig: %v", err)
	}
}

// A notification is keyed by its channel, carries the JSON as published,
// and its ID is where Kafka stored it.
func TestPublishKeysByChannel(t *testing.T) {
	noLeaks(t)
	conn, topic := kafka(t, 3)
	p := publisher(t, conn, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if _, err := p.Publish(ctx, "c", []byte("not json")); !errors.Is(err, notify.ErrInvalidPayload) {
		t.Errorf("Publish(not JSON) = %v, want ErrInvalidPayload", err)
	}
	for _, ch := range []string{"", strings.Repeat("x", notify.MaxChannelLen+1), "a\nb"} {
		if _, err := p.Publish(ctx, ch, []byte("{}")); !errors.Is(err, notify.ErrInvalidChannel) {
			t.Errorf("Publish(channel %q) = %v, want ErrInvalidChannel", ch, err)
		}
	}
	var ids []notify.ID
	for i := range 6 {
		id, err := p.PublishJSON(ctx, "import-7", payload{N: i})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i].Partition != ids[0].Partition || ids[i].Offset <= ids[i-1].Offset {
			t.Fatalf("ids %v: a channel's notifications must share a partition, offsets growing", ids)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(conn.Brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {ids[0].Partition: kgo.NewOffset().At(ids[0].Offset)},
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	fs := cl.PollRecords(ctx, 1)
	if err := fs.Err0(); err != nil {
		t.Fatal(err)
	}
	r := fs.Records()[0]
	if string(r.Key) != "import-7" || string(r.Value) != `{"n":0,"ch":""}` {
		t.Errorf("record key %q value %q, want the channel and the JSON", r.Key, r.Value)
	}
}

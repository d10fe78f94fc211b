package admin_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/consumer/admin"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// TestDashboardShowsAWaitingRetry: a retry waiting for its due time holds
// its retry partition; the dashboard's API lists it with its due time, marked
// as waiting (not counted as a blocked partition), and its skip action
// dead-letters it.
func TestDashboardShowsAWaitingRetry(t *testing.T) {
	kc := testkit.Shared(t)
	leakCheck(t)
	topic := kc.NewTopic(t, 1, nil)
	group := topic + "-svc"
	rt := retry.TopicName(topic, group, 0)
	kc.CreateTopic(t, rt, 1, nil)
	t.Cleanup(func() {
		_, _ = kc.Admin(t).DeleteTopics(context.Background(), rt, retry.DLQTopicName(topic, group))
	})
	now := time.Now()
	due := now.Add(time.Hour).Truncate(time.Millisecond)
	info := retry.Info{Attempt: 2, Due: due, OriginalTopic: topic, Group: group, LastError: "card declined"}
	kc.Produce(t, &kgo.Record{Topic: rt, Key: []byte("user-1"), Value: []byte("renew"), Headers: info.Headers(nil)})

	c, err := consumer.New(whippet.Connection{Brokers: kc.Brokers}, consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return errors.New("not now") }), consumer.Group(group), consumer.Topics(topic), consumer.Retry(retry.NonBlocking(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	t.Cleanup(func() {
		c.Close(context.Background())
		if err := <-errc; err != nil {
			t.Errorf("consumer.Run: %v", err)
		}
	})
	h, err := admin.New(admin.Consumer("renewals", c), admin.Authorize(headerAuth))
	if err != nil {
		t.Fatal(err)
	}
	op := client{t: t, srv: serve(t, h), user: "alice"}

	var raw []map[string]any
	testkit.Eventually(t, 20*time.Second, func() error {
		op.must("GET", "/api/consumers/renewals/blocked", nil, &raw)
		if len(raw) != 1 {
			return fmt.Errorf("blocked %v, want the retry of %s waiting until %v", raw, rt, due)
		}
		next, _ := raw[0]["next_attempt"].(string)
		if at, err := time.Parse(time.RFC3339Nano, next); err != nil || !at.Equal(due) || raw[0]["topic"] != rt || raw[0]["waiting"] != true {
			return fmt.Errorf("blocked %v, want the retry of %s waiting until %v", raw, rt, due)
		}
		return nil
	})
	var views []admin.ConsumerView
	op.must("GET", "/api/consumers", nil, &views)
	if len(views) != 1 || views[0].BlockedPartitions != 0 {
		t.Fatalf("a waiting retry counted as a blocked partition: %+v", views)
	}
	var rec admin.ActionRecord
	op.must("POST", "/api/consumers/renewals/partitions/"+rt+"/0/skip", nil, &rec)
	if !strings.Contains(rec.Detail, "[0]") {
		t.Fatalf("skip answered %+v", rec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dead := kc.ConsumeUntil(ctx, t, retry.DLQTopicName(topic, group), func(all []*kgo.Record) bool { return len(all) >= 1 })
	if got, _ := retry.InfoFor(dead[0]); got.Reason != retry.ReasonSkipped || string(dead[0].Key) != "user-1" {
		t.Fatalf("dead letter %q %+v, want user-1 skipped", dead[0].Key, got)
	}
	testkit.Eventually(t, 10*time.Second, func() error {
		op.must("GET", "/api/consumers/renewals/blocked", nil, &raw)
		if len(raw) != 0 {
			return fmt.Errorf("still listed after the skip: %v", raw)
		}
		return nil
	})
}

// TestTopicRegexConsumer: the handler takes a TopicRegex consumer's group
// and topics from the consumer itself, so the topics its patterns match,
// and their dead-letter topics, appear as they are matched.
func TestTopicRegexConsumer(t *testing.T) {
	kc := testkit.Shared(t)
	leakCheck(t)
	prefix := fmt.Sprintf("rxadmin%d", time.Now().UnixNano())
	orders, group := prefix+"-orders", prefix+"-svc"
	dlqTopic := retry.DLQTopicName(orders, group)
	kc.CreateTopic(t, orders, 1, nil)
	t.Cleanup(func() { _, _ = kc.Admin(t).DeleteTopics(context.Background(), orders, dlqTopic) })
	kc.Produce(t, &kgo.Record{Topic: orders, Key: []byte("o-1"), Value: []byte("poison")})

	conn := whippet.Connection{Brokers: kc.Brokers, ClientOptions: []kgo.Opt{kgo.MetadataMaxAge(time.Second), kgo.MetadataMinAge(100 * time.Millisecond)}}
	c, err := consumer.New(conn, consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return errors.New("declined") }),
		consumer.Group(group), consumer.TopicRegex("^"+prefix+"-o"))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	t.Cleanup(func() {
		if err := c.Close(context.Background()); err != nil {
			t.Error(err)
		}
		if err := <-errc; err != nil {
			t.Errorf("consumer.Run: %v", err)
		}
	})
	d, err := dlq.New(whippet.Connection{Brokers: kc.Brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close(context.Background()) })
	h, err := admin.New(admin.Consumer("orders", c), admin.DLQ(d), admin.Authorize(headerAuth))
	if err != nil {
		t.Fatal(err)
	}
	op := client{t: t, srv: serve(t, h), user: "alice"}

	testkit.Eventually(t, 30*time.Second, func() error {
		var v admin.ConsumerView
		op.must("GET", "/api/consumers/orders", nil, &v)
		var topics []admin.DLQTopicView
		op.must("GET", "/api/dlq", nil, &topics)
		if v.Group != group || !slices.Equal(v.Topics, []string{orders}) || !slices.Equal(v.DLQTopics, []string{dlqTopic}) ||
			len(topics) != 1 || topics[0].Topic != dlqTopic || topics[0].Source != orders || topics[0].Records != 1 {
			return fmt.Errorf("consumer %+v, dead-letter topics %+v: want %s's dead-letter topic %s holding the declined record", v, topics, orders, dlqTopic)
		}
		return nil
	})
	var page admin.DLQPage
	op.must("GET", "/api/dlq/"+dlqTopic, nil, &page)
	if len(page.Records) != 1 {
		t.Fatalf("dead-letter records %+v, want the declined one", page.Records)
	}
}

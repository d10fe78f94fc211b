package consumer_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// seenLog records what one group's handler saw, as "<topic>/<key>".
type seenLog struct {
	mu   sync.Mutex
	seen []string
}

func (l *seenLog) add(r *kgo.Record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = append(l.seen, r.Topic+"/"+string(r.Key))
}

func (l *seenLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seen)
}

// TestRetryTopicNameCollisionIsRefused: topic "a-b" with group "c" and topic
// "a" with group "b-c" share the retry topic "a-b-c-retry-0" (and the
// dead-letter topic). Each group must refuse the other's records there,
// visibly (Blocked names the other group), instead of handling them as its
// own; its own retries are not lost: after an operator's Skip (which
// dead-letters the refused record) they are handled.
func TestRetryTopicNameCollisionIsRefused(t *testing.T) {
	for _, mode := range []string{"at-least-once", "transactional"} {
		t.Run(mode, func(t *testing.T) { testCollision(t, mode == "transactional") })
	}
}

func testCollision(t *testing.T, transactional bool) {
	kc := testkit.Shared(t)
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	a := "coll" + hex.EncodeToString(rnd[:])
	c := "c" + hex.EncodeToString(rnd[:])
	topicAB, groupC := a+"-b", c
	topicA, groupBC := a, "b-"+c
	rt := retry.TopicName(topicAB, groupC, 0)
	if rt != retry.TopicName(topicA, groupBC, 0) {
		t.Fatalf("the names do not collide: %s", rt)
	}
	deleteTopicsWithPrefix(t, kc, a)
	kc.CreateTopic(t, topicAB, 1, nil)
	kc.CreateTopic(t, topicA, 1, nil)

	// Each handler fails the first attempt of its own topic's record and
	// succeeds on the retry.
	newGroup := func(group, topic string, log *seenLog) *consumer.Consumer {
		h := consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
			log.add(r)
			if r.Topic == topic {
				return errors.New("first attempt fails")
			}
			return nil
		})
		opts := []consumer.Option{consumer.Topics(topic), consumer.Retry(retry.NonBlocking(100 * time.Millisecond))}
		if transactional {
			return newTxnConsumer(t, kc, h, group, group+"-txn", opts...)
		}
		return newConsumer(t, kc, h, group, opts...)
	}
	var logC, logBC seenLog
	cC, cBC := newGroup(groupC, topicAB, &logC), newGroup(groupBC, topicA, &logBC)
	run(t, cC)
	run(t, cBC)

	// Group c's record goes to the shared retry topic first, and is retried
	// by group c; group b-c's goes there next.
	kc.Produce(t, &kgo.Record{Topic: topicAB, Key: []byte("of-c")})
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := logC.snapshot(); !slices.Contains(got, rt+"/of-c") {
			return fmt.Errorf("group c handled %v, want its retry of of-c", got)
		}
		return nil
	})
	kc.Produce(t, &kgo.Record{Topic: topicA, Key: []byte("of-bc")})

	// Each group holds the other's record, and says why.
	refused := func(cons *consumer.Consumer, key, other string) error {
		b := cons.Blocked()
		if len(b) != 1 || b[0].Topic != rt || string(b[0].Key) != key || b[0].Forwarding || b[0].Waiting ||
			!strings.Contains(b[0].Error, fmt.Sprintf("group %q", other)) {
			return fmt.Errorf("blocked %+v, want %s's record %s refused as a record of group %q", b, rt, key, other)
		}
		return nil
	}
	handledOthers := func() {
		if got := logBC.snapshot(); slices.Contains(got, rt+"/of-c") {
			t.Fatalf("group b-c handled group c's record: %v", got)
		}
		if got := logC.snapshot(); slices.Contains(got, rt+"/of-bc") {
			t.Fatalf("group c handled group b-c's record: %v", got)
		}
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		handledOthers()
		if err := refused(cBC, "of-c", groupC); err != nil {
			return err
		}
		return refused(cC, "of-bc", groupBC)
	})
	handledOthers()
	t.Logf("group b-c refused: %s", cBC.Blocked()[0].Error)

	// The operator skips the refused record: it is dead-lettered, and group
	// b-c's own retry, held behind it, is handled.
	if err := cBC.Skip(rt, 0); err != nil {
		t.Fatal(err)
	}
	// (Distinct: in transactional mode an aborted transaction's records are
	// handled again.)
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := distinct(logBC.snapshot()); !slices.Equal(got, []string{topicA + "/of-bc", rt + "/of-bc"}) {
			return fmt.Errorf("group b-c handled %v, want its record and its retry", got)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dead := kc.ConsumeUntil(ctx, t, retry.DLQTopicName(topicA, groupBC), func(all []*kgo.Record) bool { return len(all) >= 1 },
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	info, _ := retry.InfoFor(dead[0])
	if string(dead[0].Key) != "of-c" || info.Reason != retry.ReasonSkipped || info.OriginalTopic != topicAB {
		t.Fatalf("dead letter %q %+v, want group c's record, skipped", dead[0].Key, info)
	}
	if got := distinct(logC.snapshot()); !slices.Equal(got, []string{topicAB + "/of-c", rt + "/of-c"}) {
		t.Fatalf("group c handled %v, want only its record and its retry", got)
	}
}

// distinct drops repeats, keeping the first of each.
func distinct(xs []string) []string {
	var out []string
	for _, x := range xs {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

package dlq_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// A consumer in transactional mode forwards dead letters in transactions:
// List reads committed records only, steps over aborted records and commit
// markers, and does not wait for a transaction still open.
func TestTransactionalDeadLetters(t *testing.T) {
	fx := newFixture(t, 1)
	ctx := ctxT(t)
	txn := fx.kc.Client(t, kgo.TransactionalID(testkit.TopicName("txn")), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	rec := func(key string) *kgo.Record {
		info := retry.Info{Attempt: 2, OriginalTopic: fx.orig, Group: group, LastError: "e", Reason: retry.ReasonExhausted}
		return &kgo.Record{Topic: fx.dlqTopic, Key: []byte(key), Headers: info.Headers(nil)}
	}
	inTxn := func(end bool, commit kgo.TransactionEndTry, keys ...string) []int64 {
		t.Helper()
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		var offs []int64
		for _, k := range keys {
			r := rec(k)
			if err := txn.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
			offs = append(offs, r.Offset)
		}
		if end {
			if err := txn.EndTransaction(ctx, commit); err != nil {
				t.Fatal(err)
			}
		}
		return offs
	}
	a := inTxn(true, kgo.TryCommit, "a1", "a2") // offsets 0, 1; commit marker 2
	aborted := inTxn(true, kgo.TryAbort, "x")   // offset 3; abort marker 4
	b := inTxn(true, kgo.TryCommit, "b1")       // offset 5; commit marker 6

	keys := func(page dlq.Page) []string {
		var ks []string
		for _, r := range page.Records {
			ks = append(ks, string(r.Key))
		}
		return ks
	}
	// EndTransaction returns before the commit markers are written, and the
	// last stable offset moves after them: wait until the last commit shows.
	listEventually := func(want ...string) {
		t.Helper()
		testkit.Eventually(t, 30*time.Second, func() error {
			page, err := fx.c.List(ctx, fx.dlqTopic, dlq.Filter{})
			if err != nil || !slices.Equal(keys(page), want) {
				return fmt.Errorf("List = %v, %v; want %v", keys(page), err, want)
			}
			return nil
		})
	}
	listEventually("a1", "a2", "b1")
	if r, err := fx.c.Get(ctx, fx.dlqTopic, 0, b[0]); err != nil || string(r.Key) != "b1" {
		t.Errorf("Get(b1) = %+v, %v", r, err)
	}
	for _, off := range []int64{aborted[0], a[1] + 1} { // the aborted record, a commit marker
		if _, err := fx.c.Get(ctx, fx.dlqTopic, 0, off); !errors.Is(err, dlq.ErrNotFound) {
			t.Errorf("Get(%d) = %v; want ErrNotFound", off, err)
		}
	}
	res, err := fx.c.Replay(ctx, fx.dlqTopic, dlq.Filter{}, dlq.DryRun())
	if err != nil || len(res.Replayed) != 3 {
		t.Errorf("Replay dry run: %+v, %v", res, err)
	}

	// An open transaction: its records are not listed yet, and List returns
	// without waiting for it.
	inTxn(false, kgo.TryCommit, "open")
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	page, err := fx.c.List(lctx, fx.dlqTopic, dlq.Filter{})
	if err != nil || !slices.Equal(keys(page), []string{"a1", "a2", "b1"}) {
		t.Fatalf("List with an open transaction = %v, %v", keys(page), err)
	}
	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	listEventually("a1", "a2", "b1", "open")
}

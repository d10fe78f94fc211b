package dlq_test

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/retry"
)

// twelve dead letters over 3 partitions, one a minute (index i at minute i).
func twelve(t *testing.T, fx *fixture) []dlq.Position {
	t.Helper()
	m := time.Minute
	return fx.deadLetter(t,
		dead{p: 0, key: "k1", reason: retry.ReasonExhausted, err: "timeout calling billing", at: 0 * m, hdrs: []kgo.RecordHeader{header("trace-id", "t0")}},
		dead{p: 1, key: "k2", reason: retry.ReasonNonRetriable, err: "invalid card", at: 1 * m, hdrs: []kgo.RecordHeader{header("trace-id", "t1"), header("tenant", "acme")}},
		dead{p: 2, key: "k3", reason: retry.ReasonDecode, err: "bad json", at: 2 * m},
		dead{p: 0, key: "k1", reason: retry.ReasonExhausted, err: "timeout calling billing", at: 3 * m},
		dead{p: 1, key: "k4", reason: retry.ReasonSkipped, err: "operator skip", at: 4 * m},
		dead{p: 2, key: "k2", reason: retry.ReasonExhausted, err: "http 503", at: 5 * m},
		dead{p: 0, key: "k5", reason: retry.ReasonNonRetriable, err: "invalid currency", at: 6 * m},
		dead{p: 1, key: "k1", reason: retry.ReasonExhausted, err: "timeout calling ledger", at: 7 * m},
		dead{p: 2, key: "k3", reason: retry.ReasonDecode, err: "bad json", at: 8 * m},
		dead{p: 0, key: "k6", reason: retry.ReasonExhausted, err: "http 503", at: 9 * m},
		dead{p: 1, key: "k2", reason: retry.ReasonExhausted, err: "timeout calling billing", at: 10 * m},
		dead{p: 2, key: "k7", reason: retry.ReasonSkipped, err: "operator skip", at: 11 * m},
	)
}

func TestListFilters(t *testing.T) {
	fx := newFixture(t, 3)
	all := twelve(t, fx)
	ctx := ctxT(t)
	m := time.Minute
	for _, tc := range []struct {
		name string
		f    dlq.Filter
		want []int
	}{
		{"all", dlq.Filter{}, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
		{"key", dlq.Filter{Key: []byte("k1")}, []int{0, 3, 7}},
		{"unknown key", dlq.Filter{Key: []byte("nope")}, nil},
		{"error", dlq.Filter{Error: "timeout"}, []int{0, 3, 7, 10}},
		{"error billing", dlq.Filter{Error: "billing"}, []int{0, 3, 10}},
		{"reason", dlq.Filter{Reason: retry.ReasonDecode}, []int{2, 8}},
		{"since until", dlq.Filter{Since: fx.base.Add(4 * m), Until: fx.base.Add(8 * m)}, []int{4, 5, 6, 7}},
		{"since", dlq.Filter{Since: fx.base.Add(10 * m)}, []int{10, 11}},
		{"until", dlq.Filter{Until: fx.base.Add(2 * m)}, []int{0, 1}},
		{"key and reason", dlq.Filter{Key: []byte("k2"), Reason: retry.ReasonExhausted}, []int{5, 10}},
		{"partition", dlq.Filter{Partitions: []int32{1}}, []int{1, 4, 7, 10}},
		{"partition and error", dlq.Filter{Partitions: []int32{0, 2}, Error: "503"}, []int{5, 9}},
	} {
		page, err := fx.c.List(ctx, fx.dlqTopic, tc.f)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got, want := positions(page.Records), pick(all, tc.want...); !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, want)
		}
		if page.Next != "" {
			t.Errorf("%s: Next = %q without a limit", tc.name, page.Next)
		}
	}
}

func TestListRecordContent(t *testing.T) {
	fx := newFixture(t, 3)
	all := twelve(t, fx)
	ctx := ctxT(t)
	page, err := fx.c.List(ctx, fx.dlqTopic, dlq.Filter{Key: []byte("k2"), Reason: retry.ReasonNonRetriable})
	if err != nil || len(page.Records) != 1 {
		t.Fatalf("List: %v, %d records", err, len(page.Records))
	}
	r := page.Records[0]
	at := fx.base.Add(time.Minute)
	want := retry.Info{Attempt: 3, OriginalTopic: fx.orig, OriginalPartition: 1, OriginalOffset: 101,
		OriginalTimestamp: at.Add(-time.Minute), Group: group, FirstFailure: at.Add(-time.Minute), LastFailure: at,
		LastError: "invalid card", Reason: retry.ReasonNonRetriable}
	switch {
	case r.Position != all[1]:
		t.Errorf("Position = %v, want %v", r.Position, all[1])
	case !r.Timestamp.Equal(at):
		t.Errorf("Timestamp = %v, want %v", r.Timestamp, at)
	case string(r.Key) != "k2" || string(r.Value) != "value-k2":
		t.Errorf("Key, Value = %q, %q", r.Key, r.Value)
	case !reflect.DeepEqual(r.Headers, []kgo.RecordHeader{header("trace-id", "t1"), header("tenant", "acme")}):
		t.Errorf("Headers = %v, want the original headers only", r.Headers)
	case !r.DeadLetter || r.Replayed != nil:
		t.Errorf("DeadLetter = %v, Replayed = %v", r.DeadLetter, r.Replayed)
	case !infoEqual(r.Info, want):
		t.Errorf("Info = %+v, want %+v", r.Info, want)
	}

	got, err := fx.c.Get(ctx, fx.dlqTopic, all[1].Partition, all[1].Offset)
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Errorf("Get = %+v, %v; want %+v", got, err, r)
	}
}

func infoEqual(a, b retry.Info) bool {
	return a.Attempt == b.Attempt && a.OriginalTopic == b.OriginalTopic && a.OriginalPartition == b.OriginalPartition &&
		a.OriginalOffset == b.OriginalOffset && a.OriginalTimestamp.Equal(b.OriginalTimestamp) && a.Group == b.Group &&
		a.FirstFailure.Equal(b.FirstFailure) && a.LastFailure.Equal(b.LastFailure) && a.LastError == b.LastError &&
		a.Reason == b.Reason && a.Due.Equal(b.Due)
}

func TestListPaging(t *testing.T) {
	fx := newFixture(t, 3)
	all := twelve(t, fx)
	ctx := ctxT(t)
	for _, tc := range []struct {
		name  string
		f     dlq.Filter
		pages [][]int
	}{
		{"limit 5", dlq.Filter{Limit: 5}, [][]int{{0, 1, 2, 3, 4}, {5, 6, 7, 8, 9}, {10, 11}}},
		{"limit 4 exhausted", dlq.Filter{Limit: 4, Reason: retry.ReasonExhausted}, [][]int{{0, 3, 5, 7}, {9, 10}}},
		{"limit = matches", dlq.Filter{Limit: 6, Reason: retry.ReasonExhausted}, [][]int{{0, 3, 5, 7, 9, 10}}},
		{"limit 1 key", dlq.Filter{Limit: 1, Key: []byte("k3")}, [][]int{{2}, {8}}},
	} {
		f := tc.f
		for i, want := range tc.pages {
			page, err := fx.c.List(ctx, fx.dlqTopic, f)
			if err != nil {
				t.Fatalf("%s page %d: %v", tc.name, i, err)
			}
			if got := positions(page.Records); !slices.Equal(got, pick(all, want...)) {
				t.Errorf("%s page %d: got %v, want %v", tc.name, i, got, pick(all, want...))
			}
			last := i == len(tc.pages)-1
			if (page.Next == "") != last {
				t.Fatalf("%s page %d: Next = %q, last page: %v", tc.name, i, page.Next, last)
			}
			f.Cursor = page.Next
		}
	}
}

func TestListEmptyAndMissing(t *testing.T) {
	fx := newFixture(t, 3)
	ctx := ctxT(t)
	start := time.Now()
	page, err := fx.c.List(ctx, fx.dlqTopic, dlq.Filter{})
	if err != nil || len(page.Records) != 0 || page.Next != "" {
		t.Fatalf("empty topic: %+v, %v", page, err)
	}
	t.Logf("empty topic listed in %v", time.Since(start))

	// A topic whose records were all purged: start offset == end offset > 0.
	fx.deadLetter(t, dead{p: 0, key: "a", reason: retry.ReasonDecode}, dead{p: 2, key: "b", reason: retry.ReasonDecode})
	if _, err := fx.c.Purge(ctx, fx.dlqTopic, dlq.PurgeAll()); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	page, err = fx.c.List(ctx, fx.dlqTopic, dlq.Filter{})
	if err != nil || len(page.Records) != 0 {
		t.Fatalf("purged topic: %+v, %v", page, err)
	}
	t.Logf("purged topic listed in %v", time.Since(start))

	_, err = fx.c.List(ctx, fx.dlqTopic+"-nope", dlq.Filter{})
	if !errors.Is(err, dlq.ErrUnknownTopic) || !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Errorf("missing topic: %v, want ErrUnknownTopic", err)
	}
}

func TestGetNotFound(t *testing.T) {
	fx := newFixture(t, 2)
	ctx := ctxT(t)
	pos := fx.deadLetter(t, dead{p: 0, key: "a", reason: retry.ReasonExhausted}, dead{p: 0, key: "b", reason: retry.ReasonExhausted})
	if r, err := fx.c.Get(ctx, fx.dlqTopic, 0, pos[1].Offset); err != nil || string(r.Key) != "b" {
		t.Fatalf("Get = %+v, %v", r, err)
	}
	for _, tc := range []struct {
		p    int32
		o    int64
		want string
	}{
		{0, 2, "ends at offset 2"},
		{1, 0, "ends at offset 0"},
		{7, 0, "has 2 partitions"},
	} {
		_, err := fx.c.Get(ctx, fx.dlqTopic, tc.p, tc.o)
		if !errors.Is(err, dlq.ErrNotFound) || !containsStr(err, tc.want) {
			t.Errorf("Get(%d, %d) = %v; want ErrNotFound saying %q", tc.p, tc.o, err, tc.want)
		}
	}
	if _, err := fx.c.Purge(ctx, fx.dlqTopic, dlq.PurgeAll()); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.c.Get(ctx, fx.dlqTopic, 0, 0); !errors.Is(err, dlq.ErrNotFound) || !containsStr(err, "deleted") {
		t.Errorf("Get after purge = %v; want ErrNotFound (deleted)", err)
	}
	if _, err := fx.c.Get(ctx, fx.dlqTopic, -1, 0); !errors.Is(err, dlq.ErrInvalidArgument) {
		t.Errorf("Get(-1, 0) = %v; want ErrInvalidArgument", err)
	}
}

func containsStr(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }

package dlq_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/retry"
)

func TestPurgeAll(t *testing.T) {
	fx := newFixture(t, 3)
	ctx := ctxT(t)
	twelve(t, fx) // 4 per partition
	dry, err := fx.c.Purge(ctx, fx.dlqTopic, dlq.PurgeAll(), dlq.DryRun())
	if err != nil {
		t.Fatal(err)
	}
	want := []dlq.PartitionPurge{{Partition: 0, From: 0, To: 4, Deleted: 4}, {Partition: 1, From: 0, To: 4, Deleted: 4}, {Partition: 2, From: 0, To: 4, Deleted: 4}}
	if !dry.DryRun || dry.Deleted != 12 || !slices.Equal(dry.Partitions, want) {
		t.Fatalf("dry run = %+v", dry)
	}
	if page, err := fx.c.List(ctx, fx.dlqTopic, dlq.Filter{}); err != nil || len(page.Records) != 12 {
		t.Fatalf("after a dry run: %d records, %v", len(page.Records), err)
	}

	res, err := fx.c.Purge(ctx, fx.dlqTopic, dlq.PurgeAll())
	if err != nil {
		t.Fatal(err)
	}
	if res.DryRun || res.Deleted != 12 || !slices.Equal(res.Partitions, want) {
		t.Fatalf("purge = %+v", res)
	}
	if page, err := fx.c.List(ctx, fx.dlqTopic, dlq.Filter{}); err != nil || len(page.Records) != 0 {
		t.Fatalf("after purge: %d records, %v", len(page.Records), err)
	}

	// New dead letters after a purge are listed; purging again deletes only them.
	pos := fx.deadLetter(t, dead{p: 1, key: "late", reason: retry.ReasonSkipped, at: time.Hour})
	page, err := fx.c.List(ctx, fx.dlqTopic, dlq.Filter{})
	if err != nil || !slices.Equal(positions(page.Records), pos) {
		t.Fatalf("after purge and a new dead letter: %v, %v", positions(page.Records), err)
	}
	res, err = fx.c.Purge(ctx, fx.dlqTopic, dlq.PurgeAll())
	if err != nil || res.Deleted != 1 || res.Partitions[1] != (dlq.PartitionPurge{Partition: 1, From: 4, To: 5, Deleted: 1}) {
		t.Fatalf("second purge = %+v, %v", res, err)
	}
}

func TestPurgeBefore(t *testing.T) {
	fx := newFixture(t, 2)
	ctx := ctxT(t)
	m := time.Minute
	pos := fx.deadLetter(t,
		// Partition 0: timestamps grow.
		dead{p: 0, key: "a0", reason: retry.ReasonExhausted, at: 0},
		dead{p: 0, key: "a1", reason: retry.ReasonExhausted, at: 1 * m},
		dead{p: 0, key: "a2", reason: retry.ReasonExhausted, at: 2 * m},
		dead{p: 0, key: "a3", reason: retry.ReasonExhausted, at: 3 * m},
		// Partition 1: a record older than the cut-off follows a newer one.
		dead{p: 1, key: "b0", reason: retry.ReasonExhausted, at: 0},
		dead{p: 1, key: "b5", reason: retry.ReasonExhausted, at: 5 * m},
		dead{p: 1, key: "b1", reason: retry.ReasonExhausted, at: 1 * m},
		dead{p: 1, key: "b6", reason: retry.ReasonExhausted, at: 6 * m},
	)
	cut := fx.base.Add(2 * m)
	want := []dlq.PartitionPurge{{Partition: 0, From: 0, To: 2, Deleted: 2}, {Partition: 1, From: 0, To: 1, Deleted: 1}}
	dry, err := fx.c.Purge(ctx, fx.dlqTopic, dlq.PurgeBefore(cut), dlq.DryRun())
	if err != nil || !slices.Equal(dry.Partitions, want) || dry.Deleted != 3 {
		t.Fatalf("dry run = %+v, %v; want %v", dry, err, want)
	}
	res, err := fx.c.Purge(ctx, fx.dlqTopic, dlq.PurgeBefore(cut))
	if err != nil || !slices.Equal(res.Partitions, want) || res.Deleted != 3 {
		t.Fatalf("purge = %+v, %v; want %v", res, err, want)
	}
	page, err := fx.c.List(ctx, fx.dlqTopic, dlq.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	// Left: a2, a3 and b5, b1 (kept behind b5), b6; merged by time, each
	// partition in offset order.
	if got, want := positions(page.Records), pick(pos, 2, 3, 5, 6, 7); !slices.Equal(got, want) {
		t.Errorf("after purge before %v: %v, want %v", cut, got, want)
	}
	// Nothing is before the earliest time: a no-op.
	res, err = fx.c.Purge(ctx, fx.dlqTopic, dlq.PurgeBefore(fx.base.Add(-time.Hour)))
	if err != nil || res.Deleted != 0 {
		t.Errorf("purge before everything = %+v, %v", res, err)
	}
}

func TestPurgeRefuses(t *testing.T) {
	fx := newFixture(t, 1)
	ctx := ctxT(t)
	if _, err := fx.c.Purge(ctx, fx.orig, dlq.PurgeAll()); !errors.Is(err, dlq.ErrNotDLQTopic) {
		t.Errorf("purge of %q = %v; want ErrNotDLQTopic", fx.orig, err)
	}
	if _, err := fx.c.Purge(ctx, fx.dlqTopic, dlq.PurgeScope{}); !errors.Is(err, dlq.ErrInvalidArgument) {
		t.Errorf("purge with zero scope = %v; want ErrInvalidArgument", err)
	}
	if _, err := fx.c.Purge(ctx, "missing-"+fx.dlqTopic, dlq.PurgeAll()); !errors.Is(err, dlq.ErrUnknownTopic) {
		t.Errorf("purge of a missing topic = %v; want ErrUnknownTopic", err)
	}
}

// A broker answers a time lookup with the first log segment whose largest
// timestamp reaches the time, and only with it: after a purge, while the
// segments left wholly below the log start are not yet removed (by the
// retention check, every 5 minutes by default), it can answer -1, "no
// record at or after t", although later segments hold some. Purge must not
// take that for "delete the whole partition". Here one segment per record
// (segment.ms is far below the records' timestamp gaps) sets that up on
// Apache Kafka; kfake removes purged segments at once, and the test
// checks the same results there.
func TestPurgeBeforeRolledSegments(t *testing.T) {
	segmentMs := "10000"
	fx := newFixtureConfigs(t, 2, map[string]*string{"segment.ms": &segmentMs})
	ctx := ctxT(t)
	m := time.Minute
	pos := fx.deadLetter(t,
		dead{p: 0, key: "a0", reason: retry.ReasonExhausted, at: 0},
		dead{p: 0, key: "a1", reason: retry.ReasonExhausted, at: 1 * m},
		dead{p: 0, key: "a2", reason: retry.ReasonExhausted, at: 2 * m},
		dead{p: 0, key: "a3", reason: retry.ReasonExhausted, at: 3 * m},
		dead{p: 1, key: "b0", reason: retry.ReasonExhausted, at: 0},
		dead{p: 1, key: "b5", reason: retry.ReasonExhausted, at: 5 * m},
		dead{p: 1, key: "b1", reason: retry.ReasonExhausted, at: 1 * m},
		dead{p: 1, key: "b6", reason: retry.ReasonExhausted, at: 6 * m},
	)
	want := []dlq.PartitionPurge{{Partition: 0, From: 0, To: 2, Deleted: 2}, {Partition: 1, From: 0, To: 1, Deleted: 1}}
	res, err := fx.c.Purge(ctx, fx.dlqTopic, dlq.PurgeBefore(fx.base.Add(2*m)))
	if err != nil || !slices.Equal(res.Partitions, want) {
		t.Fatalf("purge = %+v, %v; want %v", res, err, want)
	}
	// Right after: nothing is before the earliest time left.
	for _, dry := range []bool{true, false} {
		var opts []dlq.ActionOption
		if dry {
			opts = append(opts, dlq.DryRun())
		}
		res, err = fx.c.Purge(ctx, fx.dlqTopic, dlq.PurgeBefore(fx.base.Add(-time.Hour)), opts...)
		want = []dlq.PartitionPurge{{Partition: 0, From: 2, To: 2}, {Partition: 1, From: 1, To: 1}}
		if err != nil || res.Deleted != 0 || !slices.Equal(res.Partitions, want) {
			t.Fatalf("purge before everything (dry run %v) = %+v, %v; want %v", dry, res, err, want)
		}
	}
	page, err := fx.c.List(ctx, fx.dlqTopic, dlq.Filter{})
	if got, want := positions(page.Records), pick(pos, 2, 3, 5, 6, 7); err != nil || !slices.Equal(got, want) {
		t.Fatalf("left: %v, %v; want %v", got, err, want)
	}
	// Some records left are before the time: up to the first one that is not.
	res, err = fx.c.Purge(ctx, fx.dlqTopic, dlq.PurgeBefore(fx.base.Add(3*m)))
	want = []dlq.PartitionPurge{{Partition: 0, From: 2, To: 3, Deleted: 1}, {Partition: 1, From: 1, To: 1}}
	if err != nil || !slices.Equal(res.Partitions, want) {
		t.Fatalf("purge before +3m = %+v, %v; want %v", res, err, want)
	}
	// Every record left is before the time: all go.
	res, err = fx.c.Purge(ctx, fx.dlqTopic, dlq.PurgeBefore(fx.base.Add(time.Hour)))
	want = []dlq.PartitionPurge{{Partition: 0, From: 3, To: 4, Deleted: 1}, {Partition: 1, From: 1, To: 4, Deleted: 3}}
	if err != nil || !slices.Equal(res.Partitions, want) {
		t.Fatalf("purge before +1h = %+v, %v; want %v", res, err, want)
	}
}

package dlq_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/retry"
)

func endSum(t *testing.T, adm *kadm.Client, topic string) int64 {
	t.Helper()
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

func hasRetryHeader(r *kgo.Record) string {
	for _, h := range r.Headers {
		if retry.IsRetryHeader(h.Key) {
			return h.Key
		}
	}
	return ""
}

func headerValue(r *kgo.Record, k string) string {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

func TestReplay(t *testing.T) {
	fx := newFixture(t, 3)
	ctx := ctxT(t)
	adm := fx.kc.Admin(t)
	m := time.Minute
	orig := []kgo.RecordHeader{header("trace-id", "t-1"), header("content-type", "json")}
	pos := fx.deadLetter(t,
		dead{p: 0, key: "k1", reason: retry.ReasonExhausted, err: "boom", at: 0, hdrs: orig},
		dead{p: 1, key: "k2", reason: retry.ReasonDecode, err: "bad", at: m},
		dead{p: 2, key: "k1", reason: retry.ReasonExhausted, err: "boom again", at: 2 * m, hdrs: orig[:1]},
	)

	// A dry run says what it would do and produces nothing.
	dry, err := fx.c.Replay(ctx, fx.dlqTopic, dlq.Filter{Key: []byte("k1")}, dlq.DryRun())
	if err != nil {
		t.Fatal(err)
	}
	wantDry := []dlq.Replayed{
		{From: pos[0], To: dlq.Position{Topic: fx.orig, Partition: -1, Offset: -1}},
		{From: pos[2], To: dlq.Position{Topic: fx.orig, Partition: -1, Offset: -1}},
	}
	if !dry.DryRun || !slices.Equal(dry.Replayed, wantDry) || len(dry.Skipped) != 0 {
		t.Fatalf("dry run = %+v, want %v", dry, wantDry)
	}
	if n := endSum(t, adm, fx.orig); n != 0 {
		t.Fatalf("dry run produced %d records to the original topic", n)
	}

	before := time.Now().Add(-time.Second)
	res, err := fx.c.Replay(ctx, fx.dlqTopic, dlq.Filter{Key: []byte("k1")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Replayed) != 2 || res.Replayed[0].From != pos[0] || res.Replayed[1].From != pos[2] || res.DryRun {
		t.Fatalf("Replay = %+v", res)
	}
	got := fx.kc.ConsumeUntil(ctx, t, fx.orig, func(all []*kgo.Record) bool { return len(all) >= 2 })
	slices.SortFunc(got, func(a, b *kgo.Record) int {
		return strings.Compare(headerValue(a, dlq.HeaderReplayedFrom), headerValue(b, dlq.HeaderReplayedFrom))
	})
	wantHeaders := [][]kgo.RecordHeader{orig, orig[:1]}
	for i, r := range got {
		from := res.Replayed[i].From
		if r.Topic != res.Replayed[i].To.Topic || r.Partition != res.Replayed[i].To.Partition || r.Offset != res.Replayed[i].To.Offset {
			t.Errorf("record %d at %s[%d]@%d, result says %v", i, r.Topic, r.Partition, r.Offset, res.Replayed[i].To)
		}
		if string(r.Key) != "k1" || string(r.Value) != "value-k1" {
			t.Errorf("record %d: key %q value %q", i, r.Key, r.Value)
		}
		if k := hasRetryHeader(r); k != "" {
			t.Errorf("record %d carries retry header %q", i, k)
		}
		if _, ok := retry.InfoFor(r); ok {
			t.Errorf("record %d: retry.InfoFor finds retry headers; it must look like a first attempt", i)
		}
		// The original headers, in order, then the replay headers.
		n := len(wantHeaders[i])
		if !slices.EqualFunc(r.Headers[:n], wantHeaders[i], func(a, b kgo.RecordHeader) bool { return a.Key == b.Key && string(a.Value) == string(b.Value) }) {
			t.Errorf("record %d headers %v, want the original %v first", i, r.Headers, wantHeaders[i])
		}
		mark, ok := dlq.ReplayMarkOf(r)
		if !ok || mark.From != from || mark.Count != 1 || mark.At.Before(before) || mark.At.After(time.Now()) {
			t.Errorf("record %d replay mark = %+v, %v; want from %v, count 1", i, mark, ok, from)
		}
		if headerValue(r, dlq.HeaderReplayedFrom) != from.String() {
			t.Errorf("record %d: %s = %q", i, dlq.HeaderReplayedFrom, headerValue(r, dlq.HeaderReplayedFrom))
		}
	}

	// Replaying again is allowed, and visible: two copies of each, from the
	// same dead letter. The dead-letter topic is unchanged.
	if _, err := fx.c.Replay(ctx, fx.dlqTopic, dlq.Filter{Key: []byte("k1")}); err != nil {
		t.Fatal(err)
	}
	got = fx.kc.ConsumeUntil(ctx, t, fx.orig, func(all []*kgo.Record) bool { return len(all) >= 4 })
	count := map[string]int{}
	for _, r := range got {
		count[headerValue(r, dlq.HeaderReplayedFrom)]++
	}
	if len(got) != 4 || count[pos[0].String()] != 2 || count[pos[2].String()] != 2 {
		t.Errorf("after two replays: %d records, by origin %v", len(got), count)
	}
	if page, _ := fx.c.List(ctx, fx.dlqTopic, dlq.Filter{}); len(page.Records) != 3 {
		t.Errorf("the dead-letter topic has %d records after replays, want 3", len(page.Records))
	}

	// A replayed record that fails again is dead-lettered again, headers and
	// all: List shows where it was replayed from, and replaying it counts up.
	again := got[0]
	info := retry.Info{Attempt: 1, OriginalTopic: again.Topic, OriginalPartition: again.Partition, OriginalOffset: again.Offset,
		OriginalTimestamp: again.Timestamp, Group: group, LastFailure: time.Now(), LastError: "still broken", Reason: retry.ReasonNonRetriable}
	pos2 := fx.produce(t, &kgo.Record{Topic: fx.dlqTopic, Partition: 1, Key: again.Key, Value: again.Value, Headers: info.Headers(again.Headers)})
	rec, err := fx.c.Get(ctx, fx.dlqTopic, pos2[0].Partition, pos2[0].Offset)
	if err != nil {
		t.Fatal(err)
	}
	firstFrom, _ := dlq.ReplayMarkOf(again)
	if rec.Replayed == nil || rec.Replayed.From != firstFrom.From || rec.Replayed.Count != 1 {
		t.Fatalf("re-dead-lettered record: Replayed = %+v, want from %v", rec.Replayed, firstFrom.From)
	}
	for _, h := range rec.Headers {
		if dlq.IsReplayHeader(h.Key) || retry.IsRetryHeader(h.Key) {
			t.Errorf("Record.Headers holds %q", h.Key)
		}
	}
	res, err = fx.c.Replay(ctx, fx.dlqTopic, dlq.Filter{Error: "still broken"})
	if err != nil || len(res.Replayed) != 1 {
		t.Fatalf("replay again: %+v, %v", res, err)
	}
	got = fx.kc.ConsumeUntil(ctx, t, fx.orig, func(all []*kgo.Record) bool { return len(all) >= 5 })
	var third *kgo.Record
	for _, r := range got {
		if headerValue(r, dlq.HeaderReplayedFrom) == pos2[0].String() {
			third = r
		}
	}
	if third == nil || headerValue(third, dlq.HeaderReplayCount) != "2" || strings.Count(headersString(third), dlq.HeaderReplayedFrom) != 1 {
		t.Fatalf("second-generation replay: %v", third)
	}
}

func headersString(r *kgo.Record) string {
	var b strings.Builder
	for _, h := range r.Headers {
		b.WriteString(h.Key + "=" + string(h.Value) + ";")
	}
	return b.String()
}

func TestReplaySkipsAndPages(t *testing.T) {
	fx := newFixture(t, 1)
	ctx := ctxT(t)
	pos := fx.deadLetter(t,
		dead{p: 0, key: "a", reason: retry.ReasonExhausted},
		dead{p: 0, key: "b", reason: retry.ReasonExhausted},
	)
	// A record with no retry headers, and one that names another topic and
	// no group.
	gone := retry.Info{Attempt: 2, OriginalTopic: fx.orig + "-gone", Reason: retry.ReasonExhausted}
	pos = append(pos, fx.produce(t,
		&kgo.Record{Topic: fx.dlqTopic, Key: []byte("raw"), Value: []byte("x")},
		&kgo.Record{Topic: fx.dlqTopic, Key: []byte("gone"), Headers: gone.Headers(nil)},
	)...)
	pos = append(pos, fx.deadLetter(t, dead{p: 0, key: "c", reason: retry.ReasonExhausted})...)

	var replayed []dlq.Position
	var skipped []dlq.Skipped
	f := dlq.Filter{Limit: 2}
	for i := 0; ; i++ {
		res, err := fx.c.Replay(ctx, fx.dlqTopic, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Replayed {
			replayed = append(replayed, r.From)
		}
		skipped = append(skipped, res.Skipped...)
		if res.Next == "" {
			if i != 2 {
				t.Errorf("%d pages of 2 for 5 records, want 3", i+1)
			}
			break
		}
		f.Cursor = res.Next
	}
	if !slices.Equal(replayed, pick(pos, 0, 1, 4)) {
		t.Errorf("replayed %v, want %v", replayed, pick(pos, 0, 1, 4))
	}
	if len(skipped) != 2 || skipped[0].From != pos[2] || !strings.Contains(skipped[0].Reason, "no retry headers") || skipped[0].OtherTopic ||
		skipped[1].From != pos[3] || !strings.Contains(skipped[1].Reason, "where the record belongs is unknown") || !skipped[1].OtherTopic {
		t.Errorf("skipped %+v", skipped)
	}
	got := fx.kc.ConsumeUntil(ctx, t, fx.orig, func(all []*kgo.Record) bool { return len(all) >= 3 })
	keys := []string{}
	for _, r := range got {
		keys = append(keys, string(r.Key))
	}
	slices.Sort(keys)
	if strings.Join(keys, ",") != "a,b,c" {
		t.Errorf("original topic got keys %v", keys)
	}
}

// TestReplayResultPairsEachRecord: each Replayed entry's To is where the
// record of its From was written. franz-go's ProduceSync returns results in
// the order Kafka acknowledged them, not the order given, so pairing them
// by index sent the caller to other records.
func TestReplayResultPairsEachRecord(t *testing.T) {
	fx := newFixture(t, 1)
	ctx := ctxT(t)
	var ds []dead
	for i := range 30 {
		ds = append(ds, dead{p: 0, key: fmt.Sprintf("k%d", i), reason: retry.ReasonExhausted})
	}
	fx.deadLetter(t, ds...)
	res, err := fx.c.Replay(ctx, fx.dlqTopic, dlq.Filter{})
	if err != nil || len(res.Replayed) != len(ds) {
		t.Fatalf("Replay = %d replayed, %v", len(res.Replayed), err)
	}
	got := fx.kc.ConsumeUntil(ctx, t, fx.orig, func(all []*kgo.Record) bool { return len(all) >= len(ds) })
	at := map[dlq.Position]string{}
	for _, r := range got {
		at[dlq.Position{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}] = headerValue(r, dlq.HeaderReplayedFrom)
	}
	wrong := 0
	for _, r := range res.Replayed {
		if at[r.To] != r.From.String() {
			wrong++
			t.Logf("Replayed{From: %v, To: %v}, but the record at %v came from %s", r.From, r.To, r.To, at[r.To])
		}
	}
	if wrong > 0 {
		t.Errorf("%d of %d Replayed entries pair a record with another's position", wrong, len(res.Replayed))
	}
}

// TestReplayKeepsToTheSourceTopic: a dead-letter topic holds the dead letters
// of one topic, so Replay sends records only there. A record whose
// whippet-original-topic header names another topic (forged: a producer of
// the source topic can set the header, and the consumer keeps it) is
// skipped, saying why, instead of being produced to whatever topic it names.
func TestReplayKeepsToTheSourceTopic(t *testing.T) {
	fx := newFixture(t, 1)
	ctx := ctxT(t)
	adm := fx.kc.Admin(t)
	victim := fx.kc.NewTopic(t, 1, nil)
	pos := fx.deadLetter(t, dead{p: 0, key: "good", reason: retry.ReasonExhausted})
	forged := retry.Info{Attempt: 1, OriginalTopic: victim, Group: group, LastError: "boom", Reason: retry.ReasonNonRetriable}
	pos = append(pos, fx.produce(t, &kgo.Record{Topic: fx.dlqTopic, Key: []byte("forged"), Value: []byte("evil"), Headers: forged.Headers(nil)})...)

	res, err := fx.c.Replay(ctx, fx.dlqTopic, dlq.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if n := endSum(t, adm, victim); n != 0 {
		t.Errorf("replay of every record of %s produced %d record(s) to %s, the topic a forged header names", fx.dlqTopic, n, victim)
	}
	if len(res.Replayed) != 1 || res.Replayed[0].From != pos[0] || res.Replayed[0].To.Topic != fx.orig {
		t.Errorf("replayed %+v, want only %v to %s", res.Replayed, pos[0], fx.orig)
	}
	if len(res.Skipped) != 1 || res.Skipped[0].From != pos[1] || !res.Skipped[0].OtherTopic ||
		!strings.Contains(res.Skipped[0].Reason, victim) || !strings.Contains(res.Skipped[0].Reason, `"`+fx.orig+`"`) {
		t.Errorf("skipped %+v, want %v, naming %s and %s", res.Skipped, pos[1], victim, fx.orig)
	}

	// Told the source, Replay does not need the group header; told another
	// source, it replays nothing there.
	res, err = fx.c.Replay(ctx, fx.dlqTopic, dlq.Filter{}, dlq.ReplaySource(fx.orig), dlq.DryRun())
	if err != nil || len(res.Replayed) != 1 || res.Replayed[0].From != pos[0] || len(res.Skipped) != 1 || res.Skipped[0].From != pos[1] {
		t.Errorf("ReplaySource(%s): %+v, %v", fx.orig, res, err)
	}
	res, err = fx.c.Replay(ctx, fx.dlqTopic, dlq.Filter{}, dlq.ReplaySource(victim), dlq.DryRun())
	if err != nil || len(res.Replayed) != 1 || res.Replayed[0].From != pos[1] || len(res.Skipped) != 1 || !res.Skipped[0].OtherTopic {
		t.Errorf("ReplaySource(%s): %+v, %v", victim, res, err)
	}

	// Named by the operator, the target takes every selected record.
	res, err = fx.c.Replay(ctx, fx.dlqTopic, dlq.Filter{}, dlq.ReplayTo(victim))
	if err != nil || len(res.Replayed) != 2 || len(res.Skipped) != 0 || res.Replayed[0].To.Topic != victim || res.Replayed[1].To.Topic != victim {
		t.Fatalf("ReplayTo(%s): %+v, %v", victim, res, err)
	}
	if n := endSum(t, adm, victim); n != 2 {
		t.Errorf("ReplayTo(%s) produced %d record(s) there, want 2", victim, n)
	}
	for _, tc := range []struct {
		opt  dlq.ActionOption
		want error
		msg  string
	}{
		{dlq.ReplayTo(fx.dlqTopic), dlq.ErrInvalidArgument, "ReplayTo: " + `"` + fx.dlqTopic + `" is the dead-letter topic itself`},
		{dlq.ReplayTo("bad topic"), dlq.ErrInvalidArgument, "ReplayTo: must contain only"},
		{dlq.ReplayTo(victim + "-nope"), dlq.ErrUnknownTopic, victim + "-nope"},
		{dlq.ReplaySource(fx.dlqTopic), dlq.ErrInvalidArgument, "ReplaySource: "},
	} {
		if _, err := fx.c.Replay(ctx, fx.dlqTopic, dlq.Filter{}, tc.opt); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Replay with a bad option: %v; want %v saying %q", err, tc.want, tc.msg)
		}
	}
	for _, opt := range []dlq.ActionOption{dlq.ReplayTo(victim), dlq.ReplaySource(fx.orig)} {
		if _, err := fx.c.Purge(ctx, fx.dlqTopic, dlq.PurgeAll(), opt, dlq.DryRun()); !errors.Is(err, dlq.ErrInvalidArgument) ||
			!strings.Contains(err.Error(), "an option of Replay, not of Purge") {
			t.Errorf("Purge with a Replay option: %v", err)
		}
	}

	// The source topic deleted: its dead letters have nowhere to go.
	missing := fx.orig + "-deleted"
	gone := retry.DLQTopicName(missing, group)
	fx.kc.CreateTopic(t, gone, 1, nil)
	t.Cleanup(func() { _, _ = adm.DeleteTopic(context.Background(), gone) })
	info := retry.Info{Attempt: 2, OriginalTopic: missing, Group: group, Reason: retry.ReasonExhausted}
	lost := fx.produce(t, &kgo.Record{Topic: gone, Key: []byte("k"), Headers: info.Headers(nil)})
	res, err = fx.c.Replay(ctx, gone, dlq.Filter{})
	if err != nil || len(res.Skipped) != 1 || res.Skipped[0].From != lost[0] || res.Skipped[0].OtherTopic ||
		!strings.Contains(res.Skipped[0].Reason, "does not exist") {
		t.Errorf("replay from %s: %+v, %v; want skipped: the topic does not exist", gone, res, err)
	}
}

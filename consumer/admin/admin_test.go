package admin_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/consumer/admin"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/testkit"
)

// blockedOn waits until the consumer shows exactly one blocked record, on
// partition p, and returns it.
func blockedOn(t *testing.T, op client, name string, p int32) admin.BlockedView {
	t.Helper()
	var got []admin.BlockedView
	testkit.Eventually(t, 30*time.Second, func() error {
		op.must("GET", "/api/consumers/"+name+"/blocked", nil, &got)
		if len(got) != 1 || got[0].Partition != p {
			return fmt.Errorf("blocked %+v, want one record on partition %d", got, p)
		}
		return nil
	})
	return got[0]
}

func partitionView(t *testing.T, op client, name, topic string, p int32) admin.PartitionView {
	t.Helper()
	var ps []admin.PartitionView
	op.must("GET", "/api/consumers/"+name+"/partitions", nil, &ps)
	for _, v := range ps {
		if v.Topic == topic && v.Partition == p {
			return v
		}
	}
	t.Fatalf("%s/%d not in %+v", topic, p, ps)
	return admin.PartitionView{}
}

// dlqRecords waits until the dead-letter listing (with query q) has n
// records.
func dlqRecords(t *testing.T, op client, topic, q string, n int) []admin.DLQRecord {
	t.Helper()
	var page admin.DLQPage
	testkit.Eventually(t, 30*time.Second, func() error {
		op.must("GET", "/api/dlq/"+topic+q, nil, &page)
		if len(page.Records) != n {
			return fmt.Errorf("%d dead letters (%s), want %d", len(page.Records), q, n)
		}
		return nil
	})
	return page.Records
}

// logged returns the messages of the action log entries of action.
func logged(logs *observer.ObservedLogs, msg, action string) []observer.LoggedEntry {
	return logs.FilterMessage(msg).FilterField(zap.String("action", action)).AllUntimed()
}

// TestAPI drives every consumer and dead-letter route against a real
// consumer on Kafka, as an operator named alice.
func TestAPI(t *testing.T) {
	kc := testkit.Shared(t)
	leakCheck(t)
	a := startApp(t, kc, 2)
	core, logs := observer.New(zapcore.InfoLevel)
	h, err := admin.New(
		admin.Consumer("renewals", a.c),
		admin.DLQ(a.dlq),
		admin.Authorize(headerAuth),
		admin.Logger(zap.New(core)),
		admin.Metrics(a.reg),
		admin.Title("renewal-service"),
	)
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, h)
	alice := client{t: t, srv: srv, user: "alice"}
	nobody := client{t: t, srv: srv}

	a.produce(t, 0, "user-1", "renew", "user-7", "poison", "user-2", "renew")
	a.produce(t, 1, "user-3", "renew")

	t.Run("consumers", func(t *testing.T) {
		b := blockedOn(t, alice, "renewals", 0)
		if b.Offset != 1 || b.Key == nil || *b.Key != "user-7" || b.Error != "renewal failed: card declined" ||
			b.Attempts < 1 || b.Since.IsZero() || b.NextAttempt.IsZero() || b.Forwarding || b.Consumer != "renewals" {
			t.Fatalf("blocked record %+v", b)
		}
		var cs []admin.ConsumerView
		testkit.Eventually(t, 30*time.Second, func() error {
			alice.must("GET", "/api/consumers", nil, &cs)
			if len(cs) != 1 || len(cs[0].Partitions) != 2 || len(a.handledValues(1)) != 1 {
				return fmt.Errorf("consumers %+v", cs)
			}
			return nil
		})
		c := cs[0]
		if c.Name != "renewals" || c.Group != a.group || !slices.Equal(c.Topics, []string{a.topic}) ||
			!slices.Equal(c.DLQTopics, []string{a.dlqTopic}) || c.BlockedPartitions != 1 || c.InFlight == nil || c.Paused {
			t.Fatalf("consumer %+v", c)
		}
		p0, p1 := c.Partitions[0], c.Partitions[1]
		if p0.Partition != 0 || p0.NextOffset > 1 || len(p0.Blocked) != 1 || p0.Blocked[0].Offset != 1 || p0.Buffered < 1 {
			t.Fatalf("partition 0 %+v", p0)
		}
		if p1.Partition != 1 || p1.NextOffset != 1 || p1.Lag != 0 || len(p1.Blocked) != 0 || p1.Paused {
			t.Fatalf("partition 1 %+v", p1)
		}
		var one admin.ConsumerView
		alice.must("GET", "/api/consumers/renewals", nil, &one)
		if one.Name != "renewals" || len(one.Partitions) != 2 {
			t.Fatalf("GET one consumer: %+v", one)
		}
		var info admin.Info
		alice.must("GET", "/api/info", nil, &info)
		if info.ReadOnly || info.Who != "alice" || info.Title != "renewal-service" || !info.DLQ || !slices.Equal(info.Consumers, []string{"renewals"}) {
			t.Fatalf("info %+v", info)
		}
	})

	t.Run("bad requests", func(t *testing.T) {
		for _, tc := range []struct {
			method, path string
			body         any
			code         int
			param, in    string
		}{
			{"GET", "/api/consumers/nope", nil, 404, "", `no consumer "nope" here; registered: renewals`},
			{"POST", "/api/consumers/nope/partitions/" + a.topic + "/0/skip", nil, 404, "", `no consumer "nope"`},
			{"POST", "/api/consumers/renewals/partitions/" + a.topic + "/x/skip", nil, 400, "partition", `must be a partition number`},
			{"POST", "/api/consumers/renewals/partitions/" + a.topic + "/-1/pause", nil, 400, "partition", `got "-1"`},
			{"POST", "/api/consumers/renewals/partitions/other-topic/0/pause", nil, 404, "", `does not consume topic "other-topic"`},
			{"POST", "/api/consumers/renewals/partitions/" + a.topic + "/7/skip", nil, 404, "", "is not assigned to consumer"},
			{"POST", "/api/consumers/renewals/partitions/" + a.topic + "/1/skip", nil, 409, "", "is not blocked"},
			{"GET", "/api/consumers/renewals/partitions/" + a.topic + "/0/skip", nil, 405, "", "method GET not allowed"},
			{"DELETE", "/api/consumers", nil, 405, "", "use GET"},
			{"GET", "/api/nothing", nil, 404, "", "no such API route"},
			{"GET", "/api/dlq/" + a.topic, nil, 404, "", "is not a dead-letter topic of this service"},
			{"GET", "/api/dlq/" + a.dlqTopic + "?reason=tired", nil, 400, "reason", `"tired": want one of`},
			{"GET", "/api/dlq/" + a.dlqTopic + "?limit=0", nil, 400, "limit", "from 1 to 1000"},
			{"GET", "/api/dlq/" + a.dlqTopic + "?since=yesterday", nil, 400, "since", "neither an RFC 3339 time"},
			{"GET", "/api/dlq/" + a.dlqTopic + "?cursor=nope", nil, 400, "cursor", "malformed cursor"},
			{"GET", "/api/dlq/" + a.dlqTopic + "?partition=9", nil, 400, "partition", "no partition 9"},
			{"GET", "/api/dlq/" + a.dlqTopic + "?colour=red", nil, 400, "colour", "unknown parameter"},
			{"GET", "/api/dlq/" + a.dlqTopic + "/0/999", nil, 404, "", "record not found"},
			{"GET", "/api/dlq/" + a.dlqTopic + "/0/x", nil, 400, "offset", "must be an offset"},
			{"POST", "/api/dlq/" + a.dlqTopic + "/replay", map[string]any{}, 400, "body", "exactly one of"},
			{"POST", "/api/dlq/" + a.dlqTopic + "/replay", map[string]any{"all": true, "positions": []any{map[string]int{"partition": 0, "offset": 0}}}, 400, "body", "got 2"},
			{"POST", "/api/dlq/" + a.dlqTopic + "/replay", map[string]any{"filter": map[string]any{}}, 400, "filter", `"all": true`},
			{"POST", "/api/dlq/" + a.dlqTopic + "/replay", map[string]any{"filter": map[string]any{"reason": "bored"}}, 400, "filter.reason", "want one of"},
			{"POST", "/api/dlq/" + a.dlqTopic + "/replay", map[string]any{"everything": true}, 400, "body", "unknown field"},
			{"POST", "/api/dlq/" + a.dlqTopic + "/replay", map[string]any{"positions": []any{map[string]int{"partition": 0, "offset": 999}}}, 404, "", "record not found"},
			{"POST", "/api/dlq/" + a.dlqTopic + "/purge", map[string]any{}, 400, "body", "cannot be purged by key"},
			{"POST", "/api/dlq/" + a.dlqTopic + "/purge", map[string]any{"before": "soon"}, 400, "before", "neither an RFC 3339 time"},
		} {
			code, e := alice.do(tc.method, tc.path, tc.body, nil)
			if code != tc.code || e.Param != tc.param || !strings.Contains(e.Error, tc.in) {
				t.Errorf("%s %s: %d %+v; want %d, param %q, error containing %q", tc.method, tc.path, code, e, tc.code, tc.param, tc.in)
			}
		}
	})

	t.Run("refused without a user", func(t *testing.T) {
		code, e := nobody.do("POST", "/api/consumers/renewals/partitions/"+a.topic+"/0/skip", nil, nil)
		if code != http.StatusForbidden || !strings.Contains(e.Error, "name yourself in X-User") {
			t.Fatalf("skip without X-User: %d %+v", code, e)
		}
		if got := logged(logs, "admin action refused", admin.ActionSkip); len(got) != 1 {
			t.Fatalf("refusals logged: %+v", got)
		}
		if b := blockedOn(t, alice, "renewals", 0); b.Offset != 1 {
			t.Fatalf("still blocked: %+v", b)
		}
	})

	t.Run("skip", func(t *testing.T) {
		var rec admin.ActionRecord
		alice.must("POST", "/api/consumers/renewals/partitions/"+a.topic+"/0/skip", nil, &rec)
		if rec.Who != "alice" || rec.Action != admin.ActionSkip || rec.Consumer != "renewals" || rec.Topic != a.topic ||
			rec.Partition != 0 || !rec.Assigned || !strings.Contains(rec.Detail, "offset(s) [1]") {
			t.Fatalf("skip answered %+v", rec)
		}
		testkit.Eventually(t, 30*time.Second, func() error {
			if got := a.handledValues(0); !slices.Equal(got, []string{"renew", "renew"}) {
				return fmt.Errorf("partition 0 handled %q", got)
			}
			return nil
		})
		var blocked []admin.BlockedView
		alice.must("GET", "/api/consumers/renewals/blocked", nil, &blocked)
		if len(blocked) != 0 {
			t.Fatalf("blocked after the skip: %+v", blocked)
		}
		dead := dlqRecords(t, alice, a.dlqTopic, "?key=user-7", 1)[0]
		if dead.Reason != "skipped" || *dead.Key != "user-7" || *dead.Value != "poison" || dead.OriginalOffset != 1 ||
			dead.OriginalTopic != a.topic || dead.Error != "renewal failed: card declined" || dead.Group != a.group {
			t.Fatalf("dead letter %+v", dead)
		}
		// The action log names alice, on the logger and in the API.
		entries := logged(logs, "admin action", admin.ActionSkip)
		if len(entries) != 1 {
			t.Fatalf("skips logged: %+v", entries)
		}
		f := entries[0].ContextMap()
		if f["who"] != "alice" || f["consumer"] != "renewals" || f["group"] != a.group || f["topic"] != a.topic || fmt.Sprint(f["partition"]) != "0" {
			t.Fatalf("logged fields %v", f)
		}
		var actions []admin.ActionRecord
		alice.must("GET", "/api/actions", nil, &actions)
		// Newest first: this skip, then the failed actions of "bad requests".
		if len(actions) != 4 || actions[0].Who != "alice" || actions[0].Action != admin.ActionSkip || actions[0].Error != "" ||
			!strings.Contains(actions[1].Error, "record not found") || !strings.Contains(actions[2].Error, "is not blocked") {
			t.Fatalf("action log %+v", actions)
		}
	})

	t.Run("skip-all and block", func(t *testing.T) {
		var rec admin.ActionRecord
		alice.must("POST", "/api/consumers/renewals/partitions/"+a.topic+"/0/skip-all", nil, &rec)
		if !partitionView(t, alice, "renewals", a.topic, 0).SkipAll {
			t.Fatal("skip_all not shown")
		}
		a.produce(t, 0, "user-8", "poison", "user-9", "renew")
		dead := dlqRecords(t, alice, a.dlqTopic, "?key=user-8", 1)[0]
		if dead.Reason != "skipped" || dead.Attempts != 1 {
			t.Fatalf("skip-all dead letter %+v", dead)
		}
		testkit.Eventually(t, 30*time.Second, func() error {
			if got := a.handledValues(0); len(got) != 3 {
				return fmt.Errorf("partition 0 handled %q", got)
			}
			return nil
		})
		alice.must("POST", "/api/consumers/renewals/partitions/"+a.topic+"/0/block", nil, &rec)
		if rec.Action != admin.ActionBlock || partitionView(t, alice, "renewals", a.topic, 0).SkipAll {
			t.Fatalf("block: %+v", rec)
		}
		a.produce(t, 0, "user-10", "poison")
		if b := blockedOn(t, alice, "renewals", 0); *b.Key != "user-10" {
			t.Fatalf("blocked %+v, want user-10 again", b)
		}
		alice.must("POST", "/api/consumers/renewals/partitions/"+a.topic+"/0/skip", nil, nil)
		dlqRecords(t, alice, a.dlqTopic, "", 3)
	})

	t.Run("pause and resume", func(t *testing.T) {
		var rec admin.ActionRecord
		alice.must("POST", "/api/consumers/renewals/partitions/"+a.topic+"/1/pause", nil, &rec)
		if !partitionView(t, alice, "renewals", a.topic, 1).Paused || rec.Detail != "paused "+a.topic+"/1" {
			t.Fatalf("pause: %+v", rec)
		}
		a.produce(t, 1, "user-11", "renew")
		time.Sleep(1500 * time.Millisecond) // a fetch would have brought it by now
		if got := a.handledValues(1); len(got) != 1 {
			t.Fatalf("paused partition handled %q", got)
		}
		alice.must("POST", "/api/consumers/renewals/partitions/"+a.topic+"/1/resume", nil, nil)
		testkit.Eventually(t, 30*time.Second, func() error {
			if got := a.handledValues(1); len(got) != 2 {
				return fmt.Errorf("resumed partition handled %q", got)
			}
			return nil
		})
		if partitionView(t, alice, "renewals", a.topic, 1).Paused {
			t.Fatal("still paused")
		}

		// A partition this instance does not own: remembered, and said so.
		alice.must("POST", "/api/consumers/renewals/partitions/"+a.topic+"/5/pause", nil, &rec)
		if rec.Assigned || !strings.Contains(rec.Detail, "not assigned to this instance") {
			t.Fatalf("pause of an unassigned partition: %+v", rec)
		}
		alice.must("POST", "/api/consumers/renewals/partitions/"+a.topic+"/5/resume", nil, nil)

		// The whole consumer.
		var c admin.ConsumerView
		alice.must("POST", "/api/consumers/renewals/pause", nil, &rec)
		alice.must("GET", "/api/consumers/renewals", nil, &c)
		if !c.Paused || !c.Partitions[0].Paused || !c.Partitions[1].Paused {
			t.Fatalf("consumer pause: %+v", c)
		}
		alice.must("POST", "/api/consumers/renewals/resume", nil, &rec)
		alice.must("GET", "/api/consumers/renewals", nil, &c)
		if c.Paused || c.Partitions[0].Paused || c.Partitions[1].Paused {
			t.Fatalf("consumer resume: %+v", c)
		}
	})

	t.Run("dead letters", func(t *testing.T) {
		var topics []admin.DLQTopicView
		testkit.Eventually(t, 10*time.Second, func() error {
			alice.must("GET", "/api/dlq", nil, &topics)
			if len(topics) != 1 || topics[0].Records != 3 {
				return fmt.Errorf("topics %+v", topics)
			}
			return nil
		})
		if d := topics[0]; d.Topic != a.dlqTopic || !d.Exists || d.Consumer != "renewals" || d.Group != a.group || d.Source != a.topic {
			t.Fatalf("topic %+v", d)
		}
		// Paging, filters, one record.
		var page admin.DLQPage
		alice.must("GET", "/api/dlq/"+a.dlqTopic+"?limit=2", nil, &page)
		if len(page.Records) != 2 || page.Next == "" {
			t.Fatalf("first page: %d records, next %q", len(page.Records), page.Next)
		}
		var rest admin.DLQPage
		alice.must("GET", "/api/dlq/"+a.dlqTopic+"?limit=2&cursor="+page.Next, nil, &rest)
		if len(rest.Records) != 1 || rest.Next != "" || *rest.Records[0].Key != "user-10" {
			t.Fatalf("second page: %+v", rest)
		}
		for q, n := range map[string]int{"?reason=skipped": 3, "?reason=exhausted": 0, "?error=card+declined": 3,
			"?error=nope": 0, "?since=1h": 3, "?until=1h": 0, "?partition=0,1": 3, "?key=user-8": 1} {
			alice.must("GET", "/api/dlq/"+a.dlqTopic+q, nil, &page)
			if len(page.Records) != n {
				t.Errorf("%s: %d records, want %d", q, len(page.Records), n)
			}
		}
		first := dlqRecords(t, alice, a.dlqTopic, "?key=user-8", 1)[0]
		var one admin.DLQRecord
		alice.must("GET", fmt.Sprintf("/api/dlq/%s/%d/%d", a.dlqTopic, first.Partition, first.Offset), nil, &one)
		if one.Position != first.Position || *one.Key != "user-8" || one.ValueTruncated {
			t.Fatalf("one record %+v", one)
		}

		// The bug is fixed: replay one record, then a dry run of all.
		a.fixed.Store(true)
		var res admin.ReplayResponse
		alice.must("POST", "/api/dlq/"+a.dlqTopic+"/replay", admin.ReplayRequest{
			Positions: []admin.PartitionOffset{{Partition: first.Partition, Offset: first.Offset}, {Partition: first.Partition, Offset: first.Offset}},
		}, &res)
		if len(res.Replayed) != 1 || res.Replayed[0].From != first.Position || !strings.HasPrefix(res.Replayed[0].To, a.topic+"/") || res.DryRun {
			t.Fatalf("replay answered %+v", res)
		}
		testkit.Eventually(t, 30*time.Second, func() error {
			for _, r := range a.handledRecords() {
				if m, ok := dlq.ReplayMarkOf(r); ok && m.From.String() == first.Position && string(r.Key) == "user-8" {
					return nil
				}
			}
			return errors.New("the replayed record was not handled")
		})
		before := len(a.handledRecords())
		alice.must("POST", "/api/dlq/"+a.dlqTopic+"/replay", admin.ReplayRequest{All: true, DryRun: true}, &res)
		if len(res.Replayed) != 3 || !res.DryRun || res.Replayed[0].To != a.topic {
			t.Fatalf("dry run answered %+v", res)
		}
		key := "user-10"
		alice.must("POST", "/api/dlq/"+a.dlqTopic+"/replay", admin.ReplayRequest{Filter: &admin.ReplayFilter{Key: &key}}, &res)
		if len(res.Replayed) != 1 {
			t.Fatalf("filtered replay answered %+v", res)
		}
		testkit.Eventually(t, 30*time.Second, func() error {
			if n := len(a.handledRecords()); n != before+1 {
				return fmt.Errorf("%d records handled since the dry run, want 1", n-before)
			}
			return nil
		})

		// Purge: a dry run, then for real.
		var pr admin.PurgeResponse
		alice.must("POST", "/api/dlq/"+a.dlqTopic+"/purge", admin.PurgeRequest{Before: "1h", DryRun: true}, &pr)
		if pr.Deleted != 0 || !pr.DryRun {
			t.Fatalf("purge of records older than 1h: %+v", pr)
		}
		alice.must("POST", "/api/dlq/"+a.dlqTopic+"/purge", admin.PurgeRequest{All: true}, &pr)
		if pr.Deleted != 3 || pr.DryRun || pr.Scope != "all" || pr.Topic != a.dlqTopic {
			t.Fatalf("purge answered %+v", pr)
		}
		dlqRecords(t, alice, a.dlqTopic, "", 0)

		// Dry runs are logged under names of their own.
		for action, want := range map[string]int{admin.ActionReplay: 2, admin.ActionReplayDryRun: 1, admin.ActionPurge: 1, admin.ActionPurgeDryRun: 1} {
			if n := len(logged(logs, "admin action", action)); n != want {
				t.Errorf("%s logged %d times, want %d", action, n, want)
			}
		}
		var actions []admin.ActionRecord
		alice.must("GET", "/api/actions", nil, &actions)
		if actions[0].Action != admin.ActionPurge || actions[0].Who != "alice" || actions[0].Detail != "purged 3 record(s) (all)" {
			t.Fatalf("newest action %+v", actions[0])
		}
	})

	t.Run("read-only", func(t *testing.T) {
		core, logs := observer.New(zapcore.InfoLevel)
		ro, err := admin.New(admin.Consumer("renewals", a.c), admin.DLQ(a.dlq), admin.Logger(zap.New(core)))
		if err != nil {
			t.Fatal(err)
		}
		op := client{t: t, srv: serve(t, ro), user: "mallory"}
		var info admin.Info
		op.must("GET", "/api/info", nil, &info)
		if !info.ReadOnly || info.Who != "" {
			t.Fatalf("info %+v", info)
		}
		var cs []admin.ConsumerView
		op.must("GET", "/api/consumers", nil, &cs)
		if len(cs) != 1 || len(cs[0].Partitions) != 2 || cs[0].InFlight != nil {
			t.Fatalf("read-only consumers %+v", cs)
		}
		op.must("GET", "/api/dlq/"+a.dlqTopic, nil, nil)
		for _, tc := range []struct {
			path string
			body any
		}{
			{"/api/consumers/renewals/partitions/" + a.topic + "/0/skip", nil},
			{"/api/consumers/renewals/partitions/" + a.topic + "/0/skip-all", nil},
			{"/api/consumers/renewals/partitions/" + a.topic + "/0/block", nil},
			{"/api/consumers/renewals/partitions/" + a.topic + "/0/pause", nil},
			{"/api/consumers/renewals/partitions/" + a.topic + "/0/resume", nil},
			{"/api/consumers/renewals/pause", nil},
			{"/api/consumers/renewals/resume", nil},
			{"/api/dlq/" + a.dlqTopic + "/replay", admin.ReplayRequest{All: true}},
			{"/api/dlq/" + a.dlqTopic + "/purge", admin.PurgeRequest{All: true}},
		} {
			code, e := op.do("POST", tc.path, tc.body, nil)
			if code != http.StatusForbidden || !strings.Contains(e.Error, "read-only") {
				t.Errorf("POST %s: %d %+v, want 403 read-only", tc.path, code, e)
			}
		}
		if n := logs.FilterMessage("admin action refused").FilterField(zap.String("reason", "read-only")).Len(); n != 9 {
			t.Errorf("%d refusals logged, want 9", n)
		}
		if n := logs.FilterMessage("admin action").Len(); n != 0 {
			t.Errorf("%d actions logged as done", n)
		}
		if p := partitionView(t, op, "renewals", a.topic, 0); p.Paused || p.SkipAll {
			t.Fatalf("a refused action changed the partition: %+v", p)
		}
	})
}

// newIdle is a handler over a consumer that is never run: for the routes
// that need no Kafka.
func newIdle(t *testing.T, opts ...admin.Option) (*admin.Handler, *consumer.Consumer) {
	t.Helper()
	c, err := consumer.New(whippet.Connection{Brokers: []string{"127.0.0.1:1"}}, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error { return nil }), consumer.Group("g"), consumer.Topics("t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	h, err := admin.New(append([]admin.Option{admin.Consumer("svc", c)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return h, c
}

func TestConfigErrors(t *testing.T) {
	_, c := newIdle(t)
	_, err := admin.New(
		admin.Consumer("", c),
		admin.Consumer("a b", nil),
		admin.Consumer("x", c),
		admin.Consumer("x", c),
		admin.DLQ(nil),
		admin.Timeout(0),
		admin.Prefix("whippet/"),
		admin.Refresh(time.Millisecond),
		admin.Logger(nil),
	)
	if !errors.Is(err, admin.ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{
		"admin: Consumer[0].Name: must not be empty",
		"admin: Consumer[1].Name: must contain only ASCII letters",
		"admin: Consumer[1].Consumer: must not be nil",
		`admin: Consumer[3].Name: "x" is registered twice`,
		"admin: DLQ: must not be nil",
		"admin: Timeout: must be > 0",
		`admin: Prefix: must start with '/' and not end with one, like "/whippet", got "whippet/"`,
		"admin: Refresh: must be at least 500ms",
		"admin: Logger: must not be nil",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := admin.New(); err == nil || !strings.Contains(err.Error(), "admin: Consumer: at least one consumer is required") {
		t.Errorf("New() = %v", err)
	}
	if _, err := admin.New(admin.Consumer("svc", c), admin.DLQTopics("x-dlq")); err == nil || !strings.Contains(err.Error(), "admin: DLQTopics: needs DLQ") {
		t.Errorf("DLQTopics without DLQ: %v", err)
	}
}

func TestRoutes(t *testing.T) {
	leakCheck(t)
	h, _ := newIdle(t, admin.Title("billing <prod>"), admin.Authorize(func(r *http.Request, a admin.Action) (string, error) {
		if r.Header.Get("X-User") == "" {
			return "", errors.New("sign in first")
		}
		return r.Header.Get("X-User"), nil
	}))
	srv := serve(t, h)
	get := func(path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		res, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}

	res, body := get("/whippet/")
	if res.StatusCode != 200 || !strings.Contains(body, "<title>billing &lt;prod&gt; · whippet admin</title>") ||
		!strings.Contains(body, `src="static/app.js"`) || !strings.Contains(res.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("page: %d %s", res.StatusCode, body)
	}
	if res, _ := get("/whippet"); res.Header.Get("Location") != "/whippet/" { // the service's mux redirects
		t.Fatalf("/whippet: %d to %q", res.StatusCode, res.Header.Get("Location"))
	}
	for _, asset := range []string{"app.js", "app.css"} {
		res, body := get("/whippet/static/" + asset)
		if res.StatusCode != 200 || len(body) < 1000 || res.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("%s: %d, %d bytes", asset, res.StatusCode, len(body))
		}
	}
	if res, _ := get("/whippet/static/nope.js"); res.StatusCode != 404 {
		t.Errorf("missing asset: %d", res.StatusCode)
	}
	// The hook sees reads too.
	if res, body := get("/whippet/api/consumers"); res.StatusCode != 403 || !strings.Contains(body, "forbidden: sign in first") {
		t.Errorf("read refused by the hook: %d %s", res.StatusCode, body)
	}
	if res, body := get("/whippet/api/consumers", "X-User", "bob"); res.StatusCode != 200 || !strings.Contains(body, `"partitions": []`) {
		t.Errorf("read allowed by the hook: %d %s", res.StatusCode, body)
	}
	if res, body := get("/whippet/api/dlq", "X-User", "bob"); res.StatusCode != 404 || !strings.Contains(body, "admin.DLQ") {
		t.Errorf("DLQ without a client: %d %s", res.StatusCode, body)
	}

	// A cross-site POST is refused before the hook is asked.
	req, _ := http.NewRequest("POST", srv.URL+"/whippet/api/consumers/svc/pause", nil)
	req.Header.Set("X-User", "bob")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 403 || !strings.Contains(string(b), "cross-origin request refused") {
		t.Errorf("cross-site POST: %d %s", res.StatusCode, b)
	}

	// StripPrefix on the bare path leaves "": a relative redirect keeps the prefix.
	bare := httptest.NewServer(http.StripPrefix("/svc/whippet", h))
	defer bare.Close()
	noFollow := &http.Client{Transport: bare.Client().Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err = noFollow.Get(bare.URL + "/svc/whippet")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "whippet/" {
		t.Errorf("/svc/whippet: %d to %q, want a relative redirect to whippet/", res.StatusCode, res.Header.Get("Location"))
	}

	// Mounted without StripPrefix, with Prefix.
	hp, _ := newIdle(t, admin.Prefix("/ops/whippet"))
	mux := http.NewServeMux()
	mux.Handle("/ops/whippet/", hp)
	mux.Handle("/ops/whippet", hp)
	mux.Handle("/ops/whippetx", hp)
	psrv := httptest.NewServer(mux)
	defer psrv.Close()
	noFollow = &http.Client{Transport: psrv.Client().Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err = noFollow.Get(psrv.URL + "/ops/whippet")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "whippet/" {
		t.Errorf("/ops/whippet: %d to %q, want a relative redirect to whippet/", res.StatusCode, res.Header.Get("Location"))
	}
	for path, want := range map[string]int{"/ops/whippet/api/info": 200, "/ops/whippet/": 200, "/ops/whippet/static/app.css": 200, "/ops/whippetx": 404} {
		res, err := noFollow.Get(psrv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, res.StatusCode, want)
		}
	}
}

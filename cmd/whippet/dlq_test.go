package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/consumer/admin"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestDLQUsage(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	b := "-brokers=127.0.0.1:1" // never contacted: usage errors come first
	for _, tc := range []struct {
		args     []string
		code     int
		inStderr string
	}{
		{[]string{"help"}, 0, "dlq"},
		{[]string{"dlq"}, 2, "missing subcommand"},
		{[]string{"dlq", "-h"}, 0, "usage: whippet dlq"},
		{[]string{"dlq", "sideways"}, 2, `unknown subcommand "sideways"`},
		{[]string{"dlq", "list", "-h"}, 0, "-since"},
		{[]string{"dlq", "list", b}, 2, "missing -topic (or -source and -group)"},
		{[]string{"dlq", "list", "-topic", "t"}, 2, "no brokers: set -brokers or KAFKA_BROKERS"},
		{[]string{"dlq", "list", b, "-topic", "t", "-source", "s", "-group", "g"}, 2, "not both"},
		{[]string{"dlq", "list", b, "-source", "s"}, 2, "-source and -group go together"},
		{[]string{"dlq", "list", b, "-topic", "t", "-since", "yesterday"}, 2, `-since: "yesterday" is neither`},
		{[]string{"dlq", "list", b, "-topic", "t", "-reason", "tired"}, 2, `-reason "tired": want one of`},
		{[]string{"dlq", "list", b, "-topic", "t", "-limit", "-3"}, 2, "-limit must be >= 0"},
		{[]string{"dlq", "list", b, "-topic", "t", "extra"}, 2, "unexpected arguments"},
		{[]string{"dlq", "list", b, "-topic", "t", "-bogus"}, 2, "flag provided but not defined"},
		{[]string{"dlq", "list", b, "-topic", "t", "-cursor", "nope"}, 2, "usage: Filter.Cursor: malformed cursor"},
		{[]string{"dlq", "show", b, "-topic", "t", "-partition", "0"}, 2, "show needs -partition and -offset"},
		{[]string{"dlq", "purge", b, "-topic", "t-dlq"}, 2, "exactly one of -all and -before"},
		{[]string{"dlq", "purge", b, "-topic", "t-dlq", "-all", "-before", "1h"}, 2, "exactly one of -all and -before"},
		{[]string{"dlq", "purge", b, "-topic", "t-dlq", "-key", "k", "-all"}, 2, "purge cannot select by key"},
		{[]string{"dlq", "purge", b, "-topic", "t-dlq", "-before", "soon"}, 2, "-before:"},
		{[]string{"dlq", "replay", "-brokers", "a b", "-topic", "t"}, 2, "Brokers[0]: must be"},
	} {
		code, _, stderr := cli(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.inStderr) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.code, tc.inStderr)
		}
	}
}

func TestTruncateAndDisplay(t *testing.T) {
	if got := truncate("héllo wörld", 6); got != "héllo…" {
		t.Errorf("truncate = %q", got)
	}
	if got := display([]byte{0, 1, 0xff}); got != "0x0001ff" {
		t.Errorf("display(binary) = %q", got)
	}
	if got := display([]byte("a\nb")); got != "a b" {
		t.Errorf("display(text) = %q", got)
	}
	if got := display(nil); got != "(null)" {
		t.Errorf("display(nil) = %q", got)
	}
}

// TestDLQCommands drives list, show, replay and purge against Kafka.
func TestDLQCommands(t *testing.T) {
	kc := testkit.Shared(t)
	ctx := context.Background()
	orig := kc.NewTopic(t, 2, nil)
	group := "renewals"
	topic := retry.DLQTopicName(orig, group)
	kc.CreateTopic(t, topic, 2, nil)
	adm := kc.Admin(t)
	t.Cleanup(func() {
		if _, err := adm.DeleteTopic(context.Background(), topic); err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
			t.Logf("delete %s: %v", topic, err)
		}
	})
	brokers := "-brokers=" + strings.Join(kc.Brokers, ",")
	now := time.Now()
	prod := kc.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produce := func(r *kgo.Record) dlq.Position {
		t.Helper()
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		return dlq.Position{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset}
	}
	deadLetter := func(p int32, key string, value []byte, ago time.Duration, reason retry.Reason, msg string) dlq.Position {
		at := now.Add(-ago)
		info := retry.Info{Attempt: 4, OriginalTopic: orig, OriginalPartition: p, OriginalOffset: 7, OriginalTimestamp: at.Add(-time.Minute),
			Group: group, FirstFailure: at.Add(-time.Minute), LastFailure: at, LastError: msg, Reason: reason}
		return produce(&kgo.Record{Topic: topic, Partition: p, Key: []byte(key), Value: value, Timestamp: at,
			Headers: info.Headers([]kgo.RecordHeader{{Key: "trace-id", Value: []byte("abc-" + key)}})})
	}
	p0 := deadLetter(0, "user-1", []byte(`{"plan":"yearly"}`), 3*time.Hour, retry.ReasonExhausted, "billing: timeout\nafter 3 tries")
	p1 := deadLetter(1, "user-2", []byte{0xde, 0xad, 0xbe, 0xef, 0}, 2*time.Hour, retry.ReasonDecode, "bad protobuf")
	p2 := deadLetter(0, "user-3", []byte("v3"), 30*time.Minute, retry.ReasonNonRetriable, strings.Repeat("long error ", 20))
	raw := produce(&kgo.Record{Topic: topic, Partition: 1, Key: []byte("raw"), Value: []byte("hand-made"), Timestamp: now.Add(-10 * time.Minute)})

	// list: a table, oldest first, errors on one line and truncated.
	code, out, errOut := cli(t, "dlq", "list", brokers, "-topic", topic)
	if code != 0 {
		t.Fatalf("list: %d %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "POSITION") ||
		!strings.Contains(lines[1], "0/0") || !strings.Contains(lines[1], "user-1") || !strings.Contains(lines[1], "billing: timeout after 3 tries") ||
		!strings.Contains(lines[2], "1/0") || !strings.Contains(lines[2], "decode") ||
		!strings.Contains(lines[3], "0/1") || !strings.Contains(lines[3], "…") ||
		!strings.Contains(lines[4], "raw") || !strings.Contains(errOut, "4 record(s)") {
		t.Errorf("list table:\n%s\nstderr: %s", out, errOut)
	}

	// -source/-group, filters, JSON.
	code, out, _ = cli(t, "dlq", "list", brokers, "-source", orig, "-group", group, "-reason", "decode", "-json")
	var j dlq.RecordView
	if code != 0 || strings.Count(out, "\n") != 1 || json.Unmarshal([]byte(out), &j) != nil {
		t.Fatalf("list -json: %d %q", code, out)
	}
	if j.Partition != p1.Partition || j.Offset != p1.Offset || *j.Key != "user-2" || j.ValueEncoding != "base64" ||
		j.Attempts != 4 || j.Reason != "decode" || j.Error != "bad protobuf" || j.OriginalTopic != orig || j.Group != group ||
		len(j.Headers) != 1 || j.Headers[0].Value != "abc-user-2" || !j.DeadLetter {
		t.Errorf("list -json record: %+v", j)
	}
	for _, tc := range []struct {
		args []string
		keys []string
	}{
		{[]string{"-key", "user-3"}, []string{"user-3"}},
		{[]string{"-error", "timeout"}, []string{"user-1"}},
		{[]string{"-since", "90m"}, []string{"user-3", "raw"}},
		{[]string{"-until", "150m"}, []string{"user-1"}},
		{[]string{"-since", now.Add(-150 * time.Minute).UTC().Format(time.RFC3339), "-until", "20m"}, []string{"user-2", "user-3"}},
		{[]string{"-partition", "1"}, []string{"user-2", "raw"}},
	} {
		code, out, errOut := cli(t, append([]string{"dlq", "list", brokers, "-topic", topic, "-json"}, tc.args...)...)
		var keys []string
		for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
			var r dlq.RecordView
			if line != "" && json.Unmarshal([]byte(line), &r) == nil {
				keys = append(keys, *r.Key)
			}
		}
		if code != 0 || strings.Join(keys, ",") != strings.Join(tc.keys, ",") {
			t.Errorf("list %q: %d, keys %v, want %v (%s)", tc.args, code, keys, tc.keys, errOut)
		}
	}

	// Paging.
	code, out, errOut = cli(t, "dlq", "list", brokers, "-topic", topic, "-limit", "3")
	_, cursor, found := strings.Cut(errOut, "more: add -cursor ")
	if code != 0 || strings.Count(out, "\n") != 4 || !found {
		t.Fatalf("list -limit 3: %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = cli(t, "dlq", "list", brokers, "-topic", topic, "-limit", "3", "-cursor", strings.TrimSpace(cursor))
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(out, "raw") || strings.Contains(errOut, "more:") {
		t.Errorf("second page: %d\n%s\n%s", code, out, errOut)
	}

	// show: everything, text or hex.
	code, out, _ = cli(t, "dlq", "show", brokers, "-topic", topic, "-partition", "0", "-offset", "0")
	for _, want := range []string{"record", p0.String(), "exhausted", "attempts", "4", "billing: timeout after 3 tries",
		orig + "/0/7", "headers (1):", "trace-id: abc-user-1", `value (17 bytes, text):` + "\n" + `{"plan":"yearly"}`} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("show 0/0 lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = cli(t, "dlq", "show", brokers, "-topic", topic, "-partition", "1", "-offset", "0")
	if code != 0 || !strings.Contains(out, "value (5 bytes, hex):") || !strings.Contains(out, "de ad be ef 00") {
		t.Errorf("show binary:\n%s", out)
	}
	code, out, _ = cli(t, "dlq", "show", brokers, "-topic", topic, "-partition", "1", "-offset", "1")
	if code != 0 || !strings.Contains(out, "no retry headers") {
		t.Errorf("show raw:\n%s", out)
	}
	code, _, errOut = cli(t, "dlq", "show", brokers, "-topic", topic, "-partition", "0", "-offset", "99")
	if code != 1 || !strings.Contains(errOut, "record not found") {
		t.Errorf("show missing: %d %s", code, errOut)
	}
	code, _, errOut = cli(t, "dlq", "list", brokers, "-topic", topic+"-nope")
	if code != 1 || !strings.Contains(errOut, "topic does not exist") {
		t.Errorf("list missing topic: %d %s", code, errOut)
	}

	// replay: dry run produces nothing; a real one puts the record back.
	code, out, errOut = cli(t, "dlq", "replay", brokers, "-topic", topic, "-key", "user-1", "-dry-run")
	if code != 0 || !strings.Contains(out, "would replay "+p0.String()+" to "+orig) || !strings.Contains(errOut, "nothing produced") {
		t.Errorf("replay -dry-run: %d\n%s\n%s", code, out, errOut)
	}
	if n := sumEnds(t, adm, orig); n != 0 {
		t.Fatalf("dry run produced %d records", n)
	}
	code, out, errOut = cli(t, "dlq", "replay", brokers, "-topic", topic, "-key", "user-1")
	if code != 0 || !strings.Contains(out, "replayed "+p0.String()+" to "+orig+"/") {
		t.Fatalf("replay: %d\n%s\n%s", code, out, errOut)
	}
	got := kc.ConsumeUntil(ctx, t, orig, func(all []*kgo.Record) bool { return len(all) >= 1 })
	if mark, ok := dlq.ReplayMarkOf(got[0]); len(got) != 1 || !ok || mark.From != p0 || string(got[0].Key) != "user-1" {
		t.Errorf("replayed record: %+v", got[0])
	}
	// A record that cannot be replayed fails the command, saying why.
	code, _, errOut = cli(t, "dlq", "replay", brokers, "-topic", topic, "-key", "raw")
	if code != 1 || !strings.Contains(errOut, "skipped "+raw.String()+": not a dead letter") {
		t.Errorf("replay raw: %d %s", code, errOut)
	}

	// purge: without -yes, only what it would do (exit 1); -before a time.
	code, out, errOut = cli(t, "dlq", "purge", brokers, "-topic", topic, "-before", "150m")
	if code != 1 || !strings.Contains(errOut, "would purge 1 record(s)") || !strings.Contains(errOut, "add -yes") ||
		!strings.Contains(out, "PARTITION") {
		t.Errorf("purge without -yes: %d\n%s\n%s", code, out, errOut)
	}
	if code, out, _ := cli(t, "dlq", "list", brokers, "-topic", topic); code != 0 || strings.Count(out, "\n") != 5 {
		t.Fatalf("purge without -yes deleted something:\n%s", out)
	}
	code, _, errOut = cli(t, "dlq", "purge", brokers, "-topic", topic, "-before", "150m", "-yes")
	if code != 0 || !strings.Contains(errOut, "purged 1 record(s)") {
		t.Errorf("purge -before -yes: %d %s", code, errOut)
	}
	code, out, _ = cli(t, "dlq", "list", brokers, "-topic", topic, "-json")
	if code != 0 || strings.Count(out, "\n") != 3 || strings.Contains(out, `"user-1"`) {
		t.Errorf("after purge -before:\n%s", out)
	}
	code, out, _ = cli(t, "dlq", "purge", brokers, "-topic", topic, "-all", "-yes", "-json")
	var pr struct {
		Deleted    int64 `json:"deleted"`
		DryRun     bool  `json:"dry_run"`
		Partitions []struct {
			Partition int32 `json:"partition"`
			Deleted   int64 `json:"deleted"`
		} `json:"partitions"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &pr) != nil || pr.Deleted != 3 || pr.DryRun || len(pr.Partitions) != 2 {
		t.Errorf("purge -all -yes -json: %d %s", code, out)
	}
	code, out, errOut = cli(t, "dlq", "list", brokers, "-topic", topic)
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(errOut, "0 record(s)") {
		t.Errorf("after purge -all:\n%s\n%s", out, errOut)
	}
	_ = p2
}

func sumEnds(t *testing.T, adm *kadm.Client, topic string) int64 {
	t.Helper()
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// dlqTopicWith creates a source topic and its dead-letter topic of one
// partition holding the records build returns for the source (their Topic
// and Partition are set here), and returns both names.
func dlqTopicWith(t *testing.T, kc *testkit.Cluster, build func(source string) []*kgo.Record) (dlqTopic, source string) {
	t.Helper()
	source = kc.NewTopic(t, 1, nil)
	dlqTopic = retry.DLQTopicName(source, "renewals")
	kc.CreateTopic(t, dlqTopic, 1, nil)
	adm := kc.Admin(t)
	t.Cleanup(func() {
		if _, err := adm.DeleteTopic(context.Background(), dlqTopic); err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
			t.Logf("delete %s: %v", dlqTopic, err)
		}
	})
	prod := kc.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for _, r := range build(source) {
		r.Topic, r.Partition = dlqTopic, 0
		if err := prod.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	return dlqTopic, source
}

// deadLetterOf is a record as a whippet consumer of group "renewals"
// dead-letters it from source, dead-lettered ago.
func deadLetterOf(source, key string, ago time.Duration) *kgo.Record {
	at := time.Now().Add(-ago)
	info := retry.Info{Attempt: 3, OriginalTopic: source, OriginalOffset: 5, OriginalTimestamp: at.Add(-time.Minute),
		Group: "renewals", FirstFailure: at.Add(-time.Minute), LastFailure: at, LastError: "declined: " + key, Reason: retry.ReasonExhausted}
	return &kgo.Record{Key: []byte(key), Value: []byte("value of " + key), Timestamp: at, Headers: info.Headers(nil)}
}

// TestDLQListSinceHugeDays: a -since in days beyond what a time.Duration
// holds is refused, naming the flag and the bound. It used to wrap around:
// 213504d is 213504*24h, which overflows int64 nanoseconds to 25m26s, so
// "everything since 585 years ago" listed only the last 25 minutes.
func TestDLQListSinceHugeDays(t *testing.T) {
	kc := testkit.Shared(t)
	topic, _ := dlqTopicWith(t, kc, func(src string) []*kgo.Record {
		return []*kgo.Record{deadLetterOf(src, "old", 3*time.Hour), deadLetterOf(src, "new", 10*time.Minute)}
	})
	brokers := "-brokers=" + strings.Join(kc.Brokers, ",")

	code, out, errOut := cli(t, "dlq", "list", brokers, "-topic", topic, "-json", "-since", "213504d")
	if code != 2 || !strings.Contains(errOut, "-since") || !strings.Contains(errOut, "213504d") || !strings.Contains(errOut, "at most 106751") {
		t.Errorf("list -since 213504d: exit %d, stdout %q, stderr %q; want exit 2 naming -since and the bound", code, out, errOut)
	}
	// The most days a duration holds lists both records.
	code, out, errOut = cli(t, "dlq", "list", brokers, "-topic", topic, "-json", "-since", "106751d")
	if code != 0 || strings.Count(out, "\n") != 2 {
		t.Errorf("list -since 106751d: exit %d, stdout %q, stderr %q; want both records", code, out, errOut)
	}
	// The same on replay -dry-run, which shares the flag.
	code, _, errOut = cli(t, "dlq", "replay", brokers, "-topic", topic, "-dry-run", "-until", "9999999d")
	if code != 2 || !strings.Contains(errOut, "-until") {
		t.Errorf("replay -until 9999999d: exit %d, stderr %q; want exit 2 naming -until", code, errOut)
	}
}

// TestDLQJSONIsTheAdminAPIs: `whippet dlq list|show -json` prints a
// dead-letter record exactly as the admin API (consumer/admin) answers it:
// one JSON view of a record, the same fields and values.
func TestDLQJSONIsTheAdminAPIs(t *testing.T) {
	kc := testkit.Shared(t)
	topic, src := dlqTopicWith(t, kc, func(src string) []*kgo.Record {
		rec := deadLetterOf(src, "user-9", time.Hour)
		rec.Value = []byte{0xde, 0xad, 0xbe, 0xef}
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: "trace-id", Value: []byte("t-9")},
			kgo.RecordHeader{Key: dlq.HeaderReplayedFrom, Value: []byte("x-dlq/0/4")}, kgo.RecordHeader{Key: dlq.HeaderReplayCount, Value: []byte("2")})
		return []*kgo.Record{rec}
	})
	brokers := "-brokers=" + strings.Join(kc.Brokers, ",")

	dc, err := dlq.New(whippet.Connection{Brokers: kc.Brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dc.Close(context.Background()) })
	c, err := consumer.New(whippet.Connection{Brokers: kc.Brokers}, consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil }), consumer.Group("renewals"), consumer.Topics(src))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) }) // never run
	h, err := admin.New(admin.Consumer("renewals", c), admin.DLQ(dc), admin.DLQTopics(topic),
		admin.Authorize(func(*http.Request, admin.Action) (string, error) { return "ops", nil }))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	apiGet := func(path string) []byte {
		t.Helper()
		res, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s %v", path, res.StatusCode, b, err)
		}
		return b
	}
	decode := func(what string, b []byte) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v: %s", what, err, b)
		}
		return m
	}

	code, out, errOut := cli(t, "dlq", "show", brokers, "-topic", topic, "-partition", "0", "-offset", "0", "-json")
	if code != 0 {
		t.Fatalf("show -json: %d %s", code, errOut)
	}
	cliShow := decode("show -json", []byte(out))
	apiShow := decode("GET one record", apiGet("/api/dlq/"+topic+"/0/0"))
	if !reflect.DeepEqual(cliShow, apiShow) {
		t.Errorf("whippet dlq show -json and the admin API differ:\ncli: %v\napi: %v", cliShow, apiShow)
	}

	code, out, errOut = cli(t, "dlq", "list", brokers, "-topic", topic, "-json")
	if code != 0 {
		t.Fatalf("list -json: %d %s", code, errOut)
	}
	cliList := decode("list -json", []byte(out))
	var page struct{ Records []json.RawMessage }
	if err := json.Unmarshal(apiGet("/api/dlq/"+topic), &page); err != nil || len(page.Records) != 1 {
		t.Fatalf("GET the listing: %v, %d records", err, len(page.Records))
	}
	if apiList := decode("listed record", page.Records[0]); !reflect.DeepEqual(cliList, apiList) {
		t.Errorf("whippet dlq list -json and the admin API's listing differ:\ncli: %v\napi: %v", cliList, apiList)
	}
}

// TestDLQReplayKeepsToTheSourceTopic: `whippet dlq replay` sends records
// only to the topic the dead-letter topic belongs to. A record whose
// whippet-original-topic header names another topic is refused, the error
// saying what is wrong, unless -to names the target.
func TestDLQReplayKeepsToTheSourceTopic(t *testing.T) {
	kc := testkit.Shared(t)
	adm := kc.Admin(t)
	victim := kc.NewTopic(t, 1, nil)
	topic, src := dlqTopicWith(t, kc, func(src string) []*kgo.Record {
		return []*kgo.Record{deadLetterOf(src, "good", time.Hour), deadLetterOf(victim, "forged", time.Hour)}
	})
	brokers := "-brokers=" + strings.Join(kc.Brokers, ",")
	forged := topic + "/0/1"

	for _, args := range [][]string{{"-topic", topic}, {"-source", src, "-group", "renewals"}} {
		code, out, errOut := cli(t, append([]string{"dlq", "replay", brokers, "-dry-run"}, args...)...)
		if code != 1 || !strings.Contains(out, "would replay "+topic+"/0/0 to "+src) || strings.Contains(out, victim) ||
			!strings.Contains(errOut, "skipped "+forged+": ") || !strings.Contains(errOut, victim) || !strings.Contains(errOut, "-to") {
			t.Errorf("replay -dry-run %q: exit %d\nstdout: %s\nstderr: %s\nwant the forged record refused, naming %s and -to", args, code, out, errOut, victim)
		}
	}
	code, out, errOut := cli(t, "dlq", "replay", brokers, "-topic", topic)
	if code != 1 || !strings.Contains(out, "replayed "+topic+"/0/0 to "+src+"/0/0") || !strings.Contains(errOut, "skipped "+forged+": ") {
		t.Errorf("replay: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if n := sumEnds(t, adm, victim); n != 0 {
		t.Fatalf("replay produced %d record(s) to %s, the topic a forged header names", n, victim)
	}
	// Named with -to, the target is the operator's choice.
	code, out, errOut = cli(t, "dlq", "replay", brokers, "-topic", topic, "-key", "forged", "-to", victim)
	if code != 0 || !strings.Contains(out, "replayed "+forged+" to "+victim+"/0/0") {
		t.Errorf("replay -to %s: exit %d\nstdout: %s\nstderr: %s", victim, code, out, errOut)
	}
	if n := sumEnds(t, adm, victim); n != 1 {
		t.Errorf("replay -to %s produced %d record(s) there, want 1", victim, n)
	}
}

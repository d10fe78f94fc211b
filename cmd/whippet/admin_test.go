package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/consumer/admin"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

func TestAdminUsage(t *testing.T) {
	t.Setenv("WHIPPET_ADMIN_URL", "")
	u := "-url=http://127.0.0.1:1/whippet" // never contacted: usage errors come first
	for _, tc := range []struct {
		args     []string
		code     int
		inStderr string
	}{
		{[]string{"help"}, 0, "admin"},
		{[]string{"admin"}, 2, "missing command"},
		{[]string{"admin", "-h"}, 0, "usage: whippet admin"},
		{[]string{"admin", "help"}, 0, "usage: whippet admin"},
		{[]string{"admin", "sideways"}, 2, `unknown command "sideways"`},
		{[]string{"admin", "consumers"}, 2, "no admin URL: set -url or WHIPPET_ADMIN_URL"},
		{[]string{"admin", "-url", "ftp://x", "consumers"}, 2, `-url "ftp://x": want an http:// or https:// URL`},
		{[]string{"admin", u, "consumers", "extra"}, 2, "unexpected arguments"},
		{[]string{"admin", u, "skip"}, 2, "skip needs TOPIC/PARTITION"},
		{[]string{"admin", u, "skip", "orders"}, 2, `want TOPIC/PARTITION, like orders/3, got "orders"`},
		{[]string{"admin", u, "skip", "orders/x"}, 2, "want TOPIC/PARTITION"},
		{[]string{"admin", u, "-H", "nocolon", "info"}, 2, "want 'Name: value'"},
		{[]string{"admin", u, "info", "-bogus"}, 2, "flag provided but not defined"},
		{[]string{"admin", u, "dlq"}, 2, "missing dlq command"},
		{[]string{"admin", u, "dlq", "drop"}, 2, `unknown dlq command "drop"`},
		{[]string{"admin", u, "dlq", "show", "-topic", "t"}, 2, "show needs PARTITION/OFFSET"},
		{[]string{"admin", u, "dlq", "show", "-topic", "t", "0-4"}, 2, "want PARTITION/OFFSET"},
		{[]string{"admin", u, "dlq", "replay", "-topic", "t"}, 2, "replay needs exactly one of"},
		{[]string{"admin", u, "dlq", "replay", "-topic", "t", "-all", "-key", "k"}, 2, "replay needs exactly one of"},
		{[]string{"admin", u, "dlq", "replay", "-topic", "t", "-position", "x"}, 2, "want PARTITION/OFFSET"},
		{[]string{"admin", u, "dlq", "purge", "-topic", "t"}, 2, "exactly one of -all and -before"},
		{[]string{"admin", u, "-timeout", "0", "info"}, 2, "-timeout must be positive"},
	} {
		code, _, stderr := cli(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.inStderr) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.code, tc.inStderr)
		}
	}
}

// TestAdminCommands drives every admin command against a service's admin
// handler over a real consumer on Kafka.
func TestAdminCommands(t *testing.T) {
	kc := testkit.Shared(t)
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // runs last: after the consumer, server and clients are closed
	topic := kc.NewTopic(t, 2, nil)
	group := topic + "-svc"
	dlqTopic := retry.DLQTopicName(topic, group)
	var fixed atomic.Bool
	var handled atomic.Int64
	c, err := consumer.New(whippet.Connection{Brokers: kc.Brokers}, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if string(r.Value) == "poison" && !fixed.Load() {
			return errors.New("card declined")
		}
		handled.Add(1)
		return nil
	}), consumer.Group(group), consumer.Topics(topic), consumer.Retry(retry.Blocking(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	t.Cleanup(func() {
		c.Close(context.Background())
		<-errc
		if _, err := kc.Admin(t).DeleteTopic(context.Background(), dlqTopic); err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
			t.Logf("delete %s: %v", dlqTopic, err)
		}
	})
	dc, err := dlq.New(whippet.Connection{Brokers: kc.Brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dc.Close(context.Background()) })
	h, err := admin.New(admin.Consumer("renewals", c), admin.DLQ(dc), admin.Title("renewal-service"),
		admin.Authorize(func(r *http.Request, a admin.Action) (string, error) {
			if r.Header.Get("Authorization") == "Bearer s3cret" {
				return "alice", nil
			}
			if a.Name == admin.ActionView {
				return "", nil
			}
			return "", errors.New("bad token")
		}))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/whippet/", http.StripPrefix("/whippet", h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	u := "-url=" + srv.URL + "/whippet"
	t.Setenv("WHIPPET_ADMIN_TOKEN", "")

	prod := kc.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for _, r := range []*kgo.Record{
		{Topic: topic, Partition: 0, Key: []byte("user-1"), Value: []byte("renew")},
		{Topic: topic, Partition: 0, Key: []byte("user-7"), Value: []byte("poison")},
		{Topic: topic, Partition: 1, Key: []byte("user-3"), Value: []byte("renew")},
	} {
		if err := prod.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	ok := func(args ...string) (stdout, stderr string) {
		t.Helper()
		code, stdout, stderr := cli(t, append([]string{"admin", u}, args...)...)
		if code != 0 {
			t.Fatalf("whippet admin %q: exit %d\nstdout: %s\nstderr: %s", args, code, stdout, stderr)
		}
		return stdout, stderr
	}

	testkit.Eventually(t, 30*time.Second, func() error {
		if _, stdout, _ := cli(t, "admin", u, "-token", "s3cret", "blocked"); !strings.Contains(stdout, "user-7") {
			return fmt.Errorf("blocked: %q", stdout)
		}
		return nil
	})
	stdout, _ := ok("-token", "s3cret", "blocked")
	for _, want := range []string{"CONSUMER", "renewals", topic + "/0", "user-7", "card declined"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("blocked lacks %q:\n%s", want, stdout)
		}
	}
	// Without the token, the hook refuses view-payloads: no key, no error.
	stdout, _ = ok("blocked")
	if !strings.Contains(stdout, topic+"/0") || strings.Contains(stdout, "user-7") || strings.Contains(stdout, "card declined") ||
		!strings.Contains(stdout, "hidden: needs the view-payloads permission") {
		t.Errorf("blocked without the token shows the payload:\n%s", stdout)
	}
	stdout, stderr := ok("consumers")
	if !strings.Contains(stdout, topic+"/0  blocked at 1") || !strings.Contains(stdout, topic+"/1  running") ||
		!strings.Contains(stderr, "renewals: 2 partition(s)") || !strings.Contains(stderr, "1 blocked") {
		t.Errorf("consumers:\n%s%s", stdout, stderr)
	}
	stdout, _ = ok("info")
	if !strings.Contains(stdout, "renewal-service") || !strings.Contains(stdout, "(unnamed)") || !strings.Contains(stdout, "payloads") {
		t.Errorf("info without a token:\n%s", stdout)
	}

	// Actions: refused without the token, done with it.
	code, _, stderr := cli(t, "admin", u, "skip", topic+"/0")
	if code != 1 || !strings.Contains(stderr, "403 Forbidden: forbidden: bad token") {
		t.Fatalf("skip without a token: %d %q", code, stderr)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := cli(t, "admin", u, "-token-file", empty, "skip", topic+"/0"); code != 2 || !strings.Contains(stderr, "-token-file "+empty+": the first line is empty") {
		t.Fatalf("skip with an empty token file: %d %q", code, stderr)
	}
	auth := []string{"-token-file", tokenFile} // -token is used below
	stdout, _ = ok(append(auth, "skip", topic+"/0")...)
	if !strings.Contains(stdout, "skipped "+topic+"/0 at offset(s) [1]") || !strings.Contains(stdout, "as alice") {
		t.Errorf("skip: %q", stdout)
	}
	code, _, stderr = cli(t, "admin", u, "-token", "s3cret", "skip", topic+"/1")
	if code != 1 || !strings.Contains(stderr, "409 Conflict") || !strings.Contains(stderr, "is not blocked") {
		t.Errorf("skip of a flowing partition: %d %q", code, stderr)
	}
	ok(append(auth, "skip-all", topic+"/0")...)
	if stdout, _ = ok("consumers"); !strings.Contains(stdout, "skip-all") {
		t.Errorf("consumers after skip-all:\n%s", stdout)
	}
	ok(append(auth, "block", topic+"/0")...)
	ok("pause", topic+"/1", "-H", "Authorization: Bearer s3cret") // flags after the argument, header by -H
	if stdout, _ = ok("consumers"); !strings.Contains(stdout, topic+"/1  paused") {
		t.Errorf("consumers after pause:\n%s", stdout)
	}
	ok(append(auth, "resume", topic+"/1")...)
	stdout, _ = ok(append(auth, "pause")...) // the whole consumer
	if !strings.Contains(stdout, "paused every partition") {
		t.Errorf("pause consumer: %q", stdout)
	}
	ok(append(auth, "resume")...)
	stdout, _ = ok("actions")
	for _, want := range []string{"alice", "skip-all", "resume-consumer", "failed: " + topic + "/1 is not blocked"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("actions lack %q:\n%s", want, stdout)
		}
	}

	// Dead letters through the API.
	testkit.Eventually(t, 30*time.Second, func() error {
		if _, stdout, _ := cli(t, "admin", u, "-token", "s3cret", "dlq", "list"); !strings.Contains(stdout, "user-7") {
			return fmt.Errorf("dlq list: %q", stdout)
		}
		return nil
	})
	stdout, _ = ok("dlq", "topics")
	if !strings.Contains(stdout, dlqTopic) || !strings.Contains(stdout, "renewals") {
		t.Errorf("dlq topics:\n%s", stdout)
	}
	if code, _, stderr := cli(t, "admin", u, "dlq", "list", "-key", "user-7"); code != 1 || !strings.Contains(stderr, "403 Forbidden") ||
		!strings.Contains(stderr, "view-payloads") {
		t.Errorf("dlq list -key without the token: %d %q", code, stderr)
	}
	stdout, _ = ok(append(auth, "dlq", "list", "-json", "-key", "user-7")...)
	var page admin.DLQPage
	if err := json.Unmarshal([]byte(stdout), &page); err != nil || len(page.Records) != 1 {
		t.Fatalf("dlq list -json -key user-7: %v\n%s", err, stdout)
	}
	rec := page.Records[0]
	at := fmt.Sprintf("%d/%d", rec.Partition, rec.Offset)
	stdout, _ = ok(append(auth, "dlq", "show", "-topic", dlqTopic, at)...)
	for _, want := range []string{"reason         skipped", "card declined", "value (6 bytes, text):\npoison"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("dlq show lacks %q:\n%s", want, stdout)
		}
	}
	stdout, _ = ok("dlq", "show", "-topic", dlqTopic, at)
	if !strings.Contains(stdout, "reason         skipped") || strings.Contains(stdout, "card declined") || strings.Contains(stdout, "poison") ||
		!strings.Contains(stdout, "value (6 bytes): (hidden") {
		t.Errorf("dlq show without the token shows the payload:\n%s", stdout)
	}
	fixed.Store(true)
	before := handled.Load()
	_, stderr = ok(append(auth, "dlq", "replay", "-all", "-dry-run")...)
	if !strings.Contains(stderr, "dry run: would replay 1 record(s)") {
		t.Errorf("replay dry run: %q", stderr)
	}
	elsewhere := kc.NewTopic(t, 1, nil)
	stdout, _ = ok(append(auth, "dlq", "replay", "-all", "-dry-run", "-to", elsewhere)...)
	if !strings.Contains(stdout, "would replay "+rec.Position+" to "+elsewhere) {
		t.Errorf("replay -to dry run: %q", stdout)
	}
	stdout, _ = ok(append(auth, "dlq", "replay", "-position", at)...)
	if !strings.Contains(stdout, "replayed "+rec.Position+" to "+topic+"/") {
		t.Errorf("replay: %q", stdout)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if handled.Load() != before+1 {
			return fmt.Errorf("%d handled since the replay", handled.Load()-before)
		}
		return nil
	})
	code, _, stderr = cli(t, "admin", u, "-token", "s3cret", "dlq", "purge", "-all")
	if code != 1 || !strings.Contains(stderr, "would purge 1 record(s)") {
		t.Errorf("purge without -yes: %d %q", code, stderr)
	}
	_, stderr = ok(append(auth, "dlq", "purge", "-all", "-yes")...)
	if !strings.Contains(stderr, "purged 1 record(s) from "+dlqTopic+" (all)") {
		t.Errorf("purge: %q", stderr)
	}
	code, _, stderr = cli(t, "admin", "-url", srv.URL+"/nowhere", "info")
	if code != 1 || !strings.Contains(stderr, "not the admin API's JSON") {
		t.Errorf("a wrong -url: %d %q", code, stderr)
	}
}

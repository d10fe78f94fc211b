package admin_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/consumer/admin"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// raw GETs path and returns the status and the body as it came.
func (c client) raw(path string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest("GET", c.srv.URL+"/whippet"+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.user != "" {
		req.Header.Set("X-User", c.user)
	}
	res, err := c.srv.Client().Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// TestPayloadsArePermission: who may read the dashboard may not, for that
// alone, read the dead letters' and blocked records' keys, values, header
// values and error texts (often personal data): that is a permission of its
// own ("view-payloads"), refused without an Authorize hook. Filtering by
// key or error text, which would tell the hidden values apart, needs it too.
func TestPayloadsArePermission(t *testing.T) {
	kc := testkit.Shared(t)
	leakCheck(t)
	a := startApp(t, kc, 1)
	var mu sync.Mutex
	var seen []string // the action names the hook was asked about
	h, err := admin.New(admin.Consumer("renewals", a.c), admin.DLQ(a.dlq),
		admin.Authorize(func(r *http.Request, act admin.Action) (string, error) {
			who := r.Header.Get("X-User")
			mu.Lock()
			seen = append(seen, act.Name)
			mu.Unlock()
			switch {
			case who == "alice":
				return who, nil
			case who == "bob" && act.Name != "view-payloads" && act.Name != admin.ActionReplay && act.Name != admin.ActionPurge:
				return who, nil // bob views, and may do dry runs
			case act.Name == admin.ActionView:
				return "", nil
			}
			return "", errors.New("not you")
		}))
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, h)
	alice, bob := client{t: t, srv: srv, user: "alice"}, client{t: t, srv: srv, user: "bob"}
	ro, err := admin.New(admin.Consumer("renewals", a.c), admin.DLQ(a.dlq))
	if err != nil {
		t.Fatal(err)
	}
	anyone := client{t: t, srv: serve(t, ro)}

	// user-7 is dead-lettered (skipped), user-8 blocks the partition.
	a.produce(t, 0, "user-7", "poison", "user-8", "poison")
	blockedOn(t, alice, "renewals", 0)
	alice.must("POST", "/api/consumers/renewals/partitions/"+a.topic+"/0/skip", nil, nil)
	dead := dlqRecords(t, alice, a.dlqTopic, "", 1)[0]
	if *dead.Key != "user-7" || *dead.Value != "poison" || dead.Error != "renewal failed: card declined" {
		t.Fatalf("alice's view of the dead letter: %+v", dead)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if b := blockedOn(t, alice, "renewals", 0); b.Offset != 1 {
			return fmt.Errorf("blocked %+v, want offset 1", b)
		}
		return nil
	})

	secrets := []string{"user-7", "user-8", "poison", "card declined"}
	one := fmt.Sprintf("/api/dlq/%s/%d/%d", a.dlqTopic, dead.Partition, dead.Offset)
	for _, c := range []client{anyone, bob} {
		for _, path := range []string{"/api/consumers", "/api/consumers/renewals", "/api/consumers/renewals/partitions",
			"/api/consumers/renewals/blocked", "/api/dlq/" + a.dlqTopic, one} {
			code, body := c.raw(path)
			if code != http.StatusOK {
				t.Errorf("%s: GET %s: %d %s", c.user, path, code, body)
				continue
			}
			for _, s := range secrets {
				if strings.Contains(body, s) {
					t.Errorf("%q: GET %s shows %q without the view-payloads permission:\n%s", c.user, path, s, body)
				}
			}
			if path == one && !strings.Contains(body, `"position": "`+dead.Position+`"`) {
				t.Errorf("%q: GET %s hides more than the payload:\n%s", c.user, path, body)
			}
		}
		for _, q := range []string{"?key=user-7", "?error=card"} {
			if code, body := c.raw("/api/dlq/" + a.dlqTopic + q); code != http.StatusForbidden || !strings.Contains(body, "view-payloads") {
				t.Errorf("%q: GET %s: %d %s; want 403 naming view-payloads", c.user, q, code, body)
			}
		}
	}
	if b := blockedOn(t, alice, "renewals", 0); *b.Key != "user-8" || !strings.Contains(b.Error, "card declined") {
		t.Errorf("alice's view of the blocked record: %+v", b)
	}

	// The hook tells a dry run from the real thing: bob may preview, not act.
	var res admin.ReplayResponse
	if code, e := bob.do("POST", "/api/dlq/"+a.dlqTopic+"/replay", admin.ReplayRequest{All: true, DryRun: true}, &res); code != http.StatusOK || len(res.Replayed) != 1 {
		t.Errorf("bob's replay dry run: %d %+v %+v", code, e, res)
	}
	if code, e := bob.do("POST", "/api/dlq/"+a.dlqTopic+"/replay", admin.ReplayRequest{All: true}, nil); code != http.StatusForbidden {
		t.Errorf("bob's replay: %d %+v, want 403", code, e)
	}
	var pr admin.PurgeResponse
	if code, e := bob.do("POST", "/api/dlq/"+a.dlqTopic+"/purge", admin.PurgeRequest{All: true, DryRun: true}, &pr); code != http.StatusOK || pr.Deleted != 1 || !pr.DryRun {
		t.Errorf("bob's purge dry run: %d %+v %+v", code, e, pr)
	}
	if code, e := bob.do("POST", "/api/dlq/"+a.dlqTopic+"/purge", admin.PurgeRequest{All: true}, nil); code != http.StatusForbidden {
		t.Errorf("bob's purge: %d %+v, want 403", code, e)
	}
	dlqRecords(t, alice, a.dlqTopic, "", 1) // nothing purged
	mu.Lock()
	defer mu.Unlock()
	for _, name := range []string{admin.ActionReplay, admin.ActionPurge} {
		if !slices.Contains(seen, name) || !slices.Contains(seen, name+"-dry-run") {
			t.Errorf("the hook was asked about %q, want both %q and %q", seen, name, name+"-dry-run")
		}
	}
}

// TestReplayAllKeepsToTheSourceTopic: a producer of the consumed topic sets a
// whippet-original-topic header naming another topic; the consumer fails the
// record and dead-letters it with that header. "Replay all" must not send it
// there: the dead-letter topic holds the dead letters of its source topic,
// and a replay elsewhere needs the operator to name the target ("to").
func TestReplayAllKeepsToTheSourceTopic(t *testing.T) {
	kc := testkit.Shared(t)
	leakCheck(t)
	topic := kc.NewTopic(t, 1, nil)
	victim := kc.NewTopic(t, 1, nil)
	group := topic + "-svc"
	dlqTopic := retry.DLQTopicName(topic, group)
	c, err := consumer.New(whippet.Connection{Brokers: kc.Brokers}, consumer.HandlerFunc(func(context.Context, *kgo.Record) error {
		return retry.NonRetriable(errors.New("rejected"))
	}), consumer.Group(group), consumer.Topics(topic))
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
		if _, err := kc.Admin(t).DeleteTopic(context.Background(), dlqTopic); err != nil {
			t.Logf("delete %s: %v", dlqTopic, err)
		}
	})
	dc, err := dlq.New(whippet.Connection{Brokers: kc.Brokers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dc.Close(context.Background()) })
	var mu sync.Mutex
	var asked []admin.Action
	h, err := admin.New(admin.Consumer("svc", c), admin.DLQ(dc),
		admin.Authorize(func(_ *http.Request, act admin.Action) (string, error) {
			mu.Lock()
			asked = append(asked, act)
			mu.Unlock()
			return "alice", nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	alice := client{t: t, srv: serve(t, h), user: "alice"}

	// A real dead letter, then a forged one: written straight to the
	// dead-letter topic by whoever can, with the real one's headers but
	// another original topic. (The consumer itself never takes an origin from
	// a record's headers: TestFirstAttemptIgnoresRetryHeadersItCarries.)
	prod := kc.Client(t)
	if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Key: []byte("good"), Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	real := kc.ConsumeUntil(ctx, t, dlqTopic, func(all []*kgo.Record) bool { return len(all) == 1 })[0]
	headers := make([]kgo.RecordHeader, 0, len(real.Headers))
	for _, h := range real.Headers {
		if h.Key == retry.HeaderOriginalTopic {
			h.Value = []byte(victim)
		}
		headers = append(headers, h)
	}
	forgedRec := &kgo.Record{Topic: dlqTopic, Key: []byte("forged"), Value: []byte("evil"), Headers: headers}
	if err := prod.ProduceSync(context.Background(), forgedRec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, func() error { // the consumer creates the topic as it starts
		var topics []admin.DLQTopicView
		alice.must("GET", "/api/dlq", nil, &topics)
		if len(topics) != 1 || topics[0].Records != 2 {
			return fmt.Errorf("dead-letter topics %+v, want 2 records", topics)
		}
		return nil
	})
	recs := dlqRecords(t, alice, dlqTopic, "", 2)
	forged := recs[1]
	if *forged.Key != "forged" || forged.OriginalTopic != victim {
		t.Fatalf("dead letters %+v, want the second to name %s as its original topic", recs, victim)
	}

	var res admin.ReplayResponse
	alice.must("POST", "/api/dlq/"+dlqTopic+"/replay", admin.ReplayRequest{All: true}, &res)
	victimRecords := func() int64 {
		ends, err := kadm.NewClient(prod).ListEndOffsets(context.Background(), victim)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		return n
	}
	if n := victimRecords(); n != 0 {
		t.Errorf("replay all produced %d record(s) to %s, the topic a forged header names; answered %+v", n, victim, res)
	}
	if len(res.Replayed) != 1 || res.Replayed[0].From != recs[0].Position || !strings.HasPrefix(res.Replayed[0].To, topic+"/") ||
		len(res.Skipped) != 1 || res.Skipped[0].From != forged.Position || !strings.Contains(res.Skipped[0].Reason, victim) {
		t.Errorf("replay all answered %+v; want %s replayed to %s and %s skipped, naming %s", res, recs[0].Position, topic, forged.Position, victim)
	}

	// Named by the operator, the target is allowed, and the hook sees it.
	body := map[string]any{"positions": []map[string]any{{"partition": forged.Partition, "offset": forged.Offset}}, "to": victim}
	if code, e := alice.do("POST", "/api/dlq/"+dlqTopic+"/replay", body, &res); code != http.StatusOK ||
		len(res.Replayed) != 1 || !strings.HasPrefix(res.Replayed[0].To, victim+"/") {
		t.Fatalf("replay to %s: %d %+v %+v", victim, code, e, res)
	}
	if n := victimRecords(); n != 1 {
		t.Errorf("replay to %s produced %d record(s) there, want 1", victim, n)
	}
	mu.Lock()
	defer mu.Unlock()
	if last := asked[len(asked)-1]; !strings.Contains(fmt.Sprintf("%+v", last), victim) {
		t.Errorf("the hook was asked %+v, which does not name the target %s", last, victim)
	}
}

package admin_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/whippet-go/whippet/consumer/admin"
	"github.com/whippet-go/whippet/testkit"
)

// TestSeek drives the seek routes against a real consumer on Kafka: a
// partition blocked by a record is moved past it (the record is let go, not
// dead-lettered), then every partition of the topic is moved to a time, as an
// operator named alice; the hook sees where, the action is logged, and bad
// requests are answered 400, 403 or 404.
func TestSeek(t *testing.T) {
	kc := testkit.Shared(t)
	leakCheck(t)
	a := startApp(t, kc, 2)
	core, logs := observer.New(zapcore.InfoLevel)
	var (
		mu   sync.Mutex
		seen []admin.Action
	)
	h, err := admin.New(admin.Consumer("renewals", a.c), admin.Logger(zap.New(core)),
		admin.Authorize(func(r *http.Request, act admin.Action) (string, error) {
			if act.Name == admin.ActionSeek {
				mu.Lock()
				seen = append(seen, act)
				mu.Unlock()
			}
			return headerAuth(r, act)
		}))
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, h)
	alice := client{t: t, srv: srv, user: "alice"}
	nobody := client{t: t, srv: srv}
	start := time.Now()
	a.produce(t, 0, "user-1", "renew", "user-7", "poison", "user-2", "renew", "user-4", "renew")
	a.produce(t, 1, "user-3", "renew")
	if b := blockedOn(t, alice, "renewals", 0); b.Offset != 1 {
		t.Fatalf("blocked %+v, want offset 1", b)
	}
	part0 := "/api/consumers/renewals/partitions/" + a.topic + "/0/seek"
	whole := "/api/consumers/renewals/topics/" + a.topic + "/seek"

	for _, tc := range []struct {
		who   client
		path  string
		body  any
		code  int
		param string
		in    string
	}{
		{alice, part0, map[string]any{}, 400, "body", `exactly one of "offset", "time" and "end", got 0`},
		{alice, part0, map[string]any{"offset": 2, "end": true}, 400, "body", "got 2"},
		{alice, part0, map[string]any{"offset": -1}, 400, "offset", "must be >= 0"},
		{alice, part0, map[string]any{"time": "soon"}, 400, "time", "neither an RFC 3339 time"},
		{alice, part0, map[string]any{"to": 3}, 400, "body", "unknown field"},
		{alice, "/api/consumers/renewals/partitions/" + a.topic + "/x/seek", map[string]any{"end": true}, 400, "partition", "must be a partition number"},
		{alice, "/api/consumers/renewals/partitions/" + a.topic + "/7/seek", map[string]any{"end": true}, 404, "", a.topic + "/7 is not assigned to consumer"},
		{alice, "/api/consumers/renewals/topics/other/seek", map[string]any{"end": true}, 404, "", `does not consume topic "other"`},
		{nobody, part0, map[string]any{"end": true}, 403, "", "name yourself in X-User"},
	} {
		code, e := tc.who.do("POST", tc.path, tc.body, nil)
		if code != tc.code || e.Param != tc.param || !strings.Contains(e.Error, tc.in) {
			t.Errorf("POST %s %v: %d %+v; want %d, param %q, error containing %q", tc.path, tc.body, code, e, tc.code, tc.param, tc.in)
		}
	}
	if got := logged(logs, "admin action refused", admin.ActionSeek); len(got) != 1 {
		t.Fatalf("refusals logged: %+v", got)
	}

	var rec admin.ActionRecord
	alice.must("POST", part0, map[string]any{"offset": 2}, &rec)
	if rec.Who != "alice" || rec.Action != admin.ActionSeek || rec.Topic != a.topic || rec.Partition != 0 || !rec.Assigned ||
		!slices.EqualFunc(rec.Seeked, []admin.SeekedPartition{{Partition: 0, From: 1, To: 2, Abandoned: []int64{1}}}, seekedEqual) ||
		!strings.Contains(rec.Detail, "/0 from 1 to 2") || !strings.Contains(rec.Detail, "not dead-lettered") {
		t.Fatalf("seek past the blocked record answered %+v", rec)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := a.handledValues(0); !slices.Equal(got, []string{"renew", "renew", "renew"}) {
			return fmt.Errorf("partition 0 handled %v", got)
		}
		return nil
	})
	if v := partitionView(t, alice, "renewals", a.topic, 0); len(v.Blocked) != 0 {
		t.Fatalf("still blocked after the seek: %+v", v)
	}

	a.fixed.Store(true)
	n0, n1 := len(a.handledValues(0)), len(a.handledValues(1))
	alice.must("POST", whole, map[string]any{"time": start.Add(-time.Minute).Format(time.RFC3339Nano)}, &rec)
	if rec.Partition != -1 || len(rec.Seeked) != 2 || rec.Seeked[0].To != 0 || rec.Seeked[1].To != 0 || rec.Seeked[0].From != 4 || rec.Seeked[1].From != 1 {
		t.Fatalf("seek of the topic answered %+v", rec)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := a.handledValues(0)[n0:]; !slices.Equal(got, []string{"renew", "poison", "renew", "renew"}) {
			return fmt.Errorf("partition 0 handled %v again", got)
		}
		if got := a.handledValues(1)[n1:]; !slices.Equal(got, []string{"renew"}) {
			return fmt.Errorf("partition 1 handled %v again", got)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(seen) < 3 || seen[len(seen)-2].SeekTo != "offset 2" || seen[len(seen)-2].Partition != 0 ||
		!strings.HasPrefix(seen[len(seen)-1].SeekTo, "time ") || seen[len(seen)-1].Partition != -1 {
		t.Fatalf("the hook saw %+v", seen)
	}
	if got := logged(logs, "admin action", admin.ActionSeek); len(got) != 2 {
		t.Fatalf("seeks logged: %+v", got)
	}
	var log []admin.ActionRecord
	alice.must("GET", "/api/actions", nil, &log)
	if len(log) == 0 || log[0].Action != admin.ActionSeek || len(log[0].Seeked) != 2 {
		t.Fatalf("action log %+v", log)
	}
}

func seekedEqual(a, b admin.SeekedPartition) bool {
	return a.Partition == b.Partition && a.From == b.From && a.To == b.To && slices.Equal(a.Abandoned, b.Abandoned)
}

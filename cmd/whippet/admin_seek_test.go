package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/consumer/admin"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// TestAdminSeek moves a running consumer's blocked partition past its
// blocking record, then every partition of the topic back an hour, with
// `whippet admin seek`; usage errors come before any request.
func TestAdminSeek(t *testing.T) {
	u := "-url=http://127.0.0.1:1/whippet" // never contacted
	for _, tc := range []struct {
		args []string
		in   string
	}{
		{[]string{"seek"}, "seek needs TOPIC/PARTITION or TOPIC/all"},
		{[]string{"seek", "orders"}, `want TOPIC/PARTITION or TOPIC/all, like orders/3, got "orders"`},
		{[]string{"seek", "orders/x", "-end"}, `got "orders/x"`},
		{[]string{"seek", "orders/1"}, "exactly one of -offset, -time and -end"},
		{[]string{"seek", "orders/1", "-offset", "3", "-end"}, "exactly one of -offset, -time and -end"},
		{[]string{"seek", "orders/1", "-offset", "-3"}, "-offset must be >= 0"},
	} {
		code, _, stderr := cli(t, append([]string{"admin", u}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.in) {
			t.Errorf("whippet admin %q = %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.in)
		}
	}

	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 2, nil)
	var (
		fixed atomic.Bool
		mu    sync.Mutex
		seen  = map[int32][]int64{}
	)
	c, err := consumer.New(whippet.Connection{Brokers: kc.Brokers}, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		if string(r.Value) == "poison" && !fixed.Load() {
			return errors.New("card declined")
		}
		mu.Lock()
		seen[r.Partition] = append(seen[r.Partition], r.Offset)
		mu.Unlock()
		return nil
	}), consumer.Group(topic+"-svc"), consumer.Topics(topic), consumer.Retry(retry.Blocking(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Run(context.Background()) }()
	t.Cleanup(func() { c.Close(context.Background()); <-errc })
	h, err := admin.New(admin.Consumer("renewals", c),
		admin.Authorize(func(r *http.Request, a admin.Action) (string, error) { return "alice", nil }))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/whippet/", http.StripPrefix("/whippet", h))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	u = "-url=" + srv.URL + "/whippet"
	prod := kc.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i, v := range []string{"renew", "renew", "poison", "renew", "renew"} {
		if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Partition: 0, Key: fmt.Appendf(nil, "user-%d", i), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Partition: 1, Value: []byte("renew")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	handled := func(p int32) []int64 {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen[p])
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if b := c.Blocked(); len(b) != 1 || b[0].Offset != 2 || len(handled(1)) != 1 {
			return fmt.Errorf("blocked %+v, partition 1 handled %v", b, handled(1))
		}
		return nil
	})

	code, stdout, stderr := cli(t, "admin", u, "seek", topic+"/0", "-offset", "4")
	if code != 0 || !strings.Contains(stdout, topic+"/0 from 2 to 4") || !strings.Contains(stdout, "not dead-lettered") || !strings.Contains(stdout, "as alice") {
		t.Fatalf("seek past the blocked record: %d\n%s%s", code, stdout, stderr)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := handled(0); !slices.Equal(got, []int64{0, 1, 4}) {
			return fmt.Errorf("partition 0 handled %v, want 0 1 4", got)
		}
		return nil
	})

	fixed.Store(true)
	code, stdout, stderr = cli(t, "admin", u, "-json", "seek", topic+"/all", "-time", "1h")
	var rec admin.ActionRecord
	if code != 0 || json.Unmarshal([]byte(stdout), &rec) != nil || len(rec.Seeked) != 2 || rec.Seeked[0].To != 0 || rec.Seeked[1].To != 0 {
		t.Fatalf("seek of the whole topic an hour back: %d\n%s%s", code, stdout, stderr)
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := handled(0); !slices.Equal(got, []int64{0, 1, 4, 0, 1, 2, 3, 4}) {
			return fmt.Errorf("partition 0 handled %v", got)
		}
		if got := handled(1); !slices.Equal(got, []int64{0, 0}) {
			return fmt.Errorf("partition 1 handled %v", got)
		}
		return nil
	})
	if code, _, stderr := cli(t, "admin", u, "seek", topic+"/5", "-end"); code != 1 || !strings.Contains(stderr, "404 Not Found") || !strings.Contains(stderr, topic+"/5 is not assigned") {
		t.Errorf("seek of a partition not assigned: %d %q", code, stderr)
	}
}

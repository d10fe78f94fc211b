package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/whippet-go/whippet/consumer/admin"
)

// lines collects what the program prints.
type lines struct {
	mu  sync.Mutex
	all []string
}

func (l *lines) add(s string) {
	l.mu.Lock()
	l.all = append(l.all, s)
	l.mu.Unlock()
}

// since returns the lines printed after the first n, and how many there are.
func (l *lines) since(n int) ([]string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.all[n:]...), len(l.all)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func call(t *testing.T, method, url string, body, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s %s", method, url, res.Status, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, data)
		}
	}
}

// TestServeDashboard runs the demo as `go run ./examples/renewals -serve`
// does, on its embedded kfake cluster, and does what its instructions say
// through the admin API the page uses: skip the blocked request, replay the
// dead letter, seek a partition back to offset 0; each shows in what the
// program prints.
func TestServeDashboard(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	t.Cleanup(func() { os.Stdout = stdout })
	var out lines
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			out.add(sc.Text())
		}
	}()

	ctx, stop := context.WithCancel(context.Background())
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- scenario(ctx, "", "127.0.0.1:0", func(url string) { urls <- url }) }()
	var base string
	select {
	case base = <-urls:
	case err := <-done:
		t.Fatalf("the demo ended before serving: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the dashboard was never served")
	}
	api := base + "api/"

	// The blocked partition: skip it.
	var c admin.ConsumerView
	call(t, "GET", api+"consumers/renewals", nil, &c)
	var held admin.PartitionView
	for _, p := range c.Partitions {
		if len(p.Blocked) == 1 && p.Blocked[0].Key != nil && *p.Blocked[0].Key == "user-10" {
			held = p
		}
	}
	if held.Topic == "" {
		t.Fatalf("no partition blocked by user-10: %+v", c.Partitions)
	}
	_, n := out.since(0)
	call(t, "POST", fmt.Sprintf("%sconsumers/renewals/partitions/%s/%d/skip", api, held.Topic, held.Partition), nil, nil)
	eventually(t, "the partition to flow after the skip", func() bool {
		call(t, "GET", api+"consumers/renewals", nil, &c)
		for _, p := range c.Partitions {
			if p.Partition == held.Partition && (len(p.Blocked) > 0 || p.Lag > 0) {
				return false
			}
		}
		return true
	})

	// The dead letters: replay user-07's; it is renewed.
	var dlqs []admin.DLQTopicView
	call(t, "GET", api+"dlq", nil, &dlqs)
	if len(dlqs) != 1 || dlqs[0].Records != 2 { // user-07's, then user-10's just skipped
		t.Fatalf("dead-letter topics %+v, want one with 2 records", dlqs)
	}
	var replayed admin.ReplayResponse
	user07 := "user-07"
	call(t, "POST", api+"dlq/"+dlqs[0].Topic+"/replay", admin.ReplayRequest{Filter: &admin.ReplayFilter{Key: &user07}}, &replayed)
	if len(replayed.Replayed) != 1 {
		t.Fatalf("replay answered %+v", replayed)
	}
	eventually(t, "user-07's replayed request to be renewed", func() bool {
		got, _ := out.since(n)
		return strings.Contains(strings.Join(got, "\n"), "renewed user-07 #2")
	})

	// Seek the blocked partition back to its start: its requests are
	// renewed again.
	_, n = out.since(0)
	var rec admin.ActionRecord
	call(t, "POST", fmt.Sprintf("%sconsumers/renewals/partitions/%s/%d/seek", api, held.Topic, held.Partition), admin.SeekRequest{Offset: new(int64)}, &rec)
	if len(rec.Seeked) != 1 || rec.Seeked[0].To != 0 {
		t.Fatalf("seek answered %+v", rec)
	}
	eventually(t, "the partition's requests to be renewed again", func() bool {
		got, _ := out.since(n)
		again := 0
		for _, l := range got {
			if strings.HasSuffix(l, fmt.Sprintf("(%s[%d] offset 0)", held.Topic, held.Partition)) {
				again++
			}
		}
		return again == 1
	})

	stop()
	if err := <-done; err != nil {
		t.Fatalf("the demo: %v", err)
	}
	w.Close()
	<-read
}

//go:build linux

package wal

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/whippet-go/whippet/internal/tmpfstest"
)

// TestDiskFull fills a real disk (a 1 MiB tmpfs, no MaxBytes): appends
// running into it fail with an error naming the cause (ErrBroken, ENOSPC),
// every later append fails too, and on reopening the log holds exactly the
// records whose append succeeded: nothing acknowledged is missing, and
// nothing whose append failed comes back (the caller was told it failed).
func TestDiskFull(t *testing.T) {
	tmpfstest.Run(t, 1<<20, func(t *testing.T, dir string) {
		l, _, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		acked, failed := map[string]bool{}, map[string]error{}
		payload := func(g, i int) string { return fmt.Sprintf("%d-%d-%s", g, i, strings.Repeat("x", 1000)) }
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := 0; ; i++ {
					p := payload(g, i)
					_, err := l.Append([]byte(p))
					mu.Lock()
					if err != nil {
						failed[p] = err
					} else {
						acked[p] = true
					}
					mu.Unlock()
					if err != nil {
						return
					}
				}
			})
		}
		wg.Wait()
		var first error
		for _, err := range failed {
			if !errors.Is(err, ErrBroken) || !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("append on a full disk: %v; want ErrBroken and ENOSPC", err)
			}
			first = err
		}
		t.Logf("%d appends acknowledged, %d failed: %v", len(acked), len(failed), first)
		if _, err := l.Append([]byte("later")); !errors.Is(err, ErrBroken) {
			t.Errorf("append after the failure: %v, want ErrBroken", err)
		}
		if err := l.Close(); !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("Close: %v, want the error that broke the log", err)
		}

		l, rec, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		t.Logf("reopened: %+v", rec)
		found := map[string]bool{}
		for _, e := range readAll(t, l, 1) {
			found[string(e.Payload)] = true
			if failed[string(e.Payload)] != nil {
				t.Errorf("record %d: its append failed (%v), yet it is in the log", e.Seq, failed[string(e.Payload)])
			}
		}
		for p := range acked {
			if !found[p] {
				t.Errorf("acknowledged record %.8s… is not in the log", p)
			}
		}
		if len(found) != len(acked) {
			t.Errorf("reopened log holds %d records, %d were acknowledged", len(found), len(acked))
		}
	})
}

// TestDiskFullBatchLeavesNothing: a batch of appends that the disk can only
// partly take (the first records fit, the rest do not) fails as a whole,
// and none of its records is in the log when it is reopened: the file is
// cut back to its last durable frame. (The batch is handed to the writer
// directly so that it is one batch for certain; concurrent appends batch
// as they come.)
func TestDiskFullBatchLeavesNothing(t *testing.T) {
	tmpfstest.Run(t, 256<<10, func(t *testing.T, dir string) {
		l, _, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		payload := []byte(strings.Repeat("x", 1000))
		acked := 0
		for {
			var st syscall.Statfs_t
			if err := syscall.Statfs(dir, &st); err != nil {
				t.Fatal(err)
			}
			if free := int64(st.Bavail) * st.Bsize; free <= 8192 {
				t.Logf("%d records appended, %d bytes free", acked, free)
				break
			}
			if _, err := l.Append(payload); err != nil {
				t.Fatalf("append %d with room left: %v", acked+1, err)
			}
			acked++
		}
		// 16 frames of 1,016 bytes: about half fit.
		batch := make([]*request, 16)
		for i := range batch {
			batch[i] = &request{payload: []byte(fmt.Sprintf("batch-%02d-%s", i, payload)), ready: make(chan struct{})}
		}
		l.queued.Add(int64(len(batch)))
		l.writeBatch(batch, nil)
		for i, r := range batch {
			if !errors.Is(r.err, ErrBroken) || !errors.Is(r.err, syscall.ENOSPC) {
				t.Errorf("batch record %d: %v; want ErrBroken and ENOSPC", i, r.err)
			}
		}
		t.Logf("batch: %v", batch[0].err)
		l.Close()

		l, rec, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		t.Logf("reopened: %+v", rec)
		all := readAll(t, l, 1)
		for _, e := range all {
			if strings.HasPrefix(string(e.Payload), "batch-") {
				t.Errorf("record %d (%.8s) of the failed batch is in the log", e.Seq, e.Payload)
			}
		}
		if len(all) != acked {
			t.Errorf("reopened log holds %d records, %d were acknowledged", len(all), acked)
		}
	})
}

package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func readAll(t *testing.T, l *Log, from uint64) []Entry {
	t.Helper()
	c := l.Cursor(from)
	defer c.Close()
	var all []Entry
	for {
		es, err := c.Next(7)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			return all
		}
		all = append(all, es...)
	}
}

func TestConcurrentAppendsAreDurableInOrderAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	l, _, err := Open(dir, Options{SegmentBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				if _, err := l.Append(fmt.Appendf(nil, "g%d-%03d", g, i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, rec, err := Open(dir, Options{SegmentBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if rec.Records != 400 || len(rec.Dropped) != 0 || l.Stats().Segments < 2 {
		t.Fatalf("recovery %+v, stats %+v", rec, l.Stats())
	}
	all := readAll(t, l, 1)
	last := map[byte]string{}
	for i, e := range all {
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
		g := e.Payload[1]
		if string(e.Payload) <= last[g] {
			t.Fatalf("goroutine %c out of order: %s after %s", g, e.Payload, last[g])
		}
		last[g] = string(e.Payload)
	}
	if len(all) != 400 {
		t.Fatalf("read %d records", len(all))
	}
}

func TestTornTailRecoversUpToTheLastGoodRecord(t *testing.T) {
	for _, tc := range []struct {
		name string
		tear func(path string, size int64) error
	}{
		{"cut mid-frame", func(p string, size int64) error { return os.Truncate(p, size-3) }},
		{"garbage appended", func(p string, _ int64) error {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte{9, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18})
			return err
		}},
		{"flipped byte in the last frame", func(p string, size int64) error {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte{'X'}, size-1)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l, _, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				if _, err := l.Append(fmt.Appendf(nil, "record-%d", i)); err != nil {
					t.Fatal(err)
				}
			}
			size := l.Stats().Bytes
			l.Close()
			segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
			if err := tc.tear(segs[0], size); err != nil {
				t.Fatal(err)
			}
			l, rec, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			want := int64(10)
			if tc.name != "garbage appended" {
				want = 9
			}
			if rec.Records != want || len(rec.Dropped) != 1 {
				t.Fatalf("recovered %d records (want %d), dropped %+v", rec.Records, want, rec.Dropped)
			}
			t.Logf("dropped: %+v", rec.Dropped[0])
			// Appending goes on after the last good record.
			seq, err := l.Append([]byte("after"))
			if err != nil || seq != uint64(want+1) {
				t.Fatalf("append after recovery: seq %d, %v", seq, err)
			}
			all := readAll(t, l, 1)
			if len(all) != int(want)+1 || string(all[len(all)-1].Payload) != "after" {
				t.Fatalf("read back %d records", len(all))
			}
		})
	}
}

func TestFullRefusesAndTruncateFrees(t *testing.T) {
	dir := t.TempDir()
	l, _, err := Open(dir, Options{MaxRecords: 3, MaxBytes: 1 << 20, SegmentBytes: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 3 {
		if _, err := l.Append([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Append([]byte("x")); !errors.Is(err, ErrFull) {
		t.Fatalf("4th append: %v, want ErrFull", err)
	}
	if err := l.TruncateFront(3); err != nil {
		t.Fatal(err)
	}
	if s := l.Stats(); s.Records != 0 || s.Bytes != 0 || s.Segments != 0 {
		t.Fatalf("after freeing all: %+v", s)
	}
	if seq, err := l.Append([]byte("y")); err != nil || seq != 4 {
		t.Fatalf("append after truncate: %d %v", seq, err)
	}
	l.Close()
	l2, rec, err := Open(dir, Options{NextSeq: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if rec.FirstSeq != 4 || rec.Records != 1 {
		t.Fatalf("recovery %+v", rec)
	}
}

func TestBytesCap(t *testing.T) {
	l, _, err := Open(t.TempDir(), Options{MaxBytes: 3 * (HeaderSize + 10)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := make([]byte, 10)
	for range 3 {
		if _, err := l.Append(p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Append(p); !errors.Is(err, ErrFull) {
		t.Fatalf("append past MaxBytes: %v", err)
	}
}

// TestCursorReadsWhileAppending: a cursor reading the segment being
// appended to gets every record once, in order (run with -race: the
// writer's segment bookkeeping is shared with the cursor).
func TestCursorReadsWhileAppending(t *testing.T) {
	l, _, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const n = 20000
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if _, err := l.Append([]byte(fmt.Sprint(i))); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	c := l.Cursor(1)
	defer c.Close()
	var got []Entry
	for len(got) < n {
		es, err := c.Next(10)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, es...)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, e := range got {
		if e.Seq != uint64(i+1) || string(e.Payload) != fmt.Sprint(i) {
			t.Fatalf("entry %d: seq %d %q", i, e.Seq, e.Payload)
		}
	}
}

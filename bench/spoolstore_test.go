package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/whippet-go/whippet/internal/wal"
)

// BenchmarkSpoolStorage measures fsync'd append throughput of the spool's
// own segment log (internal/wal: length + CRC-32C frames, one fdatasync per
// batch of concurrent appends) against bbolt (one Batch transaction per
// group of concurrent puts, its own group commit; Update for one writer), with the same writers,
// record size and directory, and prints both and their ratio:
//
//	go test -run '^$' -bench SpoolStorage -benchtime 1x ./bench/
//
// Each append returns only once durable, as a spooled produce does.
func BenchmarkSpoolStorage(b *testing.B) {
	const writers, perWriter, size = 64, 300, 256
	for _, w := range []int{1, writers} {
		n := perWriter
		if w == 1 {
			n = 500
		}
		b.Run(fmt.Sprintf("writers=%d", w), func(b *testing.B) {
			for b.Loop() {
				own := measure(b, w, n, size, openWAL)
				bb := measure(b, w, n, size, func(dir string) (appender, error) { return openBolt(dir, w > 1) })
				fmt.Printf("spool storage, %d writers × %d appends of %d B, fsync'd: wal %.0f rec/s, bbolt %.0f rec/s, wal/bbolt %.2f\n",
					w, n, size, own, bb, own/bb)
				b.ReportMetric(own, "wal-rec/s")
				b.ReportMetric(bb, "bbolt-rec/s")
				b.ReportMetric(own/bb, "ratio")
			}
		})
	}
}

type appender interface {
	append([]byte) error
	close() error
}

func measure(b *testing.B, writers, n, size int, open func(dir string) (appender, error)) float64 {
	dir, err := os.MkdirTemp(filepath.Dir(b.TempDir()), "store")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	a, err := open(dir)
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, size)
	start := time.Now()
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range n {
				if err := a.append(payload); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := a.close(); err != nil {
		b.Fatal(err)
	}
	return float64(writers*n) / elapsed.Seconds()
}

type walAppender struct{ l *wal.Log }

func openWAL(dir string) (appender, error) {
	l, _, err := wal.Open(dir, wal.Options{})
	return walAppender{l}, err
}
func (w walAppender) append(p []byte) error { _, err := w.l.Append(p); return err }
func (w walAppender) close() error          { return w.l.Close() }

// boltAppender puts with db.Batch (bbolt's group commit) when there are
// concurrent writers, and with db.Update for one writer (Batch would wait
// its MaxBatchDelay for company on every put).
type boltAppender struct {
	db    *bolt.DB
	batch bool
}

var bucket = []byte("spool")

func openBolt(dir string, batch bool) (appender, error) {
	db, err := bolt.Open(filepath.Join(dir, "spool.db"), 0o600, nil)
	if err != nil {
		return nil, err
	}
	return boltAppender{db, batch}, db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	})
}

func (a boltAppender) append(p []byte) error {
	put := a.db.Update
	if a.batch {
		put = a.db.Batch
	}
	return put(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucket)
		seq, err := bk.NextSequence()
		if err != nil {
			return err
		}
		var k [8]byte
		binary.BigEndian.PutUint64(k[:], seq)
		return bk.Put(k[:], p)
	})
}
func (a boltAppender) close() error { return a.db.Close() }

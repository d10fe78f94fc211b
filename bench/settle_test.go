package main

import (
	"testing"
	"time"
)

// samples replays cumulative (busy, total) jiffies, one pair per call.
func samples(pairs ...[2]uint64) cpuSample {
	i := 0
	return func() (uint64, uint64, error) {
		p := pairs[min(i, len(pairs)-1)]
		i++
		return p[0], p[1], nil
	}
}

func TestSettleWaitsForAQuietWindow(t *testing.T) {
	// Windows of 100 jiffies: 90 busy, 50 busy, then 5 busy.
	s := samples([2]uint64{0, 0}, [2]uint64{90, 100}, [2]uint64{140, 200}, [2]uint64{145, 300})
	waited, share, err := settle(s, func(time.Duration) {}, time.Second, 0.10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if waited != 3*time.Second || share != 0.05 {
		t.Fatalf("waited %v with a last share of %.2f, want 3s and 0.05", waited, share)
	}
}

func TestSettleGivesUpAtTheLimit(t *testing.T) {
	busy := uint64(0)
	s := func() (uint64, uint64, error) { busy += 100; return busy, busy, nil } // every window fully busy
	waited, share, err := settle(s, func(time.Duration) {}, time.Second, 0.10, 4*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if waited != 4*time.Second || share != 1 {
		t.Fatalf("waited %v with a last share of %.2f, want 4s and 1", waited, share)
	}
}

func TestProcStatReadsTheCores(t *testing.T) {
	b, tot, err := procStat()
	if err != nil {
		t.Fatal(err)
	}
	if tot == 0 || b > tot {
		t.Fatalf("busy %d of total %d jiffies", b, tot)
	}
}

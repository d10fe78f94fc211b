package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Before each run the harness waits for a quiet machine. A contender that
// ran for 20 s at full speed (Greyhound, goka) leaves the broker busy for a
// while after it exits (its group leaving, the JVM's garbage collection),
// and the rotation of who goes first puts the same contender right after
// it in most rounds: in S1 whippet followed Greyhound in 4 of 5 rounds and
// franz-go never did. Waiting until the cores are idle gives every run the
// same start.
const (
	settleWindow = 250 * time.Millisecond
	settleBusy   = 0.10 // at most this share of all cores busy over a window
	settleMax    = 15 * time.Second
)

// cpuSample is the busy and total jiffies of all cores since boot.
type cpuSample func() (busy, total uint64, err error)

// procStat reads the first line of /proc/stat.
func procStat() (busy, total uint64, err error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		return 0, 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, s := range fields[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: field %d of %q: %w", i+1, line, err)
		}
		total += v
		if i != 3 && i != 4 { // idle and iowait
			busy += v
		}
	}
	return busy, total, nil
}

// settle waits, in windows of window, until at most maxBusy of the cores'
// time in a window was busy, or until limit has passed. It returns how long
// it waited and the busy share of the last window.
func settle(sample cpuSample, sleep func(time.Duration), window time.Duration, maxBusy float64, limit time.Duration) (time.Duration, float64, error) {
	b0, t0, err := sample()
	if err != nil {
		return 0, 0, err
	}
	var waited time.Duration
	for {
		sleep(window)
		waited += window
		b1, t1, err := sample()
		if err != nil {
			return waited, 0, err
		}
		share := 0.0
		if t1 > t0 {
			share = float64(b1-b0) / float64(t1-t0)
		}
		if share <= maxBusy || waited >= limit {
			return waited, share, nil
		}
		b0, t0 = b1, t1
	}
}

package spool_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/producer/spool"
	"github.com/whippet-go/whippet/testkit"
)

const childEnv = "WHIPPET_SPOOL_CHILD"

// runChild produces records of 10 keys, each key's in order, to a broker
// address nothing listens on, and prints "acked <id>" once each Produce
// returned, until it is killed.
func runChild() {
	dir, topic, brokers := os.Getenv("WHIPPET_TEST_DIR"), os.Getenv("WHIPPET_TEST_TOPIC"), os.Getenv("WHIPPET_TEST_BROKERS")
	p, err := spool.New(whippet.Connection{Brokers: strings.Split(brokers, ",")}, dir, spool.Threshold(20*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var out sync.Mutex
	var wg sync.WaitGroup
	for k := range 10 {
		wg.Go(func() {
			for i := 0; ; i++ {
				res, err := p.Produce(context.Background(), &kgo.Record{Topic: topic, Key: []byte(keyName(k)), Value: value(keyName(k), i)})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				out.Lock()
				fmt.Printf("acked %s\n", res.ID)
				out.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestSIGKILLWhileSpoolingLosesNothing: a process spooling while Kafka is
// unreachable is SIGKILLed; a torn write is left at the end of its last
// segment. A new Producer on the directory cuts off the torn tail, relays
// every record the killed process acknowledged, in order per key, and the
// spool ends empty.
func TestSIGKILLWhileSpoolingLosesNothing(t *testing.T) {
	noLeaks(t)
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 3, nil)
	dir := t.TempDir()

	// An address nothing listens on: Kafka unreachable for the child.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "WHIPPET_TEST_DIR="+dir, "WHIPPET_TEST_TOPIC="+topic, "WHIPPET_TEST_BROKERS="+closed)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	sc := bufio.NewScanner(stdout)
	for len(acked) < 2000 && sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
			acked[id] = true
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() { // what it printed before dying was acknowledged too
		if id, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
			acked[id] = true
		}
	}
	_ = cmd.Wait()
	if len(acked) < 2000 {
		t.Fatalf("child acknowledged only %d records before it stopped", len(acked))
	}

	// A torn write at the tail: a frame header promising more than follows.
	segs, _ := filepath.Glob(filepath.Join(dir, "log", "*.seg"))
	sort.Strings(segs)
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{200, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7}); err != nil {
		t.Fatal(err)
	}
	f.Close()

	p, err := spool.New(whippet.Connection{Brokers: kc.Brokers}, dir, spool.Threshold(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	rec := p.Recovered()
	t.Logf("killed after %d acknowledged records; recovered %+v", len(acked), rec)
	if rec.Records < int64(len(acked)) || len(rec.Dropped) != 1 || rec.Dropped[0].Bytes != 11 {
		t.Fatalf("recovery: %+v, want ≥ %d records and the 11 torn bytes dropped", rec, len(acked))
	}
	testkit.Eventually(t, 60*time.Second, func() error {
		if st := p.Stats(); st.Records != 0 {
			return fmt.Errorf("not drained: %+v", st)
		}
		return nil
	})
	dups := checkDelivered(t, kc, topic, acked)
	st := p.Stats()
	t.Logf("relayed %d, duplicates read %d, counted possible %d", st.Relayed, dups, st.PossibleDuplicates)
	if st.Relayed+st.Skipped != uint64(rec.Records) || st.Dead != 0 {
		t.Fatalf("stats: %+v", st)
	}
	if uint64(dups) > st.PossibleDuplicates {
		t.Fatalf("%d duplicates read, only %d counted as possible", dups, st.PossibleDuplicates)
	}
}

package spool_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/producer/spool"
	"github.com/whippet-go/whippet/testkit"
)

// TestOutageSpoolsThenRelaysInOrder: with every broker unreachable, produces
// return once the record is on disk; when Kafka is back, the relay delivers
// every record, in order per key, and the spool empties and goes back to
// producing directly.
func TestOutageSpoolsThenRelaysInOrder(t *testing.T) {
	noLeaks(t)
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 3, nil)
	net := newNetwork()
	net.down()
	p, err := spool.New(whippet.Connection{Brokers: kc.Brokers, ClientOptions: []kgo.Opt{net.opt()}}, t.TempDir(),
		spool.Threshold(200*time.Millisecond), spool.RelayTimeout(time.Second), spool.RelayBatch(100))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())

	const keys, perKey = 20, 25
	want := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for k := range keys {
		wg.Go(func() {
			for i := range perKey {
				res, err := p.Produce(context.Background(), &kgo.Record{Topic: topic, Key: []byte(keyName(k)), Value: value(keyName(k), i)})
				if err != nil {
					t.Errorf("produce while Kafka is unreachable: %v", err)
					return
				}
				if !res.Spooled {
					t.Errorf("record %d of %s acknowledged by an unreachable Kafka: %+v", i, keyName(k), res)
				}
				mu.Lock()
				want[res.ID] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	st := p.Stats()
	if st.Records != keys*perKey || !st.Spooling || st.Bytes == 0 || st.OldestAge == 0 {
		t.Fatalf("while down: %+v, want %d records held", st, keys*perKey)
	}
	if err := p.Ready(); err != nil {
		t.Fatalf("Ready while spooling with room: %v", err)
	}

	net.up()
	testkit.Eventually(t, 30*time.Second, func() error {
		if st := p.Stats(); st.Records != 0 || st.Spooling {
			return fmt.Errorf("spool not drained: %+v", st)
		}
		return nil
	})
	dups := checkDelivered(t, kc, topic, want)
	st = p.Stats()
	t.Logf("stats after drain: %+v; duplicates read: %d", st, dups)
	if st.Relayed+st.Skipped != keys*perKey || st.Bytes != 0 || st.Dead != 0 {
		t.Fatalf("after drain: %+v", st)
	}
	if uint64(dups) > st.PossibleDuplicates {
		t.Fatalf("%d duplicates read, only %d counted as possible", dups, st.PossibleDuplicates)
	}
	// Drained: produces go to Kafka directly again.
	res, err := p.Produce(context.Background(), &kgo.Record{Topic: topic, Key: []byte("after"), Value: value("after", 0)})
	if err != nil || res.Spooled || res.Offset < 0 {
		t.Fatalf("produce after the drain: %+v, %v", res, err)
	}
}

// TestFullSpoolRefusesWithClearError: at MaxRecords, a produce Kafka does
// not acknowledge fails with ErrFull, and Ready says so.
func TestFullSpoolRefusesWithClearError(t *testing.T) {
	noLeaks(t)
	net := newNetwork()
	net.down()
	p, err := spool.New(whippet.Connection{Brokers: []string{"127.0.0.1:19092"}, ClientOptions: []kgo.Opt{net.opt()}}, t.TempDir(),
		spool.Threshold(50*time.Millisecond), spool.MaxRecords(5), spool.DefaultTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	for i := range 5 {
		if res, err := p.Produce(context.Background(), &kgo.Record{Value: value("k", i)}); err != nil || !res.Spooled {
			t.Fatalf("record %d: %+v, %v", i, res, err)
		}
	}
	res, err := p.Produce(context.Background(), &kgo.Record{Value: value("k", 5)})
	if !errors.Is(err, spool.ErrFull) || res.Spooled {
		t.Fatalf("6th record with MaxRecords 5: %+v, %v; want ErrFull", res, err)
	}
	t.Logf("full: %v", err)
	if err := p.Ready(); !errors.Is(err, spool.ErrFull) {
		t.Fatalf("Ready when full: %v", err)
	}
	if st := p.Stats(); st.Records != 5 || st.Spooled != 5 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestExpiredRecordsAreSetAsideAsDead: records older than Expiry that Kafka
// has not taken are kept in the dead area, visible, not dropped.
func TestExpiredRecordsAreSetAsideAsDead(t *testing.T) {
	noLeaks(t)
	net := newNetwork()
	net.down()
	dir := t.TempDir()
	p, err := spool.New(whippet.Connection{Brokers: []string{"127.0.0.1:19092"}, ClientOptions: []kgo.Opt{net.opt()}}, dir,
		spool.Threshold(20*time.Millisecond), spool.Expiry(300*time.Millisecond), spool.RelayTimeout(200*time.Millisecond), spool.DefaultTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := p.Produce(context.Background(), &kgo.Record{Key: []byte("k"), Value: value("k", i)}); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 20*time.Second, func() error {
		if st := p.Stats(); st.Dead != 3 || st.Records != 0 {
			return fmt.Errorf("not set aside yet: %+v", st)
		}
		return nil
	})
	dead, err := p.Dead()
	if err != nil || len(dead) != 3 {
		t.Fatalf("Dead: %d records, %v", len(dead), err)
	}
	for i, d := range dead {
		if string(d.Record.Value) != string(value("k", i)) || spool.RecordID(d.Record) == "" || d.Reason == "" {
			t.Fatalf("dead record %d: %s %q", i, d.Record.Value, d.Reason)
		}
	}
	t.Logf("dead: %q", dead[0].Reason)
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	info, err := spool.Inspect(dir)
	if err != nil || len(info.Dead) != 3 || info.Records != 0 {
		t.Fatalf("Inspect after Close: %+v, %v", info, err)
	}
}

// TestDirectWhenKafkaAnswers: with Kafka reachable, a produce returns
// Kafka's acknowledgement and nothing is spooled.
func TestDirectWhenKafkaAnswers(t *testing.T) {
	noLeaks(t)
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	p, err := spool.New(whippet.Connection{Brokers: kc.Brokers}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	res, err := p.Produce(context.Background(), &kgo.Record{Topic: topic, Value: []byte("v")})
	if err != nil || res.Spooled || res.Offset != 0 || res.ID == "" {
		t.Fatalf("%+v, %v", res, err)
	}
	if st := p.Stats(); st.Spooled != 0 || st.Records != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestSecondProcessIsRefused: one process at a time per directory.
func TestSecondProcessIsRefused(t *testing.T) {
	noLeaks(t)
	dir := t.TempDir()
	conn := whippet.Connection{Brokers: []string{"127.0.0.1:19092"}}
	p, err := spool.New(conn, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	if _, err := spool.New(conn, dir); !errors.Is(err, spool.ErrLocked) {
		t.Fatalf("second New on %s: %v, want ErrLocked", dir, err)
	}
}

// TestBackToDirectUnderSteadyLoad: after an outage, with produces going on
// at a steady rate, the relay empties the spool and produces go to Kafka
// directly again. While anything is spooled every produce goes to the
// spool, so under a steady load the spool is never empty by itself: the
// relay must hold new produces briefly to hand over without overtaking.
func TestBackToDirectUnderSteadyLoad(t *testing.T) {
	noLeaks(t)
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 3, nil)
	net := newNetwork()
	net.down()
	p, err := spool.New(whippet.Connection{Brokers: kc.Brokers, ClientOptions: []kgo.Opt{net.opt()}}, t.TempDir(),
		spool.Threshold(200*time.Millisecond), spool.RelayTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())

	// 20 keys, each producing every 10ms, the keys' phases spread over
	// the 10ms: about 2,000 records/s arriving evenly.
	const keys, every = 20, 10 * time.Millisecond
	stop := make(chan struct{})
	var direct atomic.Int64
	var mu sync.Mutex
	want := map[string]bool{}
	var wg sync.WaitGroup
	for k := range keys {
		wg.Go(func() {
			time.Sleep(time.Duration(k) * every / keys)
			tick := time.NewTicker(every)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				res, err := p.Produce(context.Background(), &kgo.Record{Topic: topic, Key: []byte(keyName(k)), Value: value(keyName(k), i)})
				if err != nil {
					t.Errorf("produce: %v", err)
					return
				}
				if !res.Spooled {
					direct.Add(1)
				}
				mu.Lock()
				want[res.ID] = true
				mu.Unlock()
			}
		})
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	testkit.Eventually(t, 10*time.Second, func() error {
		if st := p.Stats(); st.Spooled < 500 {
			return fmt.Errorf("%d spooled while Kafka is unreachable", st.Spooled)
		}
		return nil
	})
	net.up()
	testkit.Eventually(t, 30*time.Second, func() error {
		if st := p.Stats(); st.Spooling || direct.Load() == 0 {
			return fmt.Errorf("still spooling under load with Kafka back: %d produced directly; %+v", direct.Load(), st)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	st := p.Stats()
	dups := checkDelivered(t, kc, topic, want)
	t.Logf("%d records, %d of them produced directly after the outage; %+v; duplicates read %d", len(want), direct.Load(), st, dups)
	if uint64(dups) > st.PossibleDuplicates {
		t.Fatalf("%d duplicates read, only %d counted as possible", dups, st.PossibleDuplicates)
	}
}

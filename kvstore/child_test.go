package kvstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/kvstore"
	"github.com/whippet-go/whippet/testkit"
)

// The cross-process test re-runs this test binary as a writer or a reader
// process: childEnv says which, the other WHIPPET_KVSTORE_* variables say
// where.
const childEnv = "WHIPPET_KVSTORE_CHILD"

const crossKeys = 500

// crossExpected is the state the writer process leaves: crossKeys keys
// written with version 1, the even ones rewritten with version 2, every
// fifth one deleted.
func crossExpected() map[string]Value {
	want := map[string]Value{}
	for i := range crossKeys {
		k := fmt.Sprintf("k%03d", i)
		switch {
		case i%5 == 0:
		case i%2 == 0:
			want[k] = Value{Version: 2, Text: k}
		default:
			want[k] = Value{Version: 1, Text: k}
		}
	}
	return want
}

func runChild() {
	if err := child(os.Getenv(childEnv)); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func child(mode string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := kvstore.Open(ctx, whippet.Connection{Brokers: strings.Split(os.Getenv("WHIPPET_KVSTORE_BROKERS"), ",")}, os.Getenv("WHIPPET_KVSTORE_TOPIC"), codec.String(), codec.JSON[Value](), kvstore.CreateTopic(false))
	if err != nil {
		return err
	}
	defer s.Close(context.Background())
	if err := s.WaitReady(ctx); err != nil {
		return err
	}
	switch mode {
	case "writer":
		for version := 1; version <= 3; version++ {
			for i := range crossKeys {
				k := fmt.Sprintf("k%03d", i)
				var err error
				switch {
				case version == 1:
					err = s.Put(ctx, k, Value{Version: 1, Text: k})
				case version == 2 && i%2 == 0:
					err = s.Put(ctx, k, Value{Version: 2, Text: k})
				case version == 3 && i%5 == 0:
					err = s.Delete(ctx, k)
				default:
					continue
				}
				if err != nil {
					return err
				}
				// Read your writes, in the writer's own store.
				v, ok := s.Get(k)
				if version == 3 && ok || version < 3 && v.Version != version {
					return fmt.Errorf("%s right after writing version %d: %v %v", k, version, v, ok)
				}
			}
		}
		return nil
	case "reader":
		b, err := json.Marshal(s.Snapshot())
		if err != nil {
			return err
		}
		return os.WriteFile(os.Getenv("WHIPPET_KVSTORE_OUT"), b, 0o644)
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// runProcess runs this test binary as a writer or reader process and waits
// for it.
func runProcess(t *testing.T, kc *testkit.Cluster, mode, topic, out string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "WHIPPET_KVSTORE_TOPIC="+topic,
		"WHIPPET_KVSTORE_BROKERS="+strings.Join(kc.Brokers, ","), "WHIPPET_KVSTORE_OUT="+out)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s process: %v", mode, err)
	}
	t.Logf("%s process took %v", mode, time.Since(start).Round(time.Millisecond))
}

// reload runs a reader process and returns the state it loaded.
func reload(t *testing.T, kc *testkit.Cluster, topic string) map[string]Value {
	t.Helper()
	out := t.TempDir() + "/state.json"
	runProcess(t, kc, "reader", topic, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]Value
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	return got
}

// rawRecords reads every record of topic, up to its current end offsets,
// with a plain franz-go client, and counts them per key (tombstones apart).
func rawRecords(t *testing.T, kc *testkit.Cluster, topic string) (total int, perKey map[string]int, tombstones int) {
	t.Helper()
	ctx := ctxT(t, 60*time.Second)
	ends, err := kc.Admin(t).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	cl := kc.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	defer cl.Close()
	perKey = map[string]int{}
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("raw read: %v, partitions left %v", err, left)
		}
		fs.EachRecord(func(r *kgo.Record) {
			total++
			if r.Value == nil {
				tombstones++
			} else {
				perKey[string(r.Key)]++
			}
			if end, ok := left[r.Partition]; ok && r.Offset >= end-1 {
				delete(left, r.Partition)
			}
		})
	}
	return total, perKey, tombstones
}

// A writer process and a store in another process (this one) on a topic the
// store created: the writes show up here; a restarted store (a reader
// process) reloads the same state; after the broker compacted the topic
// (duplicates and tombstones gone, checked with a raw read), a reload still
// gives the identical state and the deleted keys are gone.
func TestCrossProcessAndCompaction(t *testing.T) {
	kc := testkit.Shared(t)
	const partitions = 3
	topic := testkit.TopicName(t.Name())
	t.Cleanup(func() { _, _ = kc.Admin(t).DeleteTopic(context.Background(), topic) })
	// Compaction as fast as the broker allows once segments roll: any dirt
	// is worth cleaning, tombstones are kept 100ms. Segments do not roll
	// (by time) until segment.ms is lowered below, so that the raw read
	// before compaction sees every record written: set an hour here, since
	// a test broker may roll every 500ms by default (log.roll.ms).
	s := openStore(t, kc, topic, kvstore.Partitions(partitions),
		kvstore.TopicConfig("segment.ms", "3600000"),
		kvstore.TopicConfig("min.cleanable.dirty.ratio", "0.01"),
		kvstore.TopicConfig("delete.retention.ms", "100"), kvstore.TopicConfig("min.compaction.lag.ms", "0"))

	runProcess(t, kc, "writer", topic, "")
	want := crossExpected()
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := s.Snapshot(); !equal(got, want) {
			return fmt.Errorf("this store has %d keys, want %d", len(got), len(want))
		}
		return nil
	})
	if got := reload(t, kc, topic); !equal(got, want) {
		t.Fatalf("a restarted store loaded %d keys, want %d (%s)", len(got), len(want), diff(got, want))
	}

	before, _, tombsBefore := rawRecords(t, kc, topic)
	wrote := crossKeys + crossKeys/2 + crossKeys/5
	if before != wrote || tombsBefore != crossKeys/5 {
		t.Fatalf("raw read before compaction: %d records (%d tombstones), want %d (%d)", before, tombsBefore, wrote, crossKeys/5)
	}

	// Roll every 100ms from now on (on the next append).
	alter, err := kc.Admin(t).AlterTopicConfigs(ctxT(t, 30*time.Second),
		[]kadm.AlterConfig{{Op: kadm.SetConfig, Name: "segment.ms", Value: new("100")}}, topic)
	if err == nil {
		var r kadm.AlterConfigsResponse
		if r, err = alter.On(topic, nil); err == nil {
			err = r.Err
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	// The cleaner never touches a partition's active segment, and a segment
	// rolls only on an append: keep appending to every partition (a
	// "marker-<p>" key, 2 KiB so that each append makes the log dirty enough
	// to clean) until the raw read shows every data key once and no
	// tombstone. Tombstones go in a second cleaning, delete.retention.ms
	// after the first.
	cl := kc.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	filler := `{"version":9,"text":"` + strings.Repeat("x", 2048) + `"}`
	markers := 0
	start := time.Now()
	var after, tombsAfter int
	testkit.Eventually(t, 3*time.Minute, func() error {
		time.Sleep(150 * time.Millisecond) // > segment.ms
		var recs []*kgo.Record
		for p := range int32(partitions) {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: fmt.Appendf(nil, "marker-%d", p), Value: []byte(filler)})
		}
		if err := cl.ProduceSync(ctxT(t, 30*time.Second), recs...).FirstErr(); err != nil {
			return err
		}
		markers++
		if f := kc.Kfake(); f != nil {
			f.Compact()
		}
		var perKey map[string]int
		after, perKey, tombsAfter = rawRecords(t, kc, topic)
		dataRecords := 0
		for k, n := range perKey {
			if strings.HasPrefix(k, "k") {
				dataRecords += n
			}
		}
		if dataRecords != len(want) || tombsAfter != 0 {
			return fmt.Errorf("raw read: %d data records for %d live keys, %d tombstones", dataRecords, len(want), tombsAfter)
		}
		return nil
	})
	t.Logf("compaction: raw records %d (%d tombstones) before, %d (%d tombstones, the rest %d live keys + markers) after, %d marker rounds, %v",
		before, tombsBefore, after, tombsAfter, len(want), markers, time.Since(start).Round(time.Second))

	for p := range partitions {
		want[fmt.Sprintf("marker-%d", p)] = Value{Version: 9, Text: strings.Repeat("x", 2048)}
	}
	testkit.Eventually(t, 30*time.Second, func() error {
		if got := s.Snapshot(); !equal(got, want) {
			return fmt.Errorf("the live store has %s", diff(got, want))
		}
		return nil
	})
	got := reload(t, kc, topic)
	if !equal(got, want) {
		t.Fatalf("reload after compaction: %s", diff(got, want))
	}
	for i := 0; i < crossKeys; i += 5 {
		if _, ok := got[fmt.Sprintf("k%03d", i)]; ok {
			t.Fatalf("deleted key k%03d is back after compaction", i)
		}
	}
}

func diff(got, want map[string]Value) string {
	var b strings.Builder
	n := 0
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			if n++; n <= 5 {
				fmt.Fprintf(&b, "%s: got %v (present %v), want %v; ", k, g, ok, w)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			if n++; n <= 5 {
				fmt.Fprintf(&b, "%s: unexpected; ", k)
			}
		}
	}
	return strconv.Itoa(n) + " differences: " + b.String()
}

// Command goka-peer is S4's goka contender: a goka View (in-memory storage)
// of a compacted topic, timed from NewView until the view has recovered
// every partition up to its high watermark. It prints one JSON line, with
// its peak RSS (VmHWM).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"
)

func main() {
	brokers := flag.String("brokers", "", "comma-separated seed brokers")
	topic := flag.String("topic", "", "compacted topic to load")
	keys := flag.Int("keys", 0, "distinct keys in the topic")
	limit := flag.Duration("limit", 0, "stop after this long and report the partial load (0: no limit)")
	flag.Parse()
	if *brokers == "" || *topic == "" || *keys <= 0 {
		fmt.Fprintln(os.Stderr, "goka-peer: -brokers, -topic and -keys (> 0) are required")
		os.Exit(2)
	}
	if err := run(strings.Split(*brokers, ","), *topic, *keys, *limit); err != nil {
		fmt.Fprintln(os.Stderr, "goka-peer:", err)
		os.Exit(1)
	}
}

// vmHWM reads this process's peak resident set size, in kB.
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb); err == nil {
				return kb
			}
		}
	}
	return 0
}

func run(brokers []string, topic string, keys int, limit time.Duration) error {
	cfg := goka.DefaultConfig()
	cfg.Version = sarama.V3_5_0_0 // goka's default (2.0) is older than Kafka 4's oldest supported protocols
	goka.ReplaceGlobalConfig(cfg)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	view, err := goka.NewView(brokers, goka.Table(topic), new(codec.String),
		goka.WithViewStorageBuilder(storage.MemoryBuilder()))
	if err != nil {
		return fmt.Errorf("new view: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- view.Run(ctx) }()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	var deadline <-chan time.Time
	if limit > 0 {
		deadline = time.After(limit)
	}
	progress := func() (at, hwm int64) {
		for _, p := range view.Stats(ctx).Partitions {
			if p.Recovery != nil {
				at += p.Recovery.Offset + 1
				hwm += p.Recovery.Hwm
			}
		}
		return at, hwm
	}
wait:
	for {
		select {
		case <-view.WaitRunning():
			break wait
		case err := <-errc:
			return fmt.Errorf("view stopped before it recovered: %w", err)
		case <-deadline:
			// Not loaded within the limit: report how far it got, marked unfinished.
			at, _ := progress()
			d := time.Since(start)
			out, _ := json.Marshal(map[string]any{"records": at, "seconds": d.Seconds(), "peak_rss_kb": vmHWM(),
				"extra": map[string]any{"unfinished": fmt.Sprintf("%d of %d keys loaded when stopped at %v", at, keys, limit)}})
			fmt.Println(string(out))
			cancel()
			<-errc
			return nil
		case <-tick.C:
			// Progress on stderr, so that a run that does not finish shows how far it got.
			at, hwm := progress()
			fmt.Fprintf(os.Stderr, "goka-peer: %v: recovered %d of %d records\n", time.Since(start).Round(time.Second), at, hwm)
		}
	}
	d := time.Since(start)
	if !view.Recovered() {
		return fmt.Errorf("view running but not recovered")
	}
	// Spot-check a key so the load is not an empty success.
	v, err := view.Get(fmt.Sprintf("key-%07d", keys-1))
	if err != nil || v == nil {
		return fmt.Errorf("last key missing after recovery: %v %v", v, err)
	}
	out, _ := json.Marshal(map[string]any{"records": keys, "seconds": d.Seconds(), "peak_rss_kb": vmHWM()})
	fmt.Println(string(out))
	cancel()
	<-errc
	return nil
}

package spool_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/whippet-go/whippet/producer/spool"
	"github.com/whippet-go/whippet/testkit"
)

func TestMain(m *testing.M) {
	// The kill test re-runs this binary as a producing process it SIGKILLs.
	if os.Getenv(childEnv) != "" {
		runChild()
		return
	}
	testkit.Main(m)
}

// noLeaks fails t if goroutines started during the test outlive it. Call it
// first, so that its cleanup runs after every other cleanup.
func noLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// network is a switch between the spool's client and Kafka: while down,
// dials fail (connection refused) and open connections are closed, as when
// every broker is unreachable.
type network struct {
	mu    sync.Mutex
	off   bool
	conns map[net.Conn]bool
}

func newNetwork() *network { return &network{conns: map[net.Conn]bool{}} }

func (n *network) dial(ctx context.Context, network, host string) (net.Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.off {
		return nil, errors.New("test network down: connection refused")
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, host)
	if err == nil {
		n.conns[c] = true
	}
	return c, err
}

func (n *network) down() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.off = true
	for c := range n.conns {
		c.Close()
	}
	n.conns = map[net.Conn]bool{}
}

func (n *network) up() {
	n.mu.Lock()
	n.off = false
	n.mu.Unlock()
}

func (n *network) opt() kgo.Opt { return kgo.Dialer(n.dial) }

// value is "<key>:<n>", n counting from 0 per key.
func value(key string, n int) []byte { return []byte(key + ":" + strconv.Itoa(n)) }

// checkDelivered reads topic until every id in want is there and checks,
// after dropping duplicates by id, that each key's records are in order. It
// returns the number of duplicates read.
func checkDelivered(t *testing.T, kc *testkit.Cluster, topic string, want map[string]bool) int {
	t.Helper()
	seen := map[string]bool{}
	all := kc.ConsumeUntil(context.Background(), t, topic, func(all []*kgo.Record) bool {
		n := 0
		clear(seen)
		for _, r := range all {
			id := spool.RecordID(r)
			if want[id] && !seen[id] {
				seen[id] = true
				n++
			}
		}
		return n == len(want)
	})
	dups := 0
	clear(seen)
	next := map[string]int{}
	for _, r := range all {
		id := spool.RecordID(r)
		if id == "" {
			t.Fatalf("record %s without %s header", r.Value, spool.IDHeader)
		}
		if seen[id] {
			dups++
			continue
		}
		seen[id] = true
		key, ns, _ := strings.Cut(string(r.Value), ":")
		n, _ := strconv.Atoi(ns)
		if n != next[key] {
			t.Fatalf("key %s: got record %d, want %d (order broken or a record lost)", key, n, next[key])
		}
		next[key]++
	}
	return dups
}

func keyName(i int) string { return fmt.Sprintf("key-%03d", i) }

//go:build chaos

package chaos_test

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// TestChaos runs every scenario on one 3-node cluster, one after the other
// (each leaves the cluster healthy for the next), and prints the table.
func TestChaos(t *testing.T) {
	begin := time.Now()
	e := startCluster(t)
	scenarios := []struct {
		name string
		run  func(*testing.T, *env)
	}{
		{"ConsumerKills", testConsumerKills},
		{"BrokerKill", testBrokerKill},
		{"BrokerFreeze", testBrokerFreeze},
		{"RetryDLQ", testRetryDLQ},
		{"Stores", testStores},
		{"EOSRebalance", testEOSRebalance},
		{"SpoolOutage", testSpoolOutage},
	}
	for _, s := range scenarios {
		started := time.Now()
		ok := t.Run(s.name, func(t *testing.T) { s.run(t, e) })
		t.Logf("%s: %v in %v", s.name, map[bool]string{true: "passed", false: "FAILED"}[ok], time.Since(started).Round(time.Second))
		if !ok {
			report(row{scenario: s.name + ": FAILED, see the log"})
		}
	}
	results.mu.Lock()
	rows := results.rows
	results.mu.Unlock()
	// Printed as is (not through t.Log) so that the table reads cleanly in
	// `make test-chaos` output.
	fmt.Fprintf(os.Stdout, "\nwhippet chaos: Apache Kafka %s, 3 nodes, replication 3, min.insync.replicas 2; %v in all\n\n%s\n",
		e.lk.Version, time.Since(begin).Round(time.Second), table(rows))
}

package localkafka

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// brokerPort returns the PLAINTEXT port of node (1-based):
// base, base+10, base+20, ...
func (c Config) brokerPort(node int) int { return c.BasePort + (node-1)*10 }

// controllerPort returns the CONTROLLER port of node: its broker port + 1.
func (c Config) controllerPort(node int) int { return c.brokerPort(node) + 1 }

type kv struct{ k, v string }

// serverProperties returns the server.properties of node (1-based) as
// ordered key/value pairs: a combined broker+controller KRaft node on
// 127.0.0.1 with static controller.quorum.voters (so the storage format needs
// no quorum flag on any version), tuned for tests on a small machine.
//
// auto.create.topics.enable is left at Kafka's default (true): franz-go only
// asks for auto-creation when a client sets kgo.AllowAutoTopicCreation, so the
// broker default never creates topics behind a franz-go client's back, and a
// client that opts in gets the behaviour it asked for.
func serverProperties(cfg Config, node int, dataDir string, major int) []kv {
	n := cfg.Nodes
	isr := 1
	if n >= 3 {
		isr = 2
	}
	voters := make([]string, 0, n)
	for i := 1; i <= n; i++ {
		voters = append(voters, fmt.Sprintf("%d@127.0.0.1:%d", i, cfg.controllerPort(i)))
	}
	itoa := strconv.Itoa
	p := []kv{
		{"process.roles", "broker,controller"},
		{"node.id", itoa(node)},
		{"controller.quorum.voters", strings.Join(voters, ",")},
		{"listeners", fmt.Sprintf("PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d", cfg.brokerPort(node), cfg.controllerPort(node))},
		{"advertised.listeners", fmt.Sprintf("PLAINTEXT://127.0.0.1:%d", cfg.brokerPort(node))},
		{"inter.broker.listener.name", "PLAINTEXT"},
		{"controller.listener.names", "CONTROLLER"},
		{"listener.security.protocol.map", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"},
		{"log.dirs", dataDir},

		// Replication: everything on every node (1 or 3), acks=all survives one node down with 3.
		{"num.partitions", "1"},
		{"default.replication.factor", itoa(n)},
		{"min.insync.replicas", itoa(isr)},
		{"offsets.topic.replication.factor", itoa(n)},
		{"offsets.topic.num.partitions", itoa(n)},
		{"transaction.state.log.replication.factor", itoa(n)},
		{"transaction.state.log.min.isr", itoa(isr)},
		{"transaction.state.log.num.partitions", itoa(n)},
	}
	if major >= 4 {
		p = append(p,
			kv{"share.coordinator.state.topic.replication.factor", itoa(n)},
			kv{"share.coordinator.state.topic.min.isr", itoa(isr)},
			kv{"share.coordinator.state.topic.num.partitions", itoa(n)},
		)
	}
	p = append(p,
		// Tests: no join delay, few threads (2 cores).
		kv{"group.initial.rebalance.delay.ms", "0"},
		kv{"num.network.threads", "2"},
		kv{"num.io.threads", "2"},
		kv{"background.threads", "2"},
		kv{"num.recovery.threads.per.data.dir", "1"},
		kv{"num.replica.fetchers", "1"},
		kv{"log.cleaner.threads", "1"},

		// Fast compaction and retention. Rolls happen only on append, so a
		// compaction test produces, waits > segment.ms, then produces once more.
		kv{"log.cleaner.backoff.ms", "100"},
		kv{"log.cleaner.min.cleanable.ratio", "0.01"},
		kv{"log.cleaner.min.compaction.lag.ms", "0"},
		kv{"log.cleaner.delete.retention.ms", "100"},
		kv{"log.cleaner.dedupe.buffer.size", "2097152"}, // > 1 MiB per cleaner thread; the 128 MiB default lives on a 512 MiB heap
		kv{"log.roll.ms", "500"},
		kv{"log.segment.delete.delay.ms", "100"},
		kv{"log.initial.task.delay.ms", "100"},
		kv{"log.retention.check.interval.ms", "1000"},
	)
	// Kafka's own defaults, written out: a 500ms heartbeat with a 3s session
	// (tried for faster fault detection) got live brokers fenced and the
	// controller re-elected on a loaded 2-core machine (internal/chaos).
	p = append(p,
		kv{"broker.heartbeat.interval.ms", "2000"},
		kv{"broker.session.timeout.ms", "9000"},
	)
	return applyOverrides(withSecurity(cfg, node, p), cfg.Overrides)
}

// applyOverrides replaces keys present in p and appends the others (sorted).
func applyOverrides(p []kv, overrides map[string]string) []kv {
	if len(overrides) == 0 {
		return p
	}
	keys := make([]string, 0, len(overrides))
	for k := range overrides {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		replaced := false
		for i := range p {
			if p[i].k == k {
				p[i].v = overrides[k]
				replaced = true
			}
		}
		if !replaced {
			p = append(p, kv{k, overrides[k]})
		}
	}
	return p
}

// renderProperties formats p as a Java properties file.
func renderProperties(header string, p []kv) []byte {
	var b strings.Builder
	for _, l := range strings.Split(header, "\n") {
		b.WriteString("# " + l + "\n")
	}
	for _, e := range p {
		b.WriteString(escapeProp(e.k, true) + "=" + escapeProp(e.v, false) + "\n")
	}
	return []byte(b.String())
}

// escapeProp escapes what java.util.Properties would misread.
func escapeProp(s string, key bool) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case key && (r == '=' || r == ':' || r == ' '):
			b.WriteRune('\\')
			b.WriteRune(r)
		case !key && i == 0 && r == ' ':
			b.WriteString(`\ `)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

package consumer_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/testkit"
)

// hookMember follows one consumer through its rebalance hooks and handler
// calls, and checks at each OnRevoked, with an admin client, what the group
// has committed for the revoked partitions.
type hookMember struct {
	t            *testing.T
	name         string
	group, topic string
	out          string // transactional: the output topic
	adm          *kadm.Client

	mu       sync.Mutex
	owned    map[int32]bool
	seq      map[int32]int   // OnAssigned calls per partition: the assignment's number
	running  map[int32]int   // handler calls under way
	last     map[int32]int64 // last offset handled in the current assignment; -1 none
	assigned map[int32]int
	revoked  map[int32]int
	lost     map[int32]int
	errs     []string
	checked  int          // revoked partitions whose commit was checked against records handled
	revokes  []revokeSeen // transactional: checked against the committed outputs at the end
}

type revokeSeen struct {
	p, seq    int
	committed int64
}

func newHookMember(t *testing.T, name, group, topic, out string, adm *kadm.Client) *hookMember {
	return &hookMember{t: t, name: name, group: group, topic: topic, out: out, adm: adm,
		owned: map[int32]bool{}, seq: map[int32]int{}, running: map[int32]int{}, last: map[int32]int64{},
		assigned: map[int32]int{}, revoked: map[int32]int{}, lost: map[int32]int{}}
}

func (m *hookMember) fail(format string, args ...any) {
	m.errs = append(m.errs, m.name+": "+fmt.Sprintf(format, args...))
}

func (m *hookMember) options() []consumer.Option {
	return []consumer.Option{
		consumer.OnAssigned(func(ctx context.Context, ps []consumer.TopicPartition) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, tp := range ps {
				if m.owned[tp.Partition] {
					m.fail("OnAssigned(%d) while it is assigned", tp.Partition)
				}
				m.owned[tp.Partition] = true
				m.seq[tp.Partition]++
				m.last[tp.Partition] = -1
				m.assigned[tp.Partition]++
			}
		}),
		consumer.OnRevoked(func(ctx context.Context, ps []consumer.TopicPartition) {
			committed := m.committed(ps)
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, tp := range ps {
				p := tp.Partition
				m.end(p, "OnRevoked")
				m.revoked[p]++
				c, ok := committed[p]
				switch {
				case m.out != "":
					m.revokes = append(m.revokes, revokeSeen{int(p), m.seq[p], c})
				case m.last[p] < 0:
				case !ok || c != m.last[p]+1:
					m.fail("OnRevoked(%d): committed offset %d (known %v), but offset %d was handled", p, c, ok, m.last[p])
				default:
					m.checked++
				}
			}
		}),
		consumer.OnLost(func(ctx context.Context, ps []consumer.TopicPartition) {
			m.mu.Lock()
			defer m.mu.Unlock()
			for _, tp := range ps {
				m.end(tp.Partition, "OnLost")
				m.lost[tp.Partition]++
			}
		}),
	}
}

// end checks that p was assigned and that no handler call on it is under
// way, and lets it go.
func (m *hookMember) end(p int32, hook string) {
	if !m.owned[p] {
		m.fail("%s(%d) without OnAssigned", hook, p)
	}
	if m.running[p] != 0 {
		m.fail("%s(%d) with %d handler calls under way", hook, p, m.running[p])
	}
	delete(m.owned, p)
}

// committed reads the group's committed offsets of ps, stable (waiting for
// transactions that are ending).
func (m *hookMember) committed(ps []consumer.TopicPartition) map[int32]int64 {
	out := map[int32]int64{}
	ctx, cancel := context.WithTimeout(kadm.RequireStable(context.Background()), 20*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		offs, err := m.adm.FetchOffsets(ctx, m.group)
		if err == nil {
			err = offs.Error()
		}
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		for _, tp := range ps {
			if o, ok := offs.Lookup(tp.Topic, tp.Partition); ok {
				out[tp.Partition] = o.At
			}
		}
		return out
	}
	m.mu.Lock()
	m.fail("fetching committed offsets: %v", ctx.Err())
	m.mu.Unlock()
	return out
}

func (m *hookMember) handler() consumer.Handler {
	return consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		m.mu.Lock()
		p := r.Partition
		if !m.owned[p] {
			m.fail("handler called for %d at offset %d, which is not assigned (OnAssigned not called, or OnRevoked already)", p, r.Offset)
		}
		m.running[p]++
		seq := m.seq[p]
		m.mu.Unlock()
		time.Sleep(2 * time.Millisecond) // work under way when the rebalance comes
		var err error
		if m.out != "" {
			err = consumer.Emit(ctx, &kgo.Record{Topic: m.out, Key: r.Key, Value: fmt.Appendf(nil, "%s %d %d %d", m.name, seq, p, r.Offset)})
		}
		m.mu.Lock()
		m.running[p]--
		if err == nil {
			m.last[p] = r.Offset
		}
		m.mu.Unlock()
		return err
	})
}

func (m *hookMember) owns() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.owned)
}

func (m *hookMember) revokedCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, k := range m.revoked {
		n += k
	}
	return n
}

func (m *hookMember) handledEach(n int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := range int32(4) {
		if m.last[p] < n {
			return fmt.Errorf("%s: last handled %v", m.name, m.last)
		}
	}
	return nil
}

// verify checks the member's record: no violation, and every partition
// assigned was revoked (or lost) as many times.
func (m *hookMember) verify(t *testing.T) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.errs {
		t.Error(e)
	}
	for p, n := range m.assigned {
		if m.revoked[p]+m.lost[p] != n {
			t.Errorf("%s: partition %d assigned %d times, revoked %d and lost %d", m.name, p, n, m.revoked[p], m.lost[p])
		}
		if m.lost[p] != 0 {
			t.Errorf("%s: partition %d lost %d times in an orderly rebalance", m.name, p, m.lost[p])
		}
	}
}

// TestRebalanceHooks runs, on real Kafka, consumer A over 4 partitions;
// consumer B joins (cooperative rebalance: A gives up some partitions), then
// A shuts down (B takes the rest). The hooks must bracket the handler calls
// of every partition: OnAssigned before the first handler call of the
// assignment, OnRevoked after the last one returned, never with a call under
// way; every assignment ends in one OnRevoked. At OnRevoked, the group's
// committed offset (read then with an admin client) covers every record of
// the partition handled: in at-least-once mode it is the offset after the
// last record handled; in transactional mode it is the offset after the last
// record whose output (emitted in the transaction) is committed, and no
// output of that assignment is committed beyond it.
func TestRebalanceHooks(t *testing.T) {
	for _, txn := range []bool{false, true} {
		name := "at-least-once"
		if txn {
			name = "transactional"
		}
		t.Run(name, func(t *testing.T) {
			kc := testkit.Shared(t)
			const parts, perPart = 4, 3000
			topic := kc.NewTopic(t, parts, nil)
			group := topic
			var out string
			if txn {
				out = kc.NewTopic(t, 1, nil)
			}
			// In small batches: a fetch returns whole batches.
			cl := kc.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
			for i := 0; i < parts*perPart; i += 200 {
				var recs []*kgo.Record
				for j := i; j < i+200; j++ {
					recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(j % parts), Key: []byte(strconv.Itoa(j))})
				}
				if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			adm := kc.Admin(t)
			a := newHookMember(t, "A", group, topic, out, adm)
			b := newHookMember(t, "B", group, topic, out, adm)
			start := func(m *hookMember) (*consumer.Consumer, chan error) {
				opts := append(m.options(), consumer.Topics(topic), consumer.CommitInterval(time.Hour)) // commits only on revocation
				conn := whippet.Connection{Brokers: kc.Brokers}
				if txn {
					opts = append(opts, consumer.Transactional(topic+"-"+m.name))
					// A transaction takes polled records in their
					// partitions' order, so large fetches would have the
					// partitions handled one after the other: small ones
					// (of small batches) keep every partition busy.
					conn.ClientOptions = []kgo.Opt{kgo.FetchMaxPartitionBytes(4 << 10)}
				}
				c := newConsumerConn(t, conn, m.handler(), group, opts...)
				errc := make(chan error, 1)
				go func() { errc <- c.Run(context.Background()) }()
				return c, errc
			}
			stop := func(c *consumer.Consumer, errc chan error) {
				c.Close(context.Background())
				if err := <-errc; err != nil {
					t.Errorf("Run: %v", err)
				}
			}

			ca, errA := start(a)
			testkit.Eventually(t, 60*time.Second, func() error { return a.handledEach(20) })
			cb, errB := start(b)
			testkit.Eventually(t, 60*time.Second, func() error {
				if a.revokedCount() == 0 || b.owns() == 0 {
					return fmt.Errorf("A revoked %d, B owns %d", a.revokedCount(), b.owns())
				}
				return nil
			})
			stop(ca, errA) // A's shutdown revokes the rest
			testkit.Eventually(t, 60*time.Second, func() error {
				if b.owns() != parts {
					return fmt.Errorf("B owns %d", b.owns())
				}
				return nil
			})
			testkit.Eventually(t, 60*time.Second, func() error {
				a.mu.Lock()
				defer a.mu.Unlock()
				b.mu.Lock()
				defer b.mu.Unlock()
				for p := range int32(parts) {
					if max(a.last[p], b.last[p]) != perPart-1 {
						return fmt.Errorf("A handled up to %v, B up to %v", a.last, b.last)
					}
				}
				return nil
			})
			stop(cb, errB)

			a.verify(t)
			b.verify(t)
			if a.revokedCount() != parts || b.revokedCount() != parts {
				t.Errorf("OnRevoked reported %d partitions of A and %d of B, want %d each", a.revokedCount(), b.revokedCount(), parts)
			}
			if !txn {
				// A's revocations (the rebalance, its shutdown) came with
				// records of each partition handled; B handled records of
				// the partitions it got first at least.
				if a.checked != parts || b.checked < 1 {
					t.Errorf("commit checked at OnRevoked for %d partitions of A and %d of B, want %d and at least 1", a.checked, b.checked, parts)
				}
				return
			}
			verifyCommittedOutputs(t, kc, out, parts*perPart, a, b)
		})
	}
}

// verifyCommittedOutputs reads the committed outputs of a transactional
// test and checks each OnRevoked's committed offset against them: the
// outputs of that assignment are committed exactly below it.
func verifyCommittedOutputs(t *testing.T, kc *testkit.Cluster, out string, atLeast int, members ...*hookMember) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	recs := kc.ConsumeUntil(ctx, t, out, func(all []*kgo.Record) bool { return len(all) >= atLeast },
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	type key struct {
		name   string
		seq, p int
	}
	maxOut := map[key]int64{}
	for _, r := range recs {
		f := strings.Fields(string(r.Value))
		seq, _ := strconv.Atoi(f[1])
		p, _ := strconv.Atoi(f[2])
		o, _ := strconv.ParseInt(f[3], 10, 64)
		k := key{f[0], seq, p}
		if cur, ok := maxOut[k]; !ok || o > cur {
			maxOut[k] = o
		}
	}
	checked := 0
	for _, m := range members {
		for _, rv := range m.revokes {
			o, ok := maxOut[key{m.name, rv.seq, rv.p}]
			if !ok {
				continue // nothing of that assignment committed
			}
			if rv.committed != o+1 {
				t.Errorf("%s: OnRevoked(%d) of assignment %d saw committed offset %d, but the last committed output of that assignment is of offset %d",
					m.name, rv.p, rv.seq, rv.committed, o)
			}
			checked++
		}
	}
	var names []string
	for k := range maxOut {
		names = append(names, fmt.Sprintf("%s/%d/%d", k.name, k.seq, k.p))
	}
	slices.Sort(names)
	if checked < 8 {
		t.Errorf("checked %d revocations against committed outputs (assignments with outputs: %v), want at least 8", checked, names)
	}
}

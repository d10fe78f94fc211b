package consumer

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Defaults of the health checks (see Consumer.Health).
const (
	// DefaultHealthPollLimit is how long the consumer's loop may go without
	// polling before the consumer is not live: Kafka's max.poll.interval.ms,
	// after which a Java consumer leaves its group.
	DefaultHealthPollLimit = 5 * time.Minute
	// DefaultHealthBlockedLimit is how long a partition may be blocked
	// before the consumer is not ready: long enough that a transient outage
	// of what handlers call (blocking retries riding it out) does not flap
	// readiness, short enough that a partition stuck for good shows within
	// minutes.
	DefaultHealthBlockedLimit = 5 * time.Minute
)

// HealthPollLimit sets how long the consumer's loop may go without polling
// Kafka before the consumer is not live (see Consumer.Health). The loop
// hands fetched records to the partitions and polls again at once (holding
// back at most BackpressureWait while a partition is full), so in
// at-least-once mode only a fault holds it up; waiting in a poll, for records
// or while Kafka is unreachable, counts as polling. In Transactional mode the
// loop also waits for each transaction's handlers and commit, so the limit
// must be at least TransactionTimeout. Default: DefaultHealthPollLimit (5m).
func HealthPollLimit(d time.Duration) Option { return func(c *config) { c.healthPoll = d } }

// HealthBlockedLimit sets how long a partition may be blocked before the
// consumer is not ready (see Consumer.Health): a record in blocking retries,
// a forward to a retry or dead-letter topic that fails, another group's
// record refused in a retry topic, or a handler call that has not returned
// (in key-parallel mode: no handler call of the partition has finished while
// one runs). A retry waiting for its due time is not blocked.
// Default: DefaultHealthBlockedLimit (5m).
func HealthBlockedLimit(d time.Duration) Option { return func(c *config) { c.healthBlocked = d } }

// Health is a snapshot of the consumer's liveness and readiness.
type Health struct {
	// Live is true while Run runs and its loop polls Kafka: it has not gone
	// HealthPollLimit without polling. An unreachable Kafka does not make
	// the consumer not live (restarting it would not help).
	Live bool
	// Ready is true when the consumer is live, a member of its group with
	// its assignment (possibly empty: more members than partitions), and no
	// partition of it has been blocked longer than HealthBlockedLimit. It
	// turns false when the group session ends (Kafka unreachable for the
	// session timeout, an eviction) and true again when the consumer
	// rejoins. Pausing the consumer or a partition does not change it.
	Ready bool
	// Problems say why the consumer is not ready (and, for those that
	// concern liveness, not live); empty when it is ready.
	Problems []string
	// Partitions counts the partitions assigned now.
	Partitions int
}

// Health returns the consumer's liveness and readiness now.
func (c *Consumer) Health() Health {
	now := time.Now()
	var h Health
	liveProblems := c.liveProblems(now)
	h.Live = len(liveProblems) == 0
	h.Problems = liveProblems
	if h.Live {
		if !c.member.Load() {
			why := "joining"
			if w := c.memberWhy.Load(); w != nil {
				why = *w
			}
			h.Problems = append(h.Problems, fmt.Sprintf("not a member of group %s (%s)", c.cfg.group, why))
		}
		h.Problems = append(h.Problems, c.blockedProblems(now)...)
	}
	h.Ready = len(h.Problems) == 0
	h.Partitions = len(c.assigned())
	return h
}

func (c *Consumer) liveProblems(now time.Time) []string {
	if !c.started.Load() {
		return []string{"not running (Run not called)"}
	}
	select {
	case <-c.done:
		return []string{"not running (Run returned)"}
	default:
	}
	if out := c.pollOut.Load(); out != 0 {
		if d := now.Sub(time.Unix(0, out)); d > c.cfg.healthPoll {
			return []string{fmt.Sprintf("the consumer's loop has not polled for %v (HealthPollLimit %v)", d.Round(time.Second), c.cfg.healthPoll)}
		}
	}
	return nil
}

// blockedProblems lists the partitions blocked longer than
// HealthBlockedLimit, one problem each.
func (c *Consumer) blockedProblems(now time.Time) []string {
	var out []string
	for _, p := range c.assigned() {
		if why := p.blockedFor(now, c.cfg.healthBlocked); why != "" {
			out = append(out, why)
		}
	}
	slices.Sort(out)
	return out
}

// blockedFor says how the partition is blocked, if it has been for longer
// than limit.
func (p *partition) blockedFor(now time.Time, limit time.Duration) string {
	p.mu.Lock()
	var oldest *blockedRecord
	for b := range p.blocked {
		if !b.waiting && now.Sub(b.since) > limit && (oldest == nil || b.since.Before(oldest.since)) {
			oldest = b
		}
	}
	var why string
	if oldest != nil {
		what := "failing"
		if oldest.forwarding {
			what = "forward failing"
		}
		why = fmt.Sprintf("%s[%d] blocked at offset %d for %v (%s: %s)", p.topic, p.id, oldest.rec.Offset,
			now.Sub(oldest.since).Round(time.Second), what, oldest.err)
	}
	var (
		since, offset int64
		calling       bool
	)
	if single := p.callH; !p.keyed && single != nil {
		// The call's record first: callStarts stored its start before
		// the outbox opened.
		offset, calling = single.out.callOffset()
		if after := p.probedCall(offset, now); calling {
			since = max(p.callSince.Load(), after)
		}
	}
	p.mu.Unlock()
	if why != "" {
		return why
	}
	if p.keyed && p.calls.Load() > 0 {
		since, offset, calling = p.callSince.Load(), p.callOffset.Load(), true
	}
	if calling {
		if d := now.Sub(time.Unix(0, since)); d > limit {
			return fmt.Sprintf("%s[%d] blocked at offset %d for %v (a handler call has not returned)", p.topic, p.id, offset, d.Round(time.Second))
		}
	}
	return ""
}

// probedCall notes that a health probe at now saw the strict-order call of
// the record at offset under way (-1: none, as outbox.callOffset says), and
// returns a time before which that call did not start (Unix ns, 0 if
// unknown): that of the last probe that saw another call, or none.
// callSince is the start of the call's group of fast calls, which is long
// before the call if one of the group was slow (see laneClock). Called with
// p.mu held.
func (p *partition) probedCall(offset int64, now time.Time) int64 {
	if offset != p.probe.offset {
		p.probe.offset, p.probe.callAfter = offset, p.probe.at
	}
	p.probe.at = now.UnixNano()
	return p.probe.callAfter
}

// callStarts and callEnds bracket each handler call, for blockedFor; the
// call's outbox opens after callStarts, so a reading of the outbox's call
// sees the call's callSince. now is the call's start (Unix ns), from the
// lane's clock: a time.Now per record would cost a fifth of the consumer's
// own CPU in a plain consume. In strict partition order the partition makes
// one call at a time and its outbox says whether one is under way and for
// which record, so the hot path stores only the start, and only when the
// clock was read since the last call (a group of fast calls shares the
// reading taken before its first call; blockedFor bounds it with what the
// health probes saw, see probedCall): an atomic store costs as much as the
// rest of the consumer's work per record. In
// key-parallel mode callSince is when the partition's calls last made
// progress (a call started while none ran, or one finished while others
// run on).
func (p *partition) callStarts(rec *kgo.Record, now int64) {
	if !p.keyed {
		if p.callSince.Load() != now {
			p.callSince.Store(now)
		}
		return
	}
	if p.calls.Load() == 0 {
		p.callOffset.Store(rec.Offset)
		p.callSince.Store(now)
	}
	p.calls.Add(1)
}

func (p *partition) callEnds() {
	if !p.keyed {
		return
	}
	if p.calls.Add(-1) > 0 {
		p.callSince.Store(time.Now().UnixNano())
	}
}

// polling and polled bracket the loop's polls, for liveness.
func (c *Consumer) polling() { c.pollOut.Store(0) }
func (c *Consumer) polled()  { c.pollOut.Store(time.Now().UnixNano()) }

// joined and left follow the consumer's group membership, for readiness.
func (c *Consumer) joined() { c.member.Store(true) }

func (c *Consumer) left(why string) {
	c.memberWhy.Store(&why)
	c.member.Store(false)
}

// groupHealth is a franz-go hook that sees the group session end.
type groupHealth struct{ c *Consumer }

// OnGroupManageError implements kgo.HookGroupManageError.
func (g groupHealth) OnGroupManageError(err error) { g.c.left(err.Error()) }

// LiveHandler returns an http.Handler for a liveness probe: 200 "consumer
// <group>: live" while the consumer is live (see Health), else 503 saying
// why. A liveness probe restarts the process: it fails only when Run is not
// running or its loop is stuck, never because Kafka is unreachable.
func (c *Consumer) LiveHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if problems := c.liveProblems(time.Now()); len(problems) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "consumer %s: not live: %s\n", c.cfg.group, strings.Join(problems, "; "))
			return
		}
		fmt.Fprintf(w, "consumer %s: live\n", c.cfg.group)
	})
}

// ReadyHandler returns an http.Handler for a readiness probe: 200 "consumer
// <group>: ready, <n> partitions" while the consumer is ready (see Health),
// else 503 listing the problems, like kvstore.Store.ReadyHandler.
func (c *Consumer) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		h := c.Health()
		if !h.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "consumer %s: not ready: %s\n", c.cfg.group, strings.Join(h.Problems, "; "))
			return
		}
		fmt.Fprintf(w, "consumer %s: ready, %d partitions\n", c.cfg.group, h.Partitions)
	})
}

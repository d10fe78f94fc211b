package consumer

import (
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet/retry"
)

// This file holds the records that cannot be handled now: retries waiting
// for their due time, records of another group in a retry topic, and the
// Blocked listing of every record that holds up its partition. At-least-once
// mode waits in place with the partition's fetching paused; transactional
// mode parks the partition instead (the record is rewound with the
// transaction and fetched again when due): the two are the sinks' awaitDue
// and refuse.

// DueTolerance bounds a retry's due time: a record of retry topic n is
// handled no later than its timestamp plus the policy's n-th non-blocking
// interval plus DueTolerance, whatever its due header says (a forged or
// corrupted header, a forwarding host whose clock runs ahead of the record's
// timestamp). An honest due time is its failure time plus that interval,
// and the record's timestamp is taken after the failure, so the bound only
// matters when something is wrong; the tolerance leaves room for a topic
// whose timestamps the broker sets (LogAppendTime) with a clock behind.
const DueTolerance = time.Minute

// admit readies rec, a record of the partition's retry stage with the
// retry information info (its headers'), for its attempt: it refuses a
// record of another group (see foreign) and holds a retry until its due
// time. It returns info, its due time capped, and true when rec may be
// attempted now; otherwise the result of rec.
func (p *partition) admit(h *handling, rec *kgo.Record, info retry.Info, clock *laneClock) (retry.Info, result, bool) {
	if why := p.foreign(rec, info); why != "" {
		return info, h.sink.refuse(p, h, rec, info, why), false
	}
	if !info.Due.IsZero() {
		info.Due = p.capDue(rec, info.Due)
		if res, due := h.sink.awaitDue(p, h, rec, info); !due {
			return info, res, false
		}
		p.c.m.lateness.WithLabelValues(p.source).Observe(time.Since(info.Due).Seconds())
		clock.reset()
	}
	return info, handled, true
}

// capDue bounds the due time of rec, a record of the partition's retry
// stage, at its timestamp plus the stage's interval plus DueTolerance.
func (p *partition) capDue(rec *kgo.Record, due time.Time) time.Time {
	intervals := p.policy.NonBlockingIntervals()
	if p.stage >= len(intervals) || rec.Timestamp.UnixMilli() <= 0 {
		return due
	}
	limit := rec.Timestamp.Add(intervals[p.stage] + DueTolerance)
	if !due.After(limit) {
		return due
	}
	p.c.log.Warn("a retry's due time is later than its timestamp plus its stage's interval plus DueTolerance; it is due at that bound instead",
		zap.String("topic", rec.Topic), zap.Int32("partition", rec.Partition), zap.Int64("offset", rec.Offset),
		zap.Time("due", due), zap.Time("bound", limit))
	return limit
}

// awaitDue waits until rec's due time with the partition's fetching paused;
// Blocked lists the record as waiting, and Skip dead-letters it. It returns
// true when rec is due now; otherwise the result of rec.
func (atLeastOnce) awaitDue(p *partition, h *handling, rec *kgo.Record, info retry.Info) (result, bool) {
	switch p.waitDue(rec, info) {
	case waitStopped:
		return stopped, false
	case waitSkipped:
		return p.skipWaiting(h, rec, info), false
	}
	return handled, true
}

// awaitDue parks the partition until rec's due time instead of waiting
// inside the transaction: rec is rewound, and fetched again when due.
// Blocked lists the record as waiting, and Skip dead-letters it when it
// comes back.
func (b *txnBatch) awaitDue(p *partition, h *handling, rec *kgo.Record, info retry.Info) (result, bool) {
	e := p.parkedEntry(rec)
	switch {
	case e != nil && e.skipped:
		p.removeBlocked(e)
		return p.skipWaiting(h, rec, info), false
	case time.Until(info.Due) > 0:
		if e == nil {
			e = waiting(rec, info)
			e.parked = true
			p.addBlocked(e)
		}
		p.parkUntil(info.Due)
		return parked, false
	case e != nil:
		p.removeBlocked(e)
	}
	return handled, true
}

// parkedEntry returns the Blocked entry of rec if rec was parked
// (transactional mode), and drops those of records before it: handled. (A
// later one stays, with its skip, for when the partition gets back to it
// after a rewind.)
func (p *partition) parkedEntry(rec *kgo.Record) *blockedRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b *blockedRecord
	for o := range p.blocked {
		if o.parked {
			if o.rec.Offset == rec.Offset {
				b = o
			} else if o.rec.Offset < rec.Offset {
				delete(p.blocked, o)
				if !o.waiting && p.failingLocked() == 0 {
					p.c.m.blocked.Dec()
				}
			}
		}
	}
	return b
}

// parkUntil pauses fetching the partition until due: in transactional mode a
// retry record that is not due yet is not waited for inside the
// transaction; it is rewound, and fetched again when due.
func (p *partition) parkUntil(due time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.setPausedLocked(p.paused | pausedDue)
	if p.parkTimer != nil {
		p.parkTimer.Stop()
	}
	p.parkTimer = time.AfterFunc(time.Until(due), func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.closed {
			p.setPausedLocked(p.paused &^ pausedDue)
		}
	})
}

// foreign says why rec, a record of one of the consumer's retry topics, is
// not this group's to handle, or returns "". "<topic>-<group>-retry-<n>" is
// ambiguous when names contain "-" (topic "a-b" with group "c", topic "a"
// with group "b-c"), and the groups of colliding names read each other's
// records; the headers tell them apart: whippet names the group, Greyhound
// the original topic.
func (p *partition) foreign(rec *kgo.Record, info retry.Info) string {
	group := p.c.cfg.group
	switch {
	case info.Group != "" && info.Group != group:
	case info.Group == "" && info.OriginalTopic != rec.Topic && info.OriginalTopic != p.source:
	default:
		return ""
	}
	whose := fmt.Sprintf("group %q", info.Group)
	if info.Group == "" {
		whose = "a Greyhound group"
	}
	return fmt.Sprintf("not handled: a record of %s (topic %q) in retry topic %s, which is also group %q's retry topic of topic %q: "+
		"<topic>-<group>-retry-<n> names collide when topic and group names contain \"-\"; rename one of the groups "+
		"(Skip dead-letters this record)", whose, info.OriginalTopic, rec.Topic, group, p.source)
}

// refuse holds rec, a record of another group (see foreign), in Blocked
// until an operator skips it, which dead-letters it (at once under
// SkipAll): handling it would run this group's handler on another group's
// record, and passing over it unseen could lose a record if the collision is
// not what it seems. The partition stops behind it, as behind a record in
// blocking retries.
func (atLeastOnce) refuse(p *partition, h *handling, rec *kgo.Record, info retry.Info, why string) result {
	if p.skipAll.Load() {
		return p.skipRefused(h, rec, info, why)
	}
	p.logRefused(rec, why)
	p.markBeforeWait(rec)
	b := &blockedRecord{rec: rec, since: time.Now(), skip: make(chan struct{}), err: why}
	p.addBlocked(b)
	defer p.removeBlocked(b)
	select {
	case <-b.skip:
		return p.skipRefused(h, rec, info, why)
	case <-p.stopCh:
		return stopped
	}
}

// refuse parks the partition behind rec, a record of another group, until
// an operator skips it; it is fetched again then, and dead-lettered.
func (b *txnBatch) refuse(p *partition, h *handling, rec *kgo.Record, info retry.Info, why string) result {
	e := p.parkedEntry(rec)
	if e != nil && e.skipped || p.skipAll.Load() {
		if e != nil {
			p.removeBlocked(e)
		}
		return p.skipRefused(h, rec, info, why)
	}
	if e == nil {
		p.logRefused(rec, why)
		e = &blockedRecord{rec: rec, since: time.Now(), parked: true, skip: make(chan struct{}), err: why}
		p.addBlocked(e)
	}
	p.mu.Lock()
	if p.parkTimer != nil {
		p.parkTimer.Stop()
	}
	p.setPausedLocked(p.paused | pausedDue)
	p.mu.Unlock()
	return parked
}

// skipRefused dead-letters rec, a record of another group an operator
// skipped.
func (p *partition) skipRefused(h *handling, rec *kgo.Record, info retry.Info, why string) result {
	info.Group, info.LastError = p.c.cfg.group, why
	return p.skipWaiting(h, rec, info)
}

func (p *partition) logRefused(rec *kgo.Record, why string) {
	p.c.log.Error("a record of another group in a retry topic holds the partition until an operator skips it",
		zap.String("topic", rec.Topic), zap.Int32("partition", rec.Partition), zap.Int64("offset", rec.Offset), zap.String("error", why))
}

// waiting is the Blocked entry of rec, a retry waiting for its due time: the
// error and the attempts are those of the attempts before.
func waiting(rec *kgo.Record, info retry.Info) *blockedRecord {
	return &blockedRecord{rec: rec, since: time.Now(), waiting: true, skip: make(chan struct{}),
		err: info.LastError, attempts: max(info.Attempt-1, 0), next: info.Due}
}

// skipWaiting dead-letters rec, a record an operator skipped before it was
// handled in this stage (a retry waiting for its due time, or a refused
// one): the attempts it carries are those made before.
func (p *partition) skipWaiting(h *handling, rec *kgo.Record, info retry.Info) result {
	info.Attempt = max(info.Attempt-1, 1)
	return p.send(h, rec, info, skipped)
}

// skipped is the decision on a record an operator skipped.
var skipped = retry.Decision{Action: retry.DeadLetter, Reason: retry.ReasonSkipped}

// waitOutcome is how a wait for a due time ended.
type waitOutcome int

const (
	waitDone    waitOutcome = iota // due now
	waitStopped                    // the partition stopped
	waitSkipped                    // an operator skipped the record
	waitGoingOn
)

// waitDue waits until rec's due time with the partition's fetching paused,
// listed in Blocked as waiting. It ends at once if the partition stops or an
// operator skips the record.
func (p *partition) waitDue(rec *kgo.Record, info retry.Info) waitOutcome {
	d := time.Until(info.Due)
	if d <= 0 {
		return waitDone
	}
	p.markBeforeWait(rec)
	b := waiting(rec, info)
	p.addBlocked(b)
	defer p.removeBlocked(b)
	p.mu.Lock()
	p.setPausedLocked(p.paused | pausedDue)
	p.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	out := waitGoingOn
	for out == waitGoingOn {
		select {
		case <-t.C:
			// The timer runs on the monotonic clock, the due time is wall
			// clock time: if the clock was set back meanwhile, wait on.
			if d := time.Until(info.Due); d > 0 {
				t.Reset(d)
			} else {
				out = waitDone
			}
		case <-b.skip:
			out = waitSkipped
		case <-p.stopCh:
			return waitStopped
		}
	}
	p.mu.Lock()
	p.setPausedLocked(p.paused &^ pausedDue)
	p.mu.Unlock()
	return out
}

// blockedRecord is a record that holds up its partition: retried in place by
// a blocking policy, whose forward fails, or a retry waiting for its due time.
type blockedRecord struct {
	rec        *kgo.Record
	since      time.Time
	forwarding bool
	waiting    bool          // a retry waiting for its due time (next)
	parked     bool          // transactional: waiting, and fetched again when due
	skip       chan struct{} // closed by an operator's Skip; nil for forwards

	// under the partition's mu
	err      string
	attempts int
	next     time.Time
	skipped  bool
}

func (p *partition) updateBlocked(b *blockedRecord, err string, attempts int, next time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b.err, b.attempts, b.next = err, attempts, next
}

// addBlocked lists b in Blocked. The blocked-partitions gauge counts
// partitions held up by something wrong: a retry waiting for its due time is
// listed, but does not count.
func (p *partition) addBlocked(b *blockedRecord) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !b.waiting && p.failingLocked() == 0 {
		p.c.m.blocked.Inc()
	}
	p.blocked[b] = struct{}{}
}

func (p *partition) removeBlocked(b *blockedRecord) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.blocked[b]; !ok {
		return
	}
	delete(p.blocked, b)
	if !b.waiting && p.failingLocked() == 0 {
		p.c.m.blocked.Dec()
	}
}

// failingLocked counts the blocked records that are not waiting retries.
func (p *partition) failingLocked() int {
	n := 0
	for b := range p.blocked {
		if !b.waiting {
			n++
		}
	}
	return n
}

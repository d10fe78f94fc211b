package consumer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet/internal/toolarge"
	"github.com/whippet-go/whippet/retry"
)

// stage places a retry topic: it is retry topic n of the subscribed topic
// source.
type stage struct {
	source string
	n      int
}

// result is what became of a record in process.
type result int

const (
	handled    result = iota // the handler succeeded (transactional: outputs in the transaction)
	failed                   // failed, and accounted for without a forward
	forwarding               // being forwarded; finished when Kafka acknowledges it
	emitting                 // handled; finished when Kafka acknowledges its outputs
	stopped                  // the partition stopped before the record was finished
	parked                   // transactional: not due yet; the transaction ends before it
)

// DueTolerance bounds a retry's due time: a record of retry topic n is
// handled no later than its timestamp plus the policy's n-th non-blocking
// interval plus DueTolerance, whatever its due header says (a forged or
// corrupted header, a forwarding host whose clock runs ahead of the record's
// timestamp). An honest due time is its failure time plus that interval,
// and the record's timestamp is taken after the failure, so the bound only
// matters when something is wrong; the tolerance leaves room for a topic
// whose timestamps the broker sets (LogAppendTime) with a clock behind.
const DueTolerance = time.Minute

// process runs rec through the handler and the retry policy: blocking
// retries in place, then a forward to the next retry topic or to the
// dead-letter topic. Records of retry topics wait for their due time first
// (in transactional mode they are parked instead: see txnWork).
func (p *partition) process(h *handling, rec *kgo.Record, clock *laneClock) result {
	var ctx context.Context = h // first attempts carry no retry.Info: no allocation per record
	h.reached = nil
	var info retry.Info
	if p.stage >= 0 {
		info, _ = retry.InfoFor(rec)
		if why := p.foreign(rec, info); why != "" {
			return p.refuse(h, rec, info, why)
		}
		if !info.Due.IsZero() {
			info.Due = p.capDue(rec, info.Due)
			if res, due := p.awaitDue(h, rec, info); !due {
				return res
			}
			p.c.m.lateness.WithLabelValues(p.source).Observe(time.Since(info.Due).Seconds())
			clock.reset()
		}
		ctx = retry.WithInfo(ctx, info)
	}
	outs, err := p.attempt(ctx, h, rec)
	clock.lap()
	if err == nil {
		return p.succeeded(h, rec, outs)
	}
	if h.txn != nil && errors.Is(err, ErrAbort) {
		h.txn.fail(fmt.Errorf("the handler of %s[%d] offset %d asked to abort: %w", rec.Topic, rec.Partition, rec.Offset, err))
		return stopped
	}
	if p.stage < 0 {
		info = retry.FirstAttempt(rec) // headers on a subscribed topic are not ours to trust
	}
	p.noteFailure(ctx, rec, &info, err)
	reason := p.policy.Classify(err)

	if reason == "" && p.stage < 0 && p.policy.BlockingBackoff() != nil {
		var res result
		res, reason = p.retryBlocking(h, rec, &info, clock)
		if res != failed {
			return res
		}
	}
	target := retry.DLQTopicName(p.source, p.c.cfg.group)
	if reason == "" {
		if next, intervals := p.stage+1, p.policy.NonBlockingIntervals(); next < len(intervals) {
			target = retry.TopicName(p.source, p.c.cfg.group, next)
			info.Attempt++
			info.Due = time.Now().Add(intervals[next])
			p.c.m.retries.WithLabelValues(p.source, attemptLabel(info.Attempt)).Inc()
		} else {
			reason = retry.ReasonExhausted
		}
	}
	return p.send(h, rec, target, info, reason)
}

// send forwards rec, with info in its headers, to target: a retry topic, or
// the dead-letter topic when reason is set. In transactional mode the
// forward is part of the transaction.
func (p *partition) send(h *handling, rec *kgo.Record, target string, info retry.Info, reason retry.Reason) result {
	if reason != "" {
		info.Due = time.Time{}
		info.Reason = reason
	}
	// Produced with the values of the attempt that failed, so that a trace
	// goes on through the forward.
	out := &kgo.Record{Topic: target, Key: rec.Key, Value: rec.Value, Headers: info.Headers(rec.Headers), Context: h.valuesCtx()}
	p.c.ensureForwardTopics(p.ctx, p.cl, p.source)
	if h.txn != nil {
		if !h.txn.produce(out) {
			return stopped
		}
		if reason != "" {
			p.c.m.dlq.WithLabelValues(p.source, string(reason)).Inc()
		}
		return handled
	}
	p.forward(rec, []*kgo.Record{out}, reason)
	return forwarding
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

// awaitDue holds rec, a retry, until its due time: waiting with the
// partition's fetching paused, or, in transactional mode, parking the
// partition (the record is fetched again when due: see txnWork). Either way
// Blocked lists the record as waiting, and Skip dead-letters it. It returns
// true when rec is due now; otherwise the result of rec.
func (p *partition) awaitDue(h *handling, rec *kgo.Record, info retry.Info) (result, bool) {
	if h.txn == nil {
		switch p.waitDue(rec, info) {
		case waitStopped:
			return stopped, false
		case waitSkipped:
			return p.skipWaiting(h, rec, info), false
		}
		return handled, true
	}
	b := p.parkedEntry(rec)
	switch {
	case b != nil && b.skipped:
		p.removeBlocked(b)
		return p.skipWaiting(h, rec, info), false
	case time.Until(info.Due) > 0:
		if b == nil {
			b = waiting(rec, info)
			b.parked = true
			p.addBlocked(b)
		}
		p.parkUntil(info.Due)
		return parked, false
	case b != nil:
		p.removeBlocked(b)
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
// blocking retries; in transactional mode it is parked, and fetched again
// after the skip.
func (p *partition) refuse(h *handling, rec *kgo.Record, info retry.Info, why string) result {
	skip := func() result {
		info.Attempt = max(info.Attempt-1, 1)
		info.Group, info.LastError = p.c.cfg.group, why
		return p.send(h, rec, retry.DLQTopicName(p.source, p.c.cfg.group), info, retry.ReasonSkipped)
	}
	if h.txn != nil {
		b := p.parkedEntry(rec)
		if b != nil && b.skipped || p.skipAll.Load() {
			if b != nil {
				p.removeBlocked(b)
			}
			return skip()
		}
		if b == nil {
			p.logRefused(rec, why)
			b = &blockedRecord{rec: rec, since: time.Now(), parked: true, skip: make(chan struct{}), err: why}
			p.addBlocked(b)
		}
		p.mu.Lock()
		if p.parkTimer != nil {
			p.parkTimer.Stop()
		}
		p.setPausedLocked(p.paused | pausedDue)
		p.mu.Unlock()
		return parked
	}
	if p.skipAll.Load() {
		return skip()
	}
	p.logRefused(rec, why)
	p.markBeforeWait()
	b := &blockedRecord{rec: rec, since: time.Now(), skip: make(chan struct{}), err: why}
	p.addBlocked(b)
	defer p.removeBlocked(b)
	select {
	case <-b.skip:
		return skip()
	case <-p.stopCh:
		return stopped
	}
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

// skipWaiting dead-letters rec, a retry an operator skipped while it waited
// for its due time: it was not handled in this stage, so the attempts it
// carries are those made before.
func (p *partition) skipWaiting(h *handling, rec *kgo.Record, info retry.Info) result {
	info.Attempt = max(info.Attempt-1, 1)
	return p.send(h, rec, retry.DLQTopicName(p.source, p.c.cfg.group), info, retry.ReasonSkipped)
}

// succeeded finishes a record whose handler returned nil with outputs:
// produced in the transaction, or produced and acknowledged before the
// record is finished.
func (p *partition) succeeded(h *handling, rec *kgo.Record, outs []*kgo.Record) result {
	switch {
	case len(outs) == 0:
		return handled
	case h.txn != nil:
		if !h.txn.produce(outs...) {
			return stopped
		}
		return handled
	}
	p.forward(rec, outs, "")
	return emitting
}

// noteFailure records a failed attempt in info and reports it.
func (p *partition) noteFailure(ctx context.Context, rec *kgo.Record, info *retry.Info, err error) {
	now := time.Now()
	if info.FirstFailure.IsZero() {
		info.FirstFailure = now
	}
	info.LastFailure = now
	info.LastError = err.Error()
	info.Group = p.c.cfg.group
	p.c.failed(ctx, p, rec, info.Attempt, err)
}

// attemptLabel bounds the cardinality of the attempt label: infinite blocking
// retries would otherwise make one series per attempt.
func attemptLabel(n int) string {
	if n > 10 {
		return "10+"
	}
	return strconv.Itoa(n)
}

// retryBlocking retries rec in place after each wait of the blocking backoff.
// It returns the result of a retry that succeeds, stopped when the partition
// stops during a wait (or, transactional, the handler asks to abort), and
// otherwise failed with the reason to dead-letter rec ("" when the backoff
// is exhausted and the non-blocking stage comes next).
func (p *partition) retryBlocking(h *handling, rec *kgo.Record, info *retry.Info, clock *laneClock) (result, retry.Reason) {
	b := p.policy.BlockingBackoff()
	br := &blockedRecord{rec: rec, skip: make(chan struct{}), since: time.Now()}
	p.addBlocked(br)
	defer p.removeBlocked(br)
	if h.txn == nil {
		p.markBeforeWait()
	}
	for n := 1; ; n++ {
		if p.skipAll.Load() {
			return failed, retry.ReasonSkipped
		}
		d, ok := b.Delay(n)
		if !ok {
			return failed, ""
		}
		p.updateBlocked(br, info.LastError, info.Attempt, time.Now().Add(d))
		if p.keyed {
			<-p.c.sem // a record waiting to be retried holds no handler slot
			p.runnerWaits()
		}
		t := time.NewTimer(d)
		var outcome result = handled // the wait ended: retry
		var reason retry.Reason
		select {
		case <-t.C:
		case <-br.skip:
			outcome, reason = failed, retry.ReasonSkipped
		case <-p.stopCh:
			outcome = stopped
		}
		t.Stop()
		if p.keyed {
			p.runnerBack()
			p.c.sem <- struct{}{} // the caller releases it; every holder is in a handler that returns
		}
		if outcome != handled {
			return outcome, reason
		}
		info.Attempt++
		p.c.m.retries.WithLabelValues(p.source, attemptLabel(info.Attempt)).Inc()
		ctx := retry.WithInfo(h, *info)
		clock.reset()
		outs, err := p.attempt(ctx, h, rec)
		clock.lap()
		if err == nil {
			return p.succeeded(h, rec, outs), ""
		}
		if h.txn != nil && errors.Is(err, ErrAbort) {
			h.txn.fail(fmt.Errorf("the handler of %s[%d] offset %d asked to abort: %w", rec.Topic, rec.Partition, rec.Offset, err))
			return stopped, ""
		}
		p.noteFailure(ctx, rec, info, err)
		if reason := p.policy.Classify(err); reason != "" {
			return failed, reason
		}
	}
}

// markBeforeWait marks, in strict partition order, what the lane finished
// before a record that is about to wait (for a blocking retry or a due time):
// marks are otherwise batched, and the commit and Partitions' NextOffset would
// lag behind finished records for as long as the partition waits.
func (p *partition) markBeforeWait() {
	if p.keyed {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.markLocked()
}

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
	p.markBeforeWait()
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

// forward produces outs (the next life of rec in a retry or dead-letter
// topic, or the outputs its handler emitted) and finishes rec once Kafka
// acknowledges all of them. A failed produce is retried, with the partition
// stopped, until it succeeds or the partition is revoked: rec is never
// skipped, and an output acknowledged is never produced again.
func (p *partition) forward(rec *kgo.Record, outs []*kgo.Record, reason retry.Reason) {
	p.mu.Lock()
	if !p.keyed {
		p.pending = append(p.pending, rec)
	}
	p.mu.Unlock()
	p.wg.Add(1) // a drain waits for forwards under way
	f := &forwardState{rec: rec, reason: reason, left: len(outs)}
	for _, out := range outs {
		out.Context = withValues(p.ctx, out.Context)
		p.c.fwd.Produce(p.ctx, out, func(out *kgo.Record, err error) { p.forwarded(f, out, err) })
	}
}

// forwardState is one forward (or one record's outputs) and its retries.
type forwardState struct {
	rec    *kgo.Record
	reason retry.Reason

	mu        sync.Mutex
	left      int  // records not acknowledged (nor abandoned) yet
	abandoned bool // the partition was revoked: rec stays unfinished
	failures  int
	blocked   *blockedRecord // set once a produce fails
}

func (p *partition) forwarded(f *forwardState, out *kgo.Record, err error) {
	if err == nil {
		p.settle(f, false)
		return
	}
	err = toolarge.Explain(p.c.fwd, p.c.limits.option(out.Topic), out, err)
	p.mu.Lock()
	stopped := p.stopped
	p.mu.Unlock()
	if stopped || errors.Is(err, context.Canceled) {
		p.c.log.Warn("forward abandoned: the partition was revoked; the record is not committed and will be handled again",
			zap.String("topic", f.rec.Topic), zap.Int32("partition", f.rec.Partition), zap.Int64("offset", f.rec.Offset),
			zap.String("to", out.Topic), zap.Error(err))
		p.settle(f, true)
		return
	}
	f.mu.Lock()
	f.failures++
	failures, first := f.failures, f.blocked == nil
	if first {
		f.blocked = &blockedRecord{rec: f.rec, since: time.Now(), forwarding: true}
	}
	b := f.blocked
	f.mu.Unlock()
	p.c.m.forwardFailures.WithLabelValues(p.source).Inc()
	p.c.log.Error("forward failed; the partition stops until it succeeds",
		zap.String("topic", f.rec.Topic), zap.Int32("partition", f.rec.Partition), zap.Int64("offset", f.rec.Offset),
		zap.String("to", out.Topic), zap.Int("failures", failures), zap.Error(err))
	if first {
		p.addBlocked(b)
		p.mu.Lock()
		if p.fwdFailing++; p.fwdFailing == 1 {
			p.setPausedLocked(p.paused | pausedForward)
		}
		p.mu.Unlock()
	}
	// Jittered, so that records failing together because the broker refused
	// their batch as a whole (one of them too large) are retried apart.
	wait := min(100*time.Millisecond<<min(failures-1, 7), 10*time.Second)
	wait -= time.Duration(rand.Int64N(int64(wait) / 2))
	p.updateBlocked(b, "forward to "+out.Topic+" failed: "+err.Error(), failures, time.Now().Add(wait))
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		if err := p.c.createTopics(p.ctx, p.source, out.Topic); err != nil {
			p.c.log.Error("creating the forward's topic failed", zap.Error(err))
		}
	}
	go func() {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
			p.c.fwd.Produce(p.ctx, out, func(out *kgo.Record, err error) { p.forwarded(f, out, err) })
		case <-p.stopCh:
			p.forwarded(f, out, context.Canceled)
		}
	}()
}

// settle accounts for one record of a forward that Kafka acknowledged (or
// that was abandoned); the last one finishes the forward.
func (p *partition) settle(f *forwardState, abandon bool) {
	f.mu.Lock()
	f.left--
	f.abandoned = f.abandoned || abandon
	last, abandoned := f.left == 0, f.abandoned
	f.mu.Unlock()
	if !last {
		return
	}
	if !abandoned {
		p.forwardDone(f)
	}
	p.forwardEnd(f)
}

// forwardDone finishes the forwarded record.
func (p *partition) forwardDone(f *forwardState) {
	if f.reason != "" {
		p.c.m.dlq.WithLabelValues(p.source, string(f.reason)).Inc()
	}
	if !p.keyed {
		p.mu.Lock()
		// Acknowledgements come mostly in order: the head moves the commit,
		// any other only leaves the list.
		if len(p.pending) > 0 && p.pending[0] == f.rec {
			p.pending[0] = nil
			p.pending = p.pending[1:]
			p.markLocked()
		} else if i := slices.Index(p.pending, f.rec); i >= 0 {
			p.pending = slices.Delete(p.pending, i, i+1)
		}
		p.mu.Unlock()
	} else {
		p.finish(1, f.rec)
	}
}

// forwardEnd undoes what a failing forward set, and ends the forward.
func (p *partition) forwardEnd(f *forwardState) {
	if f.blocked != nil {
		p.removeBlocked(f.blocked)
		p.mu.Lock()
		if p.fwdFailing--; p.fwdFailing == 0 && !p.closed {
			p.setPausedLocked(p.paused &^ pausedForward)
		}
		p.mu.Unlock()
	}
	p.wg.Done()
}

// markLocked marks for commit, in strict partition order, everything up to
// the last record the lane finished, but not past a record being forwarded.
func (p *partition) markLocked() {
	r := p.progress.Load()
	if r == nil || p.closed {
		return
	}
	target, epoch := r.Offset+1, r.LeaderEpoch
	if len(p.pending) > 0 && p.pending[0].Offset < target {
		target, epoch = p.pending[0].Offset, p.pending[0].LeaderEpoch
	}
	if target <= p.next {
		return
	}
	p.next = target
	// Under p.mu so that no mark can follow the drain of a revoked partition:
	// franz-go would commit it for a partition we no longer own.
	p.cl.MarkCommitOffsets(map[string]map[int32]kgo.EpochOffset{p.topic: {p.id: {Epoch: epoch, Offset: target}}})
	p.m.lag.Set(float64(p.hwm - p.next))
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

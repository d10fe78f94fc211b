package consumer

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/retry"
)

// This file makes the attempts at a record (or a batch of them), with
// blocking retries as a wrapper around the attempt: after a failure the
// retry policy decides (retry.Policy.Decide), and while it says retry in
// place, the wrapper waits and attempts again. Whatever else it decides is
// returned to process, which hands it to the sink.

// attempt calls the handler once for rec, with ctx (h itself, or h wrapped
// with retry information), and returns its error and, if it succeeded, its
// outputs. clock's last reading is the call's start, for health.
func (p *partition) attempt(ctx context.Context, h *handling, rec *kgo.Record, clock *laneClock) ([]*kgo.Record, error) {
	if h.reached != ctx { // most often it is: spare the pointer store (a GC write barrier)
		h.reached = ctx
	}
	p.callStarts(rec, clock.nowUnixNano())
	h.out.open(rec)
	err := callSafely(ctx, p.c.handler, rec)
	p.callEnds()
	return h.out.close(err == nil), err
}

// attemptRetrying attempts rec, a record of a retry topic whose retry.Info
// is info, and retries it in place while the policy says so. It returns
// handled with the outputs of the attempt that succeeded; failed with the
// decision on the last failure (info updated); or stopped when the
// partition stopped during a wait or the attempt ended the work under way
// (see sink.abort). (A subscribed topic's record is attempted by process.)
func (p *partition) attemptRetrying(h *handling, rec *kgo.Record, info *retry.Info, clock *laneClock) ([]*kgo.Record, retry.Decision, result) {
	ctx := retry.WithInfo(h, *info)
	outs, err := p.attempt(ctx, h, rec, clock)
	clock.lap()
	if err == nil {
		return outs, retry.Decision{}, handled
	}
	clock.settle() // a blocking retry may wait next: end the group first
	return p.retryInPlace(ctx, h, rec, info, clock, err)
}

// retryInPlace goes on from the failure err of rec's attempt with ctx: it
// retries rec in place while the policy says so (attemptRetrying's
// results). Apart from the attempt, the success of a first attempt sets up
// nothing for retries.
func (p *partition) retryInPlace(ctx context.Context, h *handling, rec *kgo.Record, info *retry.Info, clock *laneClock, err error) ([]*kgo.Record, retry.Decision, result) {
	var br *blockedRecord // listed in Blocked from the first wait
	defer func() {
		if br != nil {
			p.removeBlocked(br)
		}
	}()
	for n := 0; ; n++ {
		if h.sink.abort(rec, err) {
			return nil, retry.Decision{}, stopped
		}
		if n == 0 && p.stage < 0 {
			*info = retry.FirstAttempt(rec)
		}
		p.noteFailure(ctx, rec, info, err)
		d := p.decide(n, err)
		if d.Action != retry.RetryInPlace {
			return nil, d, failed
		}
		if br == nil {
			br = &blockedRecord{rec: rec, skip: make(chan struct{}), since: time.Now()}
			p.addBlocked(br)
			h.sink.beforeWait(p, rec)
		}
		p.updateBlocked(br, info.LastError, info.Attempt, time.Now().Add(d.Delay))
		switch p.waitInPlace(br.skip, d.Delay) {
		case waitSkipped:
			return nil, skipped, failed
		case waitStopped:
			return nil, retry.Decision{}, stopped
		}
		info.Attempt++
		p.c.m.retries.WithLabelValues(p.source, attemptLabel(info.Attempt)).Inc()
		ctx = retry.WithInfo(h, *info)
		clock.reset()
		var outs []*kgo.Record
		outs, err = p.attempt(ctx, h, rec, clock)
		clock.lap()
		if err == nil {
			return outs, retry.Decision{}, handled
		}
	}
}

// decide is the policy's decision after the failure of a record's attempt
// err, made after n blocking retries, with an operator's SkipAll: it
// dead-letters the record (skipped) instead of retrying it in place, and
// instead of what follows the blocking retries, but not instead of a
// dead letter for its error (see classified).
func (p *partition) decide(n int, err error) retry.Decision {
	d := p.policy.Decide(p.stage, n, err)
	if p.skipAll.Load() && !classified(d) && (n > 0 || d.Action == retry.RetryInPlace) {
		return skipped
	}
	return d
}

// classified reports whether d dead-letters a record for its error
// (ReasonDecode, ReasonNonRetriable), which an operator's SkipAll does not
// override.
func classified(d retry.Decision) bool {
	return d.Action == retry.DeadLetter && d.Reason != retry.ReasonExhausted
}

// waitInPlace waits d before a blocking retry, or until the record is
// skipped or the partition stops. In key-parallel mode the record holds no
// handler slot while it waits, and its runner does not count against
// KeyParallel, so the other keys go on.
func (p *partition) waitInPlace(skip chan struct{}, d time.Duration) waitOutcome {
	if p.keyed {
		<-p.c.sem
		p.runnerWaits()
	}
	t := time.NewTimer(d)
	out := waitDone
	select {
	case <-t.C:
	case <-skip:
		out = waitSkipped
	case <-p.stopCh:
		out = waitStopped
	}
	t.Stop()
	if p.keyed {
		p.runnerBack()
		p.c.sem <- struct{}{} // the caller releases it; every holder is in a handler that returns
	}
	return out
}

// attemptBatch calls the batch handler once for recs (in offset order) and
// returns the error of each record, nil for those handled, and the outputs
// of those handled, by input.
func (p *partition) attemptBatch(h *handling, recs []*kgo.Record) ([]error, map[*kgo.Record][]*kgo.Record) {
	h.reached = h
	p.callStarts(recs[0], time.Now().UnixNano())
	h.out.openBatch(recs)
	err := callBatchSafely(h, p.c.batch, recs)
	p.callEnds()
	all, ins := h.out.closeBatch()
	errs := make([]error, len(recs))
	var be *BatchError
	switch {
	case err == nil:
	case errors.As(err, &be) && len(be.Errs) == len(recs):
		copy(errs, be.Errs)
	case errors.As(err, &be):
		err = fmt.Errorf("consumer: the batch handler returned a BatchError of %d errors for %d records: %w", len(be.Errs), len(recs), err)
		fallthrough
	default:
		for i := range errs {
			errs[i] = err
		}
	}
	var outs map[*kgo.Record][]*kgo.Record
	for i, out := range all {
		if outs == nil {
			outs = make(map[*kgo.Record][]*kgo.Record)
		}
		outs[ins[i]] = append(outs[ins[i]], out)
	}
	return errs, outs
}

// callBatchSafely runs h's batch call and turns a panic into a *PanicError.
func callBatchSafely(ctx context.Context, h BatchHandler, recs []*kgo.Record) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return h.HandleBatch(ctx, recs)
}

// attemptBatchRetrying attempts recs with one batch call and hands each
// record's outcome to the sink: the outputs of those handled, the forward of
// those the policy does not retry in place. Those it retries in place are
// attempted again together, in a call of their own, after the backoff's
// delay. res[i] gets the result of recs[i]; false if a record stopped.
func (p *partition) attemptBatchRetrying(h *handling, recs []*kgo.Record, res []result, clock *laneClock) bool {
	idx := make([]int, len(recs)) // the index in recs of each record of the call
	for i := range idx {
		idx[i] = i
	}
	var infos map[int]*retry.Info
	var blocked map[int]*blockedRecord // by index in recs: the records waiting
	defer func() {
		for _, br := range blocked {
			p.removeBlocked(br)
		}
	}()
	call := recs
	for n := 0; ; n++ {
		errs, outs := p.attemptBatch(h, call)
		clock.lap()
		for j, err := range errs {
			if err != nil && h.sink.abort(call[j], err) {
				// The transaction aborts: every record is handled again.
				fill(res, stopped)
				return false
			}
		}
		var again []int // indexes in recs of the records retried in place
		var delay time.Duration
		for j, err := range errs {
			i := idx[j]
			rec := recs[i]
			if err == nil {
				res[i] = h.sink.emit(p, rec, outs[rec])
				continue
			}
			info := infos[i]
			if info == nil {
				if infos == nil {
					infos = make(map[int]*retry.Info)
				}
				v := p.infoOf(rec)
				info = &v
				infos[i] = info
			}
			p.noteFailure(h, rec, info, err)
			d := p.decide(n, err)
			if d.Action == retry.RetryInPlace {
				again = append(again, i)
				delay = max(delay, d.Delay)
				continue
			}
			res[i] = p.send(h, rec, *info, d)
		}
		// Blocked lists the records waiting now, and only those.
		for i, br := range blocked {
			if !slices.Contains(again, i) {
				p.removeBlocked(br)
				delete(blocked, i)
			}
		}
		if len(again) == 0 {
			break
		}
		if blocked == nil {
			blocked = make(map[int]*blockedRecord, len(again))
		}
		for _, i := range again {
			br := blocked[i]
			if br == nil {
				br = &blockedRecord{rec: recs[i], skip: make(chan struct{}), since: time.Now()}
				p.addBlocked(br)
				blocked[i] = br
			}
			p.updateBlocked(br, infos[i].LastError, infos[i].Attempt, time.Now().Add(delay))
		}
		if n == 0 {
			h.sink.beforeWait(p, recs[0]) // the records before the call's are finished
		}
		// Skip dead-letters every record blocked on the partition at once:
		// one record's skip is enough.
		switch p.waitInPlace(blocked[again[0]].skip, delay) {
		case waitStopped:
			for _, i := range again {
				res[i] = stopped
			}
			return false
		case waitSkipped:
			for _, i := range again {
				res[i] = p.send(h, recs[i], *infos[i], skipped)
			}
			return true
		}
		call = make([]*kgo.Record, len(again))
		for j, i := range again {
			call[j] = recs[i]
			infos[i].Attempt++
			p.c.m.retries.WithLabelValues(p.source, attemptLabel(infos[i].Attempt)).Inc()
		}
		idx = again
		clock.reset()
	}
	for _, r := range res {
		if r == stopped {
			return false
		}
	}
	return true
}

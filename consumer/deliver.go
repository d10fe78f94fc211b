package consumer

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet/internal/toolarge"
	"github.com/whippet-go/whippet/retry"
)

// This file delivers what became of a record: the outputs of a handled
// record, or its next life in a retry or dead-letter topic. The sink is the
// one place where at-least-once and transactional mode differ along a
// record's path: at-least-once produces, and finishes the record (so that it
// may be committed) only once Kafka acknowledged; transactional produces in
// the transaction that commits the record's offset.

// sink is where a record's outcome goes: atLeastOnce, or the *txnBatch of
// the transaction under way.
type sink interface {
	// emit produces the outputs of a handled record.
	emit(p *partition, rec *kgo.Record, outs []*kgo.Record) result
	// forward produces out, the next life of rec in a retry or dead-letter
	// topic (reason set), in place of rec.
	forward(p *partition, rec, out *kgo.Record, reason retry.Reason) result
	// abort reports whether err, a failed attempt's error, ends the work
	// under way instead of counting as the record's failure (ErrAbort in
	// a transaction).
	abort(rec *kgo.Record, err error) bool
	// beforeWait runs before rec waits in place (a blocking retry).
	beforeWait(p *partition, rec *kgo.Record)
	// awaitDue and refuse hold a record that cannot be handled now (see
	// hold.go).
	awaitDue(p *partition, h *handling, rec *kgo.Record, info retry.Info) (result, bool)
	refuse(p *partition, h *handling, rec *kgo.Record, info retry.Info, why string) result
}

// send forwards rec, with info in its headers, as d decides: to the retry
// topic of the next stage, due d.Delay from now, or to the dead-letter
// topic with d.Reason.
func (p *partition) send(h *handling, rec *kgo.Record, info retry.Info, d retry.Decision) result {
	var target string
	if d.Action == retry.Forward {
		target = retry.TopicName(p.source, p.c.cfg.group, d.Stage)
		info.Attempt++
		info.Due = time.Now().Add(d.Delay)
		p.c.m.retries.WithLabelValues(p.source, attemptLabel(info.Attempt)).Inc()
	} else {
		target = retry.DLQTopicName(p.source, p.c.cfg.group)
		info.Due = time.Time{}
		info.Reason = d.Reason
	}
	// Produced with the values of the attempt that failed, so that a trace
	// goes on through the forward.
	out := &kgo.Record{Topic: target, Key: rec.Key, Value: rec.Value, Headers: info.Headers(rec.Headers), Context: h.valuesCtx()}
	p.c.ensureForwardTopics(p.ctx, p.cl, p.source)
	return h.sink.forward(p, rec, out, info.Reason)
}

// atLeastOnce is the sink of at-least-once mode.
type atLeastOnce struct{}

func (atLeastOnce) emit(p *partition, rec *kgo.Record, outs []*kgo.Record) result {
	if len(outs) == 0 {
		return handled
	}
	p.produce(rec, outs, "")
	return emitting
}

func (atLeastOnce) forward(p *partition, rec, out *kgo.Record, reason retry.Reason) result {
	p.produce(rec, []*kgo.Record{out}, reason)
	return forwarding
}

func (atLeastOnce) abort(*kgo.Record, error) bool { return false }

func (atLeastOnce) beforeWait(p *partition, rec *kgo.Record) { p.markBeforeWait(rec) }

// emit produces outs in the transaction.
func (b *txnBatch) emit(p *partition, rec *kgo.Record, outs []*kgo.Record) result {
	if len(outs) > 0 && !b.produce(outs...) {
		return stopped
	}
	return handled
}

// forward produces out in the transaction.
func (b *txnBatch) forward(p *partition, rec, out *kgo.Record, reason retry.Reason) result {
	if !b.produce(out) {
		return stopped
	}
	if reason != "" {
		p.c.m.dlq.WithLabelValues(p.source, string(reason)).Inc()
	}
	return handled
}

// abort dooms the transaction when the handler asks for it (ErrAbort).
func (b *txnBatch) abort(rec *kgo.Record, err error) bool {
	if !errors.Is(err, ErrAbort) {
		return false
	}
	b.fail(fmt.Errorf("the handler of %s[%d] offset %d asked to abort: %w", rec.Topic, rec.Partition, rec.Offset, err))
	return true
}

// beforeWait: nothing is marked in a transaction.
func (b *txnBatch) beforeWait(*partition, *kgo.Record) {}

// produce produces outs (the next life of rec in a retry or dead-letter
// topic, or the outputs its handler emitted) and finishes rec once Kafka
// acknowledges all of them. A failed produce is retried, with the partition
// stopped, until it succeeds or the partition is revoked: rec is never
// skipped, and an output acknowledged is never produced again.
func (p *partition) produce(rec *kgo.Record, outs []*kgo.Record, reason retry.Reason) {
	p.forwarding(rec)
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
	// Only this partition's stop abandons the forward. context.Canceled
	// alone does not: franz-go fails a whole produce batch when one of its
	// records' contexts is canceled, so the outputs of a call a revocation's
	// drain gave up on can fail those of a partition this member keeps,
	// which are produced again below.
	if stopped {
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
		if f.reason != "" {
			p.c.m.dlq.WithLabelValues(p.source, string(f.reason)).Inc()
		}
		p.forwardAcked(f.rec)
	}
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

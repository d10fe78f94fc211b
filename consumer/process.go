package consumer

import (
	"context"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/retry"
)

// This file is a record's way from its lane to its sink: a record of a
// retry topic is admitted first (hold.go: due time, another group's record),
// then attempted, with blocking retries around the attempt (attempt.go),
// then its outputs, or its next life as the policy decided, go to the sink
// (deliver.go). The lane then marks it for commit (commit.go).

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

// process runs rec through the handler and the retry policy's decision: the
// outputs of a record handled, or its forward to the next retry topic or to
// the dead-letter topic, go to the handling's sink.
//
// A subscribed topic's record is attempted here, and only a failure sets up
// a retry.Info (firstFailed): zeroing and passing one for every record was
// a good part of the consumer's own work per record (BenchmarkLanePerRecord).
func (p *partition) process(h *handling, rec *kgo.Record, clock *laneClock) result {
	if p.stage >= 0 {
		return p.processRetry(h, rec, clock)
	}
	outs, err := p.attempt(h, h, rec, clock) // a first attempt carries no retry.Info: no allocation per record
	clock.lap()
	if err == nil {
		return h.sink.emit(p, rec, outs)
	}
	return p.firstFailed(h, rec, clock, err)
}

// firstFailed goes on from the failure err of the first attempt at a
// subscribed topic's record: blocking retries, then the sink.
func (p *partition) firstFailed(h *handling, rec *kgo.Record, clock *laneClock, err error) result {
	var info retry.Info
	clock.settle() // a blocking retry may wait next: end the group first
	outs, d, res := p.retryInPlace(h, h, rec, &info, clock, err)
	return p.conclude(h, rec, info, outs, d, res)
}

// processRetry is process for a record of a retry topic: admitted first
// (due time, another group's record), then attempted with its retry.Info.
func (p *partition) processRetry(h *handling, rec *kgo.Record, clock *laneClock) result {
	// admit may forward the record before any attempt: not with the last
	// record's context. (On a subscribed topic the attempt comes first and
	// sets it.)
	h.reached = nil
	info, _ := retry.InfoFor(rec)
	info, res, ok := p.admit(h, rec, info, clock)
	if !ok {
		return res
	}
	outs, d, res := p.attemptRetrying(h, rec, &info, clock)
	return p.conclude(h, rec, info, outs, d, res)
}

// conclude hands the outcome of a record's attempts to the sink: the
// outputs of a record handled, or the forward the policy decided for a
// record that failed.
func (p *partition) conclude(h *handling, rec *kgo.Record, info retry.Info, outs []*kgo.Record, d retry.Decision, res result) result {
	switch res {
	case handled:
		return h.sink.emit(p, rec, outs)
	case failed:
		return p.send(h, rec, info, d)
	}
	return res
}

// processBatch is process for the batch handler: recs are records of the
// partition in offset order (key-parallel mode: of some of its keys), and
// res[i] gets the result of recs[i]. In a retry topic a record that must be
// held (not due yet, another group's) ends the call of the records before
// it; once one stops or parks, the records after it are not handled
// (stopped).
func (p *partition) processBatch(h *handling, recs []*kgo.Record, clock *laneClock, res []result) {
	h.reached = nil
	if p.stage < 0 {
		p.attemptBatchRetrying(h, recs, res, clock)
		return
	}
	start := 0
	for i, rec := range recs {
		info, _ := retry.InfoFor(rec)
		if i > start && p.mustHold(rec, info) {
			if !p.attemptBatchRetrying(h, recs[start:i], res[start:i], clock) {
				fill(res[i:], stopped)
				return
			}
			start = i
		}
		if _, r, ok := p.admit(h, rec, info, clock); !ok {
			res[i] = r
			if r == stopped || r == parked {
				fill(res[i+1:], stopped)
				return
			}
			start = i + 1
		}
	}
	if start < len(recs) {
		p.attemptBatchRetrying(h, recs[start:], res[start:], clock)
	}
}

// mustHold reports whether rec, a record of the partition's retry stage
// with the retry information info, cannot be attempted now: another
// group's, or not due yet.
func (p *partition) mustHold(rec *kgo.Record, info retry.Info) bool {
	return p.foreign(rec, info) != "" || !info.Due.IsZero() && time.Until(p.capDue(rec, info.Due)) > 0
}

func fill(res []result, r result) {
	for i := range res {
		res[i] = r
	}
}

// infoOf is the retry information of rec after its first failure in this
// stage: its headers' in a retry topic (headers on a subscribed topic are
// not ours to trust).
func (p *partition) infoOf(rec *kgo.Record) retry.Info {
	if p.stage < 0 {
		return retry.FirstAttempt(rec)
	}
	info, _ := retry.InfoFor(rec)
	return info
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

package consumer

import (
	"slices"
	"sort"

	"github.com/twmb/franz-go/pkg/kgo"
)

// This file is the one place that marks offsets for commit, in both
// ordering modes. A record is finished when it was handled, or failed and
// was accounted for; a record whose outputs or forward are being produced is
// finished when Kafka acknowledges them (forwardAcked). The commit never
// passes an unfinished record: in strict partition order it follows the
// lane's progress but stays below the first record being produced
// (pending); in key-parallel mode the tracker finds the finished prefix.
// Transactional mode commits in the transaction instead (see txn.go).

// finish records that n records are done, the last of them last, and marks
// for commit the highest offset below which every record is done.
func (p *partition) finish(n int, last *kgo.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queued -= n
	p.done += n
	if !p.keyed {
		p.laneReachedLocked(last.Offset+1, last.LeaderEpoch)
		p.markLocked()
	} else {
		if commit := p.unfin.finish(last); commit != nil && !p.closed {
			p.next = commit.Offset + 1
			// Under p.mu so that no mark can follow the drain of a revoked
			// partition: franz-go would commit it for a partition we no
			// longer own.
			p.cl.MarkCommitRecords(commit)
			p.m.lag.Set(float64(p.hwm - p.next))
		}
		p.admitted -= n
		p.admitLocked()
	}
	if p.full && p.queued <= p.c.cfg.partitionBuffer/2 {
		p.full = false
		p.setPausedLocked(p.paused &^ pausedBackpressure)
		p.c.signalDrained()
	}
}

// forwarding notes that rec's outputs or forward are being produced: in
// strict partition order the commit stays below it until forwardAcked.
func (p *partition) forwarding(rec *kgo.Record) {
	if p.keyed {
		return // the tracker holds rec until finish
	}
	p.mu.Lock()
	p.pending = append(p.pending, rec)
	p.mu.Unlock()
}

// forwardAcked finishes rec, whose outputs or forward Kafka acknowledged.
func (p *partition) forwardAcked(rec *kgo.Record) {
	if p.keyed {
		p.finish(1, rec)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// Acknowledgements come mostly in order: the head moves the commit, any
	// other only leaves the list. (The lane counted rec finished already.)
	if len(p.pending) > 0 && p.pending[0] == rec {
		p.pending[0] = nil
		p.pending = p.pending[1:]
		p.markLocked()
	} else if i := slices.Index(p.pending, rec); i >= 0 {
		p.pending = slices.Delete(p.pending, i, i+1)
	}
}

// markBeforeWait marks, in strict partition order, what the lane finished
// before rec, a record that is about to wait (for a blocking retry or a due
// time): marks are otherwise batched, and the commit and Partitions'
// NextOffset would lag behind finished records for as long as the partition
// waits.
func (p *partition) markBeforeWait(rec *kgo.Record) {
	if p.keyed {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.laneReachedLocked(rec.Offset, rec.LeaderEpoch)
	p.markLocked()
}

// laneReachedLocked notes that the lane finished every record below offset
// end (strict partition order).
func (p *partition) laneReachedLocked(end int64, epoch int32) {
	if end > p.laneEnd {
		p.laneEnd, p.laneEpoch = end, epoch
	}
}

// markLocked marks for commit, in strict partition order, everything the
// lane finished (laneEnd), but not past a record being forwarded.
// Transactional mode commits in its transactions instead.
func (p *partition) markLocked() {
	if p.laneEnd < 0 || p.closed || p.c.cfg.txnSet {
		return
	}
	target, epoch := p.laneEnd, p.laneEpoch
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

// tracker holds unfinished records in offset order so that key-parallel mode
// commits only below the first unfinished record.
type tracker struct {
	recs []*kgo.Record
	done []bool
	head int
}

func (t *tracker) add(r *kgo.Record) {
	t.recs = append(t.recs, r)
	t.done = append(t.done, false)
}

// finish marks r done and returns the last record of the finished prefix that
// it completes, or nil if an earlier record is still unfinished.
func (t *tracker) finish(r *kgo.Record) *kgo.Record {
	live := t.recs[t.head:]
	i := t.head + sort.Search(len(live), func(i int) bool { return live[i].Offset >= r.Offset })
	if i >= len(t.recs) || t.recs[i] != r {
		return nil // not tracked: cannot happen, and must not move the commit
	}
	t.done[i] = true
	var last *kgo.Record
	for t.head < len(t.recs) && t.done[t.head] {
		last = t.recs[t.head]
		t.recs[t.head] = nil
		t.head++
	}
	if t.head == len(t.recs) {
		t.recs, t.done, t.head = t.recs[:0], t.done[:0], 0
	} else if t.head > 1024 && t.head > len(t.recs)/2 {
		n := copy(t.recs, t.recs[t.head:])
		copy(t.done, t.done[t.head:])
		clear(t.recs[n:])
		t.recs, t.done, t.head = t.recs[:n], t.done[:n], 0
	}
	return last
}

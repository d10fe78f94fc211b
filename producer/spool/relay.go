package spool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet/internal/wal"
)

// relay delivers spooled records to Kafka in sequence order, a batch at a
// time, and frees them once Kafka acknowledged them (or once they are set
// aside as dead). Records of one key go to one partition of one idempotent
// client in sequence order, so Kafka keeps their order.
//
// Once it has caught up with the durable records it holds new produces (the
// gate) until the spool is empty, so that they go to Kafka directly after
// the last spooled record. If that takes longer than Threshold (the held
// produces then spool) or fails, it lets produces through and does not hold
// them again for a while, longer after each miss.
func (p *Producer) relay() {
	defer close(p.relayDone)
	defer p.openGate()
	cur := p.wal.Cursor(p.state.acked + 1)
	defer cur.Close()
	ahead := map[uint64]bool{} // acknowledged beyond state.acked
	failures := 0
	var gateAt, noGateUntil time.Time // when produces were held (zero: not held)
	gateMisses := 0
	missGate := func() {
		p.openGate()
		gateAt = time.Time{}
		noGateUntil = time.Now().Add(p.cfg.threshold << min(gateMisses, 5))
		gateMisses++
	}
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		if !gateAt.IsZero() && time.Since(gateAt) > p.cfg.threshold {
			missGate()
		}
		entries, err := cur.Next(p.cfg.relayBatch)
		if err == nil && len(entries) < p.cfg.relayBatch && gateAt.IsZero() && time.Now().After(noGateUntil) && p.closeGate() {
			gateAt = time.Now()
		}
		if err == nil && len(entries) == 0 {
			if p.drained() {
				gateAt, gateMisses = time.Time{}, 0
				select {
				case <-p.wake:
				case <-p.stop:
					return
				}
				continue
			}
			// Records still on their way to the disk: each nudges the
			// relay once durable; the timer is a fallback.
			t := time.NewTimer(100 * time.Millisecond)
			select {
			case <-p.wake:
			case <-t.C:
			case <-p.stop:
				t.Stop()
				return
			}
			t.Stop()
			continue
		}
		if err == nil {
			err = p.relayBatch(entries, ahead)
		}
		if err == nil {
			failures = 0
			p.lastRelayErr.Store(nil)
			continue
		}
		if !gateAt.IsZero() {
			missGate()
		}
		msg := err.Error()
		p.lastRelayErr.Store(&msg)
		failures++
		if failures == 1 || failures%10 == 0 {
			p.log.Warn("spool: relay attempt failed; records stay spooled and are sent again", zap.String("dir", p.cfg.dir), zap.Int("failures", failures), zap.Error(err))
		}
		cur.Seek(p.state.acked + 1)
		wait := time.Duration(min(failures, 6)) * 250 * time.Millisecond
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-p.stop:
			t.Stop()
			return
		}
	}
}

// closeGate holds new produces while spooling; it reports whether it did.
func (p *Producer) closeGate() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.spooling || p.gate != nil {
		return false
	}
	p.gate = make(chan struct{})
	return true
}

// openGate lets held produces go on (to the spool unless it was drained).
func (p *Producer) openGate() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate != nil {
		close(p.gate)
		p.gate = nil
	}
}

// drained switches back to producing directly once the spool is empty, and
// reports whether it is.
func (p *Producer) drained() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	ws := p.wal.Stats()
	if ws.Records != 0 || ws.Queued != 0 {
		return false
	}
	p.oldest.Store(0)
	if p.spooling {
		p.spooling = false
		p.log.Info("spool: drained; producing directly again", zap.String("dir", p.cfg.dir))
	}
	if p.gate != nil {
		close(p.gate)
		p.gate = nil
	}
	return true
}

type relayed struct {
	seq    uint64
	s      stored
	raw    []byte
	done   bool   // acknowledged, or skipped (its first attempt was)
	dead   string // why it is set aside
	err    error  // the produce's error
	sent   bool
	copied *direct
}

func (p *Producer) relayBatch(entries []wal.Entry, ahead map[uint64]bool) error {
	now := time.Now()
	items := make([]*relayed, 0, len(entries))
	var send []*relayed
	for i, e := range entries {
		it := &relayed{seq: e.Seq, raw: e.Payload}
		items = append(items, it)
		if ahead[e.Seq] {
			it.done = true
			continue
		}
		s, err := decode(e.Payload)
		if err != nil {
			it.dead = err.Error()
			continue
		}
		it.s = s
		if i == 0 {
			p.oldest.Store(s.created.UnixNano())
		}
		if age := now.Sub(s.created); age > p.cfg.expiry {
			it.dead = fmt.Sprintf("expired: spooled %v ago, Expiry is %v", age.Round(time.Millisecond), p.cfg.expiry)
			continue
		}
		if s.flags&flagAttempted != 0 {
			p.cmu.Lock()
			d := p.copies[RecordID(s.rec)]
			p.cmu.Unlock()
			if d != nil {
				it.copied = d
				if o, ok := d.res.Load().(outcome); ok && o.err == nil {
					it.done = true // the first attempt was acknowledged: no copy needed
					p.skipped.Add(1)
					continue
				}
			}
		}
		send = append(send, it)
	}

	if len(send) > 0 {
		last := send[len(send)-1].seq
		if last > p.state.sending {
			if err := p.state.save(p.state.acked, last); err != nil {
				return err
			}
		}
		ctx, cancel := context.WithTimeout(p.relayCtx, p.cfg.relayTimeout)
		var wg sync.WaitGroup
		for _, it := range send {
			if it.copied != nil {
				if _, ok := it.copied.res.Load().(outcome); !ok {
					p.dups.Add(1) // its first attempt may still be written
				}
			}
			it.sent = true
			wg.Add(1)
			p.cl.Produce(ctx, it.s.rec, func(_ *kgo.Record, err error) {
				it.err = err
				wg.Done()
			})
		}
		wg.Wait()
		cancel()
	}

	// Advance over the records done or dead, up to the first that failed
	// in a way worth trying again.
	acked := p.state.acked
	var firstErr error
	var deadOnes []*relayed
	var ok uint64
	for _, it := range items {
		if it.sent {
			switch {
			case it.err == nil:
				it.done = true
				ok++
			case !retriable(it.err) && !errors.Is(it.err, kgo.ErrClientClosed):
				it.dead = "Kafka refused the record: " + it.err.Error()
			}
		}
		if firstErr != nil {
			if it.done {
				ahead[it.seq] = true // not sent again
			}
			continue
		}
		switch {
		case it.done:
		case it.dead != "":
			deadOnes = append(deadOnes, it)
		default:
			firstErr = fmt.Errorf("spool: relay record %d to topic %q: %w", it.seq, it.s.rec.Topic, it.err)
			continue
		}
		acked = it.seq
	}
	p.relayed.Add(ok)
	if len(deadOnes) > 0 {
		pend := make([]wal.Pending, len(deadOnes))
		for i, it := range deadOnes {
			s := it.s
			if s.rec == nil {
				s = stored{created: now, rec: &kgo.Record{Value: it.raw}}
			}
			s.reason = it.dead
			pend[i] = p.dead.Enqueue(encode(s))
		}
		for _, pd := range pend {
			if _, err := pd.Wait(); err != nil {
				return fmt.Errorf("spool: setting records aside as dead: %w", err)
			}
		}
		for _, it := range deadOnes {
			p.log.Error("spool: record set aside as dead", zap.String("dir", p.cfg.dir), zap.Uint64("seq", it.seq),
				zap.String("topic", topicOf(it.s)), zap.String("id", idOf(it.s)), zap.String("reason", it.dead))
		}
		p.deadN.Add(uint64(len(deadOnes)))
		p.deadRecords.Add(int64(len(deadOnes)))
	}
	if acked > p.state.acked {
		if err := p.state.save(acked, max(acked, p.state.sending)); err != nil {
			return err
		}
		if err := p.wal.TruncateFront(acked); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		for seq := range ahead {
			if seq <= acked {
				delete(ahead, seq)
			}
		}
		p.cmu.Lock()
		for _, it := range items {
			if it.seq <= acked && it.s.rec != nil {
				delete(p.copies, RecordID(it.s.rec))
			}
		}
		p.cmu.Unlock()
	}
	return firstErr
}

func topicOf(s stored) string {
	if s.rec == nil {
		return ""
	}
	return s.rec.Topic
}

func idOf(s stored) string {
	if s.rec == nil {
		return ""
	}
	return RecordID(s.rec)
}

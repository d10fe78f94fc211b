package consumer

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/retry"
)

// pauseReason is a set of reasons a partition is paused; fetching resumes only
// when no reason is left.
type pauseReason uint8

const (
	pausedBackpressure pauseReason = 1 << iota // too many unfinished records
	pausedPartition                            // operator paused this partition
	pausedConsumer                             // operator paused the whole consumer
	pausedDue                                  // a retry record waits for its due time
	pausedForward                              // a forward to a retry or dead-letter topic fails

	// pausedHandling are the reasons that also stop handling buffered records;
	// backpressure and a due wait only stop fetching.
	pausedHandling = pausedPartition | pausedConsumer | pausedForward
)

// partition is the state of one assigned partition: records fetched and not yet
// finished, the lanes handling them, and what may be committed.
type partition struct {
	c      *Consumer
	cl     *kgo.Client
	topic  string
	id     int32
	m      partitionMetrics
	ctx    context.Context // handlers' context; canceled if a drain times out
	cancel context.CancelFunc
	wg     sync.WaitGroup // running lanes
	stopCh chan struct{}  // closed when the partition stops taking records
	halt   atomic.Bool    // stopped or handling paused: lanes stop between records
	// keyed is key-parallel mode; retry topics are always in partition order,
	// which is their due-time order.
	keyed bool
	// stage is -1 for a subscribed topic, n for its retry topic n; source is
	// the subscribed topic either way, and policy its retry policy.
	stage   int
	source  string
	policy  retry.Policy
	skipAll atomic.Bool // operator: failing records skip blocking retries
	// When the handler calls under way started (Unix ns): in strict
	// partition order, the start of the call or of its group of fast calls
	// (callH's outbox says whether a call is under way, and its record);
	// in key-parallel mode, when the calls last made progress, with the
	// offset of the first one's record and how many are under way. See
	// callStarts.
	callSince  atomic.Int64
	callOffset atomic.Int64
	calls      atomic.Int32
	// What health probes saw of the strict-order call under way (see
	// probedCall), under mu: the offset of its record the last probe saw
	// (-1: no call; 0 before the first probe, which no call can match
	// wrongly: at is 0 then), when that probe ran, and when the probe
	// before the first to see that call ran (Unix ns; 0: no probe yet).
	probe struct{ offset, at, callAfter int64 }

	mu     sync.Mutex
	lanes  map[string]*lane // by key; strict partition order uses the single key ""
	callH  *handling        // strict partition order: the handling of the partition's calls
	unfin  tracker          // unfinished records in offset order (key-parallel only)
	queued int              // records fetched and not yet finished
	done   int              // records finished since the partition was assigned
	// Key-parallel mode: records wait in backlog, in offset order, until
	// fewer than PartitionBuffer are admitted to lanes (admitted counts the
	// unfinished ones); lanes with records and no runner wait in ready, and
	// at most KeyParallel runners take lanes from it (runners counts those
	// not waiting for a blocking retry). So a fetch of many distinct keys
	// costs a slice of pointers, not a goroutine and a lane per key.
	backlog  []*kgo.Record
	backHead int // backlog[:backHead] were admitted
	admitted int
	ready    []*lane
	runners  int
	full     bool // queued reached the bound and has not drained to half yet
	paused   pauseReason
	changed  chan struct{} // closed and replaced when pausedHandling bits change
	more     chan struct{} // closed when records come, for a batch's linger
	stopped  bool          // revoked or shutting down: take no more records
	closed   bool          // drained: late completions must not mark offsets
	next     int64         // first offset not yet finished (-1 until known)
	hwm      int64         // last high watermark seen
	// pending are the records being forwarded, or whose outputs are being
	// produced, in offset order (strict partition order only): the commit
	// stays below the first of them.
	pending []*kgo.Record
	// laneEnd (and laneEpoch, its leader epoch) is, in strict partition
	// order, the offset below which the lane has finished every record, as
	// it last said (finish, markBeforeWait); -1 until it does. The lane
	// keeps its progress to itself in between, which spares the hot path a
	// store per record that another goroutine could read.
	laneEnd    int64
	laneEpoch  int32
	blocked    map[*blockedRecord]struct{} // records blocking the partition now
	fwdFailing int                         // forwards failing now
	parkTimer  *time.Timer                 // transactional: resumes a partition parked until a due time
}

// lane handles the records of one key (or of the whole partition) in order.
type lane struct {
	key  string
	recs []*kgo.Record
	h    handling // context, outbox and sink of the lane's handler calls
}

func (p *partition) newLane(key string) *lane {
	l := &lane{key: key}
	l.h.Context = p.ctx
	l.h.sink = atLeastOnce{}
	return l
}

func newPartition(c *Consumer, cl *kgo.Client, topic string, id int32) *partition {
	ctx, cancel := context.WithCancel(context.WithValue(c.handlerCtx, assignmentKey{}, assignments.Add(1)))
	st, isRetry := c.stageOf(topic)
	if !isRetry {
		st = stage{source: topic, n: -1}
	}
	p := &partition{
		c: c, cl: cl, topic: topic, id: id,
		keyed:   c.sem != nil && !isRetry,
		stage:   st.n,
		source:  st.source,
		policy:  c.cfg.policyFor(st.source),
		blocked: make(map[*blockedRecord]struct{}),
		m:       c.m.forPartition(topic, id),
		ctx:     ctx, cancel: cancel,
		stopCh:  make(chan struct{}),
		lanes:   make(map[string]*lane),
		changed: make(chan struct{}),
		next:    -1,
		laneEnd: -1,
	}
	return p
}

// enqueue takes the records of one fetch, in offset order.
func (p *partition) enqueue(recs []*kgo.Record, hwm int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return // not committed, so the next owner reads them
	}
	p.hwm = hwm
	if len(recs) == 0 {
		return
	}
	if p.next < 0 {
		p.next = recs[0].Offset
	}
	p.queued += len(recs)
	if !p.keyed {
		if l := p.lane(""); len(l.recs) == 0 {
			l.recs = recs // the fetch's slice is ours: no copy
		} else {
			l.recs = append(l.recs, recs...)
		}
	} else {
		if p.backHead == len(p.backlog) {
			p.backlog, p.backHead = recs, 0 // the fetch's slice is ours
		} else {
			p.backlog = append(p.backlog, recs...)
		}
		p.admitLocked()
	}
	p.m.lag.Set(float64(p.hwm - p.next))
	if p.queued >= p.c.cfg.partitionBuffer {
		p.full = true
	}
	p.wakeLingerLocked()
}

// wakeLingerLocked wakes a batch waiting for more records (see linger).
func (p *partition) wakeLingerLocked() {
	if p.more != nil {
		close(p.more)
		p.more = nil
	}
}

// lingerLocked waits, with p.mu held on entry and return, until enough
// reports true, deadline passes, handling is paused or the partition
// stops; records coming (enqueue, admit) wake it to check again.
func (p *partition) lingerLocked(deadline time.Time, enough func() bool) {
	for !p.stopped && p.paused&pausedHandling == 0 && !enough() {
		d := time.Until(deadline)
		if d <= 0 {
			return
		}
		if p.more == nil {
			p.more = make(chan struct{})
		}
		ch := p.more
		p.mu.Unlock()
		t := time.NewTimer(d)
		select {
		case <-ch:
		case <-t.C:
		case <-p.stopCh:
		}
		t.Stop()
		p.mu.Lock()
	}
}

// admitLocked moves records from the backlog to their key's lane while fewer
// than PartitionBuffer are admitted, and starts runners for the lanes that
// became ready. Admitting in offset order keeps the commit safe: the tracker
// holds every admitted unfinished record, and every record of the backlog
// comes after them.
func (p *partition) admitLocked() {
	if p.stopped {
		return
	}
	for p.admitted < p.c.cfg.partitionBuffer && p.backHead < len(p.backlog) {
		r := p.backlog[p.backHead]
		p.backlog[p.backHead] = nil
		p.backHead++
		p.admitted++
		p.unfin.add(r)
		l := p.lanes[string(r.Key)]
		if l == nil {
			// A lane in the map is ready or held by a runner; a new one
			// waits for a runner.
			l = p.newLane(string(r.Key))
			p.lanes[l.key] = l
			p.ready = append(p.ready, l)
		}
		l.recs = append(l.recs, r)
	}
	if p.backHead == len(p.backlog) {
		p.backlog, p.backHead = nil, 0
	}
	p.startRunnersLocked()
}

// startRunnersLocked starts runners for ready lanes, up to KeyParallel
// runners not waiting for a blocking retry.
func (p *partition) startRunnersLocked() {
	for p.runners < p.c.cfg.keyConcurrency && len(p.ready) > 0 && !p.stopped {
		p.runners++
		p.wg.Add(1)
		go p.runKeyed(p.popReadyLocked())
	}
}

func (p *partition) popReadyLocked() *lane {
	l := p.ready[0]
	p.ready[0] = nil
	p.ready = p.ready[1:]
	return l
}

// runKeyed is a runner of key-parallel mode: it handles the records of one
// lane, then takes the next ready lane, until none is ready, the partition
// stops, or more runners than KeyParallel run (one came back from a blocking
// retry while another took its place).
func (p *partition) runKeyed(l *lane) {
	defer p.wg.Done()
	if p.c.batch != nil {
		p.runKeyedCalls(l)
		return
	}
	for l != nil {
		if batch := p.take(l); batch != nil {
			p.handleRecords(l, batch)
		}
		l = p.nextLane(l)
	}
}

// runKeyedCalls is runKeyed for the batch handler: a call takes the records
// of l and of more ready lanes, up to BatchSize's maxRecords (lingering for
// more), and the runner holds all those lanes until the call is over, so no
// key is in two calls at once. Then it puts each lane back (see nextLane)
// and takes the next ready one.
func (p *partition) runKeyedCalls(l *lane) {
	for l != nil {
		held, recs := p.gather(l)
		if recs != nil {
			p.handleKeyedCall(&l.h, recs)
		}
		for _, o := range held[1:] {
			p.release(o)
		}
		l = p.nextLane(l)
	}
}

// gather takes the records of a batch call: l's and those of the ready
// lanes after it, up to maxRecords, in offset order. It returns the lanes
// it holds (l first) and nil records if the partition stopped.
func (p *partition) gather(l *lane) ([]*lane, []*kgo.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	maxRecs := p.c.cfg.batchRecords
	held := []*lane{l}
	n := len(l.recs)
	pull := func() bool {
		for n < maxRecs && len(p.ready) > 0 {
			o := p.popReadyLocked()
			held = append(held, o)
			n += len(o.recs)
		}
		return n >= maxRecs
	}
	p.waitHandlingLocked()
	lingered := false
	if !pull() && p.c.cfg.batchLinger > 0 && !p.stopped {
		p.lingerLocked(time.Now().Add(p.c.cfg.batchLinger), func() bool {
			n = 0
			for _, o := range held {
				n += len(o.recs)
			}
			return pull()
		})
		p.waitHandlingLocked()
		lingered = true
	}
	if p.stopped && !lingered {
		return held, nil
	}
	// A stop that ended the linger flushes what waited.
	var recs []*kgo.Record
	for _, o := range held {
		k := min(len(o.recs), maxRecs-len(recs))
		recs = append(recs, o.recs[:k]...)
		o.recs = o.recs[k:]
	}
	if len(held) > 1 {
		slices.SortFunc(recs, func(a, b *kgo.Record) int { return cmp.Compare(a.Offset, b.Offset) })
	}
	return held, recs
}

// release puts a lane held by a call back: at the end of the ready lanes
// if records came for its key meanwhile, else out of the map.
func (p *partition) release(l *lane) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.releaseLocked(l)
}

func (p *partition) releaseLocked(l *lane) {
	if len(l.recs) > 0 && !p.stopped {
		p.ready = append(p.ready, l)
	} else if p.lanes[l.key] == l {
		delete(p.lanes, l.key)
	}
}

// handleKeyedCall makes one batch call in key-parallel mode: it takes a
// handler slot, and finishes each record on its own.
func (p *partition) handleKeyedCall(h *handling, recs []*kgo.Record) {
	p.c.m.inFlight.Inc()
	defer p.c.m.inFlight.Dec()
	// Every holder of a slot is a call that returns: even a stopping
	// partition waits for one, to flush the batch it gathered.
	p.c.sem <- struct{}{}
	clock := newLaneClock()
	res := make([]result, len(recs))
	p.processBatch(h, recs, &clock, res)
	<-p.c.sem
	ok := 0
	for i, rec := range recs {
		switch res[i] {
		case handled, failed:
			p.finish(1, rec)
		} // forwarding, emitting: finished by the acknowledgements; stopped: dropped
		if res[i] == handled || res[i] == emitting {
			ok++
		}
	}
	p.m.latency.add(&clock.lat)
	p.m.handled.Add(float64(ok))
}

// nextLane puts l back at the end of the ready lanes if records came for its
// key meanwhile (so other keys get their turn) and returns the first ready
// lane, or nil if the runner is to exit.
func (p *partition) nextLane(l *lane) *lane {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.releaseLocked(l)
	if p.stopped || p.runners > p.c.cfg.keyConcurrency || len(p.ready) == 0 {
		p.runners--
		return nil
	}
	return p.popReadyLocked()
}

// runnerWaits is called by a key-parallel runner before it waits for a
// blocking retry: it no longer counts against KeyParallel, so another runner
// may start and the other keys go on (a waiting record holds no handler slot
// either).
func (p *partition) runnerWaits() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.runners--
	p.startRunnersLocked()
}

// runnerBack is called by a key-parallel runner after its blocking-retry
// wait.
func (p *partition) runnerBack() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.runners++
}

// lane returns the lane of key, starting it if it is not running (strict
// partition order: the single lane "").
func (p *partition) lane(key string) *lane {
	l := p.lanes[key]
	if l == nil {
		l = p.newLane(key)
		p.lanes[key] = l
		p.callH = &l.h
		p.wg.Add(1)
		go p.runLane(l)
	}
	return l
}

// runLane handles a lane's records in order until the lane is empty or the
// partition stops.
func (p *partition) runLane(l *lane) {
	defer p.wg.Done()
	for {
		batch := p.take(l)
		if batch == nil {
			return
		}
		if p.c.batch != nil {
			p.handleCall(l, batch)
		} else {
			p.handleRecords(l, batch)
		}
	}
}

// handleCall makes one batch call of the records taken from the lane of a
// partition in strict order, and marks its progress for commit: up to the
// record before the first that stopped.
func (p *partition) handleCall(l *lane, recs []*kgo.Record) {
	p.c.m.inFlight.Inc()
	defer p.c.m.inFlight.Dec()
	clock := newLaneClock()
	res := make([]result, len(recs))
	p.processBatch(&l.h, recs, &clock, res)
	n, ok := 0, 0
	for i := range recs {
		if res[i] == stopped || res[i] == parked {
			break
		}
		if res[i] == handled || res[i] == emitting {
			ok++
		}
		n++
	}
	p.m.latency.add(&clock.lat)
	p.m.handled.Add(float64(ok))
	if n > 0 {
		p.finish(n, recs[n-1])
	}
}

// take returns the records waiting in the lane, waiting while handling is
// paused; nil when the lane is empty (it is then removed) or the partition
// stopped. In key-parallel mode a runner holds the lane, and nextLane removes
// it.
func (p *partition) take(l *lane) []*kgo.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.waitHandlingLocked()
	if p.stopped || len(l.recs) == 0 {
		if !p.keyed {
			delete(p.lanes, l.key)
		}
		return nil
	}
	if p.c.batch != nil && !p.keyed {
		// One batch call's records: up to maxRecords, after the linger if
		// fewer are there.
		maxRecs := p.c.cfg.batchRecords
		if len(l.recs) < maxRecs && p.c.cfg.batchLinger > 0 {
			// A stop ends the linger and flushes what waited: those
			// records were taken for a call already.
			p.lingerLocked(time.Now().Add(p.c.cfg.batchLinger), func() bool { return len(l.recs) >= maxRecs })
			p.waitHandlingLocked()
		}
		if len(l.recs) > maxRecs {
			batch := l.recs[:maxRecs:maxRecs]
			l.recs = l.recs[maxRecs:]
			return batch
		}
	}
	batch := l.recs
	l.recs = nil
	return batch
}

// waitHandlingLocked waits, with p.mu held on entry and return, while
// handling is paused and the partition has not stopped.
func (p *partition) waitHandlingLocked() {
	for !p.stopped && p.paused&pausedHandling != 0 {
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-p.stopCh:
		}
		p.mu.Lock()
	}
}

// markEvery bounds how many finished records, or how long, a lane in strict
// partition order goes without marking its progress for commit.
const (
	markEvery         = 256
	markEveryInterval = 100 * time.Millisecond
)

// handleRecords handles records taken from a lane, in order. In strict partition
// order it marks progress every markEvery records or markEveryInterval, and
// always before it returns, so a drain commits everything finished. In
// key-parallel mode each record takes a handler slot and is finished on its
// own, since other lanes finish around it. A record being forwarded to a retry
// or dead-letter topic is finished when Kafka acknowledges the forward.
func (p *partition) handleRecords(l *lane, batch []*kgo.Record) {
	p.c.m.inFlight.Inc()
	defer p.c.m.inFlight.Dec()
	var (
		unmarked int
		last     *kgo.Record
		ok       int
		clock    = newLaneClock()
		lastMark time.Duration
	)
	clock.group = !p.keyed && p.stage < 0
	flush := func() {
		clock.settle()
		p.m.latency.add(&clock.lat)
		p.m.handled.Add(float64(ok))
		ok = 0
	}
	defer flush()
	for i, rec := range batch {
		if p.halt.Load() {
			p.putBack(l, batch[i:])
			break
		}
		if p.keyed {
			select {
			case p.c.sem <- struct{}{}:
			case <-p.stopCh:
				return // dropped: not committed, handled again by the next owner
			}
		}
		res := p.process(&l.h, rec, &clock)
		if res == handled || res == emitting {
			ok++
		}
		if p.keyed {
			<-p.c.sem
			switch res {
			case stopped:
				return
			case handled, failed:
				p.finish(1, rec)
			} // forwarding, emitting: finished by the acknowledgements
			if clock.lat.n >= markEvery {
				flush()
			}
			continue
		}
		if res == stopped {
			break
		}
		unmarked++
		last = rec
		if unmarked >= markEvery || clock.prev-lastMark >= markEveryInterval {
			flush()
			p.finish(unmarked, last)
			unmarked, lastMark = 0, clock.prev
		}
	}
	if unmarked > 0 {
		flush()
		p.finish(unmarked, last)
	}
}

// laneClock times handler calls, with one monotonic clock read per call, or
// per group of fast calls: a lane that may group (group: strict partition
// order on a subscribed topic, where nothing but the consumer's own work
// runs between two calls, and a failure settles the group before any
// blocking retry's wait) times calls in groups of
// groupCalls once groupAfter calls in a row took at most fastCall each. The
// histogram's first bucket is 100µs, so a group that took at most that in
// all puts each of its calls there, as one read per call would; one that
// took longer puts one call in the bucket of the group's time (an upper
// bound of its slowest call's) and the others in the first, and the lane
// goes back to a read per call. The sum is exact either way. In a plain
// consume a clock read costs as much as the rest of the consumer's work per
// record.
type laneClock struct {
	base     time.Time
	baseUnix int64         // base in Unix ns, for nowUnixNano
	prev     time.Duration // time of the last reading since base
	lat      latencyBatch
	group    bool // calls may be timed in groups
	fast     int  // calls in a row timed one by one at most fastCall each
	pending  int  // calls of the group under way, since the last reading
}

const (
	groupCalls = 16
	fastCall   = firstBucket / groupCalls
	groupAfter = 64
)

func newLaneClock() laneClock {
	now := time.Now()
	return laneClock{base: now, baseUnix: now.UnixNano()}
}

// lap records the end of a handler call: since the last reading, or with
// the other calls of its group.
func (c *laneClock) lap() {
	if c.count() {
		c.read(time.Since(c.base))
	}
}

// count counts a call's end and reports whether a reading is due now.
func (c *laneClock) count() bool {
	if c.pending == 0 && (!c.group || c.fast < groupAfter) {
		return true
	}
	c.pending++
	return c.pending >= groupCalls
}

// read takes a reading at now (since base), which ends the call, or the
// group of calls, since the last one.
func (c *laneClock) read(now time.Duration) {
	d := now - c.prev
	c.prev = now
	if n := c.pending; n > 0 {
		c.pending = 0
		c.lat.observeGroup(n, d)
		if d > firstBucket {
			c.fast = 0
		}
		return
	}
	c.lat.observe(d)
	if d <= fastCall {
		c.fast++
	} else {
		c.fast = 0
	}
}

// settle ends the group under way, if any: before a wait, and before the
// lane hands its latencies to the histogram.
func (c *laneClock) settle() {
	if c.pending > 0 {
		c.read(time.Since(c.base))
	}
}

// reset starts timing afresh, after a wait that is no handler's time.
func (c *laneClock) reset() {
	c.settle()
	c.prev = time.Since(c.base)
}

// nowUnixNano is the time of the last reading, Unix ns, without reading the
// clock again.
func (c *laneClock) nowUnixNano() int64 { return c.baseUnix + int64(c.prev) }

// putBack returns records not handled because handling was paused or the
// partition stopped to the front of their lane.
func (p *partition) putBack(l *lane, recs []*kgo.Record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stopped {
		l.recs = append(recs[:len(recs):len(recs)], l.recs...)
	}
}

// fullAndFetching reports whether the partition is full and its fetching is
// not paused for it yet.
func (p *partition) fullAndFetching() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.full && !p.stopped && p.paused&pausedBackpressure == 0
}

// drainProgress returns the records finished so far and how many more must
// finish for the partition to be drained (no longer full).
func (p *partition) drainProgress() (done, left int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done, p.queued - p.c.cfg.partitionBuffer/2
}

// pauseIfFull pauses fetching the partition if it is still full.
func (p *partition) pauseIfFull() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.full && !p.stopped {
		p.setPausedLocked(p.paused | pausedBackpressure)
	}
}

// setPausedLocked changes the pause reasons, pausing or resuming the fetching
// of the partition when it goes from none to some or back.
func (p *partition) setPausedLocked(r pauseReason) {
	old := p.paused
	if old == r {
		return
	}
	p.paused = r
	p.halt.Store(p.stopped || r&pausedHandling != 0)
	tp := map[string][]int32{p.topic: {p.id}}
	switch {
	case old == 0:
		p.cl.PauseFetchPartitions(tp)
		p.c.m.paused.Inc()
	case r == 0:
		p.cl.ResumeFetchPartitions(tp)
		p.c.m.paused.Dec()
	}
	if old&pausedHandling != r&pausedHandling {
		close(p.changed)
		p.changed = make(chan struct{})
	}
}

// stop makes the partition take no more records; lanes finish the record they
// are handling and exit.
func (p *partition) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stopped {
		p.stopped = true
		p.halt.Store(true)
		close(p.stopCh)
	}
}

// close ends the partition after its drain: it marks the progress not marked
// yet, and then no offset is marked any more; its fetch pause is lifted
// (franz-go keeps pauses across assignments) and its metrics are dropped.
func (p *partition) close() {
	p.mu.Lock()
	if !p.keyed {
		// A lane still in a handler call (the drain timed out) has
		// finished every record before the call's: commit up to it. (Its
		// leader epoch was not kept: -1, unknown.)
		if h := p.callH; h != nil {
			if off, ok := h.out.callOffset(); ok {
				p.laneReachedLocked(off, -1)
			}
		}
		p.markLocked()
	}
	p.closed = true
	if p.parkTimer != nil {
		p.parkTimer.Stop()
	}
	p.setPausedLocked(0)
	p.mu.Unlock()
	p.c.m.dropPartition(p.topic, p.id)
}

// state reports the partition for Consumer.Partitions.
func (p *partition) state() PartitionState {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := PartitionState{
		Topic: p.topic, Partition: p.id,
		Buffered:     p.queued,
		Paused:       p.paused&(pausedPartition|pausedConsumer) != 0,
		Backpressure: p.paused&pausedBackpressure != 0,
		NextOffset:   p.next,
	}
	if p.next >= 0 {
		s.Lag = p.hwm - p.next
	}
	return s
}

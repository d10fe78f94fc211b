package consumer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet/internal/toolarge"
)

var (
	// ErrAbort, returned by a handler (wrapped or not) in transactional mode,
	// aborts the whole transaction under way instead of counting as the
	// record's failure: no output, forward or offset of the transaction is
	// committed, and its records are handled again after a short backoff
	// (growing while transactions keep aborting, up to 5s). In at-least-once
	// mode it is an ordinary error.
	ErrAbort = errors.New("consumer: abort the transaction")

	// ErrFenced is wrapped by the error Run returns in transactional mode when
	// Kafka fenced the consumer's transactional producer: another instance
	// started with the same transactional id (the zombie is the older one),
	// or a transaction outlived TransactionTimeout and the broker aborted it.
	// The consumer cannot go on: its transaction was aborted and its records
	// belong to the instance that fenced it.
	ErrFenced = errors.New("consumer: transactional producer fenced")
)

// fenced reports whether err says that the transactional id now belongs to
// another producer epoch.
func fenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.InvalidProducerIDMapping)
}

// fatalTxn reports whether a transactional error leaves nothing to retry.
func fatalTxn(err error) bool {
	return fenced(err) || errors.Is(err, kerr.TransactionalIDAuthorizationFailed) ||
		errors.Is(err, kerr.ClusterAuthorizationFailed) || errors.Is(err, kerr.GroupAuthorizationFailed)
}

// txnFatal wraps a fatal error of the transactional producer for Run.
func (c *Consumer) txnFatal(what string, err error) error {
	if fenced(err) {
		c.log.Error("transactional producer fenced: another instance uses this transactional id (or a transaction outlived TransactionTimeout); stopping",
			zap.String("transactionalID", c.cfg.txnID), zap.Error(err))
		return fmt.Errorf("%w: transactional id %q: %s: %w", ErrFenced, c.cfg.txnID, what, err)
	}
	c.log.Error("transactional producer failed; stopping", zap.String("transactionalID", c.cfg.txnID), zap.String("while", what), zap.Error(err))
	return fmt.Errorf("consumer: transactional id %q: %s: %w", c.cfg.txnID, what, err)
}

// txnClientOptions configure the GroupTransactSession: the consumer's
// options plus the transactional id, read_committed fetches (retry topics
// and upstream transactional topics hold aborted records that must not be
// handled), and the revocation callbacks of transactional mode.
func (c *Consumer) txnClientOptions() []kgo.Opt {
	return append(c.baseClientOptions(),
		kgo.TransactionalID(c.cfg.txnID),
		kgo.TransactionTimeout(c.cfg.txnTimeout),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.OnPartitionsAssigned(c.onAssigned),
		kgo.OnPartitionsRevoked(c.onRevokedTxn),
		kgo.OnPartitionsLost(c.onLostTxn),
	)
}

// runTransactional is Run in transactional mode.
func (c *Consumer) runTransactional(ctx context.Context) error {
	sess, err := kgo.NewGroupTransactSession(c.txnClientOptions()...)
	if err != nil {
		return fmt.Errorf("consumer: creating the transactional Kafka client: %w", err)
	}
	cl := sess.Client()
	unregister, err := c.registerClient(cl)
	if err != nil {
		sess.Close()
		return err
	}
	defer unregister()
	c.fwd = cl // for the topic admin requests only: every produce is in a transaction
	if err := c.ensureTopics(ctx); err != nil {
		sess.Close()
		return err
	}
	// Fence the earlier incarnations of this transactional id now, as Java's
	// initTransactions does: the broker aborts their open transaction and
	// their next request fails.
	if _, _, err := cl.ProducerID(ctx); err != nil {
		sess.Close()
		if ctx.Err() != nil {
			return nil
		}
		return c.txnFatal("initializing the producer id", err)
	}
	c.log.Info("consumer started in transactional mode", zap.String("transactionalID", c.cfg.txnID),
		zap.Strings("topics", c.cfg.topics), zap.Strings("patterns", c.cfg.patterns), zap.Strings("retryTopics", c.retryTopics()),
		zap.Int("batchRecords", c.cfg.txnMaxRecords), zap.Duration("batchInterval", c.cfg.txnMaxInterval))
	t := &txnLoop{c: c, sess: sess, cl: cl}
	err = t.run(ctx)
	ps := c.takeAllPartitions()
	c.stopPartitions(context.Background(), cl, ps, false)
	// Every transaction has ended: what is committed is what was handled
	// for good, unless the producer failed for good.
	c.ended(c.handlerCtx, ps, err == nil)
	sess.Close()
	c.log.Info("consumer stopped")
	return err
}

func (c *Consumer) onRevokedTxn(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	if len(revoked) == 0 {
		return
	}
	// The session aborts the transaction under way; stop its work early.
	if b := c.txn.Load(); b != nil {
		b.fail(errors.New("partitions revoked"))
	}
	// The session waited for a transaction ending now, and aborts the one
	// under way: the committed offsets are those of every committed
	// transaction.
	ps := c.takePartitions(revoked)
	c.stopPartitions(ctx, cl, ps, false)
	c.log.Info("partitions revoked", zap.Any("partitions", revoked))
	c.ended(ctx, ps, true)
}

func (c *Consumer) onLostTxn(ctx context.Context, cl *kgo.Client, lost map[string][]int32) {
	c.left("its group session ended")
	if b := c.txn.Load(); b != nil {
		b.fail(errors.New("partitions lost"))
	}
	ps := c.takePartitions(lost)
	c.stopPartitions(ctx, cl, ps, false)
	c.log.Warn("partitions lost", zap.Any("partitions", lost))
	c.ended(ctx, ps, false)
}

// txnLoop polls, handles and commits one transaction at a time.
type txnLoop struct {
	c      *Consumer
	sess   *kgo.GroupTransactSession
	cl     *kgo.Client
	aborts int // transactions aborted in a row
}

func (t *txnLoop) run(ctx context.Context) error {
	for {
		t.c.applySeeks(t.cl) // between two transactions
		pollCtx, wake := t.c.seeks.pollContext(ctx)
		t.c.polling()
		fetches := t.sess.PollRecords(pollCtx, min(t.c.cfg.txnMaxRecords, t.c.cfg.partitionBuffer*max(1, len(t.c.assigned()))))
		t.c.polled()
		wake()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			// Records polled now are not handled: nothing committed them,
			// so the next owner reads them.
			return nil
		}
		t.logFetchErrors(fetches)
		if fetches.NumRecords() == 0 {
			continue
		}
		committed, err := t.transact(ctx, fetches)
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		if committed {
			t.aborts = 0
			continue
		}
		t.aborts++
		backoff := min(50*time.Millisecond<<min(t.aborts-1, 7), 5*time.Second)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
	}
}

func (t *txnLoop) logFetchErrors(fetches kgo.Fetches) {
	fetches.EachError(func(topic string, partition int32, err error) {
		if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			t.c.log.Warn("fetch error", zap.String("topic", topic), zap.Int32("partition", partition), zap.Error(err))
		}
	})
}

// transact runs one transaction: it handles the records of first and of the
// polls that follow, up to TransactionBatch's records or interval, then
// commits them with their outputs and forwards, or aborts. It returns an
// error only when the consumer must stop.
func (t *txnLoop) transact(ctx context.Context, first kgo.Fetches) (bool, error) {
	c := t.c
	if err := t.sess.Begin(); err != nil {
		return false, c.txnFatal("beginning a transaction", err)
	}
	b := &txnBatch{c: c, cl: t.cl, open: true, works: make(map[*partition]*txnWork), room: make(chan struct{}, 1)}
	b.limit = int64(c.cfg.partitionBuffer * max(1, len(c.assigned())))
	b.promise = b.produced
	c.txn.Store(b)
	defer c.txn.Store(nil)

	n := b.dispatch(first)
	// Take records until the batch is full or its interval has passed, but
	// only as fast as the handlers finish them: at most limit records wait,
	// so that a transaction of slow handlers lasts about its interval, not
	// the time to handle maxRecords.
	takeCtx, cancel := context.WithTimeout(ctx, c.cfg.txnMaxInterval)
	defer cancel()
	for n < c.cfg.txnMaxRecords && !b.doomed.Load() && takeCtx.Err() == nil {
		room := true
		for room && b.pending.Load() >= b.limit {
			select {
			case <-b.room:
			case <-takeCtx.Done():
				room = false
			}
		}
		if !room {
			break
		}
		c.polling()
		fetches := t.sess.PollRecords(takeCtx, min(c.cfg.txnMaxRecords-n, int(b.limit-b.pending.Load())))
		c.polled()
		if fetches.IsClientClosed() {
			b.fail(kgo.ErrClientClosed)
			break
		}
		t.logFetchErrors(fetches)
		n += b.dispatch(fetches) // whatever was polled must be handled or rewound
	}
	cancel()

	// A shutdown may come while the handlers finish the batch, not only
	// while it takes records: it stops the partitions either way.
	stopping := ctx.Err() != nil || !b.waitUntil(ctx)
	if stopping {
		// Shutdown: each partition stops at the record after the one its
		// handler is on; what finished is committed, the rest rewound.
		for _, p := range c.assigned() {
			p.stop()
		}
		if !b.wait(c.cfg.drainTimeout) {
			c.log.Warn("drain timeout: canceling handlers still running; the transaction aborts and its records will be handled again by the next owner",
				zap.Duration("drainTimeout", c.cfg.drainTimeout))
			b.fail(errors.New("drain timeout"))
			for _, p := range c.assigned() {
				p.cancel()
			}
		}
	}
	b.close()

	endCtx := context.WithoutCancel(ctx)
	if stopping {
		var cancel context.CancelFunc
		endCtx, cancel = context.WithTimeout(endCtx, c.cfg.drainTimeout)
		defer cancel()
	}
	// franz-go runs produce promises asynchronously: a record the client
	// refuses (too large, say) may fail only in End's flush, after the
	// commit was decided, and End would commit without it. Flush first, so
	// that every failure dooms the transaction before the decision.
	if !b.doomed.Load() {
		if err := t.cl.Flush(endCtx); err != nil {
			b.fail(fmt.Errorf("flushing the transaction's records: %w", err))
		}
	}
	commit := !b.doomed.Load()
	var rewind map[string]map[int32]kgo.EpochOffset
	if commit {
		if rewind = b.stops(); len(rewind) > 0 {
			endCtx = kgo.PreTxnCommitFnContext(endCtx, func(req *kmsg.TxnOffsetCommitRequest) error {
				for i := range req.Topics {
					rt := &req.Topics[i]
					for j := range rt.Partitions {
						rp := &rt.Partitions[j]
						if eo, ok := rewind[rt.Topic][rp.Partition]; ok {
							rp.Offset, rp.LeaderEpoch = eo.Offset, eo.Epoch
						}
					}
				}
				return nil
			})
		}
	}
	committed, err := t.sess.End(endCtx, kgo.TransactionEndTry(commit))
	if err == nil && !committed {
		err = b.cause()
	}
	switch {
	case committed:
		// The session moved every partition to what was polled; the
		// stopped ones go back to their first record not handled, which
		// is what the transaction committed for them.
		if len(rewind) > 0 {
			t.cl.SetOffsets(rewind)
		}
		b.committed()
		c.m.txnCommitted.Inc()
		return true, nil
	case err != nil && fatalTxn(err):
		return false, c.txnFatal("transaction", err)
	default:
		c.m.txnAborted.Inc()
		if err == nil {
			err = errors.New("the group rebalanced")
		}
		if ce := c.log.Check(zap.WarnLevel, "transaction aborted; its records will be handled again"); ce != nil {
			ce.Write(zap.Int("records", n), zap.Int("abortedInARow", t.aborts+1), zap.Error(err))
		}
		return false, nil
	}
}

// txnBatch is the work of one transaction.
type txnBatch struct {
	c       *Consumer
	cl      *kgo.Client
	promise func(*kgo.Record, error)

	// mu orders produces before End: they run under the read lock while
	// open; close takes the write lock, so that a handler returning late
	// (after a drain timeout) never produces into the next transaction.
	mu   sync.RWMutex
	open bool

	doomed atomic.Bool // the transaction will abort: stop handling
	errMu  sync.Mutex
	err    error // why it aborts

	works map[*partition]*txnWork // the loop's goroutine only
	wg    sync.WaitGroup          // running workers

	pending atomic.Int64  // records dispatched and not finished (nor dropped)
	limit   int64         // the most records pending before the loop waits
	room    chan struct{} // signaled when pending falls below limit
}

// finished accounts for n records finished or dropped by a worker.
func (b *txnBatch) finished(n int) {
	if n == 0 {
		return
	}
	left := b.pending.Add(-int64(n))
	if left < b.limit && left+int64(n) >= b.limit {
		select {
		case b.room <- struct{}{}:
		default:
		}
	}
}

// produce adds records to the transaction; false if it is closed.
func (b *txnBatch) produce(recs ...*kgo.Record) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if !b.open || b.doomed.Load() {
		return false
	}
	for _, r := range recs {
		r.Context = withValues(context.Background(), r.Context)
		b.cl.Produce(context.Background(), r, b.promise)
	}
	return true
}

func (b *txnBatch) produced(r *kgo.Record, err error) {
	if err != nil {
		b.fail(fmt.Errorf("producing to %s: %w", r.Topic, toolarge.Explain(b.cl, b.c.limits.option(r.Topic), r, err)))
	}
}

// fail dooms the transaction: it will abort, and workers stop.
func (b *txnBatch) fail(err error) {
	b.errMu.Lock()
	if b.err == nil {
		b.err = err
	}
	b.errMu.Unlock()
	b.doomed.Store(true)
}

func (b *txnBatch) cause() error {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	return b.err
}

func (b *txnBatch) close() {
	b.mu.Lock()
	b.open = false
	b.mu.Unlock()
}

// dispatch hands polled records to their partitions' workers and returns
// how many there were.
func (b *txnBatch) dispatch(fetches kgo.Fetches) int {
	n := 0
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if fp.Err != nil || len(fp.Records) == 0 {
			return
		}
		n += len(fp.Records)
		p := b.c.partition(fp.Topic, fp.Partition)
		if p == nil {
			// Revoked meanwhile: the session aborts this transaction.
			b.fail(fmt.Errorf("records of %s[%d], which is not assigned", fp.Topic, fp.Partition))
			return
		}
		p.mu.Lock()
		p.hwm = fp.HighWatermark
		p.mu.Unlock()
		w := b.works[p]
		if w == nil {
			b.c.holding(fp.Topic, fp.Partition) // franz-go holds its position now: see reconcile
			w = &txnWork{b: b, p: p}
			w.h.Context = p.ctx
			w.h.sink = b
			b.works[p] = w
			p.mu.Lock()
			p.callH = &w.h
			p.mu.Unlock()
		}
		w.push(fp.Records)
	})
	return n
}

// wait waits for the workers, at most d if d > 0; false if they are still
// running then.
func (b *txnBatch) wait(d time.Duration) bool {
	if d <= 0 {
		b.wg.Wait()
		return true
	}
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// waitUntil waits for the workers or for ctx to end; false if ctx ended
// first.
func (b *txnBatch) waitUntil(ctx context.Context) bool {
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// stops returns, for the partitions whose worker stopped before the end of
// its records, the first record not handled: the offset to commit instead of
// the polled position, and to fetch from again.
func (b *txnBatch) stops() map[string]map[int32]kgo.EpochOffset {
	var out map[string]map[int32]kgo.EpochOffset
	for p, w := range b.works {
		if w.stopAt == nil {
			continue
		}
		if out == nil {
			out = make(map[string]map[int32]kgo.EpochOffset)
		}
		if out[p.topic] == nil {
			out[p.topic] = make(map[int32]kgo.EpochOffset)
		}
		out[p.topic][p.id] = kgo.EpochOffset{Epoch: w.stopAt.LeaderEpoch, Offset: w.stopAt.Offset}
	}
	return out
}

// committed updates the partitions' progress after a commit.
func (b *txnBatch) committed() {
	for p, w := range b.works {
		next := w.last + 1
		if w.stopAt != nil {
			next = w.stopAt.Offset
		}
		p.mu.Lock()
		if next > p.next {
			p.next = next
			p.m.lag.Set(float64(p.hwm - p.next))
		}
		p.mu.Unlock()
	}
}

// txnWork handles one partition's records of a transaction, in offset
// order. It stops at a record it cannot finish in this transaction (a retry
// not due yet, handling paused, the partition stopping); that record and
// those after it are rewound and fetched again.
type txnWork struct {
	b *txnBatch
	p *partition
	h handling

	mu      sync.Mutex
	queue   []*kgo.Record
	running bool
	stopAt  *kgo.Record // first record not handled; nil while all are
	last    int64       // offset of the last record dispatched
}

func (w *txnWork) push(recs []*kgo.Record) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last = recs[len(recs)-1].Offset
	if w.stopAt != nil {
		return // rewound with it
	}
	// The session's revocation callback runs on franz-go's goroutine, not
	// between polls as in at-least-once mode: under p.mu, either the worker
	// is counted before stop (so the drain waits for it) or the partition is
	// seen stopped and gets no more records.
	w.p.mu.Lock()
	if w.p.stopped {
		w.p.mu.Unlock()
		w.b.fail(fmt.Errorf("records of %s[%d], which was revoked", w.p.topic, w.p.id))
		return
	}
	w.b.pending.Add(int64(len(recs)))
	w.queue = append(w.queue, recs...)
	if w.p.next < 0 {
		w.p.next = recs[0].Offset
	}
	if !w.running {
		w.running = true
		w.b.wg.Add(1)
		w.p.wg.Add(1) // a revocation's drain waits for the worker
		go w.run()
	}
	w.p.mu.Unlock()
}

func (w *txnWork) take() []*kgo.Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 || w.stopAt != nil {
		w.queue = nil
		w.running = false
		return nil
	}
	recs := w.queue
	w.queue = nil
	return recs
}

// stop makes rec the first record not handled and drops the records after
// it; rest is how many of them the worker had taken.
func (w *txnWork) stop(rec *kgo.Record, rest int) {
	w.mu.Lock()
	if w.stopAt == nil {
		w.stopAt = rec
	}
	rest += len(w.queue)
	w.queue = nil
	w.mu.Unlock()
	w.b.finished(rest)
}

func (w *txnWork) run() {
	defer w.b.wg.Done()
	defer w.p.wg.Done()
	c := w.b.c
	c.m.inFlight.Inc()
	defer c.m.inFlight.Dec()
	clock := newLaneClock()
	ok := 0
	defer func() {
		w.p.m.latency.add(&clock.lat)
		w.p.m.handled.Add(float64(ok))
	}()
	for {
		recs := w.take()
		if recs == nil {
			return
		}
		if c.batch != nil {
			ok += w.calls(recs, &clock)
			continue
		}
		for i, rec := range recs {
			// Doomed: the transaction aborts and everything is rewound.
			if w.b.doomed.Load() || w.p.halt.Load() {
				w.stop(rec, len(recs)-i)
				break
			}
			res := w.p.process(&w.h, rec, &clock)
			if res == stopped || res == parked {
				w.stop(rec, len(recs)-i)
				break
			}
			if res == handled {
				ok++
			}
			w.b.finished(1)
		}
	}
}

// calls handles recs with batch calls of up to BatchSize's maxRecords (no
// linger: the transaction gathers the records) and returns how many were
// handled. A record that stops or parks is the first not handled; if a
// record after it in its call was handled (a blocking retry stopped by a
// revocation, say), its outputs are in the transaction while the offset
// would be rewound before it: the transaction aborts instead.
func (w *txnWork) calls(recs []*kgo.Record, clock *laneClock) int {
	ok := 0
	for start := 0; start < len(recs); {
		if w.b.doomed.Load() || w.p.halt.Load() {
			w.stop(recs[start], len(recs)-start)
			return ok
		}
		call := recs[start:min(start+w.b.c.cfg.batchRecords, len(recs))]
		res := make([]result, len(call))
		w.p.processBatch(&w.h, call, clock, res)
		first := -1
		for i, r := range res {
			switch {
			case r == stopped || r == parked:
				if first < 0 {
					first = i
				}
			case first >= 0:
				w.b.fail(fmt.Errorf("a batch call of %s[%d] stopped at offset %d after handling offset %d", w.p.topic, w.p.id, call[first].Offset, call[i].Offset))
			default:
				if r == handled {
					ok++
				}
			}
		}
		if first >= 0 {
			w.b.finished(first)
			w.stop(call[first], len(recs)-start-first)
			return ok
		}
		w.b.finished(len(call))
		start += len(call)
	}
	return ok
}

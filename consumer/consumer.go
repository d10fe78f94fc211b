// Package consumer is whippet's group consumer: a Handler per record, each
// partition handled in offset order on its own worker (or, in key-parallel
// mode, each key in order with different keys concurrently), offsets committed
// only behind finished records, bounded buffers with backpressure, drained and
// committed revocations, and graceful shutdown.
//
// Semantics:
//   - At-least-once. An offset is committed only after its record and every
//     record before it in that partition were handled. Commits happen every
//     CommitInterval, on every revocation and on shutdown.
//   - Order. Records of one partition are handled in offset order. With
//     KeyParallel, records of one key are handled in order and different keys
//     run concurrently; the committed offset never passes an unfinished record.
//   - Revocation. A revoked partition takes no more records; the handlers under
//     way finish (bounded by DrainTimeout), the finished work is committed, and
//     only then does the rebalance go on.
//   - Failure. A panicking handler is a failed handler. A failed record goes
//     through the topic's retry policy (see Retry and package retry): blocking
//     retries in place, forwards to retry topics the consumer also consumes
//     (each record handled at its due time, never before), and finally the
//     dead-letter topic "<topic>-<group>-dlq". The default policy sends it
//     straight to the dead-letter topic. A forward counts as done only when
//     Kafka acknowledges it; until then the commit stays below the record,
//     and a failing forward is retried with the partition stopped: nothing is
//     ever skipped. Blocked lists what holds a partition up; Skip, SkipAll and
//     Block let an operator unblock it.
//   - Outputs. A handler produces records with Emit. They are produced only
//     if the handler returns nil (a failed attempt's are dropped), and the
//     input record is finished only when Kafka has acknowledged all of them.
//   - Exactly once. With Transactional, the outputs, the forwards to retry and
//     dead-letter topics and the input offsets of a batch of records commit
//     in one Kafka transaction (franz-go's GroupTransactSession): a handler
//     returning ErrAbort, a failed produce, a rebalance or a crash aborts it,
//     and its records are handled again; read_committed readers see each
//     output once. A fenced instance stops with ErrFenced.
//
// # Rebalance hooks
//
// Rebalance hooks tell a service which partitions it owns, for state kept
// per partition (a cache, a batch, a lock, a gauge). Their guarantees:
//
//   - OnAssigned(ps) is called before the first handler call on any record
//     of ps in that assignment: no record of ps is fetched until it returns.
//   - OnRevoked(ps) is called once no handler call on a record of ps is
//     under way (those still running after DrainTimeout were canceled and
//     are not committed), none starts afterwards (until OnAssigned again),
//     and the offsets of ps are committed: in at-least-once mode, the offset
//     after the last record finished, committed synchronously; in
//     Transactional mode, those of every transaction that committed (a
//     transaction still open aborts: its records are handled again by the
//     next owner and its outputs never become visible). It is called on a
//     rebalance and on shutdown (before Run returns).
//   - OnLost(ps) is called instead of OnRevoked when ps were taken without
//     that commit: the group evicted the member (session timeout, the broker
//     unreachable for that long), a rebalance took them without a
//     revocation, Run failed for good in Transactional mode, or, in
//     at-least-once mode, the commit of a revocation or shutdown failed.
//     Their handlers have stopped as for OnRevoked; records finished since
//     the last commit are handled again by the next owner, who may already
//     be at work.
//
// Every partition passed to OnAssigned is later passed to exactly one
// OnRevoked or OnLost call (set both if you keep state per partition), and
// then perhaps to OnAssigned again. Hooks are called one at a time, from the
// consumer's rebalance callbacks (or from Run at shutdown), never with an
// empty list, each list sorted. The rebalance waits for them, so keep them
// short: a member that takes longer than the group's rebalance timeout (60s
// by default) is evicted. A hook that panics is logged and recovered.
//
// The consumer is built on franz-go: it uses BlockRebalanceOnPoll so that a
// rebalance never runs while fetched records are being dispatched, and
// AutoCommitMarks so that only records marked as finished are committed.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/plugin/kzap"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/connect"
	"github.com/whippet-go/whippet/retry"
)

var (
	// ErrClosed is returned by Run when the consumer was closed before or
	// while it was started.
	ErrClosed = errors.New("consumer: closed")
	// ErrAlreadyRunning is returned by a second call to Run.
	ErrAlreadyRunning = errors.New("consumer: Run called twice")
)

// TopicPartition names one partition of a topic.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// PartitionState is a snapshot of one assigned partition.
type PartitionState struct {
	Topic     string
	Partition int32
	// Buffered counts records fetched and not yet finished.
	Buffered int
	// Paused is true when an operator paused the partition or the consumer.
	Paused bool
	// Backpressure is true while fetching is paused because Buffered reached
	// the PartitionBuffer bound and did not drain within BackpressureWait.
	Backpressure bool
	// NextOffset is the first offset not yet finished (what a commit now
	// would store); -1 before the first fetch.
	NextOffset int64
	// Lag is the high watermark minus NextOffset, as of the last fetch.
	Lag int64
}

// Consumer consumes a group's partitions and calls a Handler for each record.
// Create it with New, start it with Run, stop it by canceling Run's context
// or with Close.
type Consumer struct {
	cfg     config
	handler Handler      // New's, with its middlewares
	batch   BatchHandler // NewBatch's
	log     *zap.Logger
	m       *metrics
	sem     chan struct{} // handler slots in key-parallel mode; nil otherwise

	kc         *connect.Client            // builds every client from the Connection
	cl         atomic.Pointer[kgo.Client] // the group client, once Run made it
	handlerCtx context.Context            // parent of every partition's handler context
	stages     map[string]stage           // the retry topics this consumer subscribes to
	fwd        *kgo.Client                // forwards to retry and dead-letter topics
	limits     topicLimits                // batch limits of the retry and dead-letter topics
	txn        atomic.Pointer[txnBatch]   // transactional mode: the transaction under way
	// forwardTopics are, with TopicRegex, the source topics whose retry and
	// dead-letter topics exist (see ensureForwardTopics).
	forwardTopics sync.Map

	hookMu sync.Mutex // one rebalance hook at a time

	// Health (see Health): the group membership, and when the loop last
	// left its poll (0 while it polls).
	member    atomic.Bool
	memberWhy atomic.Pointer[string]
	pollOut   atomic.Int64

	started   atomic.Bool
	closeOnce sync.Once
	closeCh   chan struct{}
	done      chan struct{}

	seeks seeker // SeekTo's requests, applied by the goroutine that polls

	drainedMu sync.Mutex
	drained   chan struct{} // closed and replaced when a full partition drains to half

	mu    sync.Mutex
	parts map[TopicPartition]*partition
	// held are the assigned partitions seen among those franz-go holds a
	// position for (transactional mode; see reconcile).
	held        map[TopicPartition]bool
	paused      bool
	pausedParts map[TopicPartition]bool
	skipAll     map[TopicPartition]bool
}

// New validates conn and the options and returns a consumer of conn's
// cluster that calls h for every record. It does no network I/O: a bad
// option is reported here, with the option's name (or
// "Connection.<Field>") and the rule it breaks (errors.Is(err,
// ErrInvalidConfig)).
//
// Every client the consumer makes (the group client, the client that
// forwards to retry and dead-letter topics) takes conn's brokers, TLS, SASL,
// client id and logger (franz-go's logs at warn level and above). With
// conn.Registerer, the consumer's metrics are whippet_consumer_* labelled
// group, and its group client's franz-go metrics whippet_kafka_* labelled
// component="consumer" and name=<group>; two consumers of one group on one
// Registerer are refused. conn.ClientOptions go to every client; they
// override whippet's client defaults (FetchMaxWait 500ms, the session
// timeout), but not the options the consumer relies on (group,
// subscription, reset offset, isolation level, commit mode, rebalance
// callbacks), which are set after them.
func New(conn whippet.Connection, h Handler, opts ...Option) (*Consumer, error) {
	return newConsumer(conn, h, nil, opts)
}

// newConsumer is New with a Handler, or NewBatch with a BatchHandler.
func newConsumer(conn whippet.Connection, h Handler, bh BatchHandler, opts []Option) (*Consumer, error) {
	cfg := defaultConfig()
	cfg.conn = conn
	cfg.batch = bh != nil
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if err := cfg.validate(h != nil || bh != nil); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.group, conn.Registerer)
	if err != nil {
		return nil, err
	}
	c := &Consumer{
		cfg:         cfg,
		log:         connect.Logger(conn).With(zap.String("group", cfg.group)),
		kc:          connect.New(conn, "consumer", cfg.group),
		m:           m,
		closeCh:     make(chan struct{}),
		drained:     make(chan struct{}),
		done:        make(chan struct{}),
		parts:       make(map[TopicPartition]*partition),
		held:        make(map[TopicPartition]bool),
		pausedParts: make(map[TopicPartition]bool),
		skipAll:     make(map[TopicPartition]bool),
		stages:      make(map[string]stage),
	}
	for _, topic := range cfg.topics {
		for n := range cfg.policyFor(topic).NonBlockingIntervals() {
			c.stages[retry.TopicName(topic, cfg.group, n)] = stage{source: topic, n: n}
		}
	}
	if h != nil {
		c.handler = chain(h, cfg.middlewares)
	} else {
		c.batch = chainBatch(bh, cfg.batchMiddlewares)
	}
	if cfg.keyParallel {
		c.sem = make(chan struct{}, cfg.keyConcurrency)
	}
	return c, nil
}

// Run joins the group and handles records until ctx is canceled or Close is
// called; then it stops fetching, lets the handlers under way finish (bounded
// by DrainTimeout), commits, leaves the group and returns nil. Handlers keep
// running through the cancellation of ctx: their own context is canceled only
// when the drain times out. Run returns an error only if the consumer could not
// start (among others when Kafka refuses the connection: a wrong password or
// an untrusted certificate gives franz-go's error, e.g. one matching
// kerr.SaslAuthenticationFailed, within a request round trip), or was closed
// before it started (ErrClosed), or, in transactional
// mode, when its transactional producer failed for good: fenced by another
// instance (ErrFenced) or not authorized.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer close(c.done)
	defer c.m.unregister()
	select {
	case <-c.closeCh:
		return ErrClosed
	default:
	}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	go func() {
		select {
		case <-c.closeCh:
			stopRun()
		case <-runCtx.Done():
		}
	}()
	handlerCtx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	c.handlerCtx = handlerCtx
	if c.cfg.txnSet {
		return c.runTransactional(runCtx)
	}

	// The forwarder produces to retry and dead-letter topics: idempotent,
	// acks=all, so that a forward acknowledged is a forward stored once.
	fwd, err := kgo.NewClient(c.forwarderOptions()...)
	if err != nil {
		return fmt.Errorf("consumer: creating the forwarding client: %w", err)
	}
	defer fwd.Close()
	c.fwd = fwd
	if err := c.ensureTopics(runCtx); err != nil {
		return err
	}

	cl, err := kgo.NewClient(c.clientOptions()...)
	if err != nil {
		return fmt.Errorf("consumer: creating the Kafka client: %w", err)
	}
	unregister, err := c.registerClient(cl)
	if err != nil {
		return err
	}
	defer unregister()
	c.log.Info("consumer started", zap.Strings("topics", c.cfg.topics), zap.Strings("patterns", c.cfg.patterns),
		zap.Strings("retryTopics", c.retryTopics()), zap.Bool("keyParallel", c.cfg.keyParallel))
	c.poll(runCtx, cl)

	// Shutdown: drain and commit here rather than in the leave's revoke
	// callback, so the commit does not depend on the client's leave path.
	ps := c.takeAllPartitions()
	err = c.stopPartitions(context.Background(), cl, ps, true)
	c.ended(c.handlerCtx, ps, err == nil)
	cl.CloseAllowingRebalance()
	c.log.Info("consumer stopped")
	return nil
}

// registerClient registers the group client's franz-go metrics; on a clash
// it closes cl.
func (c *Consumer) registerClient(cl *kgo.Client) (unregister func(), err error) {
	unregister, err = c.kc.Register()
	if err != nil {
		cl.Close()
		return nil, &ConfigError{Pkg: "consumer", Sentinel: ErrInvalidConfig, Field: "Connection.Registerer",
			Rule: "cannot register the Kafka client metrics", Err: err}
	}
	c.cl.Store(cl)
	return unregister, nil
}

// forwarderOptions configure the client that forwards records to retry and
// dead-letter topics: the Connection's options (without the metrics hook,
// which serves the group client), franz-go's idempotent producer defaults.
func (c *Consumer) forwarderOptions() []kgo.Opt {
	return c.kc.Plain(
		kgo.ClientID(connect.ClientID(c.cfg.conn, "consumer")+"-forwarder"),
		kgo.WithLogger(kzap.New(c.log, kzap.Level(kgo.LogLevelWarn))),
		kgo.ProducerBatchMaxBytesFn(c.limits.batchMaxBytes),
	)
}

// Close stops the consumer like canceling Run's context does, and waits for
// Run to return (handlers finishing, within DrainTimeout, the last commit,
// leaving the group), or for ctx to end, whichever is first: then it returns
// ctx's error and Run goes on stopping. It is safe to call more than once,
// and before Run (Run then returns ErrClosed).
func (c *Consumer) Close(ctx context.Context) error {
	c.closeOnce.Do(func() { close(c.closeCh) })
	if !c.started.Load() {
		c.m.unregister()
		return nil
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("consumer: waiting for Run to stop: %w", ctx.Err())
	}
}

// Group returns the consumer group id (see Group).
func (c *Consumer) Group() string { return c.cfg.group }

// Topics returns the topics the consumer subscribes to, sorted, without
// their retry topics. With Topics, they are the topics named there. With
// TopicRegex, they are the topics the patterns match now, as the consumer
// last saw them (franz-go looks for new topics at every metadata refresh,
// every 5 minutes by default): none before Run has read the topic list
// once; a retry topic counts as its source topic.
func (c *Consumer) Topics() []string {
	if len(c.cfg.patterns) == 0 {
		return slices.Sorted(slices.Values(c.cfg.topics))
	}
	cl := c.cl.Load()
	if cl == nil {
		return nil
	}
	seen := map[string]bool{}
	for _, t := range cl.GetConsumeTopics() {
		if st, ok := c.stageOf(t); ok {
			t = st.source
		}
		seen[t] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

func (c *Consumer) clientOptions() []kgo.Opt {
	return append(c.baseClientOptions(),
		kgo.BlockRebalanceOnPoll(),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(c.cfg.commitInterval),
		kgo.OnPartitionsAssigned(c.onAssigned),
		kgo.OnPartitionsRevoked(c.onRevoked),
		kgo.OnPartitionsLost(c.onLost),
	)
}

// baseClientOptions are the client options of both modes.
func (c *Consumer) baseClientOptions() []kgo.Opt {
	reset := kgo.NewOffset().AtStart()
	if c.cfg.startOffset == Latest {
		reset = kgo.NewOffset().AtEnd()
	}
	opts := []kgo.Opt{
		kgo.WithLogger(kzap.New(c.log, kzap.Level(kgo.LogLevelWarn))),
		// The Java consumer's fetch.max.wait.ms rather than franz-go's 5s: a
		// partition resumed after backpressure waits at most this long behind
		// a long-polling fetch of the same broker.
		kgo.FetchMaxWait(500 * time.Millisecond),
		kgo.SessionTimeout(c.cfg.sessionTimeout),
		kgo.WithHooks(groupHealth{c}),
	}
	if c.cfg.txnSet {
		// franz-go's default is 20ms: a transaction begun right after the
		// last one ended often waits that long for the broker to finish
		// writing the markers.
		opts = append(opts, kgo.ProducerBatchMaxBytesFn(c.limits.batchMaxBytes), // it forwards too
			kgo.ConcurrentTransactionsBackoff(5*time.Millisecond),
			// Kafka 4 (transactions v2, KIP-890) answers a produce that comes
			// while the last transaction's markers are still being written
			// with CONCURRENT_TRANSACTIONS, and franz-go retries it only
			// after a metadata refresh, no sooner than this (default 5s):
			// on 3 brokers most transactions took 5-10s (internal/chaos).
			kgo.MetadataMinAge(250*time.Millisecond))
	}
	// The Connection's options, the metrics hook and the user's
	// ClientOptions, then what the consumer relies on.
	opts = c.kc.All(opts...)
	if c.cfg.readCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	opts = append(opts,
		kgo.ConsumerGroup(c.cfg.group),
		kgo.ConsumeResetOffset(reset),
	)
	if c.cfg.commitStartOnAssign || c.cfg.txnSet {
		opts = append(opts, kgo.AdjustFetchOffsetsFn(c.startPositions))
	}
	return append(opts, c.subscribeOptions()...)
}

// poll fetches and hands records to their partitions until ctx ends. With
// BlockRebalanceOnPoll no rebalance callback runs between a poll and the
// AllowRebalance below, so records never reach a partition being revoked.
func (c *Consumer) poll(ctx context.Context, cl *kgo.Client) {
	for {
		pollCtx, wake := c.seeks.pollContext(ctx)
		c.polling()
		fetches := cl.PollFetches(pollCtx)
		c.polled()
		wake()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			cl.AllowRebalance()
			return
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			if !wokenBy(pollCtx, err) {
				c.log.Warn("fetch error", zap.String("topic", topic), zap.Int32("partition", partition), zap.Error(err))
			}
		})
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if fp.Err != nil {
				return
			}
			c.mu.Lock()
			p := c.parts[TopicPartition{fp.Topic, fp.Partition}]
			c.mu.Unlock()
			if p != nil {
				p.enqueue(fp.Records, fp.HighWatermark)
			}
		})
		c.applySeeks(cl) // while no rebalance can run
		cl.AllowRebalance()
		c.awaitRoom(ctx)
	}
}

// awaitRoom holds the next poll while a partition is full: for at most
// BackpressureWait, then the partitions still full are paused so that the
// others go on. Waiting keeps the pipeline of a fast handler intact (franz-go
// prefetches one fetch per broker meanwhile), while a pause drops that
// prefetch, and a resumed partition may wait behind another partition's
// long-polling fetch (up to FetchMaxWait). So a partition that finished,
// during the wait, at least as many records as it still has to finish to be
// drained is waited for once more rather than paused: at that pace it drains
// within a second BackpressureWait.
func (c *Consumer) awaitRoom(ctx context.Context) {
	var (
		timer    *time.Timer
		doneAt   map[*partition]int // records finished when the wait began
		extended bool
	)
	for {
		drained := c.drainedSignal()
		full := c.fullPartitions()
		if len(full) == 0 {
			return
		}
		if timer == nil {
			timer = time.NewTimer(c.cfg.backpressureWait)
			defer timer.Stop()
			doneAt = make(map[*partition]int, len(full))
			for _, p := range full {
				doneAt[p], _ = p.drainProgress()
			}
		}
		select {
		case <-drained:
			continue
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		draining := false
		for _, p := range full {
			done, left := p.drainProgress()
			if began, ok := doneAt[p]; ok && !extended && left <= done-began {
				draining = true
				continue
			}
			p.pauseIfFull()
		}
		if !draining {
			return
		}
		extended = true
		timer.Reset(c.cfg.backpressureWait)
	}
}

func (c *Consumer) fullPartitions() []*partition {
	c.mu.Lock()
	defer c.mu.Unlock()
	var full []*partition
	for _, p := range c.parts {
		if p.fullAndFetching() {
			full = append(full, p)
		}
	}
	return full
}

func (c *Consumer) drainedSignal() <-chan struct{} {
	c.drainedMu.Lock()
	defer c.drainedMu.Unlock()
	return c.drained
}

func (c *Consumer) signalDrained() {
	c.drainedMu.Lock()
	close(c.drained)
	c.drained = make(chan struct{})
	c.drainedMu.Unlock()
}

func (c *Consumer) onAssigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	c.joined() // franz-go calls it after every join, even with nothing new
	if c.cfg.txnSet {
		c.reconcile(ctx, cl)
	}
	// A partition assigned while we still hold it was revoked without a
	// callback (and not seen by reconcile): end that assignment first.
	var stale []*partition
	c.mu.Lock()
	for topic, ps := range assigned {
		for _, id := range ps {
			tp := TopicPartition{topic, id}
			if old := c.parts[tp]; old != nil {
				stale = append(stale, old)
				delete(c.parts, tp)
			}
			delete(c.held, tp)
		}
	}
	c.mu.Unlock()
	c.stopPartitions(ctx, cl, stale, false)
	c.ended(ctx, stale, false)

	c.register(cl, assigned)
	c.log.Info("partitions assigned", zap.Any("partitions", assigned))
	c.hook(ctx, "OnAssigned", c.cfg.onAssigned, topicPartitions(assigned))
}

// register starts the state of newly assigned partitions.
func (c *Consumer) register(cl *kgo.Client, assigned map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic, ps := range assigned {
		for _, id := range ps {
			c.addPartitionLocked(cl, TopicPartition{topic, id})
		}
	}
}

// addPartitionLocked starts the state of an assigned partition (or of one a
// seek moved), with the operator's pauses and SkipAll; c.mu is held.
func (c *Consumer) addPartitionLocked(cl *kgo.Client, tp TopicPartition) *partition {
	p := newPartition(c, cl, tp.Topic, tp.Partition)
	if c.paused {
		p.paused |= pausedConsumer
	}
	if c.pausedParts[tp] {
		p.paused |= pausedPartition
	}
	p.skipAll.Store(c.skipAll[tp])
	if p.paused != 0 {
		cl.PauseFetchPartitions(map[string][]int32{tp.Topic: {tp.Partition}})
		c.m.paused.Inc()
	}
	c.parts[tp] = p
	return p
}

func (c *Consumer) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	ps := c.takePartitions(revoked)
	err := c.stopPartitions(ctx, cl, ps, true)
	c.log.Info("partitions revoked", zap.Any("partitions", revoked))
	c.ended(ctx, ps, err == nil)
}

func (c *Consumer) onLost(ctx context.Context, cl *kgo.Client, lost map[string][]int32) {
	// The partitions are already someone else's: stop, but commit nothing.
	c.left("its group session ended")
	ps := c.takePartitions(lost)
	c.stopPartitions(ctx, cl, ps, false)
	c.log.Warn("partitions lost", zap.Any("partitions", lost))
	c.ended(ctx, ps, false)
}

func (c *Consumer) takePartitions(tps map[string][]int32) []*partition {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*partition
	for topic, ids := range tps {
		for _, id := range ids {
			tp := TopicPartition{topic, id}
			if p := c.parts[tp]; p != nil {
				out = append(out, p)
				delete(c.parts, tp)
			}
			delete(c.held, tp)
		}
	}
	return out
}

// reconcile lets go of the partitions that a rebalance took without telling
// us. A GroupTransactSession calls OnPartitionsRevoked and OnPartitionsLost
// only for the first revocation until its next End: a second rebalance
// inside one transaction (a blocking retry holds it open), or between two
// transactions while no records come, takes partitions silently, and their
// state would stay: listed, retried, its park timer resuming a partition.
// franz-go holds a position (CommittedOffsets) for each partition it
// consumes once their offsets are fetched, and drops it when the partition
// is revoked or lost (its SetOffsets relies on that): a partition once seen
// there and now gone is not ours any more. Every group session calls
// OnPartitionsAssigned right after that session's revocations, so they
// show here; the rebalance did not wait for these partitions' handlers, but
// their transaction aborts (its first revocation doomed it).
func (c *Consumer) reconcile(ctx context.Context, cl *kgo.Client) {
	holds := cl.CommittedOffsets()
	var gone []*partition
	lost := make(map[string][]int32)
	c.mu.Lock()
	for tp, p := range c.parts {
		if _, ok := holds[tp.Topic][tp.Partition]; ok {
			c.held[tp] = true
			continue
		}
		// Not held yet (its offsets are still being fetched) is not gone.
		if c.held[tp] {
			gone = append(gone, p)
			lost[tp.Topic] = append(lost[tp.Topic], tp.Partition)
			delete(c.parts, tp)
			delete(c.held, tp)
		}
	}
	c.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	if b := c.txn.Load(); b != nil {
		b.fail(errors.New("partitions revoked"))
	}
	c.stopPartitions(ctx, cl, gone, false)
	c.ended(ctx, gone, false)
	c.log.Warn("partitions revoked without a callback (a second rebalance inside one transaction): stopped", zap.Any("partitions", lost))
}

// holding notes that franz-go holds a position for the partition: its
// offsets were fetched, or records of it polled.
func (c *Consumer) holding(topic string, id int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	tp := TopicPartition{topic, id}
	if c.parts[tp] != nil {
		c.held[tp] = true
	}
}

func (c *Consumer) takeAllPartitions() []*partition {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*partition, 0, len(c.parts))
	for tp, p := range c.parts {
		out = append(out, p)
		delete(c.parts, tp)
	}
	clear(c.held)
	return out
}

// stopPartitions stops the partitions, waits up to DrainTimeout for their
// handlers under way, and commits what finished; the error is the commit's.
func (c *Consumer) stopPartitions(ctx context.Context, cl *kgo.Client, ps []*partition, commit bool) error {
	if len(ps) == 0 {
		return nil
	}
	for _, p := range ps {
		p.stop()
	}
	deadline := time.NewTimer(c.cfg.drainTimeout)
	defer deadline.Stop()
	for _, p := range ps {
		drained := make(chan struct{})
		go func() { p.wg.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-deadline.C:
			deadline.Reset(0) // the remaining partitions get no more time
			c.log.Warn("drain timeout: canceling handlers still running; their records will be handled again by the next owner",
				zap.String("topic", p.topic), zap.Int32("partition", p.id), zap.Duration("drainTimeout", c.cfg.drainTimeout))
		}
		// Close before cancel: a handler returning because of the cancel must
		// not count as finished.
		p.close()
		p.cancel()
	}
	if !commit {
		return nil
	}
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		c.log.Error("committing offsets of revoked partitions failed; their finished records will be handled again", zap.Error(err))
		return err
	}
	return nil
}

// startPositions is franz-go's AdjustFetchOffsetsFn: it runs once the
// offsets of newly assigned partitions are fetched, before they are fetched
// from, and commits the start position of those without a committed offset
// (see CommitStartOnAssign); they then start exactly there. In transactional
// mode it also notes which partitions franz-go now holds (see reconcile).
//
// franz-go's offset fetch names the partitions, requires stable offsets and
// waits while one is held by a transaction not ended yet
// (UNSTABLE_OFFSET_COMMIT, KIP-447): a partition comes here without an
// offset only if it has none, committed or pending. A group-wide fetch
// would leave a pending offset out, and a plain commit appended after it
// would replace it when its transaction commits. A partition whose fetch
// failed is not in offsets at all: an error never leads to a commit.
//
// Transactional mode commits start positions too, with a plain OffsetCommit
// among the transactional ones: it is safe because nothing is pending for
// the partition when it is sent, and any later TxnOffsetCommit (by the member
// that owns the partition, fenced by the group generation) is appended after
// it and wins. Without it, a Transactional consumer with Latest that crashed
// before its first transaction would skip what was produced meanwhile.
func (c *Consumer) startPositions(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	defer c.noteHeld(offsets) // as adjusted below: the map is changed in place
	if !c.cfg.commitStartOnAssign {
		return offsets, nil
	}
	missing := make(map[string][]int32)
	var topics []string
	for topic, ps := range offsets {
		for id, o := range ps {
			if o.EpochOffset().Offset < 0 { // the reset offset: nothing committed
				missing[topic] = append(missing[topic], id)
			}
		}
		if len(missing[topic]) > 0 {
			topics = append(topics, topic)
		}
	}
	if len(topics) == 0 {
		return offsets, nil
	}
	starts, err := c.commitStartPositions(ctx, missing, topics)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Error("committing the start position of never-committed partitions failed; a crash before the first commit may re-read or, with Latest, skip records",
				zap.Any("partitions", missing), zap.Error(err))
		}
		return offsets, nil // franz-go resets them itself
	}
	for topic, ps := range starts {
		for id, at := range ps {
			offsets[topic][id] = kgo.NewOffset().At(at)
		}
	}
	return offsets, nil
}

// noteHeld notes the partitions that franz-go holds a position for once it
// starts them at offsets: those with a committed (or just committed start)
// offset.
func (c *Consumer) noteHeld(offsets map[string]map[int32]kgo.Offset) {
	if !c.cfg.txnSet {
		return
	}
	for topic, ps := range offsets {
		for id, o := range ps {
			if o.EpochOffset().Offset >= 0 {
				c.holding(topic, id)
			}
		}
	}
}

// commitStartPositions lists where the reset policy starts each of the
// missing partitions and commits it as this group member; it commits
// nothing if any partition cannot be listed.
func (c *Consumer) commitStartPositions(ctx context.Context, missing map[string][]int32, topics []string) (map[string]map[int32]int64, error) {
	cl := c.cl.Load()
	if cl == nil {
		return nil, errors.New("no group client")
	}
	adm := kadm.NewClient(cl)
	list := adm.ListStartOffsets
	if c.cfg.startOffset == Latest {
		list = adm.ListEndOffsets // the high watermark: the end read_uncommitted starts at
		if c.cfg.readCommitted || c.cfg.txnSet {
			// The last stable offset: records of a transaction open now are
			// read when it commits, not skipped.
			list = adm.ListCommittedOffsets
		}
	}
	listed, err := list(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("listing %s offsets: %w", c.cfg.startOffset, err)
	}
	// A plain OffsetCommit as this group member: franz-go's CommitOffsetsSync
	// works too, but warns that its session has not started yet, since no
	// fetch has run.
	meta, err := adm.Metadata(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("reading topic ids: %w", err)
	}
	memberID, generation := cl.GroupMetadata()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group, req.MemberID, req.Generation = c.cfg.group, memberID, generation
	starts := make(map[string]map[int32]int64, len(missing))
	for topic, ids := range missing {
		rt := kmsg.NewOffsetCommitRequestTopic()
		rt.Topic, rt.TopicID = topic, meta.Topics[topic].ID
		starts[topic] = make(map[int32]int64, len(ids))
		for _, id := range ids {
			lo, ok := listed.Lookup(topic, id)
			if !ok {
				return nil, fmt.Errorf("listing %s offset of %s[%d]: not in the answer", c.cfg.startOffset, topic, id)
			}
			if lo.Err != nil {
				return nil, fmt.Errorf("listing %s offset of %s[%d]: %w", c.cfg.startOffset, topic, id, lo.Err)
			}
			rp := kmsg.NewOffsetCommitRequestTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch = id, lo.Offset, -1
			rt.Partitions = append(rt.Partitions, rp)
			starts[topic][id] = lo.Offset
		}
		req.Topics = append(req.Topics, rt)
	}
	if err := commitResponseErr(req.RequestWith(ctx, cl)); err != nil {
		return nil, fmt.Errorf("committing start positions: %w", err)
	}
	c.log.Info("committed the start position of never-committed partitions", zap.Any("positions", starts), zap.Stringer("reset", c.cfg.startOffset))
	return starts, nil
}

// failed accounts for a record whose handler chain returned an error.
func (c *Consumer) failed(ctx context.Context, p *partition, rec *kgo.Record, attempt int, err error) {
	p.m.failed.Inc()
	if ce := c.log.Check(zap.WarnLevel, "handler failed"); ce != nil {
		fields := []zap.Field{zap.String("topic", rec.Topic), zap.Int32("partition", rec.Partition), zap.Int64("offset", rec.Offset),
			zap.Int("attempt", attempt), zap.Error(err)}
		var pe *PanicError
		if errors.As(err, &pe) {
			fields = append(fields, zap.ByteString("stack", pe.Stack))
		}
		ce.Write(fields...)
	}
	if c.cfg.onError != nil {
		c.cfg.onError(ctx, rec, err)
	}
}

// Pause stops fetching and handling every assigned partition (and those
// assigned later) until Resume. Handlers under way finish.
func (c *Consumer) Pause() { c.setConsumerPaused(true) }

// Resume undoes Pause. Partitions paused one by one stay paused.
func (c *Consumer) Resume() { c.setConsumerPaused(false) }

func (c *Consumer) setConsumerPaused(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paused = on
	for _, p := range c.parts {
		p.mu.Lock()
		if on {
			p.setPausedLocked(p.paused | pausedConsumer)
		} else {
			p.setPausedLocked(p.paused &^ pausedConsumer)
		}
		p.mu.Unlock()
	}
}

// PausePartition stops fetching and handling one partition until
// ResumePartition. The pause is remembered if the partition is not assigned
// now, and holds if it is assigned again later.
func (c *Consumer) PausePartition(topic string, partition int32) {
	c.setPartitionPaused(TopicPartition{topic, partition}, true)
}

// ResumePartition undoes PausePartition.
func (c *Consumer) ResumePartition(topic string, partition int32) {
	c.setPartitionPaused(TopicPartition{topic, partition}, false)
}

func (c *Consumer) setPartitionPaused(tp TopicPartition, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if on {
		c.pausedParts[tp] = true
	} else {
		delete(c.pausedParts, tp)
	}
	p := c.parts[tp]
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.setPausedLocked(p.paused | pausedPartition)
	} else {
		p.setPausedLocked(p.paused &^ pausedPartition)
	}
}

// Partitions returns a snapshot of the partitions assigned now.
func (c *Consumer) Partitions() []PartitionState {
	ps := c.assigned()
	out := make([]PartitionState, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.state())
	}
	slices.SortFunc(out, func(a, b PartitionState) int {
		if a.Topic != b.Topic {
			return strings.Compare(a.Topic, b.Topic)
		}
		return int(a.Partition - b.Partition)
	})
	return out
}

// commitResponseErr returns the request error or the first partition error.
func commitResponseErr(resp *kmsg.OffsetCommitResponse, err error) error {
	if err != nil {
		return err
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fmt.Errorf("%s[%d]: %w", t.Topic, p.Partition, err)
			}
		}
	}
	return nil
}

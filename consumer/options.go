package consumer

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/check"
	"github.com/whippet-go/whippet/internal/connect"
	"github.com/whippet-go/whippet/retry"
)

// ErrInvalidConfig is matched (with errors.Is) by every configuration error
// New returns. Each violation is a *ConfigError naming the option and the rule
// it breaks; New reports all of them, joined.
var ErrInvalidConfig = errors.New("consumer: invalid config")

// ConfigError reports one invalid option. Its message reads
// "consumer: <Field>: <Rule>", for example
// "consumer: PartitionBuffer: must be > 0, got 0".
type ConfigError = check.Error

// StartOffset says where a group starts reading a partition that has no
// committed offset.
type StartOffset int

const (
	// Earliest starts at the oldest record still in the partition. It is the
	// default, because a new group then never misses records produced before
	// it first joined.
	Earliest StartOffset = iota
	// Latest starts at the end of the partition: the high watermark, or,
	// under ReadCommitted or Transactional, the last stable offset (records
	// of a transaction open then are handled once it commits). The consumer
	// commits that position as soon as the partition is assigned (see
	// CommitStartOnAssign), so a restart never skips the records produced in
	// between.
	Latest
)

// String returns "earliest" or "latest".
func (s StartOffset) String() string {
	switch s {
	case Earliest:
		return "earliest"
	case Latest:
		return "latest"
	}
	return "StartOffset(" + strconv.Itoa(int(s)) + ")"
}

// Option configures a Consumer. Every option documents its default; a nil
// Option is ignored.
type Option func(*config)

type config struct {
	conn                whippet.Connection
	group               string
	topics              []string
	patterns            []string
	startOffset         StartOffset
	partitionBuffer     int
	backpressureWait    time.Duration
	keyParallel         bool
	keyConcurrency      int
	drainTimeout        time.Duration
	sessionTimeout      time.Duration
	commitInterval      time.Duration
	commitStartOnAssign bool
	middlewares         []Middleware
	onError             func(context.Context, *kgo.Record, error)
	onAssigned          func(context.Context, []TopicPartition)
	onRevoked           func(context.Context, []TopicPartition)
	onLost              func(context.Context, []TopicPartition)
	healthPoll          time.Duration
	healthBlocked       time.Duration
	retry               retry.Policy
	retryFor            map[string]retry.Policy
	retryPartitions     int32
	retryReplication    int16
	retryConfigs        map[string]*string
	readCommitted       bool
	txnID               string
	txnSet              bool
	txnMaxRecords       int
	txnMaxInterval      time.Duration
	txnTimeout          time.Duration
	batch               bool // NewBatch
	batchRecords        int
	batchLinger         time.Duration
	batchSet            bool
	batchMiddlewares    []BatchMiddleware
}

func defaultConfig() config {
	return config{
		partitionBuffer:     256,
		backpressureWait:    500 * time.Millisecond,
		drainTimeout:        30 * time.Second,
		sessionTimeout:      DefaultSessionTimeout,
		commitInterval:      time.Second,
		commitStartOnAssign: true,
		retryReplication:    -1,
		txnMaxRecords:       DefaultTransactionRecords,
		txnMaxInterval:      DefaultTransactionInterval,
		txnTimeout:          DefaultTransactionTimeout,
		batchRecords:        DefaultBatchRecords,
		batchLinger:         DefaultBatchLinger,
		healthPoll:          DefaultHealthPollLimit,
		healthBlocked:       DefaultHealthBlockedLimit,
	}
}

// Group sets the consumer group id. Required; no default.
func Group(group string) Option { return func(c *config) { c.group = group } }

// Topics subscribes to the named topics. Topics or TopicRegex is required.
func Topics(topics ...string) Option {
	return func(c *config) { c.topics = append(c.topics, topics...) }
}

// TopicRegex subscribes to every topic matching any of the regular
// expressions (anywhere in the name, as regexp's MatchString; anchor with ^
// and $), including topics created later. It cannot be combined with Topics.
//
// The group's own topics are told by their names: a topic named like one of
// its dead-letter topics ("<x>-<group>-dlq") is never consumed, even if a
// pattern matches it (name it in Topics to consume it). Retry topics
// "<x>-<group>-retry-<n>" are consumed as retry stage n of x when a pattern
// matches x (or the retry topic) and the policy has that stage, never as
// topics of their own; retry topics of retry or dead-letter topics, and
// stages the policy does not have, are not consumed. The retry and
// dead-letter topics of a matched topic are created at its first failure
// that needs them, and the consumer then subscribes to its retry topics (one
// rebalance). With non-blocking retries, an end anchor ($) may only end a
// pattern or one of its alternatives, and ResetOffset must be Earliest.
func TopicRegex(patterns ...string) Option {
	return func(c *config) { c.patterns = append(c.patterns, patterns...) }
}

// ResetOffset sets where a partition with no committed offset starts.
// Default: Earliest.
func ResetOffset(s StartOffset) Option { return func(c *config) { c.startOffset = s } }

// PartitionBuffer bounds how many fetched records wait per partition. When a
// partition holds this many unfinished records, the consumer stops polling
// for up to BackpressureWait to let it drain; if it is still full then,
// fetching that partition is paused (the others go on) until half of its
// records are done.
// One fetch may overshoot the bound: a fetch returns whole record batches, up
// to franz-go's FetchMaxPartitionBytes (1 MiB, compressed, by default), so
// bound the memory of large fetches with that option. Default: 256
// (Greyhound's figure).
func PartitionBuffer(n int) Option { return func(c *config) { c.partitionBuffer = n } }

// BackpressureWait is how long the consumer holds its next poll for a full
// partition (see PartitionBuffer) before it pauses fetching that partition.
// Waiting keeps fast handlers at full speed (franz-go prefetches meanwhile);
// pausing keeps a slow or blocked partition from holding up the others. A
// partition that finished, during the wait, at least as many records as it
// still has to finish to be drained is waited for once more instead of being
// paused, so a poll is held for at most twice this. Default: 500ms.
func BackpressureWait(d time.Duration) Option { return func(c *config) { c.backpressureWait = d } }

// KeyParallel turns on key-parallel mode: within a partition, records with
// different keys are handled concurrently while records of one key stay in
// offset order. At most concurrency handlers run at once across the whole
// consumer. The committed offset never passes an unfinished record. Memory
// and goroutines do not grow with the number of keys: at most
// PartitionBuffer records of a partition are given to their keys at once
// (the rest of a fetch waits, in offset order), and a partition runs at most
// concurrency workers, plus one per record waiting between blocking retries.
// Default: off (each partition is handled strictly in offset order by one
// worker).
func KeyParallel(concurrency int) Option {
	return func(c *config) { c.keyParallel, c.keyConcurrency = true, concurrency }
}

// DrainTimeout bounds how long a revoked partition, or a consumer shutting
// down, waits for handlers under way to finish before their context is
// canceled and the rebalance or shutdown goes on without them (their records
// are not committed, so they are handled again by the next owner).
// Default: 30s. Keep it below the group's rebalance timeout (60s by default).
func DrainTimeout(d time.Duration) Option { return func(c *config) { c.drainTimeout = d } }

// DefaultSessionTimeout is the consumer's group session timeout (see
// SessionTimeout): Kafka's default before 3.0, short enough that a crashed
// instance's partitions move on soon.
const DefaultSessionTimeout = 10 * time.Second

// SessionTimeout sets the group session timeout (Kafka's session.timeout.ms):
// a member that sends no heartbeat for this long is evicted from the group
// and its partitions are given to the others. A member that stops normally
// leaves the group at once; one that dies without leaving (SIGKILL, a lost
// node, a network partition) holds its partitions, unhandled, until its
// session expires, plus the rebalance that follows (a few seconds).
// Heartbeats go every 3s (franz-go's default, kgo.HeartbeatInterval), so a
// shorter session risks evicting a live member that a GC pause or a slow
// network holds up for a few heartbeats. It must be within the broker's
// group.min.session.timeout.ms and group.max.session.timeout.ms (6s and 30m
// by default). Default: DefaultSessionTimeout (10s; franz-go's and Kafka's
// since 3.0 is 45s).
func SessionTimeout(d time.Duration) Option { return func(c *config) { c.sessionTimeout = d } }

// CommitInterval sets how often the offsets of handled records are committed.
// Offsets are also committed synchronously on every revocation and on
// shutdown. Default: 1s; minimum 100ms.
func CommitInterval(d time.Duration) Option { return func(c *config) { c.commitInterval = d } }

// CommitStartOnAssign, when on, commits the start position of every assigned
// partition that has no committed offset yet, before fetching it, and starts
// the partition exactly there. With Latest this keeps a consumer that crashes
// before its first commit from skipping records on restart. A partition whose
// offset is held by a transaction not ended yet (a TxnOffsetCommit pending)
// has one: the consumer waits for the transaction to end, as franz-go and
// Kafka's own consumers do (KIP-447), and never commits over it. If the
// start position cannot be listed or committed, nothing is committed (the
// error is logged). Default: on.
func CommitStartOnAssign(on bool) Option { return func(c *config) { c.commitStartOnAssign = on } }

// WithMiddleware wraps the handler; the first middleware is the outermost.
// A record forwarded to a retry or dead-letter topic is produced with the
// values of the context of its failed attempt as deep as the middlewares
// passed it on (a tracing middleware's span, for one), so a middleware must
// call its next handler before it returns. Default: none.
func WithMiddleware(mws ...Middleware) Option {
	return func(c *config) { c.middlewares = append(c.middlewares, mws...) }
}

// OnError is called for every failed attempt at a record (its handler, with
// its middlewares, returned an error or panicked), after the failure is logged
// and counted and before the retry policy decides what comes next.
// Default: none.
func OnError(fn func(ctx context.Context, rec *kgo.Record, err error)) Option {
	return func(c *config) { c.onError = fn }
}

// Retry sets the retry policy of every subscribed topic without its own
// (see RetryFor). Default: retry.NoRetry(): a failed record goes straight to
// the dead-letter topic "<topic>-<group>-dlq".
func Retry(p retry.Policy) Option { return func(c *config) { c.retry = p } }

// RetryFor sets the retry policy of one topic. Default: the Retry policy.
func RetryFor(topic string, p retry.Policy) Option {
	return func(c *config) {
		if c.retryFor == nil {
			c.retryFor = make(map[string]retry.Policy)
		}
		c.retryFor[topic] = p
	}
}

// RetryPartitions sets the partition count of the retry and dead-letter
// topics the consumer creates (when it starts, or with TopicRegex at a
// topic's first failure); existing topics are left as they are. Default: 0,
// as many as the source topic.
func RetryPartitions(n int32) Option { return func(c *config) { c.retryPartitions = n } }

// RetryReplicationFactor sets the replication factor of the retry and
// dead-letter topics the consumer creates. Default: -1, the broker's
// default.replication.factor.
func RetryReplicationFactor(n int16) Option { return func(c *config) { c.retryReplication = n } }

// RetryTopicConfig adds a topic config (for example "retention.ms") to the
// retry and dead-letter topics the consumer creates. Default: the broker's
// defaults, but for max.message.bytes: unless set here, a retry or
// dead-letter topic is created with its source topic's max.message.bytes
// plus 16 KiB for the retry headers, so that any record of the source can be
// forwarded (a record that is larger than that uncompressed still cannot).
// Existing topics are not altered: one that takes smaller records than that
// is logged as a warning at start, and a failing record too large for it
// blocks its partition (Blocked says "record too large" with the topic's
// limit) until its max.message.bytes is raised.
func RetryTopicConfig(key, value string) Option {
	return func(c *config) {
		if c.retryConfigs == nil {
			c.retryConfigs = make(map[string]*string)
		}
		c.retryConfigs[key] = &value
	}
}

// Defaults of transactional mode.
const (
	// DefaultTransactionRecords is the most records one transaction handles
	// (see TransactionBatch); it also bounds what an abort handles again. It
	// is high enough that, for fast handlers, DefaultTransactionInterval ends
	// a transaction first, as a plain GroupTransactSession loop that commits
	// once per poll would.
	DefaultTransactionRecords = 100_000
	// DefaultTransactionInterval is how long a transaction goes on taking
	// records (see TransactionBatch): Kafka Streams' commit interval under
	// exactly-once.
	DefaultTransactionInterval = 100 * time.Millisecond
	// DefaultTransactionTimeout is franz-go's transaction timeout (see
	// TransactionTimeout).
	DefaultTransactionTimeout = 40 * time.Second
)

// ReadCommitted makes the consumer read only committed records
// (isolation level read_committed): records of transactions still open are
// not fetched until they commit, and those of aborted transactions never
// are. Downstream of a transactional producer or of a consumer in
// Transactional mode, it is what makes each output seen exactly once.
// Transactional mode always reads committed records, whatever on says.
// Default: off (read_uncommitted, franz-go's and Kafka's default).
func ReadCommitted(on bool) Option { return func(c *config) { c.readCommitted = on } }

// Transactional turns on exactly-once mode (consume-transform-produce): the
// records a handler emits (see Emit), the forwards to retry and dead-letter
// topics, and the offsets of the records handled are committed in one Kafka
// transaction, so that readers with the read_committed isolation level see
// every output exactly once. A transaction handles up to TransactionBatch
// records, each partition in offset order and partitions concurrently; if a
// handler returns ErrAbort, a produce fails, the group rebalances or the
// process dies, the transaction aborts and its records are handled again.
// The consumer reads read_committed itself.
//
// transactionalID must be unique per running instance and stable across the
// instance's restarts, e.g. "<service>-<pod name>" of a StatefulSet: when
// an instance starts, Kafka aborts the open transaction of the previous
// holder of its id and fences it (its Run returns an error matching
// ErrFenced). Offsets are committed with the group's generation (KIP-447,
// Kafka 2.5+), so a zombie that lost its partitions cannot commit them
// either; the id need not follow the partitions. Two live instances with one
// id fence each other in turn, so never share one.
//
// Not with KeyParallel: a transaction commits one offset per partition, so
// records of a partition are handled in offset order. Blocking retries wait
// inside the open transaction (see TransactionTimeout); a retry record that is
// not due yet is not waited for: its partition is rewound to it and paused
// until it is due, and the transaction commits without it. CommitInterval does
// not apply: offsets are committed by each transaction.
// Default: off (at-least-once).
func Transactional(transactionalID string) Option {
	return func(c *config) { c.txnID, c.txnSet = transactionalID, true }
}

// TransactionBatch bounds one transaction in transactional mode: it takes
// records until it has maxRecords or maxInterval has passed since its first
// record, then commits once the handlers are done with them. It takes records
// only as fast as the handlers finish them (at most PartitionBuffer waiting
// per assigned partition), so a transaction lasts about maxInterval plus the
// time to handle those. Larger batches amortize the commit (a few round trips
// to the broker); smaller ones make outputs visible sooner and re-handle less
// after an abort. A transaction commits when all its partitions are done, so
// a slow or blocked partition delays the commits of the others. A commit
// costs a few milliseconds whatever its size (flush, TxnOffsetCommit,
// EndTxn), so small caps slow a fast transform down (see docs/design.md).
// Default: DefaultTransactionRecords (100,000), DefaultTransactionInterval (100ms).
func TransactionBatch(maxRecords int, maxInterval time.Duration) Option {
	return func(c *config) { c.txnMaxRecords, c.txnMaxInterval = maxRecords, maxInterval }
}

// TransactionTimeout sets the transaction timeout of transactional mode
// (kgo.TransactionTimeout): the broker aborts a transaction open longer, and
// the consumer then stops with ErrFenced. It must be at most the broker's
// transaction.max.timeout.ms (15m by default). Since blocking retries wait
// inside the transaction, New checks that TransactionBatch's interval plus the
// longest total wait of every blocking policy is at most half of it.
// Default: DefaultTransactionTimeout (40s).
func TransactionTimeout(d time.Duration) Option { return func(c *config) { c.txnTimeout = d } }

// policyFor returns the retry policy of a source topic.
func (c *config) policyFor(topic string) retry.Policy {
	if p, ok := c.retryFor[topic]; ok {
		return p
	}
	return c.retry
}

// validate checks the config without any network I/O and names every bad field.
func (c *config) validate(hasHandler bool) error {
	errs := check.NewErrors("consumer", ErrInvalidConfig)
	bad := errs.Add
	if !hasHandler {
		bad("Handler", "must not be nil")
	}
	switch {
	case c.batch && len(c.middlewares) > 0:
		bad("WithMiddleware", "wraps a Handler and cannot be combined with NewBatch's BatchHandler (see WithBatchMiddleware)")
	case !c.batch && c.batchSet:
		bad("BatchSize", "applies to a consumer made with NewBatch only")
	case !c.batch && len(c.batchMiddlewares) > 0:
		bad("WithBatchMiddleware", "applies to a consumer made with NewBatch only")
	case c.batch && c.batchRecords <= 0:
		bad("BatchSize", "maxRecords must be > 0, got %d", c.batchRecords)
	case c.batch && c.batchLinger < 0:
		bad("BatchSize", "linger must be >= 0, got %v", c.batchLinger)
	}
	connect.Validate(errs, c.conn)
	if c.group == "" {
		bad("Group", "must not be empty")
	}
	switch {
	case len(c.topics) == 0 && len(c.patterns) == 0:
		bad("Topics", "at least one topic (or TopicRegex pattern) is required")
	case len(c.topics) > 0 && len(c.patterns) > 0:
		bad("Topics", "cannot be combined with TopicRegex; subscribe by names or by patterns")
	}
	for _, t := range c.topics {
		if rule := check.TopicRule(t); rule != "" {
			bad("Topics", "%q: %s", t, rule)
		}
	}
	for _, p := range c.patterns {
		if _, err := regexp.Compile(p); err != nil {
			bad("TopicRegex", "%q does not compile: %v", p, err)
		}
	}
	if c.startOffset != Earliest && c.startOffset != Latest {
		bad("ResetOffset", "must be Earliest or Latest, got %v", c.startOffset)
	}
	if c.partitionBuffer <= 0 {
		bad("PartitionBuffer", "must be > 0, got %d", c.partitionBuffer)
	}
	if c.keyParallel && c.keyConcurrency <= 0 {
		bad("KeyParallel", "concurrency must be > 0, got %d", c.keyConcurrency)
	}
	if c.backpressureWait <= 0 {
		bad("BackpressureWait", "must be > 0, got %v", c.backpressureWait)
	}
	if c.drainTimeout <= 0 {
		bad("DrainTimeout", "must be > 0, got %v", c.drainTimeout)
	}
	if c.sessionTimeout < 6*time.Second || c.sessionTimeout > 30*time.Minute {
		bad("SessionTimeout", "must be between 6s and 30m (the broker's default group.min.session.timeout.ms and group.max.session.timeout.ms), got %v", c.sessionTimeout)
	}
	if c.commitInterval < 100*time.Millisecond {
		bad("CommitInterval", "must be at least 100ms (franz-go's minimum), got %v", c.commitInterval)
	}
	if c.healthPoll <= c.backpressureWait {
		bad("HealthPollLimit", "must be more than BackpressureWait (%v), which the loop may wait between polls, got %v", c.backpressureWait, c.healthPoll)
	}
	if c.healthBlocked <= 0 {
		bad("HealthBlockedLimit", "must be > 0, got %v", c.healthBlocked)
	}
	c.validateForwardTopics(bad)
	if err := c.retry.Validate(); err != nil {
		bad("Retry", "%v", err)
	}
	for topic, p := range c.retryFor {
		if err := p.Validate(); err != nil {
			bad("RetryFor", "%s: %v", topic, err)
		}
		if len(c.patterns) > 0 {
			bad("RetryFor", "%s: cannot be combined with TopicRegex; name the topics with Topics", topic)
		} else if !slices.Contains(c.topics, topic) {
			bad("RetryFor", "%q is not one of the subscribed Topics", topic)
		}
	}
	if stages := len(c.retry.NonBlockingIntervals()); len(c.patterns) > 0 && stages > 0 {
		if _, _, err := subscription(c.patterns, c.group, stages); err != nil {
			bad("TopicRegex", "%v", err)
		}
		if c.startOffset == Latest {
			bad("ResetOffset", "Latest cannot be combined with TopicRegex and non-blocking retries: the retry topics of a matched topic are created at its first failure and found after their first records, which Latest would skip; use Earliest, or name the topics with Topics")
		}
	}
	if c.retryPartitions < 0 {
		bad("RetryPartitions", "must be ≥ 0 (0: as the source topic), got %d", c.retryPartitions)
	}
	if c.retryReplication == 0 || c.retryReplication < -1 {
		bad("RetryReplicationFactor", "must be -1 (broker default) or > 0, got %d", c.retryReplication)
	}
	for k := range c.retryConfigs {
		if k == "" || strings.ContainsAny(k, " \t\r\n=") {
			bad("RetryTopicConfig", "%q is not a topic config name", k)
		}
	}
	for i, m := range c.middlewares {
		if m == nil {
			bad("WithMiddleware", "middleware %d is nil", i)
		}
	}
	if c.txnSet {
		c.validateTransactional(bad)
	}
	return errs.Err()
}

// validateForwardTopics checks that the retry and dead-letter topics the
// consumer creates and forwards to ("<topic>-<group>-retry-<n>",
// "<topic>-<group>-dlq") have valid names, which the group's characters and
// the length of both names decide; with TopicRegex, only the group's
// characters can be checked.
func (c *config) validateForwardTopics(bad func(field, rule string, args ...any)) {
	if c.group == "" {
		return
	}
	topics := c.topics
	if len(topics) == 0 {
		topics = []string{"t"}
	}
	for _, t := range topics {
		if check.TopicRule(t) != "" {
			continue // reported on Topics
		}
		names := []string{retry.DLQTopicName(t, c.group)}
		if n := len(c.policyFor(t).NonBlockingIntervals()); n > 0 {
			names = append(names, retry.TopicName(t, c.group, n-1))
		}
		for _, name := range names {
			if rule := check.TopicRule(name); rule != "" {
				bad("Group", "%q makes the retry or dead-letter topic %q an invalid topic name (%s): use letters, digits, '.', '_' and '-', and keep topic and group short", c.group, name, rule)
				return
			}
		}
	}
}

// validateTransactional checks the options of transactional mode.
func (c *config) validateTransactional(bad func(field, rule string, args ...any)) {
	if c.txnID == "" {
		bad("Transactional", "the transactional id must not be empty (use one unique per instance and stable across its restarts, e.g. <service>-<pod name>)")
	}
	if c.keyParallel {
		bad("KeyParallel", "cannot be combined with Transactional: a transaction commits one offset per partition, so a partition's records are handled in offset order")
	}
	if c.txnMaxRecords <= 0 {
		bad("TransactionBatch", "maxRecords must be > 0, got %d", c.txnMaxRecords)
	}
	if c.txnMaxInterval <= 0 {
		bad("TransactionBatch", "maxInterval must be > 0, got %v", c.txnMaxInterval)
	}
	if c.txnTimeout < time.Second || c.txnTimeout > 15*time.Minute {
		bad("TransactionTimeout", "must be between 1s and 15m (the broker's default transaction.max.timeout.ms), got %v", c.txnTimeout)
		return
	}
	if c.healthPoll < c.txnTimeout {
		bad("HealthPollLimit", "must be at least the TransactionTimeout (%v): the loop waits for each transaction's handlers and commit, got %v", c.txnTimeout, c.healthPoll)
	}
	if c.txnMaxInterval > c.txnTimeout/2 {
		bad("TransactionBatch", "maxInterval %v must be at most half the TransactionTimeout (%v)", c.txnMaxInterval, c.txnTimeout)
	}
	budget := c.txnTimeout/2 - c.txnMaxInterval
	checkPolicy := func(field, name string, p retry.Policy) {
		b := p.BlockingBackoff()
		if b == nil {
			return
		}
		total, ok := backoffTotal(b)
		switch {
		case !ok:
			bad(field, "%sblocking retries wait inside the open transaction, so they must end: bound them (not Forever), or use NonBlocking retries", name)
		case total > budget:
			bad(field, "%sblocking retries wait up to %v inside the open transaction; with TransactionBatch's %v that must be at most half the TransactionTimeout (%v): shorten them, use NonBlocking retries, or raise TransactionTimeout",
				name, total, c.txnMaxInterval, c.txnTimeout)
		}
	}
	checkPolicy("Retry", "", c.retry)
	for topic, p := range c.retryFor {
		checkPolicy("RetryFor", topic+": ", p)
	}
}

// backoffTotal adds up the waits of a blocking backoff, without jitter;
// false if it does not end within 10,000 retries.
func backoffTotal(b retry.Backoff) (time.Duration, bool) {
	if e, ok := b.(retry.Exponential); ok {
		if e.Retries == retry.Forever {
			return 0, false
		}
		e.Jitter = 0
		b = e
	}
	var total time.Duration
	for n := 1; n <= 10_000; n++ {
		d, ok := b.Delay(n)
		if !ok {
			return total, true
		}
		total += d
	}
	return 0, false
}

package consumer

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet/internal/check"
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

// Option configures a Consumer. Every option documents its default.
type Option func(*config)

type config struct {
	brokers             []string
	group               string
	topics              []string
	patterns            []string
	startOffset         StartOffset
	partitionBuffer     int
	backpressureWait    time.Duration
	keyParallel         bool
	keyConcurrency      int
	drainTimeout        time.Duration
	commitInterval      time.Duration
	commitStartOnAssign bool
	logger              *zap.Logger
	registerer          prometheus.Registerer
	clientID            string
	clientOpts          []kgo.Opt
	middlewares         []Middleware
	onError             func(context.Context, *kgo.Record, error)
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
}

func defaultConfig() config {
	return config{
		partitionBuffer:     256,
		backpressureWait:    500 * time.Millisecond,
		drainTimeout:        30 * time.Second,
		commitInterval:      time.Second,
		commitStartOnAssign: true,
		logger:              zap.NewNop(),
		clientID:            "whippet",
		retryReplication:    -1,
		txnMaxRecords:       DefaultTransactionRecords,
		txnMaxInterval:      DefaultTransactionInterval,
		txnTimeout:          DefaultTransactionTimeout,
	}
}

// Brokers sets the seed brokers ("host:port"). Required; no default.
func Brokers(brokers ...string) Option {
	return func(c *config) { c.brokers = append(c.brokers, brokers...) }
}

// Group sets the consumer group id. Required; no default.
func Group(group string) Option { return func(c *config) { c.group = group } }

// Topics subscribes to the named topics. Topics or TopicRegex is required.
func Topics(topics ...string) Option {
	return func(c *config) { c.topics = append(c.topics, topics...) }
}

// TopicRegex subscribes to every topic matching any of the regular
// expressions, including topics created later. It cannot be combined with
// Topics.
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
// pausing keeps a slow or blocked partition from holding up the others.
// Default: 500ms.
func BackpressureWait(d time.Duration) Option { return func(c *config) { c.backpressureWait = d } }

// KeyParallel turns on key-parallel mode: within a partition, records with
// different keys are handled concurrently while records of one key stay in
// offset order. At most concurrency handlers run at once across the whole
// consumer. The committed offset never passes an unfinished record. Default:
// off (each partition is handled strictly in offset order by one worker).
func KeyParallel(concurrency int) Option {
	return func(c *config) { c.keyParallel, c.keyConcurrency = true, concurrency }
}

// DrainTimeout bounds how long a revoked partition, or a consumer shutting
// down, waits for handlers under way to finish before their context is
// canceled and the rebalance or shutdown goes on without them (their records
// are not committed, so they are handled again by the next owner).
// Default: 30s. Keep it below the group's rebalance timeout (60s by default).
func DrainTimeout(d time.Duration) Option { return func(c *config) { c.drainTimeout = d } }

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

// Logger sets the structured logger. franz-go's own logs go through it as
// well (at warn level and above). Default: a no-op logger.
func Logger(l *zap.Logger) Option { return func(c *config) { c.logger = l } }

// Registerer registers the consumer's Prometheus metrics (and franz-go's, via
// kprom) on r. Default: nil, no metrics.
func Registerer(r prometheus.Registerer) Option { return func(c *config) { c.registerer = r } }

// ClientID sets the Kafka client id. Default: "whippet".
func ClientID(id string) Option { return func(c *config) { c.clientID = id } }

// ClientOptions passes extra options to the underlying franz-go client (TLS,
// SASL, fetch sizes, ...). They override whippet's client defaults
// (FetchMaxWait 500ms), but not the options whippet relies on (brokers,
// group, topics, reset offset, commit mode, rebalance callbacks,
// AdjustFetchOffsetsFn), which are set after them. Default: none.
func ClientOptions(opts ...kgo.Opt) Option {
	return func(c *config) { c.clientOpts = append(c.clientOpts, opts...) }
}

// WithMiddleware wraps the handler; the first middleware is the outermost.
// Default: none.
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

// RetryTopics sets how the consumer creates missing retry and dead-letter
// topics when it starts: partitions (0: as many as the source topic),
// replication factor (-1: the broker's default.replication.factor) and topic
// configs (nil: the broker's defaults). Default: 0, -1, nil.
func RetryTopics(partitions int32, replication int16, configs map[string]*string) Option {
	return func(c *config) {
		c.retryPartitions, c.retryReplication, c.retryConfigs = partitions, replication, configs
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
// Transactional mode always reads committed records. Default: off
// (read_uncommitted, franz-go's and Kafka's default).
func ReadCommitted() Option { return func(c *config) { c.readCommitted = true } }

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
// a slow or blocked partition delays the commits of the others.
// A commit costs a few milliseconds whatever its size (flush,
// TxnOffsetCommit, EndTxn): at 1,000 records a transaction, a fast transform
// spends most of its time committing; with a 10,000-record cap it ran at
// 0.72-0.75x a plain GroupTransactSession loop (make bench, S5), with
// 100,000 (the interval then ends most transactions) at 0.93-1.02x.
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
func (c *config) validate(h Handler) error {
	errs := check.NewErrors("consumer", ErrInvalidConfig)
	bad := errs.Add
	if h == nil {
		bad("Handler", "must not be nil")
	}
	errs.Brokers("Brokers", c.brokers)
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
	if c.commitInterval < 100*time.Millisecond {
		bad("CommitInterval", "must be at least 100ms (franz-go's minimum), got %v", c.commitInterval)
	}
	if c.logger == nil {
		bad("Logger", "must not be nil (leave the option out for no logging)")
	}
	if c.clientID == "" {
		bad("ClientID", "must not be empty")
	}
	for i, o := range c.clientOpts {
		if o == nil {
			bad("ClientOptions", "option %d is nil", i)
		}
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
	if len(c.patterns) > 0 && len(c.retry.NonBlockingIntervals()) > 0 {
		bad("Retry", "non-blocking retries need the topics named with Topics, not TopicRegex (the consumer subscribes to each topic's retry topics)")
	}
	if c.retryPartitions < 0 {
		bad("RetryTopics", "partitions must be ≥ 0 (0: as the source topic), got %d", c.retryPartitions)
	}
	if c.retryReplication == 0 || c.retryReplication < -1 {
		bad("RetryTopics", "replication must be > 0 or -1 (the broker default), got %d", c.retryReplication)
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

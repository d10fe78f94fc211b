package atomicstore

import (
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/check"
	"github.com/whippet-go/whippet/internal/connect"
	"github.com/whippet-go/whippet/retry"
)

// ErrInvalidConfig is matched (with errors.Is) by every configuration error
// Open and NewProcessor return. Each violation is a *ConfigError naming the
// option and the rule it breaks; they are reported before any network I/O.
var ErrInvalidConfig = errors.New("atomicstore: invalid configuration")

// ConfigError reports one invalid option or argument. Its message reads
// "atomicstore: <Field>: <Rule>".
type ConfigError = check.Error

// Defaults.
const (
	// DefaultPartitions is the partition count of the two topics when they
	// are created.
	DefaultPartitions = 6
	// DefaultUpdateTimeout bounds how long Update waits for its result.
	DefaultUpdateTimeout = 30 * time.Second
	// DefaultLoadTimeout bounds one rebuild of a store partition by the
	// processor, including the wait for open transactions on it to end.
	DefaultLoadTimeout = 15 * time.Second
	// DefaultDedupWindow is how many command ids per partition the
	// processor remembers (see DedupWindow).
	DefaultDedupWindow = 10_000
)

// Option configures a Store (Open) or a Processor (NewProcessor). Every
// option documents its default; options that concern only one side say so.
// How to reach Kafka, where to log and where to report metrics is the
// whippet.Connection both take.
type Option func(*config)

type config struct {
	conn          whippet.Connection
	logger        *zap.Logger // conn.Logger or a no-op logger
	partitions    int32
	replication   int16
	updateTimeout time.Duration
	loadTimeout   time.Duration
	txnID         string
	batchRecords  int
	batchInterval time.Duration
	batchSet      bool
	outputs       []string
	dedupWindow   int
}

func defaultConfig() config {
	return config{
		partitions:    DefaultPartitions,
		replication:   -1,
		updateTimeout: DefaultUpdateTimeout,
		loadTimeout:   DefaultLoadTimeout,
		dedupWindow:   DefaultDedupWindow,
	}
}

// Partitions sets the partition count of "<name>-commands" and
// "<name>-store" when they are created (both get the same count). Existing
// topics keep theirs, but must have the same count as each other.
// Default: DefaultPartitions (6).
func Partitions(n int32) Option { return func(c *config) { c.partitions = n } }

// ReplicationFactor sets the replication factor of the topics when they are
// created. Default: -1 (the broker's default.replication.factor).
func ReplicationFactor(n int16) Option { return func(c *config) { c.replication = n } }

// UpdateTimeout bounds how long Store.Update waits for the processor's
// result (the context may end it sooner). Store only.
// Default: DefaultUpdateTimeout (30s).
func UpdateTimeout(d time.Duration) Option { return func(c *config) { c.updateTimeout = d } }

// TransactionalID sets the processor's Kafka transactional id: unique per
// running processor instance and stable across its restarts, so that a
// restarted instance fences its predecessor's zombie. The processor always
// runs its consumer in transactional mode (it passes the id as
// consumer.Transactional(id)); this option only names the id, hence its
// name. Processor only; required there (no default: none is both unique
// and stable).
func TransactionalID(id string) Option { return func(c *config) { c.txnID = id } }

// LoadTimeout bounds how long the processor spends rebuilding one store
// partition (waiting for open transactions on it to end, then reading it);
// past it, the transaction aborts and the rebuild is tried again. Keep it
// below the transaction timeout. Processor only.
// Default: DefaultLoadTimeout (15s).
func LoadTimeout(d time.Duration) Option { return func(c *config) { c.loadTimeout = d } }

// TransactionBatch passes consumer.TransactionBatch to the processor's
// consumer: one transaction applies at most maxRecords commands and lasts at
// most about maxInterval. Processor only. Default: the consumer's,
// consumer.DefaultTransactionRecords (100,000 records) and
// consumer.DefaultTransactionInterval (100ms).
func TransactionBatch(maxRecords int, maxInterval time.Duration) Option {
	return func(c *config) { c.batchRecords, c.batchInterval, c.batchSet = maxRecords, maxInterval, true }
}

// OutputTopics names topics that update functions Emit to; the processor's
// Run creates those missing, with Partitions and ReplicationFactor.
// Processor only. Default: none.
func OutputTopics(topics ...string) Option {
	return func(c *config) { c.outputs = append(c.outputs, topics...) }
}

// DedupWindow sets how many command ids the processor remembers per
// partition, with the outcome of each: the last n commands applied to the
// partition. A command whose id is among them is not applied again: the
// processor answers it with the original result (see Command.WithID), and
// so answers the result query of an Update whose replica missed its result.
// A command sent again after more than n others reached its partition is
// applied again. 0 turns deduplication off. Processor only.
//
// The window is rebuilt with the partition's values from the store topic
// (after a restart, a rebalance, an aborted transaction), from the store
// records that carry the ids: those that compaction removed (a later record
// of the same key exists and the segment is no longer the active one) are
// forgotten then. The store topic's min.compaction.lag.ms keeps them for at
// least that long. Memory: about 150 bytes plus the value's size per id.
// Size it to the commands a partition receives while a client waits
// (UpdateTimeout) and retries. Default: DefaultDedupWindow (10,000).
func DedupWindow(n int) Option { return func(c *config) { c.dedupWindow = n } }

func (c *config) validate(name string, keysNil, valuesNil, processor bool) error {
	errs := check.NewErrors("atomicstore", ErrInvalidConfig)
	bad := errs.Add
	if rule := check.TopicRule(name + "-commands"); name == "" || rule != "" {
		if name == "" {
			rule = "must not be empty"
		}
		bad("name", "%s", rule)
	}
	if keysNil {
		bad("keys", "the key codec must not be nil (for example codec.String())")
	}
	if valuesNil {
		bad("values", "the value codec must not be nil (for example atomicstore.Int64())")
	}
	if processor && name != "" && check.TopicRule(name+"-commands") == "" {
		// The processor's consumer dead-letters refused commands to
		// "<name>-commands-<name>-processor-dlq".
		if dlq := retry.DLQTopicName(CommandsTopic(name), name+"-processor"); check.TopicRule(dlq) != "" {
			bad("name", "must be at most 112 characters: the processor's dead-letter topic %q would be too long (%d characters, at most 249)", dlq, len(dlq))
		}
	}
	connect.Validate(errs, c.conn)
	c.logger = connect.Logger(c.conn)
	if c.batchSet && (c.batchRecords <= 0 || c.batchInterval <= 0) {
		bad("TransactionBatch", "maxRecords and maxInterval must be > 0, got %d and %v", c.batchRecords, c.batchInterval)
	}
	if c.partitions < 1 {
		bad("Partitions", "must be at least 1, got %d", c.partitions)
	}
	if c.replication == 0 || c.replication < -1 {
		bad("ReplicationFactor", "must be -1 (broker default) or at least 1, got %d", c.replication)
	}
	if c.updateTimeout <= 0 {
		bad("UpdateTimeout", "must be positive, got %v", c.updateTimeout)
	}
	if c.dedupWindow < 0 {
		bad("DedupWindow", "must be 0 (off) or more, got %d", c.dedupWindow)
	}
	if c.loadTimeout <= 0 {
		bad("LoadTimeout", "must be positive, got %v", c.loadTimeout)
	}
	for _, t := range c.outputs {
		if rule := check.TopicRule(t); rule != "" {
			bad("OutputTopics", "%q: %s", t, rule)
		}
	}
	if processor && c.txnID == "" {
		bad("TransactionalID", "is required: unique per processor instance, stable across its restarts")
	}
	return errs.Err()
}

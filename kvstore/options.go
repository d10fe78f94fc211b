package kvstore

import (
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/check"
	"github.com/whippet-go/whippet/internal/connect"
)

// ErrInvalidConfig is matched (with errors.Is) by every error Open returns
// for a bad option or argument. Each violation is a *ConfigError naming the
// field and the rule it breaks; Open reports all of them, joined.
var ErrInvalidConfig = errors.New("kvstore: invalid config")

// ConfigError reports one invalid option or argument. Its message reads
// "kvstore: <Field>: <Rule>", for example
// "kvstore: Partitions: must be -1 (broker default) or > 0, got 0".
type ConfigError = check.Error

// Option configures a Store. Every option documents its default. Options are
// applied in order and validated as a whole by Open before any network I/O.
type Option func(*config)

type config struct {
	conn              whippet.Connection
	name              string
	partitions        int32
	replication       int16
	topicConfigs      map[string]string
	createTopic       bool
	allowNotCompacted bool
	awaitApplied      bool
	logger            *zap.Logger // conn.Logger or a no-op logger
	onDecodeError     func(rec *kgo.Record, err error)
}

func defaultConfig() config {
	return config{
		partitions:   -1,
		replication:  -1,
		topicConfigs: map[string]string{},
		createTopic:  true,
		awaitApplied: true,
	}
}

// Name names the store in its metrics (the constant label store, and name
// on the Kafka client metrics) and logs. Stores sharing a Registerer need
// distinct names. Default: the topic.
func Name(name string) Option { return func(c *config) { c.name = name } }

// Partitions sets the partition count used when Open creates the topic; it is
// ignored for an existing topic. Default: -1, the broker's num.partitions.
// Small shared data sets (countries, time zones) load fastest from one
// partition; large ones load in parallel from several.
func Partitions(n int32) Option { return func(c *config) { c.partitions = n } }

// ReplicationFactor sets the replication factor used when Open creates the
// topic; it is ignored for an existing topic. Default: -1, the broker's
// default.replication.factor.
func ReplicationFactor(n int16) Option { return func(c *config) { c.replication = n } }

// TopicConfig adds a topic config (for example "min.compaction.lag.ms" or
// "segment.ms") used when Open creates the topic; it is ignored for an
// existing topic. A cleanup.policy set here must include "compact" (say,
// "compact,delete") unless AllowNotCompacted is on. Default: only
// cleanup.policy=compact.
func TopicConfig(key, value string) Option {
	return func(c *config) { c.topicConfigs[key] = value }
}

// CreateTopic says whether Open creates the topic when it does not exist.
// With false, a missing topic makes Open fail with ErrTopicNotFound.
// Default: true.
func CreateTopic(on bool) Option { return func(c *config) { c.createTopic = on } }

// AllowNotCompacted lets the store attach to a topic whose cleanup.policy
// does not include "compact". Such a topic keeps every old value until
// retention deletes it, so a load reads more records and, once retention has
// deleted a key's last record, no longer sees that key. Default: false, Open
// fails with ErrNotCompacted.
func AllowNotCompacted(on bool) Option { return func(c *config) { c.allowNotCompacted = on } }

// AwaitApplied says whether Put and Delete, after Kafka acknowledged the
// write, also wait until this store's loader has applied it, so that a Get
// right after a Put sees the new value (read your writes). With false they
// return on Kafka's acknowledgement and the write shows up in Get shortly
// after. Default: true.
func AwaitApplied(on bool) Option { return func(c *config) { c.awaitApplied = on } }

// OnDecodeError is called, on the loader goroutine, for every record whose
// key or value the codecs could not decode, after the error is logged
// (rate-limited) and counted. The record is skipped: the key keeps its
// previous value. fn must be quick and must not call the store's Put or
// Delete. Default: none.
func OnDecodeError(fn func(rec *kgo.Record, err error)) Option {
	return func(c *config) { c.onDecodeError = fn }
}

// validate checks the config without any network I/O and names every bad
// field.
func (c *config) validate(topic string, keysNil, valuesNil bool) error {
	errs := check.NewErrors("kvstore", ErrInvalidConfig)
	bad := errs.Add
	if rule := check.TopicRule(topic); rule != "" {
		bad("topic", "%s", rule)
	}
	if keysNil {
		bad("keys", "the key codec must not be nil (for example codec.String())")
	}
	if valuesNil {
		bad("values", "the value codec must not be nil (for example codec.JSON[T]())")
	}
	connect.Validate(errs, c.conn)
	c.logger = connect.Logger(c.conn)
	if c.name == "" {
		c.name = topic
	} else if !utf8.ValidString(c.name) {
		bad("Name", "must be valid UTF-8, got %q", c.name)
	}
	if c.partitions != -1 && c.partitions <= 0 {
		bad("Partitions", "must be -1 (broker default) or > 0, got %d", c.partitions)
	}
	if c.replication != -1 && c.replication <= 0 {
		bad("ReplicationFactor", "must be -1 (broker default) or > 0, got %d", c.replication)
	}
	for k, v := range c.topicConfigs {
		switch {
		case k == "" || strings.ContainsAny(k, " \t\r\n="):
			bad("TopicConfig", "%q is not a topic config name", k)
		case k == "cleanup.policy" && !c.allowNotCompacted && !hasCompact(v):
			bad("TopicConfig", "cleanup.policy=%q would not compact the topic; a store needs \"compact\" (or set AllowNotCompacted)", v)
		}
	}
	return errs.Err()
}

// hasCompact reports whether a cleanup.policy value (a comma-separated list)
// includes compact.
func hasCompact(policy string) bool {
	for p := range strings.SplitSeq(policy, ",") {
		if strings.TrimSpace(p) == "compact" {
			return true
		}
	}
	return false
}

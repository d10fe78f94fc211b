package consumer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet/internal/secure"
	"github.com/whippet-go/whippet/retry"
)

// retryTopics are the retry topics the consumer subscribes to, sorted.
func (c *Consumer) retryTopics() []string {
	names := make([]string, 0, len(c.stages))
	for name := range c.stages {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// stageOf says whether topic is one of the consumer's retry topics, and which.
// With Topics they are known from the start; with TopicRegex a topic named
// "<source>-<group>-retry-<n>" is retry stage n of source if the policy has
// that stage and source is not itself a retry or dead-letter topic of the
// group (the subscription takes no other such topic: see subscribeOptions).
func (c *Consumer) stageOf(topic string) (stage, bool) {
	if st, ok := c.stages[topic]; ok {
		return st, true
	}
	if len(c.cfg.patterns) == 0 {
		return stage{}, false
	}
	source, n, ok := retry.ParseTopicName(topic, c.cfg.group)
	if !ok || n >= len(c.cfg.retry.NonBlockingIntervals()) || ownTopic(source, c.cfg.group) {
		return stage{}, false
	}
	return stage{source: source, n: n}, true
}

// ownTopic reports whether name is, by its shape, a retry or dead-letter
// topic of group: it ends with "-<group>-dlq" or "-<group>-retry-<digits>".
func ownTopic(name, group string) bool {
	if strings.HasSuffix(name, "-"+group+"-dlq") {
		return true
	}
	i := strings.LastIndex(name, "-retry-")
	if i < 0 {
		return false
	}
	digits := name[i+len("-retry-"):]
	return digits != "" && strings.Trim(digits, "0123456789") == "" && strings.HasSuffix(name[:i], "-"+group)
}

// subscribeOptions subscribe the consumer to its topics: the named ones and
// their retry topics, or, with TopicRegex, see subscription.
func (c *Consumer) subscribeOptions() []kgo.Opt {
	if len(c.cfg.patterns) == 0 {
		return []kgo.Opt{kgo.ConsumeTopics(slices.Concat(c.cfg.topics, c.retryTopics())...)}
	}
	include, exclude, err := subscription(c.cfg.patterns, c.cfg.group, len(c.cfg.retry.NonBlockingIntervals()))
	if err != nil {
		panic("consumer: TopicRegex passed validation but " + err.Error()) // validate checks the same
	}
	return []kgo.Opt{kgo.ConsumeTopics(include...), kgo.ConsumeRegex(), kgo.ConsumeExcludeTopics(exclude...)}
}

// subscription turns TopicRegex patterns into franz-go's include and exclude
// regular expressions (a topic is consumed if it matches an include and no
// exclude; franz-go matches anywhere in a name, as regexp's MatchString):
//   - a topic that a pattern matches, unless it is named like a dead-letter
//     topic of the group ("<x>-<group>-dlq"), which is never consumed, or
//     like a retry topic of the group ("<x>-<group>-retry-<digits>"): then
//     only as below;
//   - "<x>-<group>-retry-<n>", as retry stage n of x, when a pattern matches
//     x or the retry topic itself, n < stages and x is not itself named like
//     a retry or dead-letter topic of the group (so no retry of a retry, and
//     no stage the policy does not have).
func subscription(patterns []string, group string, stages int) (include, exclude []string, err error) {
	g := "-" + regexp.QuoteMeta(group)
	include = slices.Clone(patterns)
	if stages > 0 {
		ns := make([]string, stages)
		for n := range ns {
			ns[n] = strconv.Itoa(n)
		}
		suffix := g + "-retry-(?:" + strings.Join(ns, "|") + ")"
		for _, p := range patterns {
			rp, err := retryTopicPattern(p, suffix)
			if err != nil {
				return nil, nil, fmt.Errorf("%q: %w", p, err)
			}
			include = append(include, rp)
		}
	}
	exclude = []string{
		g + "-dlq$",
		"^" + g + "-retry-[0-9]+$", // a retry topic of no topic
		g + "-(?:retry-[0-9]+|dlq)" + g + "-retry-[0-9]+$",
		g + "-retry-(?:" + notStage(stages) + ")$",
	}
	return include, exclude, nil
}

// notStage is a regular expression matching the digit strings that are not
// a stage number below stages as TopicName writes it: those with a leading
// zero, and stages and above.
func notStage(stages int) string {
	if stages == 0 {
		return "[0-9]+"
	}
	s := strconv.Itoa(stages)
	alts := []string{"0[0-9]+", "[1-9][0-9]{" + strconv.Itoa(len(s)) + ",}", s}
	for i := range len(s) {
		if s[i] == '9' {
			continue
		}
		alt := s[:i] + "[" + string(s[i]+1) + "-9]"
		if rest := len(s) - 1 - i; rest > 0 {
			alt += "[0-9]{" + strconv.Itoa(rest) + "}"
		}
		alts = append(alts, alt)
	}
	return strings.Join(alts, "|")
}

// errEndInside is returned by retryTopicPattern for a pattern whose end of
// text assertion is followed by more of the pattern or repeated.
var errEndInside = errors.New("with non-blocking retries, $ (the end of the name) may only end the pattern or one of its alternatives")

// retryTopicPattern returns a regular expression that matches a name
// "<x><suffix>" (suffix at the very end) exactly when pattern matches x. A
// pattern without end assertions becomes "pattern.*suffix$": the suffix,
// anchored at the end, keeps the pattern's match inside x. An end assertion
// ($, \z) can hold only at the end of x, where the name goes on with the
// suffix: it becomes "suffix$". Start and word-boundary assertions need no
// change (x starts the name, and "-" starts the suffix: a non-word character,
// as the end of text is for \b).
func retryTopicPattern(pattern, suffix string) (string, error) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return "", err
	}
	sfx, err := syntax.Parse(suffix, syntax.Perl)
	if err != nil {
		return "", err
	}
	anything, _ := syntax.Parse(`(?s:.*)`, syntax.Perl)
	end := &syntax.Regexp{Op: syntax.OpConcat, Sub: []*syntax.Regexp{sfx, {Op: syntax.OpEndText}}}
	tail := &syntax.Regexp{Op: syntax.OpConcat, Sub: []*syntax.Regexp{anything, sfx, {Op: syntax.OpEndText}}}
	out, err := endAtSuffix(re, tail, end)
	if err != nil {
		return "", err
	}
	return out.String(), nil
}

// endAtSuffix rewrites re for retryTopicPattern: tail follows a match that
// does not end with an end assertion, end replaces an end assertion, which
// may only be in last position (or nothing could follow it anyway).
func endAtSuffix(re, tail, end *syntax.Regexp) (*syntax.Regexp, error) {
	if !hasEnd(re) {
		return &syntax.Regexp{Op: syntax.OpConcat, Sub: []*syntax.Regexp{re, tail}}, nil
	}
	switch re.Op {
	case syntax.OpEndText, syntax.OpEndLine:
		return end, nil
	case syntax.OpCapture:
		return endAtSuffix(re.Sub[0], tail, end)
	case syntax.OpAlternate:
		alt := &syntax.Regexp{Op: syntax.OpAlternate}
		for _, sub := range re.Sub {
			r, err := endAtSuffix(sub, tail, end)
			if err != nil {
				return nil, err
			}
			alt.Sub = append(alt.Sub, r)
		}
		return alt, nil
	case syntax.OpConcat:
		last := len(re.Sub) - 1
		if slices.ContainsFunc(re.Sub[:last], hasEnd) {
			return nil, errEndInside
		}
		r, err := endAtSuffix(re.Sub[last], tail, end)
		if err != nil {
			return nil, err
		}
		return &syntax.Regexp{Op: syntax.OpConcat, Sub: append(slices.Clone(re.Sub[:last]), r)}, nil
	}
	return nil, errEndInside // an end assertion inside a repetition
}

// hasEnd reports whether re holds an end of text (or line) assertion.
func hasEnd(re *syntax.Regexp) bool {
	if re.Op == syntax.OpEndText || re.Op == syntax.OpEndLine {
		return true
	}
	return slices.ContainsFunc(re.Sub, hasEnd)
}

// ensureTopics creates the missing retry and dead-letter topics of every
// subscribed topic before the consumer joins its group, so that a forward
// never waits for a topic. With TopicRegex the topics are not known yet: a
// dead-letter topic is then created by the first forward that needs it.
func (c *Consumer) ensureTopics(ctx context.Context) error {
	if len(c.cfg.topics) == 0 {
		// TopicRegex only: nothing below talks to Kafka, so check here that
		// it lets us in; otherwise a wrong password or certificate would
		// leave Run polling in silence.
		if err := c.fwd.Ping(ctx); secure.IsAuthError(err) {
			return fmt.Errorf("consumer: connecting to Kafka: %w", err)
		}
	}
	for _, topic := range c.cfg.topics {
		names := []string{retry.DLQTopicName(topic, c.cfg.group)}
		for n := range c.cfg.policyFor(topic).NonBlockingIntervals() {
			names = append(names, retry.TopicName(topic, c.cfg.group, n))
		}
		if err := c.createTopics(ctx, topic, names...); err != nil {
			return err
		}
	}
	return nil
}

// headerRoom is how much larger than its source topic's max.message.bytes a
// retry or dead-letter topic is created: room for the retry headers a
// forward adds (at most retry.MaxErrorLength bytes of error text, the
// original topic and group names, and a few numbers).
const headerRoom = 16 << 10

// defaultBatchMaxBytes is franz-go's default kgo.ProducerBatchMaxBytes.
const defaultBatchMaxBytes = 1_000_012

// topicLimits holds, per retry and dead-letter topic, how large a batch the
// forwarding client may send it.
type topicLimits struct {
	mu sync.Mutex
	m  map[string]int32
}

func (l *topicLimits) set(topic string, n int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[string]int32)
	}
	l.m[topic] = n
}

// batchMaxBytes is the forwarding client's kgo.ProducerBatchMaxBytesFn:
// franz-go's default, or more for a retry or dead-letter topic that takes
// larger records. franz-go reads it once per partition, when it first
// produces to it.
func (l *topicLimits) batchMaxBytes(topic string) int32 {
	l.mu.Lock()
	n := l.m[topic]
	l.mu.Unlock()
	return min(max(n, defaultBatchMaxBytes), 1<<30)
}

// option names what sets the forwarding client's batch limit for topic, for
// the error of a record too large for it.
func (l *topicLimits) option(topic string) string {
	l.mu.Lock()
	_, ours := l.m[topic]
	l.mu.Unlock()
	if ours {
		return "the forwarding client's batch limit for the topic (the larger of its max.message.bytes and its source topic's plus 16 KiB, as read when the topic was created or the consumer started; kgo.ProducerBatchMaxBytes in Connection.ClientOptions overrides it)"
	}
	return "kgo.ProducerBatchMaxBytes (Connection.ClientOptions)"
}

// ensureForwardTopics creates, with TopicRegex, the retry and dead-letter
// topics of source before its first forward (once per source), and has cl
// look at the topics again, so that the consumer takes the new retry topics
// now rather than at its next metadata refresh. With Topics, ensureTopics
// created them at the start. A failure is logged: the forward creates the
// topic it misses, and is retried until it succeeds.
func (c *Consumer) ensureForwardTopics(ctx context.Context, cl *kgo.Client, source string) {
	if len(c.cfg.patterns) == 0 {
		return
	}
	if _, done := c.forwardTopics.Load(source); done {
		return
	}
	names := []string{retry.DLQTopicName(source, c.cfg.group)}
	for n := range c.cfg.policyFor(source).NonBlockingIntervals() {
		names = append(names, retry.TopicName(source, c.cfg.group, n))
	}
	if err := c.createTopics(ctx, source, names...); err != nil {
		c.log.Warn("creating the retry and dead-letter topics of a topic matched by TopicRegex failed; the forward creates the topic it needs",
			zap.String("topic", source), zap.Error(err))
		return
	}
	c.forwardTopics.Store(source, struct{}{})
	cl.ForceMetadataRefresh()
}

// createTopics creates those of names that do not exist, with the settings
// of RetryPartitions, RetryReplicationFactor and RetryTopicConfig; partitions default to the source topic's count, and
// max.message.bytes to the source topic's plus headerRoom, so that every
// record of the source topic can be forwarded. Existing topics are left as
// they are, with a warning if they take smaller records than that.
func (c *Consumer) createTopics(ctx context.Context, source string, names ...string) error {
	adm := kadm.NewClient(c.fwd)
	details, err := adm.ListTopics(ctx, append([]string{source}, names...)...)
	if err != nil {
		return fmt.Errorf("consumer: listing retry and dead-letter topics: %w", err)
	}
	var missing, existing []string
	for _, name := range names {
		if d, ok := details[name]; !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			missing = append(missing, name)
		} else {
			existing = append(existing, name)
		}
	}
	need := c.checkLimits(ctx, adm, source, existing)
	if len(missing) == 0 {
		return nil
	}
	configs := c.cfg.retryConfigs
	if v, ok := configs["max.message.bytes"]; ok {
		// The user's choice; the forwarding client follows it.
		if n, err := strconv.ParseInt(derefOr(v, ""), 10, 32); err == nil {
			need = int32(n)
		}
	} else if need > 0 {
		configs = maps.Clone(configs)
		if configs == nil {
			configs = make(map[string]*string, 1)
		}
		v := strconv.Itoa(int(need))
		configs["max.message.bytes"] = &v
	}
	partitions := c.cfg.retryPartitions
	if partitions == 0 {
		partitions = -1 // the broker's num.partitions, unless the source topic tells
		if d, ok := details[source]; ok && d.Err == nil && len(d.Partitions) > 0 {
			partitions = int32(len(d.Partitions))
		}
	}
	if need > 0 {
		// Before the topics exist: franz-go reads a partition's batch limit
		// once, when it first sees the partition.
		for _, name := range missing {
			c.limits.set(name, need)
		}
	}
	resps, err := adm.CreateTopics(ctx, partitions, c.cfg.retryReplication, configs, missing...)
	if err != nil {
		return fmt.Errorf("consumer: creating retry and dead-letter topics %v: %w", missing, err)
	}
	for _, r := range resps.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("consumer: creating topic %s: %w", r.Topic, r.Err)
		}
	}
	c.log.Info("created retry and dead-letter topics", zap.Strings("topics", missing), zap.Int32("partitions", partitions),
		zap.Int32("maxMessageBytes", need))
	return nil
}

// checkLimits reads the max.message.bytes of source and of the existing
// retry and dead-letter topics, and returns what a retry or dead-letter
// topic needs (the source's plus headerRoom; 0 if it could not be read). An
// existing topic that takes less is warned about, not altered (its settings
// are its owner's); the forwarding client still sends it records up to what
// it needs, so that such a record blocks its partition with Kafka's
// MESSAGE_TOO_LARGE and the topic's limit in Blocked, and goes through as
// soon as an operator raises that limit.
func (c *Consumer) checkLimits(ctx context.Context, adm *kadm.Client, source string, existing []string) int32 {
	rcs, err := adm.DescribeTopicConfigs(ctx, append([]string{source}, existing...)...)
	if err != nil {
		c.log.Warn("reading max.message.bytes of a topic and its retry and dead-letter topics failed; new retry and dead-letter topics get the broker's default, which may refuse records the topic takes",
			zap.String("topic", source), zap.Error(err))
		return 0
	}
	limits := make(map[string]int32, len(rcs))
	for _, rc := range rcs {
		if rc.Err != nil {
			continue
		}
		for _, cfg := range rc.Configs {
			if cfg.Key == "max.message.bytes" && cfg.Value != nil {
				if n, err := strconv.ParseInt(*cfg.Value, 10, 32); err == nil {
					limits[rc.Name] = int32(n)
				}
			}
		}
	}
	src, ok := limits[source]
	if !ok {
		c.log.Warn("reading max.message.bytes of a topic failed; new retry and dead-letter topics get the broker's default, which may refuse records the topic takes",
			zap.String("topic", source))
		return 0
	}
	need := int32(min(int64(src)+headerRoom, 1<<30))
	for _, name := range existing {
		have, ok := limits[name]
		if !ok {
			continue
		}
		c.limits.set(name, max(have, need))
		if have < need {
			c.log.Warn("retry or dead-letter topic takes smaller records than its source topic (max.message.bytes): a failing record larger than it blocks its partition until the topic's max.message.bytes is raised",
				zap.String("topic", name), zap.Int32("maxMessageBytes", have),
				zap.String("source", source), zap.Int32("sourceMaxMessageBytes", src), zap.Int32("want", need))
		}
	}
	return need
}

func derefOr(p *string, or string) string {
	if p == nil {
		return or
	}
	return *p
}

package admin

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/internal/check"
)

// ErrInvalidConfig is matched (with errors.Is) by every error New returns for
// a bad option. The concrete errors are *ConfigError values naming the option
// and the rule it breaks, joined.
var ErrInvalidConfig = errors.New("admin: invalid config")

// ConfigError reports one invalid option. Its message reads
// "admin: <Field>: <Rule>", for example
// `admin: Consumer[0].Name: must not be empty`.
type ConfigError = check.Error

// Option configures a Handler. Options are applied in order and validated as
// a whole by New.
type Option func(*config)

// AuthorizeFunc decides whether the request r may do a. It returns who is
// asking (a user name, a service account: whatever identifies the operator in
// the action log), or an error to refuse. It must be safe for concurrent use.
//
// It is asked about every API request: reads as ActionView (refused: the
// request gets 403 with the error's message), and reads that show records
// also as ActionViewPayloads (refused: the request is answered with the
// payloads left out, see ActionViewPayloads). Actions are asked about by
// name, a dry run under a name of its own (ActionReplayDryRun,
// ActionPurgeDryRun), so that a hook can let an operator preview what a
// replay or purge would do without letting them do it. A replay to a topic
// the operator names (ReplayRequest.To) has Action.ReplayTo set. Unknown
// names should be refused: a hook that only allows what it knows stays safe
// when actions are added. For example:
//
//	func(r *http.Request, a admin.Action) (string, error) {
//		u, ok := sso.User(r)
//		switch {
//		case !ok:
//			return "", errors.New("sign in first")
//		case a.Name == admin.ActionView, a.Name == admin.ActionReplayDryRun, a.Name == admin.ActionPurgeDryRun:
//			return u.Name, nil
//		case a.Name == admin.ActionViewPayloads && u.In("support"):
//			return u.Name, nil
//		case a.Name == admin.ActionReplay && a.ReplayTo == "" && u.OnCall:
//			return u.Name, nil
//		case u.In("kafka-admins"):
//			return u.Name, nil
//		}
//		return "", fmt.Errorf("%s may not %s", u.Name, a.Name)
//	}
type AuthorizeFunc func(r *http.Request, a Action) (who string, err error)

// Action is what an API request wants to do, as AuthorizeFunc sees it.
type Action struct {
	// Name is one of the Action* constants.
	Name string
	// Consumer is the registered consumer's name, for the consumer and
	// partition actions; "" otherwise.
	Consumer string
	// Topic is the partition's topic for partition actions, the dead-letter
	// topic for the DLQ actions; "" otherwise.
	Topic string
	// Partition is the partition of a partition action; -1 otherwise.
	Partition int32
	// ReplayTo is the topic a replay (or its dry run) writes to when the
	// request names one (ReplayRequest.To): the operator's choice instead of
	// the topic the dead-letter topic belongs to. "" otherwise.
	ReplayTo string
	// SeekTo is where ActionSeek moves the partitions, as
	// consumer.SeekTarget.String says it ("offset 42", "time <RFC 3339>",
	// "end"); "" for other actions.
	SeekTo string
}

// The action names an AuthorizeFunc sees and the action log records.
const (
	// ActionView is every read: the consumers, the dead-letter records, the
	// action log.
	ActionView = "view"
	// ActionViewPayloads is reading what records say, beyond where and why
	// they failed: the keys, values and header values of dead-letter
	// records, the keys of blocked records, and the error texts of both
	// (errors often quote the payload). Asked for every read that shows
	// records, after ActionView. Refused, or without an Authorize hook, the
	// answer leaves them out (dlq.RecordView.PayloadHidden,
	// BlockedView.PayloadHidden: keys and values null, error texts and
	// header values empty) and the key and error filters of the dead-letter
	// listing and replay are refused with 403, since they would tell hidden
	// values apart. Positions, offsets, reasons, attempts, times, original
	// topics and header names stay visible. It is never an action: it is
	// not logged.
	ActionViewPayloads = "view-payloads"
	// ActionSkip dead-letters the record that blocks a partition, or a
	// retry waiting for its due time (consumer.Consumer.Skip).
	ActionSkip = "skip"
	// ActionSkipAll dead-letters every failing record of a partition until
	// ActionBlock (consumer.Consumer.SkipAll).
	ActionSkipAll = "skip-all"
	// ActionBlock undoes ActionSkipAll (consumer.Consumer.Block).
	ActionBlock = "block"
	// ActionPause pauses one partition (consumer.Consumer.PausePartition).
	ActionPause = "pause"
	// ActionResume resumes one partition (consumer.Consumer.ResumePartition).
	ActionResume = "resume"
	// ActionSeek moves a partition, or every partition of a topic assigned
	// to the consumer, to an offset, a time or the end
	// (consumer.Consumer.SeekTo); Action.SeekTo says where, and Partition is
	// -1 for a whole topic. Records that blocked the partitions are
	// abandoned, not dead-lettered.
	ActionSeek = "seek"
	// ActionPauseConsumer pauses a whole consumer (consumer.Consumer.Pause).
	ActionPauseConsumer = "pause-consumer"
	// ActionResumeConsumer resumes a whole consumer (consumer.Consumer.Resume).
	ActionResumeConsumer = "resume-consumer"
	// ActionReplay replays dead-letter records (dlq.Client.Replay); see
	// Action.ReplayTo.
	ActionReplay = "dlq-replay"
	// ActionReplayDryRun reports what ActionReplay would replay, producing
	// nothing (dlq.DryRun).
	ActionReplayDryRun = "dlq-replay-dry-run"
	// ActionPurge purges a dead-letter topic (dlq.Client.Purge).
	ActionPurge = "dlq-purge"
	// ActionPurgeDryRun reports what ActionPurge would delete, deleting
	// nothing (dlq.DryRun).
	ActionPurgeDryRun = "dlq-purge-dry-run"
)

type config struct {
	consumers []registration
	dlq       *dlq.Client
	dlqSet    bool
	dlqTopics []string
	authorize AuthorizeFunc
	logger    *zap.Logger
	gatherer  prometheus.Gatherer
	timeout   time.Duration
	prefix    string
	title     string
	refresh   time.Duration
}

type registration struct {
	name string
	c    *consumer.Consumer
}

func defaultConfig() config {
	return config{logger: zap.NewNop(), timeout: 30 * time.Second, title: "whippet", refresh: 2 * time.Second}
}

// Consumer registers a consumer under name, which the API and the page use to
// address it (letters, digits, '.', '_' and '-'). The handler takes the
// consumer's group and topics from it (c.Group, c.Topics) to find its
// dead-letter topics ("<topic>-<group>-dlq"); with consumer.TopicRegex,
// those of the topics the patterns match at the time of each request. Give
// it once per consumer; at least one is required. There is no default.
func Consumer(name string, c *consumer.Consumer) Option {
	return func(cfg *config) {
		cfg.consumers = append(cfg.consumers, registration{name: name, c: c})
	}
}

// DLQ enables the dead-letter views and actions (browse, replay, purge)
// through c, for the dead-letter topics of the registered consumers and those
// given to DLQTopics; other topics are refused, so the API cannot be used to
// read arbitrary topics. c stays the caller's: the handler never closes it.
// Default: none, and the DLQ routes answer 404.
func DLQ(c *dlq.Client) Option {
	return func(cfg *config) { cfg.dlq, cfg.dlqSet = c, true }
}

// DLQTopics adds dead-letter topics to browse besides the registered
// consumers' ("<topic>-<group>-dlq"), e.g. those of consumers running in
// other processes. Needs DLQ. Default: none.
func DLQTopics(topics ...string) Option {
	return func(cfg *config) { cfg.dlqTopics = append(cfg.dlqTopics, topics...) }
}

// Authorize sets the hook that authorizes every API request and names who
// makes it (see AuthorizeFunc). Without it the handler is read-only: every
// read is allowed but shows no payloads (ActionViewPayloads is refused), and
// every action, dry runs included, is refused with 403. Default: nil
// (read-only).
func Authorize(fn AuthorizeFunc) Option { return func(cfg *config) { cfg.authorize = fn } }

// Logger sets the logger of the action log: every action, allowed or refused,
// is logged with who asked for it (Info for actions done, Warn for refused
// or failed ones). Default: a no-op logger.
func Logger(l *zap.Logger) Option { return func(cfg *config) { cfg.logger = l } }

// Metrics lets the handler read the consumers' Prometheus metrics from g
// (typically the registry of the consumers' whippet.Connection.Registerer) to show how many
// handlers each consumer is running (whippet_consumer_in_flight), which the
// consumer does not expose otherwise. Default: nil, in-flight not shown.
func Metrics(g prometheus.Gatherer) Option { return func(cfg *config) { cfg.gatherer = g } }

// Timeout bounds the Kafka work of one request (listing, replaying or
// purging dead letters). Default: 30s.
func Timeout(d time.Duration) Option { return func(cfg *config) { cfg.timeout = d } }

// Prefix is the path the handler is mounted under when it is mounted without
// http.StripPrefix, e.g. "/whippet" for mux.Handle("/whippet/", h); the
// handler then strips it itself. With http.StripPrefix, leave it out.
// Default: "" (the handler serves from "/").
func Prefix(p string) Option { return func(cfg *config) { cfg.prefix = p } }

// Title names the service on the dashboard page and in the browser tab.
// Default: "whippet".
func Title(s string) Option { return func(cfg *config) { cfg.title = s } }

// Refresh sets how often the dashboard page refreshes the consumers' state
// (the dead-letter counts are refreshed at most every 5s, the records when
// they change). Default: 2s; minimum 500ms.
func Refresh(d time.Duration) Option { return func(cfg *config) { cfg.refresh = d } }

func (c *config) validate() error {
	errs := check.NewErrors("admin", ErrInvalidConfig)
	if len(c.consumers) == 0 {
		errs.Add("Consumer", "at least one consumer is required")
	}
	seen := map[string]bool{}
	for i, r := range c.consumers {
		field := "Consumer[" + strconv.Itoa(i) + "]"
		if rule := check.TopicRule(r.name); rule != "" {
			errs.Add(field+".Name", "%s", rule)
		} else if seen[r.name] {
			errs.Add(field+".Name", "%q is registered twice", r.name)
		}
		seen[r.name] = true
		if r.c == nil {
			errs.Add(field+".Consumer", "must not be nil")
		}
	}
	if c.dlqSet && c.dlq == nil {
		errs.Add("DLQ", "must not be nil (leave the option out for no dead-letter views)")
	}
	if len(c.dlqTopics) > 0 && c.dlq == nil {
		errs.Add("DLQTopics", "needs DLQ")
	}
	for _, t := range c.dlqTopics {
		if rule := check.TopicRule(t); rule != "" {
			errs.Add("DLQTopics", "%q: %s", t, rule)
		}
	}
	if c.logger == nil {
		errs.Add("Logger", "must not be nil (leave the option out for no logging)")
	}
	if c.timeout <= 0 {
		errs.Add("Timeout", "must be > 0, got %v", c.timeout)
	}
	if c.prefix != "" && (!strings.HasPrefix(c.prefix, "/") || strings.HasSuffix(c.prefix, "/")) {
		errs.Add("Prefix", "must start with '/' and not end with one, like \"/whippet\", got %q", c.prefix)
	}
	if c.refresh < 500*time.Millisecond {
		errs.Add("Refresh", "must be at least 500ms, got %v", c.refresh)
	}
	return errs.Err()
}

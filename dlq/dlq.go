package dlq

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/check"
	"github.com/whippet-go/whippet/internal/connect"
	"github.com/whippet-go/whippet/retry"
)

// Headers Replay adds to every record it produces back to the original
// topic. They are not retry headers (retry.IsRetryHeader is false), so they
// survive a second failure: a replayed record that is dead-lettered again
// still says, in its new dead-letter record, where it was replayed from
// (see Record.Replayed).
const (
	// HeaderReplayedFrom is the dead-letter record a record was replayed
	// from, as "<dlq topic>/<partition>/<offset>" (see Position.String).
	HeaderReplayedFrom = "whippet-replayed-from"
	// HeaderReplayedAt is when it was replayed (Unix ms, decimal).
	HeaderReplayedAt = "whippet-replayed-at"
	// HeaderReplayCount is how many times the record went through a
	// replay (decimal, 1 for the first): replaying a record that was
	// itself replayed and failed again counts up.
	HeaderReplayCount = "whippet-replay-count"
)

// IsReplayHeader reports whether k is one of the replay headers above.
func IsReplayHeader(k string) bool {
	return k == HeaderReplayedFrom || k == HeaderReplayedAt || k == HeaderReplayCount
}

var (
	// ErrNotFound is matched by the error Get returns when there is no
	// record at the position: a partition the topic does not have, an
	// offset before the log start (deleted by retention or Purge) or at or
	// after the end, or a transaction marker or aborted record.
	ErrNotFound = errors.New("dlq: record not found")

	// ErrUnknownTopic is matched by the error every method returns for a
	// topic that does not exist (it also matches kerr.UnknownTopicOrPartition).
	ErrUnknownTopic = errors.New("dlq: topic does not exist")

	// ErrNotDLQTopic is matched by the error Purge returns for a topic whose
	// name does not end in "-dlq" (see retry.DLQTopicName): Purge deletes
	// records for good, so it refuses to run on what looks like a business
	// topic.
	ErrNotDLQTopic = errors.New("dlq: not a dead-letter topic")

	// ErrClosed is returned by the methods of a closed Client.
	ErrClosed = errors.New("dlq: client closed")
)

// Client lists, inspects, replays and purges the records of dead-letter
// topics. It reads partitions directly, never through a consumer group, so
// it never moves any group's committed offsets. It is safe for concurrent
// use. Create it with New or NewFromClient and release it with Close.
type Client struct {
	cl         *kgo.Client
	adm        *kadm.Client
	owned      bool
	log        *zap.Logger
	now        func() time.Time
	unregister func() // unregisters the Kafka client metrics

	mu     sync.Mutex
	closed bool
	calls  int           // the method calls in progress
	idle   chan struct{} // made by Close, closed once calls is 0

	closeOnce sync.Once
	closeErr  error
}

// New validates conn and opts, then creates a Client with its own franz-go
// client (idempotent producer, acks=all: franz-go's defaults;
// conn.ClientOptions come last and can change that, e.g. kgo.RequiredAcks
// weakens the delivery of replayed records). The client id defaults to
// "whippet-dlq"; TLS and SASL come from conn. It does no network I/O.
// Every invalid field is reported in the returned error (a join of
// *ConfigError values), which matches ErrInvalidConfig.
//
// Replays and purges are logged at Info level on conn.Logger, and franz-go's
// logs go there too (kzap). The Client has no metrics of its own; with
// conn.Registerer, franz-go's client metrics are whippet_kafka_*
// {component="dlq", name=<client id>}, unregistered by Close.
func New(conn whippet.Connection, opts ...Option) (*Client, error) {
	cfg := newConfig(conn, opts)
	if err := cfg.validate(false); err != nil {
		return nil, err
	}
	kc := connect.New(conn, "dlq", connect.ClientID(conn, "dlq"))
	cl, err := kgo.NewClient(kc.All()...)
	if err != nil {
		return nil, &ConfigError{Pkg: "dlq", Sentinel: ErrInvalidConfig, Field: "Connection.ClientOptions",
			Rule: "franz-go rejected the client configuration", Err: err}
	}
	c := newClient(cl, true, &cfg)
	if c.unregister, err = kc.Register(); err != nil {
		cl.Close()
		return nil, &ConfigError{Pkg: "dlq", Sentinel: ErrInvalidConfig, Field: "Connection.Registerer",
			Rule: "cannot register the Kafka client metrics", Err: err}
	}
	return c, nil
}

// NewFromClient creates a Client that works through cl, which stays the
// caller's: Close does not close it. cl may be any franz-go client, a group
// consumer included: the Client issues its own fetch requests and does not
// touch cl's consumption. Replayed records are produced with cl's producer
// settings (franz-go's defaults are idempotent with acks=all) and
// partitioner.
//
// Of conn only Logger and Registerer apply; the fields that configure a
// client (Brokers, TLS, SASL, ClientID, ClientOptions) are rejected. The
// Client has no metrics of its own, and franz-go's client metrics need hooks
// installed when cl is created, so Registerer records nothing here.
func NewFromClient(cl *kgo.Client, conn whippet.Connection, opts ...Option) (*Client, error) {
	cfg := newConfig(conn, opts)
	err := cfg.validate(true)
	if cl == nil {
		err = errors.Join(&ConfigError{Pkg: "dlq", Sentinel: ErrInvalidConfig, Field: "client", Rule: "must not be nil"}, err)
	}
	if err != nil {
		return nil, err
	}
	return newClient(cl, false, &cfg), nil
}

func newClient(cl *kgo.Client, owned bool, cfg *config) *Client {
	return &Client{cl: cl, adm: kadm.NewClient(cl), owned: owned, log: connect.Logger(cfg.conn), now: time.Now, unregister: func() {}}
}

// Close releases the Client. The methods called afterwards return ErrClosed
// at once; Close waits for the calls in progress (a Replay half done, say)
// to return, until ctx ends. Then it closes the franz-go client New created,
// which fails the calls still running (a client given to NewFromClient is
// left open, and those calls go on), and unregisters the client metrics.
// It returns nil, or an error matching ctx's error if calls were still
// running when ctx ended. It is safe to call more than once: later calls
// return the first one's result.
func (c *Client) Close(ctx context.Context) error {
	c.closeOnce.Do(func() { c.closeErr = c.close(ctx) })
	return c.closeErr
}

func (c *Client) close(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	c.mu.Lock()
	c.closed = true
	c.idle = make(chan struct{})
	if c.calls == 0 {
		close(c.idle)
	}
	c.mu.Unlock()
	var err error
	select {
	case <-c.idle:
	default: // calls in progress: wait for them, within ctx
		select {
		case <-c.idle:
		case <-ctx.Done():
			err = fmt.Errorf("dlq: close: calls still in progress: %w", ctx.Err())
		}
	}
	if c.owned {
		c.cl.Close()
	}
	c.unregister()
	return err
}

// Client returns the underlying franz-go client. Do not close a client the
// Client owns; call Close.
func (c *Client) Client() *kgo.Client { return c.cl }

// Position locates a record in a topic.
type Position struct {
	// Topic, Partition and Offset are the record's topic, partition and
	// offset.
	Topic     string
	Partition int32
	Offset    int64
}

// String returns "<topic>/<partition>/<offset>", the form of
// HeaderReplayedFrom, read back by ParsePosition.
func (p Position) String() string {
	return p.Topic + "/" + strconv.FormatInt(int64(p.Partition), 10) + "/" + strconv.FormatInt(p.Offset, 10)
}

// ParsePosition parses "<topic>/<partition>/<offset>" (see Position.String).
func ParsePosition(s string) (Position, error) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return Position{}, fmt.Errorf("dlq: position %q: want <topic>/<partition>/<offset>", s)
	}
	j := strings.LastIndexByte(s[:i], '/')
	if j <= 0 {
		return Position{}, fmt.Errorf("dlq: position %q: want <topic>/<partition>/<offset>", s)
	}
	p, err := strconv.ParseInt(s[j+1:i], 10, 32)
	if err != nil || p < 0 {
		return Position{}, fmt.Errorf("dlq: position %q: bad partition", s)
	}
	o, err := strconv.ParseInt(s[i+1:], 10, 64)
	if err != nil || o < 0 {
		return Position{}, fmt.Errorf("dlq: position %q: bad offset", s)
	}
	if rule := check.TopicRule(s[:j]); rule != "" {
		return Position{}, fmt.Errorf("dlq: position %q: topic %s", s, rule)
	}
	return Position{Topic: s[:j], Partition: int32(p), Offset: o}, nil
}

// ReplayMark is what the replay headers of a record say.
type ReplayMark struct {
	// From is the dead-letter record it was replayed from.
	From Position
	// At is when it was replayed.
	At time.Time
	// Count is how many replays the record went through (1 for the first).
	Count int
}

// ReplayMarkOf reads the replay headers of rec: a handler can use it to tell
// a replayed record (and which dead letter it came from) from a new one. ok
// is false if rec carries no valid HeaderReplayedFrom.
func ReplayMarkOf(rec *kgo.Record) (mark ReplayMark, ok bool) {
	for _, h := range rec.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderReplayedFrom:
			if p, err := ParsePosition(v); err == nil {
				mark.From, ok = p, true
			}
		case HeaderReplayedAt:
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
				mark.At = time.UnixMilli(n)
			}
		case HeaderReplayCount:
			// Bounded, so that Replay counting on cannot overflow.
			if n, err := strconv.Atoi(v); err == nil && n > 0 && n < math.MaxInt32 {
				mark.Count = n
			}
		}
	}
	if ok && mark.Count == 0 {
		mark.Count = 1
	}
	return mark, ok
}

// Record is one dead-letter record.
type Record struct {
	// Position is where the record is in the dead-letter topic.
	Position
	// Timestamp is the dead-letter record's Kafka timestamp: when it was
	// dead-lettered. The time filters and PurgeBefore use it.
	Timestamp time.Time
	// Key and Value are the original record's key and value.
	Key, Value []byte
	// Headers are the original record's headers, without the retry headers
	// (retry.IsRetryHeader) and the replay headers (IsReplayHeader), in
	// their original order.
	Headers []kgo.RecordHeader
	// Info is the failure information the retry headers carry: attempts,
	// original topic/partition/offset/timestamp, group, failure times, last
	// error and Reason.
	Info retry.Info
	// DeadLetter reports whether the record carries whippet's (or
	// Greyhound's) retry headers. A record without them was not written by
	// a whippet consumer: its Info only describes the record itself, and
	// Replay skips it.
	DeadLetter bool
	// Replayed is set if the original record was itself produced by
	// Replay (and failed again): where and when it was replayed from. It is
	// nil for a record that was never replayed. Kafka records cannot be
	// changed, so a dead-letter record does not record that it was
	// replayed itself; the records Replay produces do.
	Replayed *ReplayMark
}

// Parse turns a record read from a dead-letter topic into a Record, for
// programs that consume dead-letter topics themselves.
func Parse(rec *kgo.Record) Record {
	info, ok := retry.InfoFor(rec)
	r := Record{
		Position:   Position{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset},
		Timestamp:  rec.Timestamp,
		Key:        rec.Key,
		Value:      rec.Value,
		Info:       info,
		DeadLetter: ok,
	}
	if mark, ok := ReplayMarkOf(rec); ok {
		r.Replayed = &mark
	}
	for _, h := range rec.Headers {
		if !retry.IsRetryHeader(h.Key) && !IsReplayHeader(h.Key) {
			r.Headers = append(r.Headers, h)
		}
	}
	return r
}

// checkTopic validates a topic argument.
func checkTopic(field, topic string) error {
	if rule := check.TopicRule(topic); rule != "" {
		return &ConfigError{Pkg: "dlq", Sentinel: ErrInvalidArgument, Field: field, Rule: rule}
	}
	return nil
}

// enter starts a method call: ErrClosed once Close began, else the caller
// must call leave when done.
func (c *Client) enter() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	c.calls++
	return nil
}

func (c *Client) leave() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls--; c.closed && c.calls == 0 {
		close(c.idle)
	}
}

// unknownTopic wraps a metadata error for topic.
func unknownTopic(topic string) error {
	return fmt.Errorf("%w: %q: %w", ErrUnknownTopic, topic, kerr.UnknownTopicOrPartition)
}

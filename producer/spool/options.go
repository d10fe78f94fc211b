package spool

import (
	"errors"
	"time"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/check"
	"github.com/whippet-go/whippet/internal/connect"
)

// Defaults applied when the matching option is not given.
const (
	// DefaultThreshold is how long a produce waits for Kafka before it
	// spools the record.
	DefaultThreshold = 2 * time.Second
	// DefaultMaxBytes caps the spool's files on disk: 1 GiB.
	DefaultMaxBytes int64 = 1 << 30
	// DefaultMaxRecords caps the records held in the spool.
	DefaultMaxRecords int64 = 1_000_000
	// DefaultExpiry is how old a spooled record may grow before the relay
	// sets it aside as dead instead of delivering it.
	DefaultExpiry = 24 * time.Hour
	// DefaultRelayBatch is how many records the relay sends at a time.
	DefaultRelayBatch = 1000
	// DefaultRelayTimeout bounds one relay attempt; records not
	// acknowledged by then are tried again (and expire if too old).
	DefaultRelayTimeout = 30 * time.Second
)

// ErrInvalidConfig is matched by every error New returns for a bad option
// or argument; the concrete error is a *ConfigError naming the field.
var ErrInvalidConfig = errors.New("spool: invalid config")

// ConfigError reports one invalid configuration value, e.g.
// "spool: MaxBytes: must be at least 65536, got 10".
type ConfigError = check.Error

// Option configures a Producer; see New.
type Option func(*config)

type config struct {
	conn         whippet.Connection
	dir          string
	threshold    time.Duration
	maxBytes     int64
	maxRecords   int64
	expiry       time.Duration
	relayBatch   int
	relayTimeout time.Duration
	defaultTopic string
	segmentBytes int64
	set          map[string]bool
}

// Threshold sets how long a produce waits for Kafka's acknowledgement
// before it spools the record and returns; it also applies at once when
// franz-go's buffer is full. Default DefaultThreshold (2s); at least 1ms.
func Threshold(d time.Duration) Option { return func(c *config) { c.threshold = d } }

// MaxBytes caps the bytes of the spool's segment files; a record that would
// pass it is refused with ErrFull. Default DefaultMaxBytes (1 GiB); at
// least 64 KiB.
func MaxBytes(n int64) Option { return func(c *config) { c.maxBytes = n } }

// MaxRecords caps the records held in the spool (not yet relayed); a record
// past it is refused with ErrFull. Default DefaultMaxRecords (1,000,000).
func MaxRecords(n int64) Option { return func(c *config) { c.maxRecords = n } }

// Expiry sets how old (since its Produce) a spooled record may grow before
// the relay sets it aside as dead (see Dead) instead of delivering it.
// Default DefaultExpiry (24h).
func Expiry(d time.Duration) Option { return func(c *config) { c.expiry = d } }

// RelayBatch sets how many spooled records the relay sends at a time.
// Default DefaultRelayBatch (1000); between 1 and 100,000.
func RelayBatch(n int) Option { return func(c *config) { c.relayBatch = n } }

// RelayTimeout bounds one relay attempt: records Kafka has not
// acknowledged by then are sent again later. Default DefaultRelayTimeout
// (30s).
func RelayTimeout(d time.Duration) Option { return func(c *config) { c.relayTimeout = d } }

// DefaultTopic sets the topic of records whose Topic is empty. Default: none
// (such records fail with ErrInvalidRecord).
func DefaultTopic(topic string) Option {
	return func(c *config) { c.defaultTopic = topic; c.set["DefaultTopic"] = true }
}

func newConfig(conn whippet.Connection, dir string, opts []Option) config {
	c := config{
		conn: conn, dir: dir,
		threshold: DefaultThreshold, maxBytes: DefaultMaxBytes, maxRecords: DefaultMaxRecords,
		expiry: DefaultExpiry, relayBatch: DefaultRelayBatch, relayTimeout: DefaultRelayTimeout,
		segmentBytes: 64 << 20,
		set:          map[string]bool{},
	}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	return c
}

func (c *config) validate() error {
	v := check.NewErrors("spool", ErrInvalidConfig)
	connect.Validate(v, c.conn)
	if c.dir == "" {
		v.Add("dir", "a directory for the spool is required")
	}
	if c.threshold < time.Millisecond {
		v.Add("Threshold", "must be at least 1ms, got %v", c.threshold)
	}
	if c.maxBytes < 64<<10 {
		v.Add("MaxBytes", "must be at least 65536, got %d", c.maxBytes)
	}
	if c.maxRecords < 1 {
		v.Add("MaxRecords", "must be positive, got %d", c.maxRecords)
	}
	if c.expiry <= 0 {
		v.Add("Expiry", "must be positive, got %v", c.expiry)
	}
	if c.relayBatch < 1 || c.relayBatch > 100_000 {
		v.Add("RelayBatch", "must be between 1 and 100000, got %d", c.relayBatch)
	}
	if c.relayTimeout <= 0 {
		v.Add("RelayTimeout", "must be positive, got %v", c.relayTimeout)
	}
	if c.set["DefaultTopic"] {
		if rule := check.TopicRule(c.defaultTopic); rule != "" {
			v.Add("DefaultTopic", "%s", rule)
		}
	}
	return v.Err()
}

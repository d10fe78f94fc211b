package notify

import (
	"errors"
	"net/http"
	"time"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/check"
	"github.com/whippet-go/whippet/internal/connect"
)

// ErrInvalidConfig is matched (with errors.Is) by every error NewPublisher
// and NewGateway return for a bad option or argument; the concrete error is a
// *ConfigError naming the field.
var ErrInvalidConfig = errors.New("notify: invalid config")

// ConfigError reports one invalid configuration value: "notify: <Field>:
// <Rule>". It matches ErrInvalidConfig.
type ConfigError = check.Error

// Gateway defaults.
const (
	// DefaultQueueSize is how many notifications wait for one socket
	// before it is closed as too slow.
	DefaultQueueSize = 256
	// DefaultResumeWindow is how many offsets of its partition a
	// reconnecting socket may be behind the gateway and still resume.
	DefaultResumeWindow int64 = 100_000
	// DefaultWriteTimeout bounds the write of one frame to a socket.
	DefaultWriteTimeout = 10 * time.Second
)

// AuthorizeFunc decides whether the request r may subscribe to channel: nil
// allows it, an error refuses it (HTTP 403 before the upgrade; the error is
// logged, not sent). It runs on the request's goroutine, before any
// WebSocket upgrade.
type AuthorizeFunc func(r *http.Request, channel string) error

// AllowAll is an AuthorizeFunc that allows every request: for tests and
// demos. A service checks the request's session against the channel.
func AllowAll(*http.Request, string) error { return nil }

// GatewayOption configures a Gateway.
type GatewayOption func(*gatewayConfig)

type gatewayConfig struct {
	conn         whippet.Connection
	authorize    AuthorizeFunc
	queueSize    int
	resumeWindow int64
	writeTimeout time.Duration
	origins      []string
}

// Authorize sets the hook that decides who may subscribe to a channel.
// Required: a Gateway without one is refused (use AllowAll explicitly to
// allow everyone).
func Authorize(f AuthorizeFunc) GatewayOption {
	return func(c *gatewayConfig) { c.authorize = f }
}

// QueueSize sets how many notifications may wait for one socket, from 1 to
// 1,048,576. When a socket's queue is full the socket is closed with
// CloseTooSlow (the client reconnects with its last id and resumes) and the
// notifications it did not get are counted as dropped. Default:
// DefaultQueueSize (256).
func QueueSize(n int) GatewayOption {
	return func(c *gatewayConfig) { c.queueSize = n }
}

// ResumeWindow sets how far behind the gateway's position, in offsets of the
// channel's partition, a reconnect's last id may be and still be resumed
// from Kafka, from 1 to 100,000,000. A reconnect further behind (or behind
// the partition's log start, past retention) is accepted and then closed
// with CloseResumeUnavailable. It bounds the Kafka read one reconnect costs.
// Default: DefaultResumeWindow (100,000).
func ResumeWindow(offsets int64) GatewayOption {
	return func(c *gatewayConfig) { c.resumeWindow = offsets }
}

// WriteTimeout bounds the write of one frame to a socket, from 1ms to 10m;
// a socket that does not take a frame in time is closed. Default:
// DefaultWriteTimeout (10s).
func WriteTimeout(d time.Duration) GatewayOption {
	return func(c *gatewayConfig) { c.writeTimeout = d }
}

// OriginPatterns sets the host patterns (path.Match syntax, e.g.
// "*.example.com") of other origins whose pages may open a socket
// (websocket.AcceptOptions.OriginPatterns). Default: none, only pages of the
// gateway's own host.
func OriginPatterns(patterns ...string) GatewayOption {
	return func(c *gatewayConfig) { c.origins = append(c.origins, patterns...) }
}

func newGatewayConfig(conn whippet.Connection, topic string, opts []GatewayOption) (gatewayConfig, error) {
	c := gatewayConfig{
		conn:         conn,
		queueSize:    DefaultQueueSize,
		resumeWindow: DefaultResumeWindow,
		writeTimeout: DefaultWriteTimeout,
	}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	v := check.NewErrors("notify", ErrInvalidConfig)
	connect.Validate(v, conn)
	if rule := check.TopicRule(topic); rule != "" {
		v.Add("topic", "%s", rule)
	}
	if c.authorize == nil {
		v.Add("Authorize", "is required (use notify.AllowAll to allow every request)")
	}
	if c.queueSize < 1 || c.queueSize > 1<<20 {
		v.Add("QueueSize", "must be between 1 and 1048576, got %d", c.queueSize)
	}
	if c.resumeWindow < 1 || c.resumeWindow > 100_000_000 {
		v.Add("ResumeWindow", "must be between 1 and 100000000, got %d", c.resumeWindow)
	}
	if c.writeTimeout < time.Millisecond || c.writeTimeout > 10*time.Minute {
		v.Add("WriteTimeout", "must be between 1ms and 10m, got %v", c.writeTimeout)
	}
	return c, v.Err()
}

package consumer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

var nopHandler = HandlerFunc(func(context.Context, *kgo.Record) error { return nil })

func TestConfigValidation(t *testing.T) {
	valid := []Option{Brokers("127.0.0.1:9092"), Group("g"), Topics("t")}
	cases := []struct {
		name    string
		h       Handler
		opts    []Option
		field   string
		message string
	}{
		{"nil handler", nil, nil, "Handler", "must not be nil"},
		{"no brokers", nopHandler, []Option{Group("g"), Topics("t")}, "Brokers", "at least one seed broker"},
		{"broker without port", nopHandler, []Option{Brokers("localhost")}, "Brokers", `"localhost" is not host:port`},
		{"broker bad port", nopHandler, []Option{Brokers("localhost:99999")}, "Brokers", "invalid port"},
		{"empty group", nopHandler, []Option{Group("")}, "Group", "must not be empty"},
		{"no topics", nopHandler, []Option{Brokers("a:1"), Group("g")}, "Topics", "at least one topic"},
		{"bad topic name", nopHandler, []Option{Topics("bad topic!")}, "Topics", `"bad topic!": must contain only ASCII letters, digits`},
		{"bad regex", nopHandler, []Option{TopicRegex("([")}, "TopicRegex", "does not compile"},
		{"bad reset offset", nopHandler, []Option{ResetOffset(StartOffset(7))}, "ResetOffset", "must be Earliest or Latest"},
		{"zero buffer", nopHandler, []Option{PartitionBuffer(0)}, "PartitionBuffer", "must be > 0, got 0"},
		{"negative buffer", nopHandler, []Option{PartitionBuffer(-3)}, "PartitionBuffer", "must be > 0, got -3"},
		{"zero concurrency", nopHandler, []Option{KeyParallel(0)}, "KeyParallel", "concurrency must be > 0, got 0"},
		{"negative concurrency", nopHandler, []Option{KeyParallel(-1)}, "KeyParallel", "concurrency must be > 0, got -1"},
		{"zero backpressure wait", nopHandler, []Option{BackpressureWait(0)}, "BackpressureWait", "must be > 0"},
		{"zero drain timeout", nopHandler, []Option{DrainTimeout(0)}, "DrainTimeout", "must be > 0"},
		{"negative commit interval", nopHandler, []Option{CommitInterval(-time.Second)}, "CommitInterval", "must be at least 100ms"},
		{"too short commit interval", nopHandler, []Option{CommitInterval(99 * time.Millisecond)}, "CommitInterval", "must be at least 100ms (franz-go's minimum), got 99ms"},
		{"nil logger", nopHandler, []Option{Logger(nil)}, "Logger", "must not be nil"},
		{"empty client id", nopHandler, []Option{ClientID("")}, "ClientID", "must not be empty"},
		{"nil middleware", nopHandler, []Option{WithMiddleware(nil)}, "WithMiddleware", "middleware 0 is nil"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := append(append([]Option{}, valid...), tc.opts...)
			if tc.field == "Brokers" || tc.field == "Topics" && strings.Contains(tc.message, "at least") {
				opts = tc.opts // these cases need the valid value left out
			}
			c, err := New(tc.h, opts...)
			if err == nil {
				t.Fatalf("New succeeded (%v); want an error about %s", c, tc.field)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not match ErrInvalidConfig", err)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Pkg != "consumer" {
				t.Errorf("error %v is not a consumer *ConfigError", err)
			}
			if !strings.Contains(err.Error(), tc.field+": ") || !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not name field %q with %q", err, tc.field, tc.message)
			}
		})
	}
}

func TestConfigValidationReportsEveryField(t *testing.T) {
	_, err := New(nil, PartitionBuffer(0), DrainTimeout(-1))
	for _, field := range []string{"Handler", "Brokers", "Group", "Topics", "PartitionBuffer", "DrainTimeout"} {
		if err == nil || !strings.Contains(err.Error(), field+": ") {
			t.Errorf("error %v does not name %s", err, field)
		}
	}
}

func TestValidConfigDoesNoNetworkIO(t *testing.T) {
	// Nothing listens on this port: New must still succeed, since it only validates.
	c, err := New(nopHandler, Brokers("127.0.0.1:1"), Group("g"), Topics("t"), TopicRegex("^x"))
	if err == nil {
		t.Fatalf("mixing Topics and TopicRegex patterns is accepted only as regexes; got consumer %v", c)
	}
	c, err = New(nopHandler, Brokers("127.0.0.1:1"), Group("g"), Topics("t"), KeyParallel(4))
	if err != nil {
		t.Fatal(err)
	}
	c.Close() // before Run: no goroutine, no I/O
	if err := c.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close = %v, want ErrClosed", err)
	}
}

func TestDuplicateMetricsRegistrationIsAConfigError(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := []Option{Brokers("127.0.0.1:1"), Group("g"), Topics("t"), Registerer(reg)}
	if _, err := New(nopHandler, opts...); err != nil {
		t.Fatal(err)
	}
	_, err := New(nopHandler, opts...)
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "Registerer: ") {
		t.Fatalf("second consumer of group g on one registry: %v, want a Registerer config error", err)
	}
}

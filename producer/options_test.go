package producer_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/producer"
)

// One case per validation rule: each must be reported as a *ConfigError
// naming the field, matching ErrInvalidConfig, with the exact message.
func TestConfigRules(t *testing.T) {
	ok := producer.Brokers("127.0.0.1:1")
	cases := []struct {
		name  string
		opts  []producer.Option
		field string
		msg   string
	}{
		{"Brokers required", nil, "Brokers",
			"producer: Brokers: at least one seed broker is required"},
		{"Brokers entry empty", []producer.Option{producer.Brokers("a:9092", "")}, "Brokers[1]",
			`producer: Brokers[1]: must be a non-empty host[:port] without spaces, got ""`},
		{"Brokers entry with spaces", []producer.Option{producer.Brokers("a :9092")}, "Brokers[0]",
			`producer: Brokers[0]: must be a non-empty host[:port] without spaces, got "a :9092"`},
		{"ClientID empty", []producer.Option{ok, producer.ClientID("")}, "ClientID",
			"producer: ClientID: must be 1 to 256 characters, got 0"},
		{"ClientID too long", []producer.Option{ok, producer.ClientID(strings.Repeat("x", 257))}, "ClientID",
			"producer: ClientID: must be 1 to 256 characters, got 257"},
		{"Linger negative", []producer.Option{ok, producer.Linger(-time.Millisecond)}, "Linger",
			"producer: Linger: must be between 0 and 1m, got -1ms"},
		{"Linger too long", []producer.Option{ok, producer.Linger(2 * time.Minute)}, "Linger",
			"producer: Linger: must be between 0 and 1m, got 2m0s"},
		{"MaxBatchBytes too small", []producer.Option{ok, producer.MaxBatchBytes(511)}, "MaxBatchBytes",
			"producer: MaxBatchBytes: must be between 512 and 1073741824, got 511"},
		{"MaxBatchBytes too large", []producer.Option{ok, producer.MaxBatchBytes(1<<30 + 1)}, "MaxBatchBytes",
			"producer: MaxBatchBytes: must be between 512 and 1073741824, got 1073741825"},
		{"ClientOptions nil entry", []producer.Option{ok, producer.ClientOptions(kgo.ClientID("x"), nil)}, "ClientOptions[1]",
			"producer: ClientOptions[1]: must not be nil"},
		{"DefaultTopic empty", []producer.Option{ok, producer.DefaultTopic("")}, "DefaultTopic",
			"producer: DefaultTopic: must not be empty"},
		{"DefaultTopic bad characters", []producer.Option{ok, producer.DefaultTopic("orders/eu")}, "DefaultTopic",
			`producer: DefaultTopic: must contain only ASCII letters, digits, '.', '_' and '-', got "orders/eu"`},
		{"DefaultTopic dot", []producer.Option{ok, producer.DefaultTopic("..")}, "DefaultTopic",
			`producer: DefaultTopic: must not be ".."`},
		{"DefaultTopic too long", []producer.Option{ok, producer.DefaultTopic(strings.Repeat("t", 250))}, "DefaultTopic",
			"producer: DefaultTopic: must be at most 249 characters, got 250"},
		{"Logger nil", []producer.Option{ok, producer.Logger(nil)}, "Logger",
			"producer: Logger: must not be nil (omit the option to disable logging)"},
		{"Registerer nil", []producer.Option{ok, producer.Registerer(nil)}, "Registerer",
			"producer: Registerer: must not be nil (omit the option to disable metrics)"},
		{"FlushTimeout zero", []producer.Option{ok, producer.FlushTimeout(0)}, "FlushTimeout",
			"producer: FlushTimeout: must be positive, got 0s"},
		{"FlushTimeout negative", []producer.Option{ok, producer.FlushTimeout(-time.Second)}, "FlushTimeout",
			"producer: FlushTimeout: must be positive, got -1s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := producer.New(tc.opts...)
			if err == nil {
				p.Close(t.Context())
				t.Fatal("New succeeded, want an error")
			}
			checkConfigError(t, err, tc.field, tc.msg)
		})
	}
}

func checkConfigError(t *testing.T, err error, field, msg string) {
	t.Helper()
	if !errors.Is(err, producer.ErrInvalidConfig) {
		t.Errorf("errors.Is(%v, ErrInvalidConfig) = false", err)
	}
	var ce *producer.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a *ConfigError", err)
	}
	if ce.Field != field {
		t.Errorf("Field = %q, want %q", ce.Field, field)
	}
	if err.Error() != msg {
		t.Errorf("message:\n got %s\nwant %s", err, msg)
	}
}

// Every bad option is reported, not just the first.
func TestConfigReportsAllErrors(t *testing.T) {
	_, err := producer.New(producer.FlushTimeout(0), producer.Logger(nil))
	for _, want := range []string{"Brokers:", "FlushTimeout:", "Logger:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

// franz-go's own validation errors surface as ErrInvalidConfig too.
func TestConfigClientOptionsRejectedByFranzGo(t *testing.T) {
	_, err := producer.New(producer.Brokers("127.0.0.1:1"), producer.ClientOptions(kgo.BrokerMaxWriteBytes(10)))
	if !errors.Is(err, producer.ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	var ce *producer.ConfigError
	if !errors.As(err, &ce) || ce.Field != "ClientOptions" || ce.Err == nil {
		t.Fatalf("err = %#v, want a ClientOptions *ConfigError with a cause", err)
	}
}

// Validation happens before any network I/O: a broker listening at the
// configured address sees no connection.
func TestConfigValidatedBeforeNetworkIO(t *testing.T) {
	noLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			accepted <- struct{}{}
		}
	}()
	_, err = producer.New(producer.Brokers(ln.Addr().String()), producer.DefaultTopic("bad topic"))
	if !errors.Is(err, producer.ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	ln.Close()
	select {
	case <-accepted:
		t.Fatal("New connected to the broker despite an invalid config")
	default:
	}
}

func TestNewFromClientRules(t *testing.T) {
	_, err := producer.NewFromClient(nil)
	checkConfigError(t, err, "client", "producer: client: must not be nil")

	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, tc := range []struct {
		field string
		opt   producer.Option
	}{
		{"Brokers", producer.Brokers("x:1")},
		{"ClientID", producer.ClientID("x")},
		{"ClientOptions", producer.ClientOptions(kgo.ClientID("x"))},
		{"Linger", producer.Linger(0)},
		{"MaxBatchBytes", producer.MaxBatchBytes(1024)},
	} {
		t.Run(tc.field, func(t *testing.T) {
			_, err := producer.NewFromClient(cl, tc.opt)
			checkConfigError(t, err, tc.field,
				"producer: "+tc.field+": not allowed with NewFromClient; configure the *kgo.Client instead")
		})
	}
	t.Run("shared rules apply", func(t *testing.T) {
		_, err := producer.NewFromClient(cl, producer.FlushTimeout(0))
		checkConfigError(t, err, "FlushTimeout", "producer: FlushTimeout: must be positive, got 0s")
	})
}

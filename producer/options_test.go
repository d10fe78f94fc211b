package producer_test

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/producer"
)

// One case per validation rule: each must be reported as a *ConfigError
// naming the field, matching ErrInvalidConfig, with the exact message.
func TestConfigRules(t *testing.T) {
	ok := whippet.Connection{Brokers: []string{"127.0.0.1:1"}}
	cases := []struct {
		name  string
		conn  whippet.Connection
		opts  []producer.Option
		field string
		msg   string
	}{
		{"Connection.Brokers required", whippet.Connection{}, nil, "Connection.Brokers",
			"producer: Connection.Brokers: at least one seed broker is required"},
		{"Connection.Brokers entry empty", whippet.Connection{Brokers: []string{"a:9092", ""}}, nil, "Connection.Brokers[1]",
			`producer: Connection.Brokers[1]: must be a non-empty host[:port] without spaces, got ""`},
		{"Connection.Brokers entry with spaces", whippet.Connection{Brokers: []string{"a :9092"}}, nil, "Connection.Brokers[0]",
			`producer: Connection.Brokers[0]: must be a non-empty host[:port] without spaces, got "a :9092"`},
		{"Connection.ClientID too long", whippet.Connection{Brokers: []string{"a:1"}, ClientID: strings.Repeat("x", 257)}, nil, "Connection.ClientID",
			"producer: Connection.ClientID: must be at most 256 characters, got 257"},
		{"Connection.ClientOptions nil entry", whippet.Connection{Brokers: []string{"a:1"}, ClientOptions: []kgo.Opt{kgo.ClientID("x"), nil}}, nil, "Connection.ClientOptions[1]",
			"producer: Connection.ClientOptions[1]: must not be nil"},
		{"Linger negative", ok, []producer.Option{producer.Linger(-time.Millisecond)}, "Linger",
			"producer: Linger: must be between 0 and 1m, got -1ms"},
		{"Linger too long", ok, []producer.Option{producer.Linger(2 * time.Minute)}, "Linger",
			"producer: Linger: must be between 0 and 1m, got 2m0s"},
		{"MaxBatchBytes too small", ok, []producer.Option{producer.MaxBatchBytes(511)}, "MaxBatchBytes",
			"producer: MaxBatchBytes: must be between 512 and 1073741824, got 511"},
		{"MaxBatchBytes too large", ok, []producer.Option{producer.MaxBatchBytes(1<<30 + 1)}, "MaxBatchBytes",
			"producer: MaxBatchBytes: must be between 512 and 1073741824, got 1073741825"},
		{"DefaultTopic empty", ok, []producer.Option{producer.DefaultTopic("")}, "DefaultTopic",
			"producer: DefaultTopic: must not be empty"},
		{"DefaultTopic bad characters", ok, []producer.Option{producer.DefaultTopic("orders/eu")}, "DefaultTopic",
			`producer: DefaultTopic: must contain only ASCII letters, digits, '.', '_' and '-', got "orders/eu"`},
		{"DefaultTopic dot", ok, []producer.Option{producer.DefaultTopic("..")}, "DefaultTopic",
			`producer: DefaultTopic: must not be ".."`},
		{"DefaultTopic too long", ok, []producer.Option{producer.DefaultTopic(strings.Repeat("t", 250))}, "DefaultTopic",
			"producer: DefaultTopic: must be at most 249 characters, got 250"},
		{"FlushTimeout zero", ok, []producer.Option{producer.FlushTimeout(0)}, "FlushTimeout",
			"producer: FlushTimeout: must be positive, got 0s"},
		{"FlushTimeout negative", ok, []producer.Option{producer.FlushTimeout(-time.Second)}, "FlushTimeout",
			"producer: FlushTimeout: must be positive, got -1s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := producer.New(tc.conn, tc.opts...)
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
	_, err := producer.New(whippet.Connection{ClientOptions: []kgo.Opt{nil}}, producer.FlushTimeout(0))
	for _, want := range []string{"Connection.Brokers:", "FlushTimeout:", "Connection.ClientOptions[0]:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

// franz-go's own validation errors surface as ErrInvalidConfig too.
func TestConfigClientOptionsRejectedByFranzGo(t *testing.T) {
	_, err := producer.New(whippet.Connection{Brokers: []string{"127.0.0.1:1"}, ClientOptions: []kgo.Opt{kgo.BrokerMaxWriteBytes(10)}})
	if !errors.Is(err, producer.ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	var ce *producer.ConfigError
	if !errors.As(err, &ce) || ce.Field != "Connection.ClientOptions" || ce.Err == nil {
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
	_, err = producer.New(whippet.Connection{Brokers: []string{ln.Addr().String()}}, producer.DefaultTopic("bad topic"))
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
	_, err := producer.NewFromClient(nil, whippet.Connection{})
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
		{"Linger", producer.Linger(0)},
		{"MaxBatchBytes", producer.MaxBatchBytes(1024)},
	} {
		t.Run(tc.field, func(t *testing.T) {
			_, err := producer.NewFromClient(cl, whippet.Connection{}, tc.opt)
			checkConfigError(t, err, tc.field,
				"producer: "+tc.field+": not allowed with NewFromClient; configure the *kgo.Client instead")
		})
	}
	for _, tc := range []struct {
		field string
		conn  whippet.Connection
	}{
		{"Brokers", whippet.Connection{Brokers: []string{"x:1"}}},
		{"ClientID", whippet.Connection{ClientID: "x"}},
		{"ClientOptions", whippet.Connection{ClientOptions: []kgo.Opt{kgo.ClientID("x")}}},
		{"TLS", whippet.Connection{TLS: &tls.Config{}}},
	} {
		t.Run("Connection."+tc.field, func(t *testing.T) {
			_, err := producer.NewFromClient(cl, tc.conn)
			checkConfigError(t, err, "Connection."+tc.field,
				"producer: Connection."+tc.field+": not allowed with NewFromClient (only Logger and Registerer apply); configure the *kgo.Client instead")
		})
	}
	t.Run("shared rules apply", func(t *testing.T) {
		_, err := producer.NewFromClient(cl, whippet.Connection{}, producer.FlushTimeout(0))
		checkConfigError(t, err, "FlushTimeout", "producer: FlushTimeout: must be positive, got 0s")
	})
}

package connect_test

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/check"
	"github.com/whippet-go/whippet/internal/connect"
)

var errTest = errors.New("test: invalid config")

func TestValidateNamesConnectionFields(t *testing.T) {
	v := check.NewErrors("test", errTest)
	connect.Validate(v, whippet.Connection{
		Brokers:       []string{"a:1", "b c:2", "d:70000"},
		ClientID:      strings.Repeat("x", 257),
		ClientOptions: []kgo.Opt{nil},
	})
	err := v.Err()
	for _, want := range []string{
		`test: Connection.Brokers[1]: must be a non-empty host[:port] without spaces, got "b c:2"`,
		`test: Connection.Brokers[2]: the port must be a number from 1 to 65535, got "d:70000"`,
		"test: Connection.ClientID: must be at most 256 characters, got 257",
		"test: Connection.ClientOptions[0]: must not be nil",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v\nlacks %q", err, want)
		}
	}
	if !errors.Is(err, errTest) {
		t.Errorf("Validate's errors do not match the package sentinel: %v", err)
	}
	v = check.NewErrors("test", errTest)
	connect.Validate(v, whippet.Connection{Brokers: []string{"kafka"}})
	if err := v.Err(); err != nil {
		t.Errorf("a seed without a port (franz-go's 9092) was refused: %v", err)
	}
}

// TLS, SASL, the client id and the user's options reach the franz-go client,
// the user's options last.
func TestNewBuildsTheClient(t *testing.T) {
	tc := &tls.Config{ServerName: "kafka.internal", MinVersion: tls.VersionTLS12}
	mech := plain.Auth{User: "u", Pass: "p"}.AsMechanism()
	kc := connect.New(whippet.Connection{
		Brokers:       []string{"127.0.0.1:1"},
		TLS:           tc,
		SASL:          mech,
		ClientOptions: []kgo.Opt{kgo.ProducerLinger(0)},
	}, "producer", "p")
	cl, err := kgo.NewClient(kc.All(kgo.ProducerLinger(time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if got := cl.OptValue(kgo.ClientID); got != "whippet-producer" {
		t.Errorf("client id = %v, want whippet-producer", got)
	}
	if got, _ := cl.OptValue(kgo.DialTLSConfig).(*tls.Config); got == nil || got.ServerName != "kafka.internal" || got == tc {
		t.Errorf("TLS config = %v, want a clone of the Connection's", got)
	}
	if got, _ := cl.OptValue(kgo.SASL).([]sasl.Mechanism); len(got) != 1 || got[0].Name() != "PLAIN" {
		t.Errorf("SASL = %v, want PLAIN", got)
	}
	if got := cl.OptValue(kgo.ProducerLinger); got != time.Duration(0) {
		t.Errorf("linger = %v: the user's ClientOptions must come last and win", got)
	}
}

// Two clients of one component and client id on one Registerer clash with a
// clear error; Register's unregister frees the name.
func TestRegisterClash(t *testing.T) {
	reg := prometheus.NewRegistry()
	conn := whippet.Connection{Brokers: []string{"127.0.0.1:1"}, Registerer: reg, ClientID: "svc"}
	register := func(component string) (func(), error) {
		kc := connect.New(conn, component, "svc")
		cl, err := kgo.NewClient(kc.All()...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return kc.Register()
	}
	unregister, err := register("consumer")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := register("consumer"); !errors.Is(err, connect.ErrMetricsClash) || !strings.Contains(err.Error(), `consumer "svc"`) {
		t.Fatalf("second Register = %v, want ErrMetricsClash naming the consumer", err)
	}
	if _, err := register("producer"); err != nil {
		t.Fatalf("another component with the same name: %v", err)
	}
	unregister()
	if _, err := register("consumer"); err != nil {
		t.Fatalf("Register after unregister: %v", err)
	}
}

package producer_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/securetest"
	"github.com/whippet-go/whippet/producer"
)

// TestSecurity runs the producer against Apache Kafka's SASL_SSL listener
// (TLS + SCRAM-SHA-512): it produces with the right password, fails fast and
// clearly with a wrong one, and never logs, returns or exports the password
// or the broker's private key.
func TestSecurity(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	kc := securetest.Start(t)
	capture := securetest.NewCapture()
	log := capture.Logger()
	wrong := kc.WrongUser()

	topic := "secure-produce"
	plain, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := kadm.NewClient(plain).CreateTopic(ctx, 2, 1, nil, topic); err != nil {
		t.Fatal(err)
	}

	t.Run("right password", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		p, err := producer.New(whippet.Connection{Brokers: kc.SecureBrokers, Logger: log, Registerer: reg, ClientOptions: kc.Opts(t)}, producer.DefaultTopic(topic))
		if err != nil {
			t.Fatal(err)
		}
		const n = 20
		for i := range n {
			if _, err := p.Produce(ctx, &kgo.Record{Key: []byte("k"), Value: []byte("secure-" + string(rune('a'+i)))}); err != nil {
				t.Fatalf("produce %d over SASL_SSL: %v", i, err)
			}
		}
		capture.AddMetrics(t, reg)
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
		// Read back over PLAINTEXT: the records really are in Kafka.
		cons, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		defer cons.Close()
		var got int
		for got < n {
			fs := cons.PollFetches(ctx)
			if err := fs.Err0(); err != nil {
				t.Fatalf("read back: %v (got %d of %d)", err, got, n)
			}
			got += fs.NumRecords()
		}
		if got != n {
			t.Errorf("read back %d records, want %d", got, n)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		p, err := producer.New(whippet.Connection{Brokers: kc.SecureBrokers, Logger: log, ClientOptions: kc.OptsAs(t, wrong)}, producer.DefaultTopic(topic))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close(context.Background())
		// A generous deadline: Produce must come back on its own, long before.
		pctx, pcancel := context.WithTimeout(ctx, time.Minute)
		defer pcancel()
		start := time.Now()
		_, err = p.Produce(pctx, &kgo.Record{Value: []byte("v")})
		took := time.Since(start)
		t.Logf("Produce with a wrong password returned after %s: %v", took, err)
		if pctx.Err() != nil {
			t.Fatalf("Produce waited for its context (%s) instead of reporting the authentication failure: %v", took, err)
		}
		if !errors.Is(err, kerr.SaslAuthenticationFailed) {
			t.Fatalf("error %v does not match kerr.SaslAuthenticationFailed", err)
		}
		if errors.Is(err, producer.ErrUnconfirmed) {
			t.Errorf("the record was never sent, yet the error says it may be written: %v", err)
		}
		for _, want := range []string{"SCRAM-SHA-512", kc.SecureBrokers[0], topic} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %q", err, want)
			}
		}
		capture.Add("error", err.Error())

		// Async: the record waits (franz-go retries) until its context ends;
		// the failure has been logged at Error level meanwhile.
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		defer acancel()
		done := make(chan error, 1)
		p.ProduceAsync(actx, &kgo.Record{Value: []byte("v")}, func(_ producer.Result, err error) { done <- err })
		aerr := <-done
		if aerr == nil {
			t.Fatal("async produce with a wrong password succeeded")
		}
		capture.Add("async error", aerr.Error())
		if !strings.Contains(capture.String(), "Kafka refused the connection") {
			t.Error("the authentication failure was not logged at Error level")
		}
	})

	t.Run("plaintext client on the secure port", func(t *testing.T) {
		p, err := producer.New(whippet.Connection{Brokers: kc.SecureBrokers, Logger: log}, producer.DefaultTopic(topic))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close(context.Background())
		pctx, pcancel := context.WithTimeout(ctx, time.Minute)
		defer pcancel()
		_, err = p.Produce(pctx, &kgo.Record{Value: []byte("v")})
		if err == nil || pctx.Err() != nil {
			t.Fatalf("plaintext produce to the SASL_SSL port: %v (context: %v), want a prompt error", err, pctx.Err())
		}
		t.Logf("plaintext client: %v", err)
		if !strings.Contains(err.Error(), "tls") {
			t.Errorf("error %q does not say TLS is the problem", err)
		}
	})

	users, err := kc.SASLUsers()
	if err != nil {
		t.Fatal(err)
	}
	secrets := append([]string{users[0].Password, wrong.Password}, securetest.KeyMaterial(t, kc.StateDir+"/security/broker.pem")...)
	capture.AssertNoSecret(t, 50, secrets...)
}

package kvstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"go.uber.org/goleak"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/internal/securetest"
	"github.com/whippet-go/whippet/kvstore"
)

// TestSecurity opens stores through Apache Kafka's SASL_SSL listener (TLS +
// SCRAM-SHA-512): with the right password a store writes and a second store
// loads what it wrote; with a wrong one Open fails at once, clearly; and the
// password and the broker's key never show up in logs, errors or metrics.
func TestSecurity(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	kc := securetest.Start(t)
	capture := securetest.NewCapture()
	log := capture.Logger()
	wrong := kc.WrongUser()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const topic = "secure-countries"

	t.Run("right password", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		open := func(name string) *kvstore.Store[string, string] {
			s, err := kvstore.Open(ctx, whippet.Connection{Brokers: kc.SecureBrokers, Logger: log, Registerer: reg, ClientOptions: kc.Opts(t)}, topic, codec.String(), codec.String(), kvstore.Name(name))
			if err != nil {
				t.Fatalf("Open over SASL_SSL: %v", err)
			}
			if err := s.WaitReady(ctx); err != nil {
				t.Fatal(err)
			}
			return s
		}
		w := open("writer")
		defer w.Close(context.Background())
		if err := w.Put(ctx, "pt", "Portugal"); err != nil {
			t.Fatalf("Put over SASL_SSL: %v", err)
		}
		r := open("reader")
		defer r.Close(context.Background())
		if v, ok := r.Get("pt"); !ok || v != "Portugal" {
			t.Errorf("second store Get(pt) = %q, %v; want Portugal", v, ok)
		}
		capture.AddMetrics(t, reg)
	})

	t.Run("wrong password", func(t *testing.T) {
		octx, ocancel := context.WithTimeout(ctx, time.Minute)
		defer ocancel()
		start := time.Now()
		s, err := kvstore.Open(octx, whippet.Connection{Brokers: kc.SecureBrokers, Logger: log, ClientOptions: kc.OptsAs(t, wrong)}, topic, codec.String(), codec.String())
		t.Logf("Open with a wrong password returned after %s: %v", time.Since(start), err)
		if err == nil {
			s.Close(context.Background())
			t.Fatal("Open with a wrong password succeeded")
		}
		if octx.Err() != nil {
			t.Fatalf("Open waited for its context instead of failing: %v", err)
		}
		if !errors.Is(err, kerr.SaslAuthenticationFailed) || !strings.Contains(err.Error(), "SCRAM-SHA-512") {
			t.Fatalf("Open error %v: want kerr.SaslAuthenticationFailed naming SCRAM-SHA-512", err)
		}
		capture.Add("Open error", err.Error())
	})

	users, err := kc.SASLUsers()
	if err != nil {
		t.Fatal(err)
	}
	secrets := append([]string{users[0].Password, wrong.Password}, securetest.KeyMaterial(t, kc.StateDir+"/security/broker.pem")...)
	capture.AssertNoSecret(t, 5, secrets...)
}

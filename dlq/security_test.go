package dlq_test

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
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.uber.org/goleak"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/internal/securetest"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit/localkafka"
)

// TestSecurity lists and replays dead-letter records through Apache Kafka's
// SASL_SSL listener (TLS + SCRAM-SHA-512), gets a prompt, clear error with a
// wrong password, and never logs the password or the broker's key.
func TestSecurity(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	kc := securetest.Start(t)
	capture := securetest.NewCapture()
	log := capture.Logger()
	wrong := kc.WrongUser()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const topic, dlqTopic = "orders", "orders-g-dlq"
	plain, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := kadm.NewClient(plain).CreateTopics(ctx, 1, 1, nil, topic, dlqTopic); err != nil {
		t.Fatal(err)
	}
	for i, v := range []string{"a", "b", "c"} {
		now := time.Now()
		info := retry.Info{Attempt: 1, OriginalTopic: topic, OriginalOffset: int64(i), OriginalTimestamp: now, Group: "g",
			FirstFailure: now, LastFailure: now, LastError: "boom", Reason: retry.ReasonExhausted}
		rec := &kgo.Record{Topic: dlqTopic, Key: []byte(v), Value: []byte(v), Headers: info.Headers(nil)}
		if err := plain.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	// TLS and SASL come from the Connection's fields.
	tc, err := kc.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	conn := func(u localkafka.User) whippet.Connection {
		return whippet.Connection{Brokers: kc.SecureBrokers, TLS: tc, Logger: log,
			SASL: scram.Auth{User: u.Name, Pass: u.Password}.AsSha512Mechanism()}
	}
	reg := prometheus.NewRegistry()

	t.Run("right password", func(t *testing.T) {
		right := conn(kc.User)
		right.Registerer = reg
		c, err := dlq.New(right)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		page, err := c.List(ctx, dlqTopic, dlq.Filter{})
		if err != nil {
			t.Fatalf("List over SASL_SSL: %v", err)
		}
		if len(page.Records) != 3 {
			t.Fatalf("listed %d records, want 3", len(page.Records))
		}
		res, err := c.Replay(ctx, dlqTopic, dlq.Filter{Key: []byte("b")})
		if err != nil {
			t.Fatalf("Replay over SASL_SSL: %v", err)
		}
		if len(res.Replayed) != 1 || len(res.Skipped) != 0 {
			t.Fatalf("replayed %d and skipped %v, want 1 and none", len(res.Replayed), res.Skipped)
		}
		// The replayed record is in the original topic.
		cons, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		defer cons.Close()
		pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
		defer pcancel()
		fs := cons.PollFetches(pctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		if recs := fs.Records(); len(recs) != 1 || string(recs[0].Value) != "b" {
			t.Errorf("original topic holds %d records after the replay, want the one with value b", len(recs))
		}
		capture.AddMetrics(t, reg) // before Close unregisters them
	})

	t.Run("wrong password", func(t *testing.T) {
		c, err := dlq.New(conn(wrong))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(ctx)
		lctx, lcancel := context.WithTimeout(ctx, time.Minute)
		defer lcancel()
		start := time.Now()
		_, err = c.List(lctx, dlqTopic, dlq.Filter{})
		t.Logf("List with a wrong password returned after %s: %v", time.Since(start), err)
		if lctx.Err() != nil {
			t.Fatalf("List waited for its context instead of failing: %v", err)
		}
		if !errors.Is(err, kerr.SaslAuthenticationFailed) || !strings.Contains(err.Error(), "SCRAM-SHA-512") {
			t.Fatalf("List error %v: want kerr.SaslAuthenticationFailed naming SCRAM-SHA-512", err)
		}
		capture.Add("List error", err.Error())
	})

	users, err := kc.SASLUsers()
	if err != nil {
		t.Fatal(err)
	}
	secrets := append([]string{users[0].Password, wrong.Password}, securetest.KeyMaterial(t, kc.StateDir+"/security/broker.pem")...)
	capture.AssertNoSecret(t, 3, secrets...)
}

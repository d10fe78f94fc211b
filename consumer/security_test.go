package consumer_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/internal/securetest"
	"github.com/whippet-go/whippet/retry"
)

// TestSecurity runs the consumer against Apache Kafka's SASL_SSL listener
// (TLS + SCRAM-SHA-512): with the right password it consumes and forwards a
// failed record to the dead-letter topic; with a wrong one Run returns the
// authentication error at once (explicit topics and TopicRegex); and the
// password and the broker's key never show up in logs, errors or metrics.
func TestSecurity(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	kc := securetest.Start(t)
	capture := securetest.NewCapture()
	log := capture.Logger()
	wrong := kc.WrongUser()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const topic, group, n = "secure-in", "secure-group", 10
	plain, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := kadm.NewClient(plain).CreateTopic(ctx, 2, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := plain.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(strconv.Itoa(i)), Value: []byte("v" + strconv.Itoa(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("right password", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		var (
			mu   sync.Mutex
			seen = map[string]bool{}
		)
		all := make(chan struct{})
		h := consumer.HandlerFunc(func(_ context.Context, r *kgo.Record) error {
			mu.Lock()
			defer mu.Unlock()
			seen[string(r.Value)] = true
			if len(seen) == n {
				close(all)
			}
			if string(r.Value) == "v3" {
				return errors.New("v3 goes to the dead-letter topic")
			}
			return nil
		})
		c, err := consumer.New(whippet.Connection{Brokers: kc.SecureBrokers, Logger: log, Registerer: reg, ClientOptions: kc.Opts(t)}, h,
			consumer.Group(group), consumer.Topics(topic))
		if err != nil {
			t.Fatal(err)
		}
		runErr := make(chan error, 1)
		rctx, rcancel := context.WithCancel(ctx)
		go func() { runErr <- c.Run(rctx) }()
		select {
		case <-all:
		case err := <-runErr:
			t.Fatalf("Run over SASL_SSL returned early: %v", err)
		case <-ctx.Done():
			t.Fatalf("consumed %d of %d records", len(seen), n)
		}
		// The failed record is forwarded through the secure listener too.
		dlq, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...), kgo.ConsumeTopics(retry.DLQTopicName(topic, group)),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		defer dlq.Close()
		fs := dlq.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		if recs := fs.Records(); len(recs) != 1 || string(recs[0].Value) != "v3" {
			t.Errorf("dead-letter topic holds %d records (first %q), want just v3", len(recs), firstValue(recs))
		}
		capture.AddMetrics(t, reg)
		rcancel()
		if err := <-runErr; err != nil {
			t.Fatalf("Run: %v", err)
		}
	})

	for _, mode := range []struct {
		name string
		opt  consumer.Option
	}{
		{"wrong password, Topics", consumer.Topics(topic)},
		{"wrong password, TopicRegex", consumer.TopicRegex("secure-.*")},
	} {
		t.Run(mode.name, func(t *testing.T) {
			h := consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil })
			c, err := consumer.New(whippet.Connection{Brokers: kc.SecureBrokers, Logger: log, ClientOptions: kc.OptsAs(t, wrong)}, h,
				consumer.Group(group+"-wrong"), mode.opt)
			if err != nil {
				t.Fatal(err)
			}
			// Run must return on its own, long before this deadline.
			rctx, rcancel := context.WithTimeout(ctx, time.Minute)
			defer rcancel()
			start := time.Now()
			err = c.Run(rctx)
			t.Logf("Run with a wrong password returned after %s: %v", time.Since(start), err)
			if rctx.Err() != nil {
				t.Fatalf("Run waited for its context instead of failing: %v", err)
			}
			if !errors.Is(err, kerr.SaslAuthenticationFailed) {
				t.Fatalf("Run error %v does not match kerr.SaslAuthenticationFailed", err)
			}
			if !strings.Contains(err.Error(), "SCRAM-SHA-512") {
				t.Errorf("error %q does not name the mechanism", err)
			}
			capture.Add("Run error", err.Error())
		})
	}

	users, err := kc.SASLUsers()
	if err != nil {
		t.Fatal(err)
	}
	secrets := append([]string{users[0].Password, wrong.Password}, securetest.KeyMaterial(t, kc.StateDir+"/security/broker.pem")...)
	capture.AssertNoSecret(t, 30, secrets...)
}

func firstValue(recs []*kgo.Record) string {
	if len(recs) == 0 {
		return ""
	}
	return string(recs[0].Value)
}

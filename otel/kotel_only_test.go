package whotel_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

// With only kotel's hooks on the clients (none of whotel's), the consumer's
// own produces continue the trace of the handler call they come from: the
// forward to the retry topic is published as the child of the failed
// attempt's process span, the dead letter as the child of the retry's, and
// an Emit output as the child of the process span that emitted it. The
// consumer gives each the context of its handler call.
func TestConsumerProducesInTheHandlersTrace(t *testing.T) {
	for _, transactional := range []bool{false, true} {
		name := "at-least-once"
		if transactional {
			name = "transactional"
		}
		t.Run(name, func(t *testing.T) {
			r := newRig(t)
			prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
			kt := kotel.NewTracer(kotel.TracerProvider(r.tp), kotel.TracerPropagator(prop), kotel.LinkSpans())
			r.conn = whippet.Connection{Brokers: r.kc.Brokers, ClientOptions: []kgo.Opt{kgo.WithHooks(kt)}}

			topic := r.kc.NewTopic(t, 1, nil)
			out := r.kc.NewTopic(t, 1, nil)
			group := topic
			retryTopic, dlqTopic := retry.TopicName(topic, group, 0), retry.DLQTopicName(topic, group)
			opts := []consumer.Option{consumer.Retry(retry.NonBlocking(100 * time.Millisecond))}
			if transactional {
				opts = append(opts, consumer.Transactional(topic+"-txn"))
			}
			r.consume(t, topic, func(ctx context.Context, rec *kgo.Record) error {
				if rec.Topic == topic && rec.Offset == 0 {
					return consumer.Emit(ctx, &kgo.Record{Topic: out, Value: []byte("renewed")})
				}
				return errors.New("billing is down")
			}, opts...)
			r.produce(t, topic) // offset 0: handled, emits
			r.produce(t, topic) // offset 1: fails, retried, dead-lettered

			// A transaction may abort and its records be handled again:
			// every publish span counts, each must have its parent among
			// the process spans it comes from.
			testkit.Eventually(t, 60*time.Second, func() error {
				got := map[string]tracetest.SpanStubs{}
				for _, s := range r.exp.GetSpans() {
					got[s.Name] = append(got[s.Name], s)
				}
				if len(got[dlqTopic+" publish"]) == 0 || len(got[out+" publish"]) == 0 {
					return fmt.Errorf("no dead letter or output published yet (spans: %v)", names(r.exp.GetSpans()))
				}
				return nil
			})
			got := map[string]tracetest.SpanStubs{}
			for _, s := range r.exp.GetSpans() {
				got[s.Name] = append(got[s.Name], s)
			}
			var emitted, failed tracetest.SpanStubs
			for _, s := range got[topic+" process"] {
				if s.Status.Code == codes.Error {
					failed = append(failed, s)
				} else {
					emitted = append(emitted, s)
				}
			}
			wantChildOfOne(t, got[out+" publish"], emitted)
			wantChildOfOne(t, got[retryTopic+" publish"], failed)
			wantChildOfOne(t, got[dlqTopic+" publish"], got[retryTopic+" process"])
		})
	}
}

// wantChildOfOne fails unless each of children (at least one) is the child
// of one of parents.
func wantChildOfOne(t *testing.T, children, parents tracetest.SpanStubs) {
	t.Helper()
	if len(children) == 0 {
		t.Fatal("no spans to check")
	}
	for _, c := range children {
		found := false
		for _, p := range parents {
			found = found || c.Parent.IsValid() && c.Parent.SpanID() == p.SpanContext.SpanID() && c.SpanContext.TraceID() == p.SpanContext.TraceID()
		}
		if !found {
			t.Errorf("span %q: parent %s/%s, want one of %d %q spans", c.Name, c.Parent.TraceID(), c.Parent.SpanID(), len(parents), names(parents))
		}
	}
}

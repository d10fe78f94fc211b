package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/retry"
	"github.com/whippet-go/whippet/testkit"
)

type (
	attemptKey struct{} // set by the test's middleware: the attempt of the handler call
	emitKey    struct{} // set by the handler on the ctx it emits with
)

// producedCtx is what the consumer's producing clients saw of each record's
// Context when it was buffered.
type producedCtx struct {
	mu   sync.Mutex
	seen map[string][]string // topic -> descriptions
}

func (p *producedCtx) OnProduceRecordBuffered(r *kgo.Record) {
	ctx := r.Context
	emitErr := consumer.Emit(ctx, &kgo.Record{Topic: "x"}) // the handler call is over
	d := fmt.Sprintf("attempt=%v emit=%v err=%v done=%v emitting=%v",
		ctx.Value(attemptKey{}), ctx.Value(emitKey{}), ctx.Err(), ctx.Done() != nil, !errors.Is(emitErr, consumer.ErrNotInHandler))
	p.mu.Lock()
	p.seen[r.Topic] = append(p.seen[r.Topic], d)
	p.mu.Unlock()
}

func (p *producedCtx) get(topic string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen[topic]...)
}

// The records the consumer produces itself carry, in their Context, the
// values of the handler call they come from: a forward those of the failed
// attempt (as the middlewares passed them down), an Emit output those of
// the ctx given to Emit. Their cancellation is the consumer's: an output
// emitted with a ctx that the handler cancels is produced all the same. The
// Context is not a handler's: Emit with it fails.
func TestProducedRecordsCarryTheHandlerCallsContext(t *testing.T) {
	kc := testkit.Shared(t)
	for _, transactional := range []bool{false, true} {
		name := "at-least-once"
		if transactional {
			name = "transactional"
		}
		t.Run(name, func(t *testing.T) {
			topic, out := kc.NewTopic(t, 1, nil), kc.NewTopic(t, 1, nil)
			group := topic
			retryTopic, dlqTopic := retry.TopicName(topic, group, 0), retry.DLQTopicName(topic, group)
			seen := &producedCtx{seen: map[string][]string{}}
			mw := func(next consumer.Handler) consumer.Handler {
				return consumer.HandlerFunc(func(ctx context.Context, rec *kgo.Record) error {
					info, _ := retry.InfoFrom(ctx)
					return next.Handle(context.WithValue(ctx, attemptKey{}, info.Attempt), rec)
				})
			}
			h := consumer.HandlerFunc(func(ctx context.Context, rec *kgo.Record) error {
				if rec.Topic == topic && rec.Offset == 0 {
					ctx, cancel := context.WithCancel(context.WithValue(ctx, emitKey{}, "output"))
					defer cancel()
					return consumer.Emit(ctx, &kgo.Record{Topic: out, Value: []byte("renewed")})
				}
				return errors.New("billing is down")
			})
			opts := []consumer.Option{consumer.Topics(topic), consumer.WithMiddleware(mw),
				consumer.Retry(retry.NonBlocking(100 * time.Millisecond))}
			if transactional {
				opts = append(opts, consumer.Transactional(topic+"-txn"))
			}
			conn := whippet.Connection{Brokers: kc.Brokers, ClientOptions: []kgo.Opt{kgo.WithHooks(seen)}}
			run(t, newConsumerConn(t, conn, h, group, opts...))
			kc.Produce(t, &kgo.Record{Topic: topic, Value: []byte("a")}, &kgo.Record{Topic: topic, Value: []byte("b")})

			want := map[string]string{
				out:        "attempt=1 emit=output err=<nil> done=true emitting=false",
				retryTopic: "attempt=1 emit=<nil> err=<nil> done=true emitting=false",
				dlqTopic:   "attempt=2 emit=<nil> err=<nil> done=true emitting=false",
			}
			if transactional { // produced in the transaction, which no partition's revocation cancels
				for k, v := range want {
					want[k] = v[:len(v)-len("done=true emitting=false")] + "done=false emitting=false"
				}
			}
			testkit.Eventually(t, 60*time.Second, func() error {
				if len(seen.get(dlqTopic)) == 0 {
					return errors.New("no dead letter yet")
				}
				return nil
			})
			for topic, w := range want {
				got := seen.get(topic)
				if len(got) == 0 {
					t.Errorf("%s: nothing produced", topic)
				}
				for _, g := range got { // a transaction may abort and produce again
					if g != w {
						t.Errorf("%s: produced with a Context %s, want %s", topic, g, w)
					}
				}
			}
		})
	}
}

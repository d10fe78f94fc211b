// Command tracing prints the OpenTelemetry spans of one record's whole
// journey through whippet: produced in a request's span, failed, retried
// through a retry topic, failed again, dead-lettered, replayed by an
// operator with dlq.Replay, and handled. Each consumer hop is a trace of
// its own, linked to the publish span of the record it handled; each
// forward is the child of the attempt that failed; the replay is the child
// of the dead letter.
//
// It runs on an embedded kfake cluster by default (make demo), or on real
// brokers with -brokers 127.0.0.1:19092 (on new topics named after the time).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/dlq"
	whotel "github.com/whippet-go/whippet/otel"
	"github.com/whippet-go/whippet/producer"
	"github.com/whippet-go/whippet/retry"
)

const group = "renewal-service"

func main() {
	brokers := flag.String("brokers", "", "comma-separated Kafka brokers; empty starts an embedded kfake cluster")
	flag.Parse()
	if err := run(*brokers); err != nil {
		log.Printf("FAILED: %v", err)
		os.Exit(1)
	}
}

func run(brokersFlag string) error {
	ctx := context.Background()
	topic := "renewals"
	var brokers []string
	if brokersFlag == "" {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
		if err != nil {
			return fmt.Errorf("starting the embedded kfake cluster: %w", err)
		}
		defer c.Close()
		brokers = c.ListenAddrs()
	} else {
		brokers = strings.Split(brokersFlag, ",")
		topic = fmt.Sprintf("renewals-traced-%d", time.Now().Unix())
		if err := createTopic(ctx, brokers, topic); err != nil {
			return err
		}
	}

	// A service exports spans to its collector; this demo keeps them in memory.
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(ctx)

	// One Tracing: its client options on the Connection every component
	// uses, its middleware on each consumer.
	tr := whotel.New(whotel.TracerProvider(tp))
	kafka := whippet.Connection{Brokers: brokers, ClientOptions: tr.ClientOptions()}

	handled := make(chan struct{})
	c, err := consumer.New(kafka, consumer.HandlerFunc(func(ctx context.Context, rec *kgo.Record) error {
		if _, replayed := dlq.ReplayMarkOf(rec); !replayed {
			return errors.New("billing is down")
		}
		close(handled)
		return nil
	}),
		consumer.Group(group), consumer.Topics(topic),
		consumer.Retry(retry.NonBlocking(200*time.Millisecond)),
		consumer.WithMiddleware(tr.Middleware(group)),
	)
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	stopConsumer := sync.OnceValue(func() error { stop(); return <-done })
	defer stopConsumer()

	p, err := producer.New(kafka)
	if err != nil {
		return err
	}
	reqCtx, request := tp.Tracer("renewals-api").Start(ctx, "POST /renewals")
	_, err = p.Produce(reqCtx, &kgo.Record{Topic: topic, Key: []byte("alice"), Value: []byte("renew yearly")})
	request.End()
	if err := errors.Join(err, p.Close(ctx)); err != nil {
		return fmt.Errorf("producing the renewal: %w", err)
	}

	// Wait for the dead letter (its publish span ends when Kafka has it),
	// then replay it as an operator would.
	dlqTopic := retry.DLQTopicName(topic, group)
	if err := waitFor(func() bool { return ended(spans, dlqTopic+" publish") }); err != nil {
		return fmt.Errorf("waiting for the dead letter: %w", err)
	}
	dc, err := dlq.New(kafka)
	if err != nil {
		return err
	}
	res, err := dc.Replay(ctx, dlqTopic, dlq.Filter{})
	if err := errors.Join(err, dc.Close(ctx)); err != nil || len(res.Replayed) != 1 {
		return fmt.Errorf("replaying the dead letter: %+v: %w", res, err)
	}
	select {
	case <-handled:
	case <-time.After(30 * time.Second):
		return errors.New("the replayed renewal was not handled within 30s")
	}
	if err := stopConsumer(); err != nil {
		return err
	}
	printTraces(spans.GetSpans())
	return nil
}

func createTopic(ctx context.Context, brokers []string, topic string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, nil, topic); err != nil {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	return nil
}

func ended(spans *tracetest.InMemoryExporter, name string) bool {
	return slices.ContainsFunc(spans.GetSpans(), func(s tracetest.SpanStub) bool { return s.Name == name })
}

func waitFor(cond func() bool) error {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return nil
		}
	}
	return errors.New("timed out after 30s")
}

// printTraces shows each trace as a tree, in the order the traces started, with
// each span's links to spans of other traces.
func printTraces(all tracetest.SpanStubs) {
	slices.SortStableFunc(all, func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
	var kept tracetest.SpanStubs
	for _, s := range all {
		if !strings.HasSuffix(s.Name, " receive") { // kotel's, one per fetched record
			kept = append(kept, s)
		}
	}
	traceNo := map[trace.TraceID]int{}
	byID := map[trace.SpanID]tracetest.SpanStub{}
	children := map[trace.SpanID][]tracetest.SpanStub{}
	var roots []tracetest.SpanStub
	for _, s := range kept {
		if _, ok := traceNo[s.SpanContext.TraceID()]; !ok {
			traceNo[s.SpanContext.TraceID()] = len(traceNo) + 1
		}
		byID[s.SpanContext.SpanID()] = s
	}
	for _, s := range kept {
		if _, ok := byID[s.Parent.SpanID()]; s.Parent.IsValid() && ok {
			children[s.Parent.SpanID()] = append(children[s.Parent.SpanID()], s)
		} else {
			roots = append(roots, s)
		}
	}
	var show func(s tracetest.SpanStub, depth int)
	show = func(s tracetest.SpanStub, depth int) {
		line := strings.Repeat("  ", depth+1) + s.Name
		for _, a := range s.Attributes {
			switch a.Key {
			case whotel.AttrAttempt, whotel.AttrRetryStage, whotel.AttrDLQReason, whotel.AttrReplayedFrom:
				line += fmt.Sprintf("  %s=%s", strings.TrimPrefix(string(a.Key), "whippet."), a.Value.String())
			case attribute.Key("messaging.kafka.offset"), attribute.Key("messaging.kafka.message.offset"): // ours, kotel's
				line += "  offset=" + a.Value.String()
			}
		}
		if s.Status.Code == codes.Error {
			line += "  ERROR " + s.Status.Description
		}
		for _, l := range s.Links {
			if to, ok := byID[l.SpanContext.SpanID()]; ok {
				line += fmt.Sprintf("  -> linked to %q (trace %d)", to.Name, traceNo[to.SpanContext.TraceID()])
			}
		}
		fmt.Println(line)
		for _, c := range children[s.SpanContext.SpanID()] {
			show(c, depth+1)
		}
	}
	for _, r := range roots {
		fmt.Printf("trace %d\n", traceNo[r.SpanContext.TraceID()])
		show(r, 0)
	}
	fmt.Println("(kotel's receive spans, one per fetched record, are left out)")
}

package whotel_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	whotel "github.com/whippet-go/whippet/otel"
	"github.com/whippet-go/whippet/producer"
	"github.com/whippet-go/whippet/retry"
)

// A renewal fails once, goes through the retry topic and is handled: the
// failed attempt, the forward and the second attempt are connected.
func Example() {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "renewals"))
	if err != nil {
		panic(err)
	}
	defer cluster.Close()
	ctx := context.Background()

	// A service sets its own provider and exporter; this one keeps spans in memory.
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(ctx)

	tr := whotel.New(whotel.TracerProvider(tp))
	kafka := whippet.Connection{Brokers: cluster.ListenAddrs(), ClientOptions: tr.ClientOptions()}

	p, err := producer.New(kafka)
	if err != nil {
		panic(err)
	}
	if _, err := p.Produce(ctx, &kgo.Record{Topic: "renewals", Key: []byte("alice"), Value: []byte("renew")}); err != nil {
		panic(err)
	}
	p.Close(ctx)

	handled := make(chan struct{})
	c, err := consumer.New(kafka, consumer.HandlerFunc(func(ctx context.Context, rec *kgo.Record) error {
		if info, _ := retry.InfoFrom(ctx); info.Attempt == 1 {
			return errors.New("billing is down")
		}
		close(handled)
		return nil
	}),
		consumer.Group("renewal-service"), consumer.Topics("renewals"),
		consumer.Retry(retry.NonBlocking(100*time.Millisecond)),
		consumer.WithMiddleware(tr.Middleware("renewal-service")),
	)
	if err != nil {
		panic(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- c.Run(runCtx) }()
	<-handled
	stop()
	if err := <-done; err != nil {
		panic(err)
	}

	all := spans.GetSpans()
	name := map[string]string{} // span id -> name
	for _, s := range all {
		name[s.SpanContext.SpanID().String()] = s.Name
	}
	for _, s := range all {
		if strings.HasSuffix(s.Name, " receive") {
			continue // kotel's, one per fetched record
		}
		line := s.Name + ": new trace"
		if s.Parent.IsValid() {
			line = s.Name + ": child of " + name[s.Parent.SpanID().String()]
		}
		for _, l := range s.Links {
			line += ", linked to " + name[l.SpanContext.SpanID().String()]
		}
		for _, a := range s.Attributes {
			if a.Key == whotel.AttrAttempt || a.Key == whotel.AttrRetryStage {
				line += fmt.Sprintf(", %s=%s", a.Key, a.Value.String())
			}
		}
		if s.Status.Code == codes.Error {
			line += ", error: " + s.Status.Description
		}
		fmt.Println(line)
	}
	// Output:
	// renewals publish: new trace
	// renewals process: new trace, linked to renewals publish, whippet.attempt=1, error: billing is down
	// renewals-renewal-service-retry-0 publish: child of renewals process, linked to renewals publish, whippet.attempt=2, whippet.retry.stage=0
	// renewals-renewal-service-retry-0 process: new trace, linked to renewals-renewal-service-retry-0 publish, whippet.attempt=2, whippet.retry.stage=0
}

// Command imports is the fourth part of the product story, "event
// aggregation": a contacts import (a CSV file) is split into jobs that
// several importer instances handle concurrently. Each importer reports its
// finished jobs to an aggregator (an atomic store: one command topic, one
// compacted store topic, a transactional processor), at least once: one
// importer reports some jobs twice, as a worker that crashed after its work
// and before its commit would. When the last job is reported, the
// aggregator's processor produces one "import completed" event, in the
// transaction that records the last job. A consumer of the completion topic
// (read_committed, aggregator.DecodeCompletion) handles it, and the program
// exits non-zero unless it handled exactly one event for this import.
//
// It runs on an embedded kfake cluster by default (make demo), or on real
// brokers with -brokers 127.0.0.1:9092.
package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/aggregator"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/examples/internal/demo"
)

const (
	jobsTopic  = "contact-import-jobs"
	aggName    = "contact-imports"
	importers  = 3
	contacts   = 1000
	perJob     = 40
	partitions = 3
)

// Job is one slice of an import's CSV rows.
type Job struct {
	Import string     `json:"import"`
	Job    int        `json:"job"`
	Rows   [][]string `json:"rows"`
}

func main() { demo.Main(run) }

func run(brokersFlag string) error {
	brokers, stopCluster, err := demo.Cluster(brokersFlag, partitions, jobsTopic)
	if err != nil {
		return err
	}
	defer stopCluster()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kafka := whippet.Connection{Brokers: brokers}
	opts := []atomicstore.Option{atomicstore.Partitions(partitions)}

	// The aggregator's processor (two instances would share the work).
	proc, err := aggregator.NewProcessor(kafka, aggName, append(opts, atomicstore.TransactionalID(aggName+"-processor-0"))...)
	if err != nil {
		return err
	}
	defer proc.Close(context.Background())
	var bg sync.WaitGroup
	procErr := make(chan error, 1)
	bg.Go(func() { procErr <- proc.Run(ctx) })

	// The CSV, split into jobs.
	importID := fmt.Sprintf("import-%d", time.Now().UnixNano())
	rows, err := csv.NewReader(strings.NewReader(contactsCSV())).ReadAll()
	if err != nil {
		return err
	}
	rows = rows[1:] // header
	jobs := (len(rows) + perJob - 1) / perJob
	fmt.Printf("import %s: %d contacts in %d jobs for %d importers\n", importID, len(rows), jobs, importers)

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	if resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, -1, nil, jobsTopic); err == nil && resp.Err != nil && !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
		return resp.Err
	}

	// The importer that starts the import tells the aggregator the total.
	agg, err := aggregator.Open(ctx, kafka, aggName, opts...)
	if err != nil {
		return err
	}
	defer agg.Close(context.Background())
	if _, err := agg.Start(ctx, importID, jobs); err != nil {
		return err
	}
	for j := range jobs {
		v, _ := json.Marshal(Job{Import: importID, Job: j, Rows: rows[j*perJob : min((j+1)*perJob, len(rows))]})
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: jobsTopic, Key: []byte(fmt.Sprint(j)), Value: v}).FirstErr(); err != nil {
			return err
		}
	}

	// Importer instances: each its own consumer and aggregator client.
	var imported atomic.Int64
	for i := range importers {
		a, err := aggregator.Open(ctx, kafka, aggName, opts...)
		if err != nil {
			return err
		}
		defer a.Close(context.Background())
		c, err := consumer.New(whippet.Connection{Brokers: brokers}, consumer.Typed(codec.Bytes(), codec.JSON[Job](), func(ctx context.Context, m consumer.Message[[]byte, Job]) error {
			job := m.Value
			if job.Import != importID {
				return nil // an earlier run's
			}
			imported.Add(int64(len(job.Rows))) // "import" the contacts
			time.Sleep(20 * time.Millisecond)
			reports := 1
			if i == 0 && job.Job%3 == 0 {
				reports = 2 // at least once: a duplicate report
			}
			for range reports {
				if err := a.Report(ctx, job.Import, job.Job); err != nil {
					return err
				}
			}
			return nil
		}), consumer.Group("contact-importers"), consumer.Topics(jobsTopic))
		if err != nil {
			return err
		}
		bg.Go(func() { _ = c.Run(ctx) })
	}

	// The service that acts on completed imports: a consumer of the
	// completion events, read_committed. Wait for the event; then make
	// sure no second one follows.
	completed := make(chan aggregator.Completion, 2)
	notifier, err := consumer.New(whippet.Connection{Brokers: brokers}, consumer.HandlerFunc(func(ctx context.Context, r *kgo.Record) error {
		c, err := aggregator.DecodeCompletion(r)
		if err != nil {
			return err
		}
		if c.Batch == importID { // not an earlier run's
			select {
			case completed <- c:
			case <-ctx.Done():
			}
		}
		return nil
	}), consumer.Group("contact-import-notifier"),
		consumer.Topics(aggregator.CompletedTopic(aggName)), consumer.ReadCommitted(true))
	if err != nil {
		return err
	}
	bg.Go(func() { _ = notifier.Run(ctx) })
	var events []aggregator.Completion
	timeout := time.After(60 * time.Second)
wait:
	for {
		select {
		case c := <-completed:
			events = append(events, c)
			fmt.Printf("event: import completed: %s, %d jobs\n", c.Batch, c.Total)
			if len(events) == 1 {
				timeout = time.After(2 * time.Second)
			}
		case <-timeout:
			break wait
		}
	}
	p, _ := agg.Progress(importID)
	fmt.Printf("progress: %d/%d jobs, completed=%v; %d contacts imported (duplicates of redelivered jobs included)\n",
		p.Done, p.Total, p.Completed, imported.Load())
	cancel()
	bg.Wait()
	if err := <-procErr; err != nil {
		return err
	}
	if len(events) != 1 {
		return fmt.Errorf("%d import completed events for %s, want exactly 1", len(events), importID)
	}
	fmt.Println("exactly one import completed event")
	return nil
}

// contactsCSV returns the import file.
func contactsCSV() string {
	var b strings.Builder
	b.WriteString("id,name,email\n")
	for i := range contacts {
		fmt.Fprintf(&b, "%d,Contact %d,contact%d@example.com\n", i, i, i)
	}
	return b.String()
}

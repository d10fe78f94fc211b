package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/aggregator"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/notify"
	"github.com/whippet-go/whippet/retry"
)

// Importer is one importer instance: a whippet consumer of the jobs topic
// (group "<Name>-importers", shared by every instance) that, for each job,
// publishes "job taken" to the import's channel, imports the contacts,
// publishes "job done" and reports the job to the aggregator. "job done" is
// published before the report, so it is in Kafka before the import can
// complete: a channel's notifications share a partition, and the page sees
// every "job done" before "import completed".
//
// Delivery is at least once: a job handled again (after a crash or a
// rebalance) publishes its notifications again, which the page shows once
// per job, and reports again, which the aggregator counts once.
type Importer struct {
	name string
	cfg  Config
	log  *zap.Logger
	pub  *notify.Publisher
	agg  *aggregator.Aggregator
	c    *consumer.Consumer
}

// NewImporter opens importer number i (its name in notifications is
// "importer-<i+1>").
func NewImporter(ctx context.Context, conn whippet.Connection, cfg Config, i int) (*Importer, error) {
	cfg = cfg.withDefaults()
	im := &Importer{name: fmt.Sprintf("importer-%d", i+1), cfg: cfg}
	im.log = logger(conn).Named(im.name)
	var err error
	if im.pub, err = notify.NewPublisher(conn, cfg.NotifyTopic()); err != nil {
		return nil, err
	}
	if im.agg, err = aggregator.Open(ctx, conn, cfg.Name, atomicstore.Partitions(cfg.Partitions)); err != nil {
		_ = im.pub.Close(ctx)
		return nil, err
	}
	im.c, err = consumer.New(conn, consumer.HandlerFunc(im.handle),
		consumer.Group(cfg.Name+"-importers"), consumer.Topics(cfg.JobsTopic()),
		// Kafka hiccups are retried in place; a job that is not JSON goes
		// to the dead-letter topic (retry.NonRetriable).
		consumer.Retry(retry.BlockingBackoff(retry.Exponential{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Retries: retry.Forever})))
	if err != nil {
		_ = im.agg.Close(ctx)
		_ = im.pub.Close(ctx)
		return nil, err
	}
	return im, nil
}

// Name is "importer-<n>".
func (im *Importer) Name() string { return im.name }

// Consumer is the importer's consumer (its Partitions tell its share).
func (im *Importer) Consumer() *consumer.Consumer { return im.c }

// Run consumes jobs until ctx ends or Close.
func (im *Importer) Run(ctx context.Context) error { return im.c.Run(ctx) }

// Close stops Run and releases the importer's clients.
func (im *Importer) Close(ctx context.Context) error {
	return errors.Join(im.c.Close(ctx), im.agg.Close(ctx), im.pub.Close(ctx))
}

func (im *Importer) handle(ctx context.Context, r *kgo.Record) error {
	var job Job
	if err := json.Unmarshal(r.Value, &job); err != nil {
		return retry.NonRetriable(fmt.Errorf("job %s: %w", r.Key, err))
	}
	if ValidChannel(job.Channel) != nil || job.Jobs < 1 {
		return retry.NonRetriable(fmt.Errorf("job %s: no valid channel or job count", r.Key))
	}
	n := Notification{Import: job.Import, Jobs: job.Jobs, Job: job.Job, Importer: im.name, Contacts: len(job.Contacts)}
	n.Kind = JobTaken
	if _, err := im.pub.PublishJSON(ctx, job.Channel, n); err != nil {
		return err
	}
	if im.cfg.Work != nil {
		if err := im.cfg.Work(ctx, im.name, job); err != nil {
			return err
		}
	} else {
		select {
		case <-time.After(im.cfg.JobDelay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, c := range job.Contacts {
		if _, err := mail.ParseAddress(c.Email); err != nil {
			n.Rejected++
		} else {
			n.Imported++
		}
	}
	n.Kind = JobDone
	if _, err := im.pub.PublishJSON(ctx, job.Channel, n); err != nil {
		return err
	}
	reports := 1
	if im.cfg.DuplicateReports && job.Job%3 == 0 {
		reports = 2 // as a worker that crashed after its report and before its commit would
	}
	for range reports {
		if err := im.agg.Report(ctx, job.Batch(), job.Job); err != nil {
			return err
		}
	}
	im.log.Debug("job done", zap.String("import", job.Import), zap.Int("job", job.Job))
	return nil
}

// Completions turns the aggregator's completion events into "import
// completed" notifications: a consumer of aggregator.CompletedTopic in
// transactional mode whose handler emits the notification record (key: the
// channel, value: the JSON Notification, as a notify.Publisher produces it)
// in the transaction that commits the completion's offset. The gateways read
// read_committed, so each import's "import completed" reaches its browser
// exactly once, across crashes and rebalances of this service.
type Completions struct {
	cfg Config
	c   *consumer.Consumer
}

// NewCompletions creates the completions service; transactionalID must be
// unique per running instance.
func NewCompletions(conn whippet.Connection, cfg Config, transactionalID string) (*Completions, error) {
	cfg = cfg.withDefaults()
	s := &Completions{cfg: cfg}
	c, err := consumer.New(conn, consumer.HandlerFunc(s.handle),
		consumer.Group(cfg.Name+"-completions"), consumer.Topics(aggregator.CompletedTopic(cfg.Name)),
		consumer.Transactional(transactionalID))
	if err != nil {
		return nil, err
	}
	s.c = c
	return s, nil
}

// Consumer is the service's consumer.
func (s *Completions) Consumer() *consumer.Consumer { return s.c }

// Run consumes completions until ctx ends or Close.
func (s *Completions) Run(ctx context.Context) error { return s.c.Run(ctx) }

// Close stops Run.
func (s *Completions) Close(ctx context.Context) error { return s.c.Close(ctx) }

func (s *Completions) handle(ctx context.Context, r *kgo.Record) error {
	c, err := aggregator.DecodeCompletion(r)
	if err != nil {
		return err // codec.ErrDecode: to the dead-letter topic
	}
	imp, ch, ok := ParseBatchID(c.Batch)
	if !ok {
		return nil // not an import's
	}
	v, err := json.Marshal(Notification{Kind: ImportCompleted, Import: imp, Jobs: c.Total})
	if err != nil {
		return err
	}
	return consumer.Emit(ctx, &kgo.Record{Topic: s.cfg.NotifyTopic(), Key: []byte(ch), Value: v})
}

// Package aggregator tells, exactly once, when a batch of tasks is done:
// many workers report finished tasks (at least once each, from any number of
// instances), and when the last task of a batch is reported one completion
// event is produced to "<name>-completed", in the Kafka transaction that
// records the last task.
//
// It is built on package atomicstore: each batch is one key whose value (a
// Progress: total, a bitmap of the tasks done, their count, a completed
// flag) is updated only by the atomic store's processor, one command at a
// time per key. So concurrent reports never race, a task reported twice
// counts once (its bit is already set), and the completion event, emitted
// by the update that completes the batch, is committed together with the
// new value and the command's offset: crashes and rebalances of the
// processor neither lose it nor produce it twice (for read_committed
// readers). Workers' crashes are harmless: they report again.
//
// Tasks are numbered 0 to total-1. Done may arrive before Start (the total
// is then not known yet and the batch cannot complete before Start).
//
// # Handling completions
//
// OnComplete calls a function for the completions a client sees while it
// runs: fine for a progress page, not for work that must happen once per
// batch. For that, consume CompletedTopic(name) with a whippet consumer in
// read_committed mode (consumer.ReadCommitted: records of transactions that
// aborted, such as a completion produced by a processor that crashed before
// committing, are never delivered) and decode each record with
// DecodeCompletion. Each completion is then delivered once, at least once
// across the consumer's crashes (its offsets commit after the handler):
// make the handler idempotent by Completion.Batch, or run the consumer in
// transactional mode when its effects are Kafka records. See the Example
// of DecodeCompletion.
//
// # Metrics
//
// A client (Open) with Connection.Registerer reports, labelled
// aggregator=<name>, from its replica of the store topic (read_committed:
// an aborted transaction counts nothing):
//
//	whippet_aggregator_batches_open             batches started or reported to, not completed (0 until the replica is loaded)
//	whippet_aggregator_batches_completed_total  batches this client saw complete after its replica was loaded
//
// Every client of one aggregator follows the same topic and reports the
// same figures: aggregate them with max, not sum. The atomic store's
// metrics (package atomicstore, store=<name>) come with them.
package aggregator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/kvstore"
)

// Operation names of the aggregator's update functions.
const (
	opStart = "aggregator.start"
	opDone  = "aggregator.done"
)

// ErrBadTask is wrapped by Done's error for a task number outside
// [0, total) (or [0, MaxTasks) before Start) and by Start's for a total
// outside [1, MaxTasks] or one that differs from the total the batch was
// started with.
var ErrBadTask = errors.New("aggregator: invalid task or total")

// MaxTasks bounds the tasks of one batch. A batch's progress keeps one bit
// per task in one record of the store topic: a million tasks make a
// 128 KiB bitmap (about 175 KB of JSON), well below Kafka's default
// max.message.bytes (1 MiB), and a task number cannot make the processor
// allocate more than that.
const MaxTasks = 1 << 20

// Progress is the state of one batch.
type Progress struct {
	// Total is the number of tasks; 0 until Start.
	Total int `json:"total"`
	// Done is how many distinct tasks were reported.
	Done int `json:"done"`
	// Completed is true once every task was reported; the completion
	// event was produced in the same transaction.
	Completed bool `json:"completed"`
	// Bits has bit i set when task i was reported.
	Bits []byte `json:"bits,omitempty"`
}

// Has reports whether task was reported.
func (p Progress) Has(task int) bool {
	return task >= 0 && task/8 < len(p.Bits) && p.Bits[task/8]&(1<<(task%8)) != 0
}

// Completion is the value of a completion event (JSON), keyed by batch id.
type Completion struct {
	// Batch is the batch id.
	Batch string `json:"batch"`
	// Total is the number of tasks of the batch.
	Total int `json:"total"`
}

// CompletedTopic returns the topic of the completion events of the
// aggregator named name: "<name>-completed". The processor creates it (with
// the store's Partitions and ReplicationFactor) and writes one record per
// completed batch, keyed by the batch id, its value a Completion (JSON), in
// the transaction that records the batch's last task. Read it
// read_committed (see the package documentation).
func CompletedTopic(name string) string { return name + "-completed" }

// DecodeCompletion decodes a record of CompletedTopic. A record that is not a
// completion (not the JSON of a Completion with a batch id and a total of at
// least 1, or keyed by another batch) gives an error matching
// codec.ErrDecode.
func DecodeCompletion(rec *kgo.Record) (Completion, error) {
	var c Completion
	if err := json.Unmarshal(rec.Value, &c); err != nil {
		return Completion{}, fmt.Errorf("%w: aggregator completion: %w", codec.ErrDecode, err)
	}
	if c.Batch == "" || c.Total < 1 || c.Total > MaxTasks || string(rec.Key) != c.Batch {
		return Completion{}, fmt.Errorf("%w: aggregator completion: batch %q (key %q), total %d: not a completion event", codec.ErrDecode, c.Batch, rec.Key, c.Total)
	}
	return c, nil
}

// Aggregator is the client side: workers report with Done, the job's
// owner calls Start, anyone reads Progress. It is safe for concurrent use.
type Aggregator struct {
	s       *atomicstore.Store[string, Progress]
	m       *metrics           // nil without a Registerer
	stopSub context.CancelFunc // ends the metrics' subscription
	subDone chan struct{}      // closed once the metrics' subscriber is set up (or given up)
}

// Open opens the aggregator named name (its atomic store is named name too),
// creating its topics if missing; see atomicstore.Open for conn and the
// options. With conn.Registerer it reports the aggregator's metrics
// (whippet_aggregator_batches_open and _batches_completed_total, labelled
// aggregator=<name>) besides the atomic store's; another client of this
// name on the same Registerer is a config error.
func Open(ctx context.Context, conn whippet.Connection, name string, opts ...atomicstore.Option) (*Aggregator, error) {
	s, err := atomicstore.Open(ctx, conn, name, codec.String(), codec.JSON[Progress](), opts...)
	if err != nil {
		return nil, err
	}
	a := &Aggregator{s: s, stopSub: func() {}, subDone: make(chan struct{})}
	if conn.Registerer == nil {
		close(a.subDone)
		return a, nil
	}
	if a.m, err = newMetrics(name, conn.Registerer); err != nil {
		_ = s.Close(ctx)
		return nil, err
	}
	var subCtx context.Context
	subCtx, a.stopSub = context.WithCancel(context.Background())
	go func() {
		defer close(a.subDone)
		// Subscribed once loaded: the contents then are Initial changes
		// (batches open), and only completions after it are counted.
		if s.WaitReady(subCtx) == nil {
			_ = s.Replica().Subscribe(subCtx, a.m.observe)
		}
	}()
	return a, nil
}

// Start sets the number of tasks of batch and returns its progress. Calling
// it again with the same total is harmless.
func (a *Aggregator) Start(ctx context.Context, batch string, total int) (Progress, error) {
	if total <= 0 || total > MaxTasks {
		return Progress{}, fmt.Errorf("%w: total %d, want 1 to %d", ErrBadTask, total, MaxTasks)
	}
	return a.s.Update(ctx, batch, atomicstore.Call(opStart, strconv.AppendInt(nil, int64(total), 10)))
}

// Done reports that task of batch is finished and returns the batch's
// progress after it. Reporting a task again changes nothing.
func (a *Aggregator) Done(ctx context.Context, batch string, task int) (Progress, error) {
	if task < 0 || task >= MaxTasks {
		return Progress{}, fmt.Errorf("%w: task %d, want 0 to %d", ErrBadTask, task, MaxTasks-1)
	}
	return a.s.Update(ctx, batch, atomicstore.Call(opDone, strconv.AppendInt(nil, int64(task), 10)))
}

// Report is Done without waiting for the result: it returns once Kafka
// acknowledged the report.
func (a *Aggregator) Report(ctx context.Context, batch string, task int) error {
	if task < 0 || task >= MaxTasks {
		return fmt.Errorf("%w: task %d, want 0 to %d", ErrBadTask, task, MaxTasks-1)
	}
	_, err := a.s.Send(ctx, batch, atomicstore.Call(opDone, strconv.AppendInt(nil, int64(task), 10)))
	return err
}

// Progress returns batch's progress in the local replica (no network I/O).
func (a *Aggregator) Progress(batch string) (Progress, bool) { return a.s.Get(batch) }

// WaitReady waits until the local replica loaded the store topic.
func (a *Aggregator) WaitReady(ctx context.Context) error { return a.s.WaitReady(ctx) }

// OnComplete calls fn, on a goroutine of its own, for every batch this
// client sees completing from now on (until ctx ends or Close). It follows
// the replica: a client down when a batch completes does not see it, so
// consume CompletedTopic (read_committed, see the package documentation)
// when every completion must be handled.
func (a *Aggregator) OnComplete(ctx context.Context, fn func(batch string, p Progress)) error {
	return a.s.Replica().Subscribe(ctx, func(c kvstore.Change[string, Progress]) {
		if c.New.Completed && !(c.Existed && c.Old.Completed) {
			fn(c.Key, c.New)
		}
	}, kvstore.SkipExisting())
}

// Close releases the client and its metrics; ctx bounds the wait (see
// atomicstore.Store.Close). It is safe to call more than once.
func (a *Aggregator) Close(ctx context.Context) error {
	a.stopSub()
	<-a.subDone
	err := a.s.Close(ctx)
	if a.m != nil {
		a.m.unregister()
	}
	return err
}

// Processor applies the reports and produces the completion events. Run one
// or more instances, each with its own atomicstore.TransactionalID.
type Processor struct {
	p *atomicstore.Processor[string, Progress]
}

// NewProcessor returns the processor of the aggregator named name; see
// atomicstore.NewProcessor for conn and the options (TransactionalID is
// required).
func NewProcessor(conn whippet.Connection, name string, opts ...atomicstore.Option) (*Processor, error) {
	events := CompletedTopic(name)
	p, err := atomicstore.NewProcessor(conn, name, codec.String(), codec.JSON[Progress](),
		append(slices.Clip(opts), atomicstore.OutputTopics(events))...)
	if err != nil {
		return nil, err
	}
	if err := p.Register(opStart, func(ctx context.Context, batch string, cur Progress, _ bool, arg []byte) (Progress, error) {
		cur, err := start(batch, cur, arg)
		if err != nil {
			return cur, err
		}
		return complete(ctx, events, batch, cur)
	}); err != nil {
		return nil, err
	}
	if err := p.Register(opDone, func(ctx context.Context, batch string, cur Progress, _ bool, arg []byte) (Progress, error) {
		cur, err := done(batch, cur, arg)
		if err != nil {
			return cur, err
		}
		return complete(ctx, events, batch, cur)
	}); err != nil {
		return nil, err
	}
	return &Processor{p: p}, nil
}

// start applies a Start command (arg: the total, decimal) to cur. The
// command's bytes come from the commands topic, so they are checked as
// untrusted input.
func start(batch string, cur Progress, arg []byte) (Progress, error) {
	total, err := strconv.Atoi(string(arg))
	if err != nil || total <= 0 || total > MaxTasks || (cur.Total != 0 && cur.Total != total) {
		return cur, fmt.Errorf("%w: total %q for batch %q (want 1 to %d; started with %d)", ErrBadTask, arg, batch, MaxTasks, cur.Total)
	}
	for i := total; i < 8*len(cur.Bits); i++ {
		if cur.Has(i) {
			return cur, fmt.Errorf("%w: total %d, but task %d was reported", ErrBadTask, total, i)
		}
	}
	cur.Total = total
	return cur, nil
}

// done applies a Done command (arg: the task, decimal) to cur.
func done(batch string, cur Progress, arg []byte) (Progress, error) {
	task, err := strconv.Atoi(string(arg))
	if err != nil || task < 0 || task >= MaxTasks || (cur.Total > 0 && task >= cur.Total) {
		return cur, fmt.Errorf("%w: task %q of batch %q (want 0 to %d; total %d)", ErrBadTask, arg, batch, MaxTasks-1, cur.Total)
	}
	if cur.Has(task) {
		return cur, nil // reported again: counts once
	}
	if task/8 >= len(cur.Bits) {
		cur.Bits = append(cur.Bits, make([]byte, task/8+1-len(cur.Bits))...)
	}
	cur.Bits[task/8] |= 1 << (task % 8)
	cur.Done++
	return cur, nil
}

// complete marks cur completed and emits the event when the last task is in.
func complete(ctx context.Context, events, batch string, cur Progress) (Progress, error) {
	if cur.Completed || cur.Total == 0 || cur.Done < cur.Total {
		return cur, nil
	}
	cur.Completed = true
	v, err := json.Marshal(Completion{Batch: batch, Total: cur.Total})
	if err != nil {
		return cur, err
	}
	return cur, atomicstore.Emit(ctx, &kgo.Record{Topic: events, Key: []byte(batch), Value: v})
}

// Run runs the processor until ctx is canceled or Close; see
// atomicstore.Processor.Run.
func (p *Processor) Run(ctx context.Context) error { return p.p.Run(ctx) }

// Close stops Run and releases the processor's metrics; see
// atomicstore.Processor.Close.
func (p *Processor) Close(ctx context.Context) error { return p.p.Close(ctx) }

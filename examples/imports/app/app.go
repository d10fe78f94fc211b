// Package app is the contacts import of examples/imports as services, so
// that the example program and the browser tests (internal/browsertest) run
// the same code: a jobs service (HTTP, which also serves the page), importer
// instances, the aggregator's processor, a completions service and
// notification gateways, all on one Kafka.
//
// The story: the page opens a WebSocket to a gateway with a channel id of
// its own, then uploads a CSV of contacts with that channel id to the jobs
// service, which splits it into jobs on Kafka and answers at once. Each
// importer instance takes jobs and publishes "job taken" and "job done"
// notifications for the channel (notify.Publisher) and reports each job to
// the aggregator; the aggregator's processor emits one completion event when
// the last job is in, which the completions service turns into one "import
// completed" notification. The gateway the page reached pushes each of them,
// whichever instance produced it; if that gateway goes away, the page
// reconnects to another with the id of the last notification it got and
// misses nothing.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/aggregator"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/notify"
)

// Config configures the services. The zero value of every field but
// Kafka is a working default.
type Config struct {
	// Kafka is where every service connects. Required.
	Kafka whippet.Connection
	// Name names every topic, group and transactional id of the story:
	// the topics "<Name>-jobs" and "<Name>-notifications", the aggregator
	// "<Name>" (its topics "<Name>-commands", "<Name>-store",
	// "<Name>-completed"), the groups "<Name>-importers" and
	// "<Name>-completions". Default: "contact-imports".
	Name string
	// Partitions of the topics created. Default: 3.
	Partitions int32
	// Importers is the number of importer instances. Default: 3.
	Importers int
	// Gateways is the number of gateway instances. Default: 2.
	Gateways int
	// PerJob is the number of contacts per job. Default: 40.
	PerJob int
	// JobDelay is how long an importer takes to import a job, so that a
	// person sees the progress. Default: 20ms.
	JobDelay time.Duration
	// Work, when set, replaces JobDelay: importer (its Name) calls it for
	// each job, between "job taken" and "job done". An error fails the
	// attempt (retried). Tests use it to hold jobs.
	Work func(ctx context.Context, importer string, job Job) error
	// DuplicateReports makes the importers report every third job twice, as
	// workers that crashed after the report and before their commit would:
	// the aggregator counts each job once.
	DuplicateReports bool
	// JobsAddr is the jobs service's listen address (it serves the page).
	// Default: "127.0.0.1:0".
	JobsAddr string
	// GatewayAddrs are the gateways' listen addresses, one per gateway.
	// Default: "127.0.0.1:0" each.
	GatewayAddrs []string
	// WrapGateway, when set, wraps the handler of gateway i (0-based) on
	// its server. Tests use it to hold connections.
	WrapGateway func(i int, h http.Handler) http.Handler
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = "contact-imports"
	}
	if c.Partitions <= 0 {
		c.Partitions = 3
	}
	if c.Importers <= 0 {
		c.Importers = 3
	}
	if c.Gateways <= 0 {
		c.Gateways = 2
	}
	if c.PerJob <= 0 {
		c.PerJob = 40
	}
	if c.JobDelay <= 0 {
		c.JobDelay = 20 * time.Millisecond
	}
	if c.JobsAddr == "" {
		c.JobsAddr = "127.0.0.1:0"
	}
	return c
}

// JobsTopic is "<Name>-jobs".
func (c Config) JobsTopic() string { return c.withDefaults().Name + "-jobs" }

// NotifyTopic is "<Name>-notifications".
func (c Config) NotifyTopic() string { return c.withDefaults().Name + "-notifications" }

// GatewayPath is where a gateway's server serves its notify.Gateway.
const GatewayPath = "/notify"

// System is every service of the story running in one process, each on
// clients of its own, as separate processes would be.
type System struct {
	cfg         Config
	Jobs        *Jobs
	Importers   []*Importer
	Completions *Completions
	Processor   *aggregator.Processor
	Gateways    []*notify.Gateway

	jobsURL  string
	gwURLs   []string
	jobsSrv  *http.Server
	gwSrvs   []*http.Server
	stopped  []bool
	mu       sync.Mutex
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	errMu    sync.Mutex
	runErrs  []error
	closeOne sync.Once
	closeErr error
}

// Start creates the topics that are missing, starts every service and
// waits (bounded by ctx) until they are ready: the gateways read their
// topic, every importer holds a share of the jobs topic's partitions, and
// the completions service holds its partitions. Close stops it all.
func Start(ctx context.Context, cfg Config) (s *System, err error) {
	cfg = cfg.withDefaults()
	if len(cfg.GatewayAddrs) == 0 {
		for range cfg.Gateways {
			cfg.GatewayAddrs = append(cfg.GatewayAddrs, "127.0.0.1:0")
		}
	}
	if len(cfg.GatewayAddrs) != cfg.Gateways {
		return nil, fmt.Errorf("imports: %d GatewayAddrs for %d gateways", len(cfg.GatewayAddrs), cfg.Gateways)
	}
	conn := cfg.Kafka
	if err := createTopics(ctx, conn, cfg.Partitions, cfg.JobsTopic(), cfg.NotifyTopic()); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s = &System{cfg: cfg, cancel: cancel}
	defer func() {
		if err != nil {
			_ = s.Close(context.Background())
		}
	}()

	// Listeners first: the page is told the gateways' ports, and the
	// gateways accept the page's origin (the jobs service's port).
	jl, err := net.Listen("tcp", cfg.JobsAddr)
	if err != nil {
		return s, fmt.Errorf("imports: jobs service: %w", err)
	}
	s.jobsURL = "http://" + jl.Addr().String()
	var gls []net.Listener
	var ports []string
	for _, a := range cfg.GatewayAddrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			_ = jl.Close()
			for _, l := range gls {
				_ = l.Close()
			}
			return s, fmt.Errorf("imports: gateway: %w", err)
		}
		gls = append(gls, l)
		_, port, _ := net.SplitHostPort(l.Addr().String())
		ports = append(ports, port)
		s.gwURLs = append(s.gwURLs, "ws://"+l.Addr().String()+GatewayPath)
	}
	_, jobsPort, _ := net.SplitHostPort(jl.Addr().String())

	// The gateways: any host, the jobs service's port (a page served by
	// it under whatever name the person typed).
	for i, l := range gls {
		g, err := notify.NewGateway(conn, cfg.NotifyTopic(),
			notify.Authorize(func(_ *http.Request, ch string) error { return ValidChannel(ch) }),
			notify.OriginPatterns("*:"+jobsPort))
		if err != nil {
			_ = jl.Close()
			for _, l := range gls[i:] {
				_ = l.Close()
			}
			return s, err
		}
		s.Gateways = append(s.Gateways, g)
		var h http.Handler = g
		if cfg.WrapGateway != nil {
			h = cfg.WrapGateway(i, h)
		}
		mux := http.NewServeMux()
		mux.Handle(GatewayPath, h)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		s.gwSrvs = append(s.gwSrvs, srv)
		s.stopped = append(s.stopped, false)
		go func() { _ = srv.Serve(l) }()
	}

	proc, err := aggregator.NewProcessor(conn, cfg.Name, atomicstore.Partitions(cfg.Partitions), atomicstore.TransactionalID(cfg.Name+"-processor-0"))
	if err != nil {
		_ = jl.Close()
		return s, err
	}
	s.Processor = proc
	s.run(runCtx, "aggregator processor", proc.Run)
	if s.Completions, err = NewCompletions(conn, cfg, cfg.Name+"-completions-0"); err != nil {
		_ = jl.Close()
		return s, err
	}
	s.run(runCtx, "completions", s.Completions.Run)
	for i := range cfg.Importers {
		im, err := NewImporter(ctx, conn, cfg, i)
		if err != nil {
			_ = jl.Close()
			return s, err
		}
		s.Importers = append(s.Importers, im)
		s.run(runCtx, im.Name(), im.Run)
	}
	if s.Jobs, err = NewJobs(ctx, conn, cfg, ports); err != nil {
		_ = jl.Close()
		return s, err
	}
	s.jobsSrv = &http.Server{Handler: s.Jobs, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.jobsSrv.Serve(jl) }()
	return s, s.waitReady(ctx)
}

func (s *System) run(ctx context.Context, name string, f func(context.Context) error) {
	s.wg.Go(func() {
		if err := f(ctx); err != nil {
			s.errMu.Lock()
			s.runErrs = append(s.runErrs, fmt.Errorf("%s: %w", name, err))
			s.errMu.Unlock()
		}
	})
}

// waitReady waits for the gateways and for the consumers' assignments.
func (s *System) waitReady(ctx context.Context) error {
	for i, g := range s.Gateways {
		select {
		case <-g.Ready():
		case <-ctx.Done():
			return fmt.Errorf("imports: gateway %d not ready: %w", i+1, ctx.Err())
		}
	}
	for {
		total, idle := 0, ""
		for _, im := range s.Importers {
			n := len(im.Consumer().Partitions())
			if n == 0 && idle == "" {
				idle = im.Name()
			}
			total += n
		}
		if idle == "" && total == int(s.cfg.Partitions) && len(s.Completions.Consumer().Partitions()) > 0 {
			return nil
		}
		if err := s.runErr(); err != nil {
			return err
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("imports: the consumers hold no stable share of their partitions yet (%s has none): %w", idle, ctx.Err())
		}
	}
}

func (s *System) runErr() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return errors.Join(s.runErrs...)
}

// Config is the configuration the services run with, defaults applied.
func (s *System) Config() Config { return s.cfg }

// JobsURL is the jobs service's base URL ("http://host:port"), where the
// page is.
func (s *System) JobsURL() string { return s.jobsURL }

// GatewayURL is the WebSocket URL of gateway i (0-based), without query.
func (s *System) GatewayURL(i int) string { return s.gwURLs[i] }

// StopGateway closes gateway i (0-based), as an instance that is shut down:
// its sockets are closed with 1001 (going away), and its server stops.
func (s *System) StopGateway(ctx context.Context, i int) error {
	s.mu.Lock()
	if s.stopped[i] {
		s.mu.Unlock()
		return nil
	}
	s.stopped[i] = true
	s.mu.Unlock()
	err := s.Gateways[i].Close(ctx)
	return errors.Join(err, s.gwSrvs[i].Close())
}

// Close stops every service and returns the first errors of their Run.
func (s *System) Close(ctx context.Context) error {
	s.closeOne.Do(func() {
		var errs []error
		if s.jobsSrv != nil {
			errs = append(errs, s.jobsSrv.Shutdown(ctx))
		}
		for i := range s.Gateways {
			errs = append(errs, s.StopGateway(ctx, i))
		}
		s.cancel()
		s.wg.Wait()
		if s.Jobs != nil {
			errs = append(errs, s.Jobs.Close(ctx))
		}
		for _, im := range s.Importers {
			errs = append(errs, im.Close(ctx))
		}
		if s.Completions != nil {
			errs = append(errs, s.Completions.Close(ctx))
		}
		if s.Processor != nil {
			errs = append(errs, s.Processor.Close(ctx))
		}
		errs = append(errs, s.runErr())
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// createTopics creates the topics that are missing.
func createTopics(ctx context.Context, conn whippet.Connection, partitions int32, topics ...string) error {
	opts := append([]kgo.Opt{kgo.SeedBrokers(conn.Brokers...)}, conn.ClientOptions...)
	if conn.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(conn.TLS))
	}
	if conn.SASL != nil {
		opts = append(opts, kgo.SASL(conn.SASL))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("imports: %w", err)
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopics(ctx, partitions, -1, nil, topics...)
	if err != nil {
		return fmt.Errorf("imports: create topics: %w", err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("imports: create topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

func logger(conn whippet.Connection) *zap.Logger {
	if conn.Logger != nil {
		return conn.Logger
	}
	return zap.NewNop()
}

package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/connect"
)

// Close codes a Gateway closes sockets with, besides the standard
// websocket.StatusGoingAway (1001, the gateway is shutting down: reconnect,
// to any instance, with last=<id>) and websocket.StatusTryAgainLater (1013,
// a resume could not read Kafka: reconnect later with last=<id>).
const (
	// CloseTooSlow (4001) closes a socket whose queue filled up: the
	// browser did not take notifications as fast as they came. The client
	// reconnects with last=<the last id it got> and resumes.
	CloseTooSlow websocket.StatusCode = 4001
	// CloseResumeUnavailable (4002) closes a reconnect whose last id is
	// further behind than the ResumeWindow, or no longer in Kafka
	// (retention): the client cannot get what it missed from the gateway
	// and must reload its state by other means, then connect without last.
	CloseResumeUnavailable websocket.StatusCode = 4002
)

// notReadyWait bounds how long a request waits for a starting gateway's
// first read of the topic before it gets 503.
const notReadyWait = 10 * time.Second

// Gateway is an http.Handler that upgrades browser requests to WebSocket
// connections and pushes each notification of its topic to the sockets of
// its channel. Create it with NewGateway and release it with Close.
type Gateway struct {
	topic string
	cfg   gatewayConfig
	log   *zap.Logger
	cl    *kgo.Client // the reader's
	rcl   *kgo.Client // resumes' Fetch requests
	adm   *kadm.Client
	radm  *kadm.Client // over rcl
	c     counters

	unregister []func()

	ctx     context.Context // ends with Close: stops the reader and resumes
	cancel  context.CancelFunc
	ready   chan struct{} // closed once positions and partitions are known
	runDone chan struct{}
	closing chan struct{} // closed by Close: sockets say goodbye

	// Set before ready is closed, read-only after.
	nparts  int32
	topicID [16]byte

	mu      sync.Mutex
	closed  bool
	pos     []int64 // per partition: offset of the last record routed (LSO-1 at start)
	lag     []int64
	chans   map[string]map[*socket]struct{} // live subscriptions
	sockets map[*socket]struct{}            // every open socket, for Close
	wg      sync.WaitGroup                  // ServeHTTP calls past admission

	leaderMu sync.Mutex
	leaders  map[int32]int32

	closeOnce sync.Once
	closeErr  error
}

type socket struct {
	ch     string
	part   int32
	ws     *websocket.Conn
	q      chan *frame
	kicked chan struct{} // closed (under Gateway.mu) when q overflowed
	last   int64         // writer's: offset of the last frame written or skipped
}

type frame struct {
	off int64
	b   []byte
}

// NewGateway validates conn, topic and opts and returns a Gateway over
// topic. It does no network I/O itself: a goroutine reads the partitions'
// last stable offsets and then follows the topic from there, retrying (and
// logging at Warn) while the topic or Kafka is unavailable; requests meanwhile
// wait for it, for up to 10s, then get 503.
//
// Each Gateway instance reads every partition of the topic itself, with its
// own position (a direct franz-go consumer, read_committed, no consumer
// group, nothing committed), and routes each notification to its own sockets
// of that channel; notifications with no local socket are skipped. So any
// instance serves any channel whichever instance's Publisher produced it, and
// instances behind a load balancer need no coordination. The cost: every
// instance reads the whole topic, so the scale limit is the topic's rate that
// one instance can read and route (adding instances adds sockets, not
// throughput). The alternatives, when the topic outgrows one instance:
// partition the topic by client and route each connection to the instance
// owning its partition (connections move on every rebalance), or put a
// redistributor tier in front that keeps a channel → instance map (a
// compacted topic or Redis). docs/design.md has the argument.
//
// A request is GET ?channel=<id>[&last=<id>]. Authorize (required) decides
// first: refused requests get HTTP 403, a bad channel or last gets 400. The
// socket then receives text frames, JSON objects with a "type":
//
//	{"type":"subscribed","channel":"c","id":"3-1041"}
//	{"type":"notification","channel":"c","id":"3-1042","data":{...}}
//
// "subscribed" comes first, with the position the stream starts after;
// every notification of the channel after it follows, in order, each once.
// The client keeps the id of the last frame it got and reconnects with
// last=<id> (to any instance): it gets what it missed, read from Kafka, if
// that is within ResumeWindow offsets, and CloseResumeUnavailable otherwise.
// "data" is the record value as published (JSON); a value that is not JSON
// (not produced by a Publisher) is sent as a JSON string.
//
// Each socket has a queue of QueueSize notifications; when it is full the
// socket is closed with CloseTooSlow and the rest are counted as dropped, so a
// slow browser never holds up the others (nor the reader). The browser
// reconnects with its last id and resumes.
//
// The partitions are read once, at start: partitions added to the topic
// later are not read until the gateway restarts (and adding partitions moves
// channels to other partitions, which breaks their order and resume ids).
//
// With conn.Registerer the gateway exports whippet_notify_gateway_*{topic}
// (connections, delivered_total, dropped_total, slow_closes_total,
// refused_total, resumes_total, resumes_unavailable_total, lag_records) and
// its client's whippet_kafka_*{component="notify_gateway",name=topic}: two
// gateways of one topic on one Registerer are refused. Logs go to
// conn.Logger.
func NewGateway(conn whippet.Connection, topic string, opts ...GatewayOption) (*Gateway, error) {
	cfg, err := newGatewayConfig(conn, topic, opts)
	if err != nil {
		return nil, err
	}
	kc := connect.New(conn, "notify_gateway", topic)
	cl, err := kgo.NewClient(kc.All(kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return nil, &ConfigError{Pkg: "notify", Sentinel: ErrInvalidConfig, Field: "Connection.ClientOptions", Rule: "franz-go rejected the client configuration", Err: err}
	}
	rcl, err := kgo.NewClient(kc.Plain()...)
	if err != nil {
		cl.Close()
		return nil, &ConfigError{Pkg: "notify", Sentinel: ErrInvalidConfig, Field: "Connection.ClientOptions", Rule: "franz-go rejected the client configuration", Err: err}
	}
	g := &Gateway{
		topic:   topic,
		cfg:     cfg,
		log:     connect.Logger(conn).With(zap.String("topic", topic)),
		cl:      cl,
		rcl:     rcl,
		adm:     kadm.NewClient(cl),
		radm:    kadm.NewClient(rcl),
		ready:   make(chan struct{}),
		runDone: make(chan struct{}),
		closing: make(chan struct{}),
		chans:   make(map[string]map[*socket]struct{}),
		sockets: make(map[*socket]struct{}),
		leaders: make(map[int32]int32),
	}
	unreg, err := kc.Register()
	if err != nil {
		cl.Close()
		rcl.Close()
		return nil, &ConfigError{Pkg: "notify", Sentinel: ErrInvalidConfig, Field: "Connection.Registerer", Rule: "cannot register the Kafka client metrics", Err: err}
	}
	g.unregister = append(g.unregister, unreg)
	if conn.Registerer != nil {
		unreg, err := g.c.register(conn.Registerer, topic)
		if err != nil {
			g.unregister[0]()
			cl.Close()
			rcl.Close()
			return nil, &ConfigError{Pkg: "notify", Sentinel: ErrInvalidConfig, Field: "Connection.Registerer", Rule: "cannot register the gateway metrics", Err: err}
		}
		g.unregister = append(g.unregister, unreg)
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	go g.run()
	return g, nil
}

// Stats returns the gateway's counters.
func (g *Gateway) Stats() Stats { return g.c.stats() }

// Client returns the gateway's franz-go client. Do not close it; call Close.
func (g *Gateway) Client() *kgo.Client { return g.cl }

// Ready is closed once the gateway knows the topic's partitions and reads
// it; requests before that wait for it.
func (g *Gateway) Ready() <-chan struct{} { return g.ready }

// Close stops taking requests (new ones get 503), closes every socket with
// websocket.StatusGoingAway so that clients reconnect elsewhere with their
// last id, waits for the sockets' goroutines, and closes the Kafka client.
// If ctx ends first, the remaining sockets are closed at once without the
// close handshake, and Close returns ctx's error once they are gone.
func (g *Gateway) Close(ctx context.Context) error {
	g.closeOnce.Do(func() {
		g.mu.Lock()
		g.closed = true
		g.mu.Unlock()
		close(g.closing)
		g.cancel()
		done := make(chan struct{})
		go func() { g.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			g.mu.Lock()
			for s := range g.sockets {
				_ = s.ws.CloseNow()
			}
			g.mu.Unlock()
			<-done
			g.closeErr = fmt.Errorf("notify: gateway close: sockets still closing: %w", ctx.Err())
		}
		<-g.runDone
		g.cl.Close()
		g.rcl.Close()
		for _, f := range g.unregister {
			f()
		}
	})
	return g.closeErr
}

// run starts the reader at the last stable offsets and routes what it reads
// until Close.
func (g *Gateway) run() {
	defer close(g.runDone)
	backoff := 100 * time.Millisecond
	for {
		err := g.start()
		if err == nil {
			break
		}
		if g.ctx.Err() != nil {
			return
		}
		g.log.Warn("notify: gateway cannot read its topic yet; retrying", zap.Error(err), zap.Duration("in", backoff))
		select {
		case <-time.After(backoff):
		case <-g.ctx.Done():
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	close(g.ready)
	g.log.Info("notify: gateway reading", zap.Int32("partitions", g.nparts))
	for {
		fs := g.cl.PollFetches(g.ctx)
		if fs.IsClientClosed() || g.ctx.Err() != nil {
			return
		}
		fs.EachError(func(t string, p int32, err error) {
			g.log.Warn("notify: fetch", zap.Int32("partition", p), zap.Error(err))
		})
		fs.EachPartition(g.route)
	}
}

func (g *Gateway) start() error {
	ctx, cancel := context.WithTimeout(g.ctx, 30*time.Second)
	defer cancel()
	md, err := g.adm.Metadata(ctx, g.topic)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	td, ok := md.Topics[g.topic]
	if !ok || td.Err != nil || len(td.Partitions) == 0 {
		return fmt.Errorf("metadata of topic %q: %v", g.topic, td.Err)
	}
	offs, err := g.adm.ListCommittedOffsets(ctx, g.topic)
	if err == nil {
		err = offs.Error()
	}
	if err != nil {
		return fmt.Errorf("last stable offsets: %w", err)
	}
	n := int32(len(td.Partitions))
	pos := make([]int64, n)
	at := make(map[int32]kgo.Offset, n)
	for p := range n {
		o, ok := offs.Lookup(g.topic, p)
		if !ok {
			return fmt.Errorf("no last stable offset for partition %d", p)
		}
		pos[p] = o.Offset - 1
		at[p] = kgo.NewOffset().At(o.Offset)
	}
	g.nparts, g.topicID = n, td.ID
	g.mu.Lock()
	g.pos, g.lag = pos, make([]int64, n)
	g.mu.Unlock()
	g.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{g.topic: at})
	return nil
}

// route hands each record of p to the queues of its channel's sockets. It
// never blocks: a full queue gets its socket kicked.
func (g *Gateway) route(p kgo.FetchTopicPartition) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if int(p.Partition) >= len(g.pos) {
		return // added after start; see NewGateway
	}
	for _, r := range p.Records {
		g.pos[p.Partition] = r.Offset
		subs := g.chans[string(r.Key)]
		if len(subs) == 0 {
			continue
		}
		f := &frame{off: r.Offset, b: notificationFrame(r)}
		for s := range subs {
			if s.part != p.Partition {
				continue // only the channel's own partition keeps its order
			}
			select {
			case s.q <- f:
			default:
				g.kick(s)
			}
		}
	}
	lag := max(p.LastStableOffset-(g.pos[p.Partition]+1), 0)
	g.c.lag.Add(lag - g.lag[p.Partition])
	g.lag[p.Partition] = lag
}

// kick ends s's subscription because its queue is full. g.mu is held.
func (g *Gateway) kick(s *socket) {
	g.unsubscribe(s)
	close(s.kicked)
	g.c.dropped.Add(1)
	g.c.slow.Add(1)
}

func (g *Gateway) unsubscribe(s *socket) {
	if subs := g.chans[s.ch]; subs != nil {
		delete(subs, s)
		if len(subs) == 0 {
			delete(g.chans, s.ch)
		}
	}
}

// ServeHTTP serves GET ?channel=<id>[&last=<id>]; see NewGateway.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ch := q.Get("channel")
	if err := validChannel(ch); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var last *ID
	if s := q.Get("last"); s != "" {
		id, err := ParseID(s)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		last = &id
	}
	if err := g.cfg.authorize(r, ch); err != nil {
		g.c.refused.Add(1)
		g.log.Info("notify: subscription refused", zap.String("channel", ch), zap.String("remote", r.RemoteAddr), zap.Error(err))
		http.Error(w, "notify: forbidden", http.StatusForbidden)
		return
	}
	t := time.NewTimer(notReadyWait)
	select {
	case <-g.ready:
		t.Stop()
	case <-t.C:
		http.Error(w, "notify: gateway not ready", http.StatusServiceUnavailable)
		return
	case <-g.closing:
		t.Stop()
		http.Error(w, "notify: gateway closing", http.StatusServiceUnavailable)
		return
	case <-r.Context().Done():
		t.Stop()
		return
	}
	part := partitionOf(g.topic, ch, g.nparts)
	if last != nil && last.Partition != part {
		http.Error(w, fmt.Sprintf("notify: last id %s is not of channel %q (partition %d)", last, ch, part), http.StatusBadRequest)
		return
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		http.Error(w, "notify: gateway closing", http.StatusServiceUnavailable)
		return
	}
	g.wg.Add(1)
	g.mu.Unlock()
	defer g.wg.Done()

	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: g.cfg.origins})
	if err != nil {
		g.log.Debug("notify: upgrade failed", zap.String("channel", ch), zap.Error(err))
		return // Accept wrote the response
	}
	s := &socket{ch: ch, part: part, ws: ws, q: make(chan *frame, g.cfg.queueSize), kicked: make(chan struct{})}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		_ = ws.Close(websocket.StatusGoingAway, "gateway shutting down")
		return
	}
	pos := g.pos[part]
	subs := g.chans[ch]
	if subs == nil {
		subs = make(map[*socket]struct{})
		g.chans[ch] = subs
	}
	subs[s] = struct{}{}
	g.sockets[s] = struct{}{}
	g.mu.Unlock()
	g.c.connections.Add(1)

	code, reason := g.serve(s, last, pos)

	g.mu.Lock()
	select {
	case <-s.kicked: // already unsubscribed
	default:
		g.unsubscribe(s)
	}
	delete(g.sockets, s)
	g.mu.Unlock()
	g.c.connections.Add(-1)
	if code == 0 {
		_ = ws.CloseNow()
	} else {
		_ = ws.Close(code, reason)
	}
}

// serve writes s's frames until it ends, and returns the close code (0: the
// connection is gone, close it without a handshake).
func (g *Gateway) serve(s *socket, last *ID, pos int64) (websocket.StatusCode, string) {
	// CloseRead answers pings and the close handshake; its context ends
	// when the peer closes. Not the request's context: it is not meant to
	// be used after Accept.
	ctx := s.ws.CloseRead(context.Background())
	start := pos
	if last != nil {
		start = last.Offset
	}
	s.last = start
	if err := g.write(ctx, s.ws, subscribedFrame(s.ch, ID{Partition: s.part, Offset: start})); err != nil {
		return 0, ""
	}
	if last != nil {
		if last.Offset < pos {
			if pos-last.Offset > g.cfg.resumeWindow {
				g.c.unavailable.Add(1)
				return CloseResumeUnavailable, "last id beyond the resume window"
			}
			if code, reason := g.resume(ctx, s, last.Offset+1, pos); code >= 0 {
				return code, reason
			}
		}
		g.c.resumed.Add(1)
	}
	for {
		select { // a kick wins over frames still queued
		case <-s.kicked:
			return g.tooSlow(s)
		default:
		}
		select {
		case <-s.kicked:
			return g.tooSlow(s)
		case <-g.closing:
			return websocket.StatusGoingAway, "gateway shutting down"
		case <-ctx.Done():
			return 0, ""
		case f := <-s.q:
			if err := g.deliver(ctx, s, f); err != nil {
				return 0, ""
			}
		}
	}
}

// resume writes the channel's records of offsets from..to read from Kafka.
// It returns -1 when done, else the close code.
func (g *Gateway) resume(ctx context.Context, s *socket, from, to int64) (websocket.StatusCode, string) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(g.ctx, cancel)()
	err := g.catchUp(ctx, s, from, to)
	switch {
	case err == nil:
		return -1, ""
	case errors.Is(err, errKicked):
		return g.tooSlow(s)
	case errors.Is(err, errOutOfRange):
		g.c.unavailable.Add(1)
		return CloseResumeUnavailable, "last id no longer in Kafka"
	case g.ctx.Err() != nil:
		return websocket.StatusGoingAway, "gateway shutting down"
	case errors.Is(err, errWrite) || ctx.Err() != nil:
		return 0, ""
	default:
		g.log.Warn("notify: resume failed", zap.String("channel", s.ch), zap.Int64("from", from), zap.Error(err))
		return websocket.StatusTryAgainLater, "cannot read Kafka now, reconnect later"
	}
}

// tooSlow counts what s's queue still held as dropped. A writer blocked in
// a write sees the kick once the write ends (WriteTimeout at the latest).
func (g *Gateway) tooSlow(s *socket) (websocket.StatusCode, string) {
	g.c.dropped.Add(int64(len(s.q)))
	g.log.Info("notify: socket too slow, closed", zap.String("channel", s.ch), zap.Int64("last", s.last))
	return CloseTooSlow, "too slow: reconnect with last id"
}

var errWrite = errors.New("notify: socket write failed")

// deliver writes f unless s already has it.
func (g *Gateway) deliver(ctx context.Context, s *socket, f *frame) error {
	if f.off <= s.last {
		return nil
	}
	if err := g.write(ctx, s.ws, f.b); err != nil {
		return fmt.Errorf("%w: %w", errWrite, err)
	}
	s.last = f.off
	g.c.delivered.Add(1)
	return nil
}

func (g *Gateway) write(ctx context.Context, ws *websocket.Conn, b []byte) error {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.writeTimeout)
	defer cancel()
	return ws.Write(ctx, websocket.MessageText, b)
}

// partitionOf is the partition Kafka's default partitioner (murmur2 of the
// key, as the Publisher's) gives channel.
func partitionOf(topic, channel string, n int32) int32 {
	return int32(kgo.StickyKeyPartitioner(nil).ForTopic(topic).Partition(&kgo.Record{Key: []byte(channel)}, int(n)))
}

func subscribedFrame(ch string, id ID) []byte {
	b := append([]byte(`{"type":"subscribed","channel":`), jsonString(ch)...)
	b = append(b, `,"id":"`...)
	b = append(b, id.String()...)
	return append(b, `"}`...)
}

func notificationFrame(r *kgo.Record) []byte {
	b := make([]byte, 0, 64+len(r.Key)+len(r.Value))
	b = append(b, `{"type":"notification","channel":`...)
	b = append(b, jsonString(string(r.Key))...)
	b = append(b, `,"id":"`...)
	b = strconv.AppendInt(b, int64(r.Partition), 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, r.Offset, 10)
	b = append(b, `","data":`...)
	if json.Valid(r.Value) {
		b = append(b, r.Value...)
	} else {
		b = append(b, jsonString(string(r.Value))...)
	}
	return append(b, '}')
}

func jsonString(s string) []byte {
	b, _ := json.Marshal(s) // a string always encodes
	return b
}

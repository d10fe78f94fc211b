package notify_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/notify"
	"github.com/whippet-go/whippet/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

// noLeaks fails t if goroutines started during the test outlive it. Call it
// first, so that its cleanup runs after every other cleanup.
func noLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

func connection(brokers []string) whippet.Connection { return whippet.Connection{Brokers: brokers} }

// kafka returns the shared real Kafka and a topic of parts partitions.
func kafka(t *testing.T, parts int32) (whippet.Connection, string) {
	t.Helper()
	c := testkit.Shared(t)
	if !c.Real {
		t.Fatalf("these tests need real Apache Kafka, got %s", c.Version)
	}
	return whippet.Connection{Brokers: c.Brokers}, c.NewTopic(t, parts, nil)
}

func publisher(t *testing.T, conn whippet.Connection, topic string) *notify.Publisher {
	t.Helper()
	p, err := notify.NewPublisher(conn, topic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("publisher close: %v", err)
		}
	})
	return p
}

// instance is one gateway behind its own HTTP server.
type instance struct {
	g       *notify.Gateway
	srv     *httptest.Server
	stopped bool
}

func (in *instance) url(channel, last string) string {
	q := url.Values{"channel": {channel}}
	if last != "" {
		q.Set("last", last)
	}
	return "ws" + strings.TrimPrefix(in.srv.URL, "http") + "/?" + q.Encode()
}

// stop closes the gateway, then its server.
func (in *instance) stop(t testing.TB) {
	t.Helper()
	if in.stopped {
		return
	}
	in.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := in.g.Close(ctx); err != nil {
		t.Errorf("gateway close: %v", err)
	}
	in.srv.Close()
}

// gateway starts a gateway over topic and waits until it reads.
func gateway(t *testing.T, conn whippet.Connection, topic string, opts ...notify.GatewayOption) *instance {
	t.Helper()
	return gatewayB(t, conn, topic, opts...)
}

func gatewayB(t testing.TB, conn whippet.Connection, topic string, opts ...notify.GatewayOption) *instance {
	t.Helper()
	g, err := notify.NewGateway(conn, topic, append([]notify.GatewayOption{notify.Authorize(notify.AllowAll)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{g: g, srv: httptest.NewServer(g)}
	t.Cleanup(func() { in.stop(t) })
	select {
	case <-g.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("gateway not ready after 30s")
	}
	return in
}

// msg is a frame as the browser sees it.
type msg struct {
	Type    string          `json:"type"`
	Channel string          `json:"channel"`
	ID      string          `json:"id"`
	Data    json.RawMessage `json:"data"`
}

type payload struct {
	N    int    `json:"n"`
	Ch   string `json:"ch"`
	Pad  string `json:"pad,omitempty"`
	Sent int64  `json:"sent,omitempty"`
}

func (m msg) n(t testing.TB) int {
	t.Helper()
	var p payload
	if err := json.Unmarshal(m.Data, &p); err != nil {
		t.Fatalf("frame %s: data: %v", m.ID, err)
	}
	return p.N
}

// sock is a test's browser.
type sock struct {
	ws   *websocket.Conn
	last string // id of the last frame read
}

type dialOpt func(*websocket.DialOptions)

// smallReadBuffer fixes the client's TCP receive buffer at 256 KiB (no
// autotuning up to tcp_rmem's max), so that a
// client that stops reading backs the gateway up quickly.
func smallReadBuffer(o *websocket.DialOptions) {
	d := &net.Dialer{}
	o.HTTPClient = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			_ = c.(*net.TCPConn).SetReadBuffer(256 << 10)
		}
		return c, err
	}}}
}

// dial connects to u; the socket is dropped when the test ends (before its
// gateway closes, which would otherwise wait for a close handshake nobody
// reads).
func dial(ctx context.Context, t *testing.T, u string, opts ...dialOpt) *sock {
	t.Helper()
	s, resp, err := tryDial(ctx, u, opts...)
	if err != nil {
		t.Fatalf("dial %s: %v (response %v)", u, err, status(resp))
	}
	t.Cleanup(func() { _ = s.ws.CloseNow() })
	return s
}

func status(resp *http.Response) string {
	if resp == nil {
		return "none"
	}
	return resp.Status
}

func tryDial(ctx context.Context, u string, opts ...dialOpt) (*sock, *http.Response, error) {
	o := &websocket.DialOptions{}
	for _, f := range opts {
		f(o)
	}
	ws, resp, err := websocket.Dial(ctx, u, o)
	if err != nil {
		return nil, resp, err
	}
	ws.SetReadLimit(1 << 20)
	return &sock{ws: ws}, resp, nil
}

// read returns the next frame and records its id.
func (s *sock) read(ctx context.Context) (msg, error) {
	_, b, err := s.ws.Read(ctx)
	if err != nil {
		return msg{}, err
	}
	var m msg
	if err := json.Unmarshal(b, &m); err != nil {
		return msg{}, fmt.Errorf("frame %q: %w", b, err)
	}
	s.last = m.ID
	return m, nil
}

// subscribed reads the first frame, which must be "subscribed".
func (s *sock) subscribed(ctx context.Context, t *testing.T, channel string) msg {
	t.Helper()
	m, err := s.read(ctx)
	if err != nil {
		t.Fatalf("first frame: %v", err)
	}
	if m.Type != "subscribed" || m.Channel != channel {
		t.Fatalf("first frame = %+v, want subscribed to %q", m, channel)
	}
	return m
}

// expect reads notifications of channel numbered from..to-1, in order.
func (s *sock) expect(ctx context.Context, t *testing.T, channel string, from, to int) {
	t.Helper()
	if err := s.expectErr(ctx, channel, from, to); err != nil {
		t.Fatal(err)
	}
}

// expectErr is expect for other goroutines than the test's.
func (s *sock) expectErr(ctx context.Context, channel string, from, to int) error {
	for want := from; want < to; want++ {
		m, err := s.read(ctx)
		if err != nil {
			return fmt.Errorf("channel %q: waiting for notification %d: %w", channel, want, err)
		}
		if m.Type != "notification" || m.Channel != channel {
			return fmt.Errorf("channel %q: frame %+v, want a notification of the channel", channel, m)
		}
		var p payload
		if err := json.Unmarshal(m.Data, &p); err != nil {
			return fmt.Errorf("frame %s: data: %w", m.ID, err)
		}
		if p.N != want {
			return fmt.Errorf("channel %q: got notification %d, want %d (in order, each once)", channel, p.N, want)
		}
	}
	return nil
}

// closeStatus reads until the socket ends and returns its close status.
func (s *sock) closeStatus(ctx context.Context) (websocket.StatusCode, []msg) {
	var got []msg
	for {
		m, err := s.read(ctx)
		if err != nil {
			return websocket.CloseStatus(err), got
		}
		got = append(got, m)
	}
}

func publishN(ctx context.Context, t *testing.T, p *notify.Publisher, channel string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if _, err := p.PublishJSON(ctx, channel, payload{N: i, Ch: channel}); err != nil {
			t.Fatalf("publish %d to %q: %v", i, channel, err)
		}
	}
}

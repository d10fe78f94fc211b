package notify_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/notify"
	"github.com/whippet-go/whippet/testkit"
)

func TestGatewayConfigErrors(t *testing.T) {
	_, err := notify.NewGateway(whippet.Connection{}, "", notify.QueueSize(0), notify.ResumeWindow(0), notify.WriteTimeout(0))
	for _, want := range []string{
		"notify: Connection.Brokers: at least one seed broker is required",
		"notify: topic: must not be empty",
		"notify: Authorize: is required (use notify.AllowAll to allow every request)",
		"notify: QueueSize: must be between 1 and 1048576, got 0",
		"notify: ResumeWindow: must be between 1 and 100000000, got 0",
		"notify: WriteTimeout: must be between 1ms and 10m, got 0s",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewGateway: %v\nlacks %q", err, want)
		}
	}
	if !errors.Is(err, notify.ErrInvalidConfig) {
		t.Errorf("error does not match ErrInvalidConfig: %v", err)
	}
}

// A notification published elsewhere reaches the sockets of its channel on
// both gateway instances, in order and once each, and no other channel's.
func TestGatewayDeliversAcrossInstances(t *testing.T) {
	noLeaks(t)
	conn, topic := kafka(t, 3)
	reg := prometheus.NewRegistry()
	gw1 := gateway(t, conn, topic)
	conn2 := conn
	conn2.Registerer = reg
	gw2 := gateway(t, conn2, topic)
	p := publisher(t, conn, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	a2 := dial(ctx, t, gw2.url("import-a", ""))
	a1 := dial(ctx, t, gw1.url("import-a", ""))
	b2 := dial(ctx, t, gw2.url("import-b", ""))
	for _, s := range []*sock{a2, a1} {
		s.subscribed(ctx, t, "import-a")
	}
	b2.subscribed(ctx, t, "import-b")

	const n = 50
	for i := range n { // interleaved: per-channel order is what counts
		publishN(ctx, t, p, "import-a", i, i+1)
		publishN(ctx, t, p, "import-b", i, i+1)
	}
	a2.expect(ctx, t, "import-a", 0, n)
	a1.expect(ctx, t, "import-a", 0, n)
	b2.expect(ctx, t, "import-b", 0, n)

	testkit.Eventually(t, 10*time.Second, func() error {
		if got := testutil.ToFloat64(counter(t, reg, "whippet_notify_gateway_delivered_total")); got != 2*n {
			return fmt.Errorf("gateway 2 delivered_total = %v, want %d", got, 2*n)
		}
		return nil
	})
	if got := testutil.ToFloat64(counter(t, reg, "whippet_notify_gateway_connections")); got != 2 {
		t.Errorf("gateway 2 connections = %v, want 2", got)
	}
	if s := gw1.g.Stats(); s.Delivered != n || s.Connections != 1 || s.Dropped != 0 {
		t.Errorf("gateway 1 stats %+v, want %d delivered to 1 connection, none dropped", s, n)
	}
}

// counter finds the metric named name on reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	return collectorFunc(func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				m := mf.GetMetric()[0]
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
		t.Fatalf("no metric %s", name)
		return 0
	})
}

// collectorFunc is a gauge computed by f, for testutil.ToFloat64.
func collectorFunc(f func() float64) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "probe", Help: "probe"}, f)
}

// The Authorize hook refuses before the upgrade: HTTP 403, counted, logged;
// an allowed channel on the same gateway works.
func TestGatewayAuthorizeRefuses(t *testing.T) {
	noLeaks(t)
	conn, topic := kafka(t, 1)
	errNotYours := errors.New("channel belongs to another user")
	gw := gateway(t, conn, topic, notify.Authorize(func(r *http.Request, channel string) error {
		if r.Header.Get("X-User") != "alice" || !strings.HasPrefix(channel, "alice-") {
			return errNotYours
		}
		return nil
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	asAlice := func(o *websocket.DialOptions) { o.HTTPHeader = http.Header{"X-User": {"alice"}} }
	for _, tc := range []struct {
		channel string
		opts    []dialOpt
	}{{"bob-1", []dialOpt{asAlice}}, {"alice-1", nil}} {
		s, resp, err := tryDial(ctx, gw.url(tc.channel, ""), tc.opts...)
		if err == nil {
			s.ws.CloseNow()
			t.Fatalf("channel %q: subscription allowed, want refused", tc.channel)
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("channel %q: %v, response %s; want 403", tc.channel, err, status(resp))
		}
	}
	if got := gw.g.Stats().Refused; got != 2 {
		t.Errorf("refused = %d, want 2", got)
	}
	s := dial(ctx, t, gw.url("alice-1", ""), asAlice)
	s.subscribed(ctx, t, "alice-1")
	s.ws.Close(websocket.StatusNormalClosure, "")
}

// A client that stops reading is closed with CloseTooSlow once its queue
// fills; the others on its channel and on another channel get everything;
// the slow one resumes with its last id and misses nothing.
func TestGatewaySlowClientClosedOthersUnaffected(t *testing.T) {
	noLeaks(t)
	conn, topic := kafka(t, 2)
	gw := gateway(t, conn, topic, notify.QueueSize(32), notify.WriteTimeout(30*time.Second))
	p := publisher(t, conn, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	slow := dial(ctx, t, gw.url("c", ""), smallReadBuffer)
	fast := dial(ctx, t, gw.url("c", ""))
	other := dial(ctx, t, gw.url("d", ""))
	slow.subscribed(ctx, t, "c")
	fast.subscribed(ctx, t, "c")
	other.subscribed(ctx, t, "d")

	// 64 KiB frames: about 4.5 MB (some 70 frames) fill the TCP buffers of
	// a client that does not read, and then 32 more its queue.
	const n = 200
	pad := strings.Repeat("x", 64<<10)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			if _, err := p.PublishJSON(ctx, "c", payload{N: i, Pad: pad}); err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
			if _, err := p.PublishJSON(ctx, "d", payload{N: i}); err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
		}
	}()
	// The slow client starts reading once the gateway kicked it, well
	// within the WriteTimeout of the write it is blocked in: it reads what
	// reached it, then the close.
	type result struct {
		code websocket.StatusCode
		got  []msg
	}
	slowDone := make(chan result, 1)
	go func() {
		for gw.g.Stats().SlowClosed == 0 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		code, got := slow.closeStatus(ctx)
		slowDone <- result{code, got}
	}()
	otherDone := make(chan error, 1)
	go func() { otherDone <- other.expectErr(ctx, "d", 0, n) }()
	fast.expect(ctx, t, "c", 0, n)
	if err := <-otherDone; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	res := <-slowDone
	code, got := res.code, res.got
	if s := gw.g.Stats(); s.SlowClosed != 1 || s.Dropped == 0 {
		t.Errorf("stats %+v: want the slow socket closed and notifications dropped", s)
	}
	if code != notify.CloseTooSlow {
		t.Errorf("slow client closed with %v, want CloseTooSlow (%d)", code, notify.CloseTooSlow)
	}
	for i, m := range got {
		if m.n(t) != i {
			t.Fatalf("slow client: frame %d is notification %d, want in order", i, m.n(t))
		}
	}
	if len(got) >= n {
		t.Fatalf("slow client got all %d notifications: it was not slow", len(got))
	}
	t.Logf("slow client got %d of %d before CloseTooSlow; stats %+v", len(got), n, gw.g.Stats())
	again := dial(ctx, t, gw.url("c", slow.last))
	again.subscribed(ctx, t, "c")
	again.expect(ctx, t, "c", len(got), n)
	for _, s := range []*sock{fast, other, again} {
		s.ws.Close(websocket.StatusNormalClosure, "")
	}
}

// A client that reconnects with the id of the last notification it saw,
// to the same or the other instance, gets what it missed, once each.
func TestGatewayResumeMissesNothing(t *testing.T) {
	noLeaks(t)
	conn, topic := kafka(t, 3)
	gw1 := gateway(t, conn, topic)
	gw2 := gateway(t, conn, topic)
	p := publisher(t, conn, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	s := dial(ctx, t, gw1.url("job-9", ""))
	s.subscribed(ctx, t, "job-9")
	publishN(ctx, t, p, "job-9", 0, 10)
	s.expect(ctx, t, "job-9", 0, 4)
	s.ws.CloseNow() // a flaky network: 6 were sent or queued, unread

	publishN(ctx, t, p, "other", 0, 5)
	publishN(ctx, t, p, "job-9", 10, 20)
	s2 := dial(ctx, t, gw1.url("job-9", s.last))
	if m := s2.subscribed(ctx, t, "job-9"); m.ID != s.last {
		t.Errorf("subscribed at %s, want the last id %s", m.ID, s.last)
	}
	s2.expect(ctx, t, "job-9", 4, 15)
	s2.ws.CloseNow()

	publishN(ctx, t, p, "job-9", 20, 30)
	s3 := dial(ctx, t, gw2.url("job-9", s2.last))
	s3.subscribed(ctx, t, "job-9")
	s3.expect(ctx, t, "job-9", 15, 30)
	publishN(ctx, t, p, "job-9", 30, 35) // and then live
	s3.expect(ctx, t, "job-9", 30, 35)
	s3.ws.Close(websocket.StatusNormalClosure, "")
	if st := gw2.g.Stats(); st.Resumed != 1 {
		t.Errorf("gateway 2 stats %+v, want 1 resumed", st)
	}

	// A fresh subscription's "subscribed" id is a resume point too.
	s4 := dial(ctx, t, gw2.url("job-9", ""))
	at := s4.subscribed(ctx, t, "job-9")
	s4.ws.CloseNow()
	publishN(ctx, t, p, "job-9", 35, 40)
	s5 := dial(ctx, t, gw1.url("job-9", at.ID))
	s5.subscribed(ctx, t, "job-9")
	s5.expect(ctx, t, "job-9", 35, 40)
	s5.ws.Close(websocket.StatusNormalClosure, "")
}

// A last id further behind than ResumeWindow is closed with
// CloseResumeUnavailable; one of another partition than the channel's is a
// bad request.
func TestGatewayResumeBeyondWindow(t *testing.T) {
	noLeaks(t)
	conn, topic := kafka(t, 2)
	gw := gateway(t, conn, topic, notify.ResumeWindow(5))
	p := publisher(t, conn, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	s := dial(ctx, t, gw.url("c", ""))
	s.subscribed(ctx, t, "c")
	first, err := p.PublishJSON(ctx, "c", payload{N: 0})
	if err != nil {
		t.Fatal(err)
	}
	publishN(ctx, t, p, "c", 1, 10)
	s.expect(ctx, t, "c", 0, 10) // the gateway's position is past them
	s.ws.Close(websocket.StatusNormalClosure, "")

	late := dial(ctx, t, gw.url("c", first.String()))
	late.subscribed(ctx, t, "c")
	if code, got := late.closeStatus(ctx); code != notify.CloseResumeUnavailable || len(got) != 0 {
		t.Errorf("resume 9 behind a window of 5: closed %v after %d frames, want CloseResumeUnavailable after none", code, len(got))
	}
	if st := gw.g.Stats(); st.ResumeUnavailable != 1 {
		t.Errorf("stats %+v, want 1 resume unavailable", st)
	}

	wrong := notify.ID{Partition: 1 - first.Partition, Offset: first.Offset}
	_, resp, err := tryDial(ctx, gw.url("c", wrong.String()))
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("last id of another partition: %v, response %s; want 400", err, status(resp))
	}
}

// A gateway stopped mid-stream closes its sockets with StatusGoingAway; the
// client reconnects to the other instance with its last id and misses
// nothing.
func TestGatewayStoppedClientMovesToOther(t *testing.T) {
	noLeaks(t)
	conn, topic := kafka(t, 3)
	gw1 := gateway(t, conn, topic)
	gw2 := gateway(t, conn, topic)
	p := publisher(t, conn, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	s := dial(ctx, t, gw1.url("import-42", ""))
	s.subscribed(ctx, t, "import-42")
	const n = 300
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			if _, err := p.PublishJSON(ctx, "import-42", payload{N: i}); err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
		}
	}()
	s.expect(ctx, t, "import-42", 0, 50)
	if err := gw1.g.Close(ctx); err != nil {
		t.Fatalf("gateway 1 close: %v", err)
	}
	code, got := s.closeStatus(ctx)
	if code != websocket.StatusGoingAway {
		t.Errorf("stopped gateway closed the socket with %v, want StatusGoingAway", code)
	}
	for i, m := range got {
		if m.n(t) != 50+i {
			t.Fatalf("frame %d after the first 50 is notification %d", i, m.n(t))
		}
	}
	s2 := dial(ctx, t, gw2.url("import-42", s.last))
	s2.subscribed(ctx, t, "import-42")
	s2.expect(ctx, t, "import-42", 50+len(got), n)
	<-done
	s2.ws.Close(websocket.StatusNormalClosure, "")
	if _, resp, err := tryDial(ctx, gw1.url("import-42", "")); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial a closed gateway: %v, response %s; want 503", err, status(resp))
	}
}

package notify_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/whippet-go/whippet/notify"
	"github.com/whippet-go/whippet/testkit"
)

var (
	loadClients       = flag.Int("notify.clients", 2000, "BenchmarkGatewayLoad: WebSocket clients, spread over the 2 gateway instances")
	loadChannels      = flag.Int("notify.channels", 1000, "BenchmarkGatewayLoad: channels (clients/channels sockets each)")
	loadNotifications = flag.Int("notify.notifications", 200_000, "BenchmarkGatewayLoad: notifications, spread evenly over the channels")
	loadPublishers    = flag.Int("notify.publishers", 200, "BenchmarkGatewayLoad: concurrent Publish calls (each owns some channels, to keep their order)")
)

// BenchmarkGatewayLoad is the load benchmark of issue 17, not a timed test:
// 2 gateway instances, 2,000 WebSocket clients (Go, coder/websocket) on
// 1,000 channels, 200,000 notifications. It fails unless every notification
// reaches every socket of its channel exactly once and in order, and prints
// notifications/s (first publish to last delivery), p50/p99 from Publish
// to the socket, and memory per connection (heap and stacks of the process,
// which holds both the gateways' and the clients' side, after connecting,
// divided by the clients). Smaller sizes: -notify.clients etc. Run it once:
//
//	go test -run '^$' -bench GatewayLoad -benchtime 1x ./notify/
func BenchmarkGatewayLoad(b *testing.B) {
	for range b.N {
		loadOnce(b)
	}
}

func loadOnce(b *testing.B) {
	clients, channels, total := *loadClients, *loadChannels, *loadNotifications
	if channels < 1 || clients < channels || total%channels != 0 {
		b.Fatalf("need clients >= channels >= 1 and notifications a multiple of channels; got %d, %d, %d", clients, channels, total)
	}
	perChannel := total / channels
	c := testkit.Shared(b)
	conn := connection(c.Brokers)
	topic := c.NewTopic(b, 6, nil)
	var gws [2]*notify.Gateway
	var urls [2]func(ch string) string
	for i := range gws {
		in := gatewayB(b, conn, topic)
		gws[i], urls[i] = in.g, func(ch string) string { return in.url(ch, "") }
	}
	p, err := notify.NewPublisher(conn, topic)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	// Connect: client i is on channel i%channels, through instance i%2.
	type client struct {
		ws      *websocket.Conn
		ch      int
		next    int
		latency []time.Duration
		err     error
	}
	cs := make([]*client, clients)
	var dialWG sync.WaitGroup
	sem := make(chan struct{}, 32)
	var dialErr atomic.Value
	for i := range cs {
		dialWG.Add(1)
		sem <- struct{}{}
		go func() {
			defer dialWG.Done()
			defer func() { <-sem }()
			ch := i % channels
			ws, _, err := websocket.Dial(ctx, urls[i%2]("ch-"+strconv.Itoa(ch)), nil)
			if err != nil {
				dialErr.Store(err)
				return
			}
			if _, _, err := ws.Read(ctx); err != nil { // "subscribed"
				dialErr.Store(err)
			}
			cs[i] = &client{ws: ws, ch: ch, latency: make([]time.Duration, 0, perChannel)}
		}()
	}
	dialWG.Wait()
	if err, _ := dialErr.Load().(error); err != nil {
		b.Fatalf("connect: %v", err)
	}
	defer func() {
		for _, cl := range cs {
			_ = cl.ws.CloseNow()
		}
	}()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	perConn := float64(int64(after.HeapInuse+after.StackInuse)-int64(before.HeapInuse+before.StackInuse)) / float64(clients)

	// Read: each client checks that it gets 0..perChannel-1 of its channel.
	var readWG sync.WaitGroup
	var lastDelivery atomic.Int64
	for _, cl := range cs {
		readWG.Add(1)
		go func() {
			defer readWG.Done()
			for cl.next < perChannel {
				_, data, err := cl.ws.Read(ctx)
				if err != nil {
					cl.err = fmt.Errorf("after %d: %w", cl.next, err)
					return
				}
				now := time.Now()
				var m struct {
					Channel string  `json:"channel"`
					Data    payload `json:"data"`
				}
				if err := json.Unmarshal(data, &m); err != nil {
					cl.err = err
					return
				}
				if m.Channel != "ch-"+strconv.Itoa(cl.ch) || m.Data.N != cl.next {
					cl.err = fmt.Errorf("got %s #%d, want ch-%d #%d (once each, in order)", m.Channel, m.Data.N, cl.ch, cl.next)
					return
				}
				cl.latency = append(cl.latency, now.Sub(time.Unix(0, m.Data.Sent)))
				cl.next++
			}
			lastDelivery.Store(time.Now().UnixNano())
		}()
	}

	// Publish: publisher w owns channels w, w+publishers, ...; it publishes
	// notification k of each of them before k+1.
	start := time.Now()
	b.ResetTimer()
	var pubWG sync.WaitGroup
	var pubErr atomic.Value
	for w := range min(*loadPublishers, channels) {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			for k := range perChannel {
				for ch := w; ch < channels; ch += *loadPublishers {
					name := "ch-" + strconv.Itoa(ch)
					if _, err := p.PublishJSON(ctx, name, payload{N: k, Ch: name, Sent: time.Now().UnixNano()}); err != nil {
						pubErr.Store(err)
						return
					}
				}
			}
		}()
	}
	pubWG.Wait()
	published := time.Since(start)
	if err, _ := pubErr.Load().(error); err != nil {
		b.Fatalf("publish: %v", err)
	}
	readWG.Wait()
	b.StopTimer()
	for i, cl := range cs {
		if cl.err != nil {
			b.Fatalf("client %d (channel %d): %v", i, cl.ch, cl.err)
		}
	}
	elapsed := time.Duration(lastDelivery.Load() - start.UnixNano())
	var lat []time.Duration
	for _, cl := range cs {
		lat = append(lat, cl.latency...)
	}
	slices.Sort(lat)
	pct := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	var delivered, dropped int64
	for _, g := range gws {
		s := g.Stats()
		delivered += s.Delivered
		dropped += s.Dropped
	}
	rate := float64(total) / elapsed.Seconds()
	b.ReportMetric(rate, "notifications/s")
	b.ReportMetric(float64(pct(0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(perConn, "B/conn")
	fmt.Printf("notify load: %d gateways, %d clients on %d channels, %d notifications (%d per channel) on %d partitions\n",
		len(gws), clients, channels, total, perChannel, 6)
	fmt.Printf("  every socket got every notification of its channel once, in order: %d deliveries (gateways counted %d, dropped %d)\n",
		len(lat), delivered, dropped)
	fmt.Printf("  published in %v; last delivery after %v: %.0f notifications/s, %.0f deliveries/s\n",
		published.Round(time.Millisecond), elapsed.Round(time.Millisecond), rate, float64(len(lat))/elapsed.Seconds())
	fmt.Printf("  Publish -> socket: p50 %v, p99 %v, max %v\n", pct(0.5).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), lat[len(lat)-1].Round(time.Millisecond))
	fmt.Printf("  memory per connection (gateway + client side, heap + stacks): %.1f KiB\n", perConn/1024)
}

package notify_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/notify"
)

func Example() {
	// An in-process Kafka for the example; use your brokers instead.
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "notifications"))
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	kafka := whippet.Connection{Brokers: cluster.ListenAddrs()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The notification service: one gateway per instance, behind a load
	// balancer. Authorize decides who may watch a channel.
	gw, err := notify.NewGateway(kafka, "notifications", notify.Authorize(func(r *http.Request, channel string) error {
		if !strings.HasPrefix(channel, "import-") { // e.g. check the session owns the import
			return fmt.Errorf("channel %q is not an import", channel)
		}
		return nil
	}))
	if err != nil {
		log.Fatal(err)
	}
	defer gw.Close(ctx)
	srv := httptest.NewServer(gw)
	defer srv.Close()
	<-gw.Ready()

	// The browser: new WebSocket("wss://.../notify?channel=import-7").
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/notify?channel=import-7", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer ws.CloseNow()
	_, frame, _ := ws.Read(ctx)
	fmt.Println(string(frame))

	// Any service instance: publish progress for the channel.
	pub, err := notify.NewPublisher(kafka, "notifications")
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close(ctx)
	if _, err := pub.PublishJSON(ctx, "import-7", map[string]int{"done": 1, "of": 3}); err != nil {
		log.Fatal(err)
	}
	_, frame, _ = ws.Read(ctx)
	fmt.Println(string(frame))
	// A browser that reconnects sends last=<the last id it got> and resumes.

	// Output:
	// {"type":"subscribed","channel":"import-7","id":"0--1"}
	// {"type":"notification","channel":"import-7","id":"0-0","data":{"done":1,"of":3}}
}

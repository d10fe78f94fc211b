package main

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/producer/spool"
	"github.com/whippet-go/whippet/testkit"
)

// TestSpoolStatusAndDrain: records spooled while Kafka was unreachable are
// shown by status and delivered by drain, which leaves the spool empty.
func TestSpoolStatusAndDrain(t *testing.T) {
	kc := testkit.Shared(t)
	topic := kc.NewTopic(t, 1, nil)
	dir := t.TempDir()
	fillSpool(t, dir, topic, "a", "b", "c")

	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"spool", "status", "-dir", dir}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "records: 3\n") {
		t.Fatalf("status: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := run(context.Background(), []string{"spool", "drain", "-dir", dir, "-brokers", strings.Join(kc.Brokers, ","), "-timeout", "60s"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "drained: 3 relayed") {
		t.Fatalf("drain: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	got := kc.ConsumeUntil(context.Background(), t, topic, func(all []*kgo.Record) bool { return len(all) >= 3 })
	if string(got[0].Value)+string(got[1].Value)+string(got[2].Value) != "abc" {
		t.Fatalf("delivered %q %q %q", got[0].Value, got[1].Value, got[2].Value)
	}
	out.Reset()
	if code := run(context.Background(), []string{"spool", "status", "-dir", dir}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "records: 0\n") {
		t.Fatalf("status after drain: exit %d\n%s", code, out.String())
	}
	if code := run(context.Background(), []string{"spool", "status"}, &out, &errOut); code != 2 {
		t.Fatalf("status without -dir: exit %d", code)
	}
}

// fillSpool spools values for topic in dir while Kafka is unreachable (an
// address nothing listens on), then closes the spool.
func fillSpool(t *testing.T, dir, topic string, values ...string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	p, err := spool.New(whippet.Connection{Brokers: []string{closed}}, dir, spool.Threshold(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		if res, err := p.Produce(context.Background(), &kgo.Record{Topic: topic, Value: []byte(v)}); err != nil || !res.Spooled {
			t.Fatalf("%+v %v", res, err)
		}
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

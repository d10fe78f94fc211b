package notify_test

import (
	"context"
	"testing"

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

type payload struct {
	N    int    `json:"n"`
	Ch   string `json:"ch"`
	Pad  string `json:"pad,omitempty"`
	Sent int64  `json:"sent,omitempty"`
}

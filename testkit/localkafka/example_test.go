package localkafka_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/whippet-go/whippet/testkit/localkafka"
)

// Start a single Apache Kafka node from Maven Central jars (Java 17+ and
// Maven needed), use it, and stop it. Not run by go test: it needs Java.
func Example() {
	ctx := context.Background()
	cfg, err := localkafka.ConfigFromEnv() // KAFKA_VERSION, KAFKA_NODES, ...
	if err != nil {
		log.Fatal(err)
	}
	cfg.StateDir = "/tmp/my-kafka"
	cfg.Stdout = os.Stderr // progress: download, start, ready

	c, err := localkafka.Up(ctx, cfg)
	if err != nil {
		log.Fatal(err) // says why, with the tail of the broker log
	}
	defer localkafka.Down(ctx, c.StateDir)

	fmt.Printf("Apache Kafka %s at %s, log %s\n", c.Version, strings.Join(c.Brokers, ","), c.LogPaths[0])
	// ... kgo.NewClient(kgo.SeedBrokers(c.Brokers...)) ...

	// Crash tests: c.Kill(1), c.Start(ctx, 1), c.Pause(1), c.Resume(1).
}

// Package testkit gives tests a Kafka: a real Apache Kafka broker whenever
// one can be had, and franz-go's in-process kfake for fast unit tests.
//
// Shared returns one cluster per test binary, chosen from the environment
// (WHIPPET_KAFKA = auto | external | docker | local | kfake):
//
//   - external: the brokers in KAFKA_BROKERS (comma-separated), e.g. the one
//     `make kafka-up` started;
//   - docker: an apache/kafka container through testcontainers-go, available
//     only when the test imports package testkit/docker (a module of its own,
//     so that testcontainers stays out of every other module graph);
//   - local: Apache Kafka run from Maven Central jars by package localkafka
//     (needs Java 17+, and Maven the first time; KAFKA_VERSION and
//     KAFKA_NODES choose version and size). One cluster is shared by all
//     test binaries that run at the same time (go test ./...), in a state dir
//     under os.TempDir() (WHIPPET_TESTKIT_STATE_DIR), at port KAFKA_BASE_PORT
//     (default 29092), and stopped when the last of them ends;
//   - kfake: franz-go's in-process fake.
//
// auto (the default) takes external if KAFKA_BROKERS is set, else docker if
// testkit/docker is imported and a Docker engine answers, else local if Java (and Maven or cached jars) are
// there, else kfake with a warning. With CI=true, Shared never settles for
// kfake: no real broker is a test failure that says why.
//
// Use Main in TestMain so that what Shared started is stopped:
//
//	func TestMain(m *testing.M) { testkit.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		kc := testkit.Shared(t)
//		topic := kc.NewTopic(t, 3, nil)
//		kc.Produce(t, &kgo.Record{Topic: topic, Value: []byte("v")})
//		recs := kc.ConsumeUntil(ctx, t, topic, func(all []*kgo.Record) bool { return len(all) == 1 })
//	}
package testkit

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Backend says where a Cluster's brokers come from.
type Backend string

// The backends Start can pick.
const (
	// BackendExternal is a cluster someone else runs, named by KAFKA_BROKERS.
	BackendExternal Backend = "external"
	// BackendDocker is an Apache Kafka container started with testcontainers-go.
	BackendDocker Backend = "docker"
	// BackendLocal is Apache Kafka run from Maven jars by package localkafka.
	BackendLocal Backend = "local"
	// BackendKfake is franz-go's in-process fake broker (not Apache Kafka).
	BackendKfake Backend = "kfake"
)

// Cluster is a Kafka cluster for tests.
type Cluster struct {
	// Brokers are the bootstrap addresses.
	Brokers []string
	// Backend says where the brokers come from.
	Backend Backend
	// Version is the broker version, e.g. "4.4.0"; "kfake" for kfake; for an
	// external cluster KAFKA_VERSION or the local state if known, else "unknown".
	Version string
	// Real is true for a real Apache Kafka broker (every backend but kfake).
	Real bool
	// LogPath is the broker log, when known.
	LogPath string

	logHint string         // where to read the broker log when there is no file
	fake    *kfake.Cluster // set for kfake
}

// Kfake returns the in-process fake behind a kfake Cluster, for fault
// injection (ControlKey, MoveTopicPartition, ...), or nil for a real broker.
func (c *Cluster) Kfake() *kfake.Cluster { return c.fake }

// describe is the one-line summary printed when a cluster starts.
func (c *Cluster) describe() string {
	where := strings.Join(c.Brokers, ",")
	if !c.Real {
		return fmt.Sprintf("whippet testkit: %s (in-process fake, not Apache Kafka) at %s", c.Backend, where)
	}
	log := c.LogPath
	if log == "" {
		log = c.logHint
	}
	if log == "" {
		log = "unknown"
	}
	return fmt.Sprintf("whippet testkit: %s Apache Kafka %s at %s (log: %s)", c.Backend, c.Version, where, log)
}

// Start starts (or connects to) the Kafka the environment asks for; see the
// package documentation for the rules. The returned function releases it:
// it stops what Start started and leaves external clusters alone.
func Start(ctx context.Context) (*Cluster, func(context.Context) error, error) {
	env := readEnv()
	candidates, skipped, err := plan(env, func() error { return dockerUsable(ctx) }, localAvailable)
	if err != nil {
		return nil, nil, err
	}
	var failures []string
	for _, b := range candidates {
		if b == BackendKfake && env.Mode != "kfake" {
			reasons := append(append([]string(nil), skipped...), failures...)
			fmt.Fprintf(os.Stderr, "whippet testkit: WARNING: no real Apache Kafka available (%s); "+
				"falling back to in-process kfake, which only approximates Kafka. "+
				"Set KAFKA_BROKERS, or install Java 17+ and Maven (or Docker). With CI=true this is an error.\n",
				strings.Join(reasons, "; "))
		}
		c, stop, err := startBackend(ctx, b, env)
		if err == nil {
			return c, stop, nil
		}
		failures = append(failures, fmt.Sprintf("%s: %v", b, err))
	}
	msg := strings.Join(append(skipped, failures...), "\n  ")
	if env.CI {
		return nil, nil, fmt.Errorf("testkit: CI=true and no real Apache Kafka could be started (kfake is not allowed in CI):\n  %s", msg)
	}
	return nil, nil, fmt.Errorf("testkit: no Kafka could be started:\n  %s", msg)
}

func startBackend(ctx context.Context, b Backend, env environment) (*Cluster, func(context.Context) error, error) {
	switch b {
	case BackendExternal:
		return startExternal(ctx, env)
	case BackendDocker:
		return startDocker(ctx)
	case BackendLocal:
		return startLocal(ctx, env)
	case BackendKfake:
		return StartFake(ctx)
	}
	return nil, nil, fmt.Errorf("testkit: unknown backend %q", b)
}

// SharedStartTimeout bounds how long Shared waits for its cluster, including
// a first download of the broker jars or image.
const SharedStartTimeout = 10 * time.Minute

var shared struct {
	mu      sync.Mutex
	started bool
	c       *Cluster
	stop    func(context.Context) error
	err     error
}

// Shared returns the test binary's Kafka, starting it on first use (see the
// package documentation for how it is chosen). If none can be started, it
// fails the test with the reason, including the broker log location. Pair
// it with Main so that the cluster is stopped when the tests end.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.started {
		shared.started = true
		ctx, cancel := context.WithTimeout(context.Background(), SharedStartTimeout)
		shared.c, shared.stop, shared.err = Start(ctx)
		cancel()
		if shared.err == nil {
			fmt.Fprintln(os.Stderr, shared.c.describe())
		}
	}
	if shared.err != nil {
		t.Fatalf("testkit.Shared: %v", shared.err)
	}
	return shared.c
}

// stopShared stops what Shared started, if anything.
func stopShared(ctx context.Context) error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	stop := shared.stop
	shared.started, shared.c, shared.stop, shared.err = false, nil, nil, nil
	if stop == nil {
		return nil
	}
	return stop(ctx)
}

// Main runs the tests and then stops the cluster Shared started, and exits
// with the tests' code (or 1 if stopping failed). Call it from TestMain:
//
//	func TestMain(m *testing.M) { testkit.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	err := stopShared(ctx)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "whippet testkit: stopping Kafka: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// Fake starts franz-go's in-process kfake (1 broker unless opts say
// otherwise; later options win) and closes it when the test ends. It is for
// fast unit tests; it is not Apache Kafka.
func Fake(t testing.TB, opts ...kfake.Opt) *Cluster {
	t.Helper()
	c, stop, err := StartFake(context.Background(), opts...)
	if err != nil {
		t.Fatalf("testkit.Fake: %v", err)
	}
	t.Cleanup(func() { _ = stop(context.Background()) })
	return c
}

// StartFake is Fake for code that has no testing.TB, such as an embedded
// demo: it starts kfake and returns the function that closes it.
func StartFake(ctx context.Context, opts ...kfake.Opt) (*Cluster, func(context.Context) error, error) {
	_ = ctx // kfake starts synchronously
	fc, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("testkit: start kfake: %w", err)
	}
	c := &Cluster{Brokers: fc.ListenAddrs(), Backend: BackendKfake, Version: "kfake", Real: false, fake: fc}
	return c, func(context.Context) error { fc.Close(); return nil }, nil
}

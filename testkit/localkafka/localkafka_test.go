package localkafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

func props(p []kv) map[string]string {
	m := map[string]string{}
	for _, e := range p {
		m[e.k] = e.v
	}
	return m
}

func TestServerPropertiesOneNode(t *testing.T) {
	cfg, err := Config{StateDir: t.TempDir()}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	m := props(serverProperties(cfg, 1, "/data", 4))
	want := map[string]string{
		"node.id":                                  "1",
		"controller.quorum.voters":                 "1@127.0.0.1:19093",
		"listeners":                                "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093",
		"advertised.listeners":                     "PLAINTEXT://127.0.0.1:19092",
		"offsets.topic.replication.factor":         "1",
		"offsets.topic.num.partitions":             "1",
		"transaction.state.log.min.isr":            "1",
		"min.insync.replicas":                      "1",
		"share.coordinator.state.topic.min.isr":    "1",
		"group.initial.rebalance.delay.ms":         "0",
		"log.cleaner.dedupe.buffer.size":           "2097152",
		"log.dirs":                                 "/data",
		"controller.listener.names":                "CONTROLLER",
		"listener.security.protocol.map":           "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
		"transaction.state.log.replication.factor": "1",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	if _, ok := m["auto.create.topics.enable"]; ok {
		t.Error("auto.create.topics.enable should stay at Kafka's default")
	}
}

func TestServerPropertiesThreeNodes(t *testing.T) {
	cfg, err := Config{Nodes: 3, BasePort: 20000, Overrides: map[string]string{
		"num.partitions": "4", "auto.create.topics.enable": "false",
	}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	m := props(serverProperties(cfg, 2, "/d2", 3))
	for k, v := range map[string]string{
		"node.id":                          "2",
		"controller.quorum.voters":         "1@127.0.0.1:20001,2@127.0.0.1:20011,3@127.0.0.1:20021",
		"listeners":                        "PLAINTEXT://127.0.0.1:20010,CONTROLLER://127.0.0.1:20011",
		"advertised.listeners":             "PLAINTEXT://127.0.0.1:20010",
		"default.replication.factor":       "3",
		"min.insync.replicas":              "2",
		"offsets.topic.replication.factor": "3",
		"transaction.state.log.min.isr":    "2",
		"broker.session.timeout.ms":        "9000",
		"num.partitions":                   "4",     // override replaced
		"auto.create.topics.enable":        "false", // override appended
	} {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	if _, ok := m["share.coordinator.state.topic.min.isr"]; ok {
		t.Error("3.x must not get 4.x share coordinator keys")
	}
}

func TestRenderProperties(t *testing.T) {
	got := string(renderProperties("a\nb", []kv{{"k", `C:\x`}, {"a=b", " lead"}}))
	want := "# a\n# b\nk=C:\\\\x\na\\=b=\\ lead\n"
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want error
	}{
		{Config{Version: "latest"}, ErrBadVersion},
		{Config{Version: "2.8.1"}, ErrBadVersion},
		{Config{Nodes: 10}, ErrBadConfig},
		{Config{Nodes: -1}, ErrBadConfig},
		{Config{BasePort: 80}, ErrBadConfig},
		{Config{BasePort: 65530, Nodes: 3}, ErrBadConfig},
	} {
		if _, err := tc.cfg.withDefaults(); !errors.Is(err, tc.want) {
			t.Errorf("%+v: err = %v, want %v", tc.cfg, err, tc.want)
		}
	}
	cfg, err := Config{CacheDir: "rel"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Version != DefaultVersion || cfg.Nodes != 1 || cfg.BasePort != DefaultBasePort ||
		!filepath.IsAbs(cfg.CacheDir) || !slices.Equal(cfg.JavaOpts, DefaultJavaOpts) {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Setenv("KAFKA_VERSION", "3.9.1")
	t.Setenv("KAFKA_NODES", "3")
	t.Setenv("KAFKA_STATE_DIR", "/tmp/x")
	t.Setenv("KAFKA_BASE_PORT", "30000")
	t.Setenv("WHIPPET_KAFKA_CACHE", "/tmp/cache")
	t.Setenv("WHIPPET_KAFKA_JAVA_OPTS", "-Xmx1g  -Dx=y")
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Version: "3.9.1", Nodes: 3, StateDir: "/tmp/x", BasePort: 30000, CacheDir: "/tmp/cache", JavaOpts: []string{"-Xmx1g", "-Dx=y"}}
	if cfg.Version != want.Version || cfg.Nodes != want.Nodes || cfg.StateDir != want.StateDir ||
		cfg.BasePort != want.BasePort || cfg.CacheDir != want.CacheDir || !slices.Equal(cfg.JavaOpts, want.JavaOpts) {
		t.Fatalf("got %+v, want %+v", cfg, want)
	}
	t.Setenv("KAFKA_NODES", "three")
	if _, err := ConfigFromEnv(); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("bad KAFKA_NODES: err = %v", err)
	}
}

func TestLoggingDeps(t *testing.T) {
	for _, tc := range []struct {
		name, version string
		jars          []string
		logging       string
		want          []string // group:artifact:version
	}{
		{"4.4 brings log4j-core", "4.4.0",
			[]string{"kafka_2.13-4.4.0.jar", "log4j-api-2.25.5.jar", "log4j-core-2.25.5.jar", "slf4j-api-1.7.36.jar"},
			loggingLog4j2, []string{"org.apache.logging.log4j:log4j-slf4j-impl:2.25.5"}},
		{"4.0 without log4j", "4.0.0",
			[]string{"kafka_2.13-4.0.0.jar", "slf4j-api-1.7.36.jar"},
			loggingLog4j2, []string{"org.apache.logging.log4j:log4j-slf4j-impl:2.24.3", "org.apache.logging.log4j:log4j-core:2.24.3"}},
		{"slf4j 2", "4.9.0",
			[]string{"log4j-core-2.30.0.jar", "slf4j-api-2.0.17.jar"},
			loggingLog4j2, []string{"org.apache.logging.log4j:log4j-slf4j2-impl:2.30.0"}},
		{"binding already there", "4.4.0",
			[]string{"log4j-core-2.25.5.jar", "log4j-slf4j-impl-2.25.5.jar", "slf4j-api-1.7.36.jar"},
			loggingLog4j2, nil},
		{"3.9", "3.9.1",
			[]string{"kafka_2.13-3.9.1.jar", "slf4j-api-1.7.36.jar", "zookeeper-3.8.4.jar"},
			loggingLog4j1, []string{"org.slf4j:slf4j-reload4j:1.7.36", "ch.qos.reload4j:reload4j:1.2.25"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logging, deps, err := loggingDeps(tc.version, tc.jars)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range deps {
				got = append(got, d.Group+":"+d.Artifact+":"+d.Version)
			}
			if logging != tc.logging || !slices.Equal(got, tc.want) {
				t.Fatalf("got %s %v, want %s %v", logging, got, tc.logging, tc.want)
			}
		})
	}
}

func TestPomTemplate(t *testing.T) {
	var b bytes.Buffer
	err := pomTmpl.Execute(&b, pomData{KafkaVersion: "4.4.0", ArtifactID: "x", Deps: []mavenDep{
		{Group: "org.apache.kafka", Artifact: "kafka_2.13", Version: "4.4.0", Exclusions: []mavenDep{{Group: "ch.qos.logback", Artifact: "*"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	s := b.String()
	for _, want := range []string{
		"<artifactId>kafka_2.13</artifactId>", "<version>4.4.0</version>",
		"<exclusion><groupId>ch.qos.logback</groupId><artifactId>*</artifactId></exclusion>",
		"<artifactId>maven-dependency-plugin</artifactId>", "<version>3.6.1</version>",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("pom lacks %s:\n%s", want, s)
		}
	}
}

func TestCachedClasspath(t *testing.T) {
	cache := t.TempDir()
	dir := LibsDir(cache, "4.4.0")
	if _, ok := cachedClasspath(cache, "4.4.0"); ok {
		t.Fatal("empty cache reported complete")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "a.jar"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, completeMarkerFileName), []byte(`{"kafka_version":"4.4.0","logging":"log4j2","jars":["a.jar","b.jar"]}`), 0o644)
	if _, ok := cachedClasspath(cache, "4.4.0"); ok {
		t.Fatal("cache missing b.jar reported complete")
	}
	os.WriteFile(filepath.Join(dir, "b.jar"), nil, 0o644)
	cp, ok := cachedClasspath(cache, "4.4.0")
	if !ok || cp.Logging != loggingLog4j2 || cp.Glob() != filepath.Join(dir, "*") {
		t.Fatalf("complete cache: %+v %v", cp, ok)
	}
}

func TestDetectVersion(t *testing.T) {
	p := filepath.Join(t.TempDir(), "server.log")
	os.WriteFile(p, []byte("[x] INFO Registered kafka:type=kafka.Log4jController MBean\n"+
		"[x] INFO Kafka version: 4.4.0 (org.apache.kafka.common.utils.internals.AppInfoParser)\n"+
		"[x] INFO Kafka version: 9.9.9 (later client)\n"), 0o644)
	if v := detectVersion(p); v != "4.4.0" {
		t.Fatalf("got %q", v)
	}
	if v := detectVersion(p + ".missing"); v != "" {
		t.Fatalf("missing file: got %q", v)
	}
}

func TestCheckPortsInUse(t *testing.T) {
	// Hold a port whose lower neighbour (node 1's PLAINTEXT port) is free, so
	// that only the CONTROLLER port is taken.
	var l net.Listener
	var port int
	for try := 0; ; try++ {
		var err error
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		port = l.Addr().(*net.TCPAddr).Port
		below, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port-1))
		if err == nil {
			below.Close()
			break
		}
		l.Close()
		if try == 50 {
			t.Fatal("found no free pair of neighbouring ports")
		}
	}
	defer l.Close()
	cfg, err := Config{BasePort: port - 1}.withDefaults() // port is node 1's controller port
	if err != nil {
		t.Skip("port too low for this test:", err)
	}
	err = checkPorts(cfg)
	if !errors.Is(err, ErrPortInUse) || !strings.Contains(err.Error(), "node 1 CONTROLLER") {
		t.Fatalf("err = %v", err)
	}
}

func TestLoadDownEmptyStateDir(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Load: %v", err)
	}
	if err := Down(context.Background(), dir); err != nil {
		t.Fatalf("Down on empty dir: %v", err)
	}
	if err := Down(context.Background(), filepath.Join(dir, "missing")); err != nil {
		t.Fatalf("Down on missing dir: %v", err)
	}
}

// --- integration: real Apache Kafka from Maven jars ---

// requireLocalKafka skips when Java/Maven are missing, except under CI=true
// where a missing toolchain is a failure.
func requireLocalKafka(t *testing.T, cfg Config) {
	t.Helper()
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("starts a real broker; skipped with -short")
	}
	if err := Available(cfg); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but a local Kafka cannot run here: %v", err)
		}
		t.Skipf("local Kafka unavailable: %v", err)
	}
}

// integrationConfig is the Config of an integration test's own cluster:
// version and cache from the environment, nodes nodes, a temporary state
// dir, free ports, progress to stderr with -v.
func integrationConfig(t *testing.T, nodes int) Config {
	t.Helper()
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Nodes = nodes
	cfg.StateDir = t.TempDir()
	requireLocalKafka(t, cfg)
	cfg.BasePort = freeBase(t, nodes)
	if testing.Verbose() {
		cfg.Stdout = os.Stderr
	}
	return cfg
}

// freeBase finds a base port whose node ports are all free, below Linux's
// ephemeral range (32768+) so outgoing connections cannot take them, and
// away from 19092 (whippet kafka up) and 29092 (testkit).
func freeBase(t *testing.T, nodes int) int {
	t.Helper()
	for base := 21092; base < 29000; base += 500 {
		cfg := Config{BasePort: base, Nodes: nodes}
		if cfg, err := cfg.withDefaults(); err == nil && checkPorts(cfg) == nil {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

func roundTrip(t *testing.T, c *Cluster, partitions int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topic := "roundtrip-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if _, err := adm.CreateTopic(ctx, partitions, -1, nil, topic); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("hello")}).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	cons, err := kgo.NewClient(kgo.SeedBrokers(c.Brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	for {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consume: %v (%v)", err, fs.Errors())
		}
		if recs := fs.Records(); len(recs) > 0 {
			if string(recs[0].Value) != "hello" {
				t.Fatalf("consumed %q", recs[0].Value)
			}
			return
		}
	}
}

func assertDown(t *testing.T, c *Cluster, pids []int) {
	t.Helper()
	for i, pid := range pids {
		if processAlive(pid) {
			t.Errorf("node %d (pid %d) still runs after Down", i+1, pid)
		}
	}
	// No java process anywhere still mentions this state dir.
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmd, []byte(c.StateDir+"/")) && bytes.Contains(cmd, []byte("java")) {
			if processAlive(mustAtoi(e.Name())) {
				t.Errorf("java process %s still runs for %s", e.Name(), c.StateDir)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(c.StateDir, "node1", "data")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir left behind: %v", err)
	}
	if _, err := Load(c.StateDir); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Load after Down: %v", err)
	}
}

func mustAtoi(s string) int { n, _ := strconv.Atoi(s); return n }

func TestIntegrationSingleNode(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // runs last
	cfg := integrationConfig(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	start := time.Now()
	c, err := Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	pids := c.PIDs()
	t.Cleanup(func() { _ = Down(context.Background(), cfg.StateDir) })
	t.Logf("Apache Kafka %s ready at %v in %s (Up took %s)", c.Version, c.Brokers, c.ReadyIn, time.Since(start))

	wantVersion := cfg.Version
	if wantVersion == "" {
		wantVersion = DefaultVersion
	}
	if c.Version != wantVersion {
		t.Errorf("detected version %q, want %q", c.Version, wantVersion)
	}
	if c.Reused || c.Nodes != 1 || len(c.Brokers) != 1 || c.Brokers[0] != "127.0.0.1:"+strconv.Itoa(cfg.BasePort) {
		t.Errorf("cluster = %+v", c)
	}
	if _, err := os.Stat(c.LogPaths[0]); err != nil {
		t.Errorf("log path: %v", err)
	}

	roundTrip(t, c, 1)

	// Up again reuses it; Load sees the same.
	again, err := Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Reused || !slices.Equal(again.PIDs(), pids) {
		t.Errorf("second Up did not reuse: reused=%v pids=%v want %v", again.Reused, again.PIDs(), pids)
	}
	// A different shape in the same state dir is refused, not silently replaced.
	other := cfg
	other.Nodes = 3
	if _, err := Up(ctx, other); !errors.Is(err, ErrBusy) {
		t.Errorf("Up with 3 nodes over a running 1-node cluster: %v", err)
	}
	loaded, err := Load(cfg.StateDir)
	if err != nil || loaded.Version != c.Version || !slices.Equal(loaded.Brokers, c.Brokers) {
		t.Fatalf("Load = %+v, %v", loaded, err)
	}

	// Crash helpers: SIGKILL and restart, then pause/resume.
	if err := c.Kill(1); err != nil {
		t.Fatal(err)
	}
	if c.Alive()[0] {
		t.Fatal("killed node still alive")
	}
	restart := time.Now()
	if err := c.Start(ctx, 1); err != nil {
		t.Fatal(err)
	}
	t.Logf("node 1 back in metadata %s after restart", time.Since(restart))
	roundTrip(t, c, 1)
	t.Logf("round trip after restart done %s after restart", time.Since(restart))
	if err := c.Pause(1); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	if err := c.Check(pctx); err == nil {
		t.Error("Check succeeded against a paused broker")
	}
	pcancel()
	if err := c.Resume(1); err != nil {
		t.Fatal(err)
	}

	pids = c.PIDs()
	downStart := time.Now()
	if err := Down(ctx, cfg.StateDir); err != nil {
		t.Fatal(err)
	}
	t.Logf("Down took %s", time.Since(downStart))
	assertDown(t, c, pids)
}

// TestIntegrationThreeNodes starts a 3-node cluster (about 30s on 2 cores).
func TestIntegrationThreeNodes(t *testing.T) {
	cfg := integrationConfig(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Down(context.Background(), cfg.StateDir) })
	t.Logf("Apache Kafka %s, 3 nodes, ready at %v in %s", c.Version, c.Brokers, c.ReadyIn)
	if len(c.Brokers) != 3 || len(c.LogPaths) != 3 {
		t.Fatalf("cluster = %+v", c)
	}
	roundTrip(t, c, 3)

	// With one node down, acks=all still works (RF 3, min.insync.replicas 2).
	if err := c.Kill(2); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, 3)
	if err := c.Start(ctx, 2); err != nil {
		t.Fatal(err)
	}
	pids := c.PIDs()
	downStart := time.Now()
	if err := Down(ctx, cfg.StateDir); err != nil {
		t.Fatal(err)
	}
	t.Logf("Down took %s", time.Since(downStart))
	assertDown(t, c, pids)
}

// TestIntegrationAcquire checks that leases share one cluster and that the
// last release stops it.
func TestIntegrationAcquire(t *testing.T) {
	cfg := integrationConfig(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c1, release1, err := Acquire(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Down(context.Background(), cfg.StateDir) })
	c2, release2, err := Acquire(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !c2.Reused || !slices.Equal(c1.PIDs(), c2.PIDs()) {
		t.Fatalf("second Acquire did not join: %v vs %v", c1.PIDs(), c2.PIDs())
	}
	if err := release1(ctx); err != nil {
		t.Fatal(err)
	}
	if !c1.Alive()[0] {
		t.Fatal("first release stopped a cluster still leased")
	}
	pids := c1.PIDs()
	if err := release2(ctx); err != nil {
		t.Fatal(err)
	}
	assertDown(t, c1, pids)
}

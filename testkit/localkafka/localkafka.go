// Package localkafka runs a real Apache Kafka cluster on loopback from the
// broker jars on Maven Central: no Docker, no tarball, only Java 17+ and
// Maven.
//
// Up downloads the broker classpath once (mvn dependency:copy-dependencies
// against an embedded POM, cached per version), formats KRaft storage, starts
// 1 or 3 combined broker+controller nodes as detached java processes, and
// returns when the Go admin client sees every broker, can create a replicated
// topic, and finds the group and transaction coordinators. Everything about a
// running cluster lives in its state directory (cluster.json, per-node config,
// logs, pid and data), so another process can Load it, reuse it (Up) or stop
// it (Down).
//
// Node i (1-based) listens on 127.0.0.1 at BasePort+(i-1)*10 (PLAINTEXT) and
// that port + 1 (CONTROLLER): with the default base port, node 1 is at
// 19092/19093, node 2 at 19102/19103 and node 3 at 19112/19113. With
// Config.Security, each node also has a SASL_SSL listener (TLS and
// SCRAM-SHA-512) at its PLAINTEXT port + 2; see Security.
package localkafka

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultVersion is the Apache Kafka version Up runs when Config.Version is
// empty: the newest 4.x release on Maven Central.
const DefaultVersion = "4.4.0"

// DefaultBasePort is the PLAINTEXT port of node 1 when Config.BasePort is 0.
const DefaultBasePort = 19092

// DefaultStartTimeout bounds how long Up waits for a started cluster to be
// ready when Config.StartTimeout is 0. It does not include the jar download.
const DefaultStartTimeout = 90 * time.Second

// MaxNodes is the largest cluster Up starts.
const MaxNodes = 9

// DefaultJavaOpts are the JVM options of every broker when Config.JavaOpts is
// nil: a small heap (256-512 MiB) and the G1 settings of kafka-run-class.sh.
var DefaultJavaOpts = []string{
	"-Xms256m", "-Xmx512m",
	"-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
	"-XX:+ExplicitGCInvokesConcurrent", "-XX:MaxInlineLevel=15",
	"-Djava.awt.headless=true",
}

// Errors returned (wrapped) by this package, for errors.Is.
var (
	// ErrNotRunning means the state directory holds no cluster.
	ErrNotRunning = errors.New("localkafka: no cluster in state dir")
	// ErrPortInUse means a port the cluster needs is taken.
	ErrPortInUse = errors.New("localkafka: port in use")
	// ErrNoJava means no java executable was found (JAVA_HOME or PATH).
	ErrNoJava = errors.New("localkafka: java not found")
	// ErrNoMaven means the jars are not cached and mvn is not on PATH.
	ErrNoMaven = errors.New("localkafka: mvn not found")
	// ErrBadVersion means Config.Version is not a usable Kafka version.
	ErrBadVersion = errors.New("localkafka: bad Kafka version")
	// ErrBadConfig means another Config field is invalid.
	ErrBadConfig = errors.New("localkafka: invalid config")
	// ErrNotReady means the cluster did not become ready in time, or a node exited.
	ErrNotReady = errors.New("localkafka: cluster not ready")
	// ErrBusy means the state directory runs a different cluster that is in use.
	ErrBusy = errors.New("localkafka: state dir runs a different cluster")
	// ErrUnsupported means the operating system cannot run local clusters (Windows).
	ErrUnsupported = errors.New("localkafka: unsupported on this operating system")
)

// Config describes the cluster Up starts. The zero value plus a StateDir is a
// single node of DefaultVersion on DefaultBasePort.
type Config struct {
	// Version is the Apache Kafka version, e.g. "4.4.0" or "3.9.1"; default DefaultVersion.
	Version string
	// Nodes is the number of combined broker+controller nodes, 1 to MaxNodes; default 1.
	// With 3 or more nodes, topics default to replication 3 and min.insync.replicas 2.
	Nodes int
	// StateDir holds cluster.json, the nodes' config, logs, pids and data. Required by Up.
	StateDir string
	// CacheDir is the jar cache root; jars go to <CacheDir>/<Version>/libs.
	// Default: $WHIPPET_KAFKA_CACHE, else <user cache dir>/whippet/kafka (~/.cache/whippet/kafka).
	CacheDir string
	// BasePort is node 1's PLAINTEXT port; node i uses BasePort+(i-1)*10 and +1. Default DefaultBasePort.
	// Keep it below 32768 (the Linux ephemeral range) so outgoing connections cannot hold the ports.
	BasePort int
	// JavaOpts are the JVM options of each broker; default DefaultJavaOpts.
	JavaOpts []string
	// Overrides are extra server.properties for every node, applied last.
	Overrides map[string]string
	// StartTimeout bounds the wait for readiness; default DefaultStartTimeout.
	StartTimeout time.Duration
	// Stdout receives progress lines (download, start, ready); nil means quiet.
	Stdout io.Writer
	// Security, when not nil, adds a SASL_SSL listener (TLS with a throwaway
	// CA, SCRAM-SHA-512 users) to every node at its PLAINTEXT port + 2; the
	// other listeners are unchanged. Default nil: PLAINTEXT only.
	Security *Security
}

// ConfigFromEnv returns a Config from the environment: KAFKA_VERSION,
// KAFKA_NODES, KAFKA_STATE_DIR, KAFKA_BASE_PORT, WHIPPET_KAFKA_CACHE and
// WHIPPET_KAFKA_JAVA_OPTS (space-separated, replaces DefaultJavaOpts). Unset
// variables leave the field zero (its default applies).
func ConfigFromEnv() (Config, error) {
	cfg := Config{
		Version:  strings.TrimSpace(os.Getenv("KAFKA_VERSION")),
		StateDir: os.Getenv("KAFKA_STATE_DIR"),
		CacheDir: os.Getenv("WHIPPET_KAFKA_CACHE"),
	}
	if s := strings.TrimSpace(os.Getenv("KAFKA_NODES")); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return cfg, fmt.Errorf("%w: KAFKA_NODES=%q is not a number", ErrBadConfig, s)
		}
		cfg.Nodes = n
	}
	if s := strings.TrimSpace(os.Getenv("KAFKA_BASE_PORT")); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			return cfg, fmt.Errorf("%w: KAFKA_BASE_PORT=%q is not a number", ErrBadConfig, s)
		}
		cfg.BasePort = n
	}
	if s := strings.TrimSpace(os.Getenv("WHIPPET_KAFKA_JAVA_OPTS")); s != "" {
		cfg.JavaOpts = strings.Fields(s)
	}
	return cfg, nil
}

// withDefaults fills in defaults and validates everything but StateDir.
func (c Config) withDefaults() (Config, error) {
	if c.Version == "" {
		c.Version = DefaultVersion
	}
	if _, err := majorVersion(c.Version); err != nil {
		return c, err
	}
	if c.Nodes == 0 {
		c.Nodes = 1
	}
	if c.Nodes < 1 || c.Nodes > MaxNodes {
		return c, fmt.Errorf("%w: Nodes=%d, want 1..%d", ErrBadConfig, c.Nodes, MaxNodes)
	}
	if c.BasePort == 0 {
		c.BasePort = DefaultBasePort
	}
	if err := c.Security.validate(); err != nil {
		return c, err
	}
	if c.BasePort < 1024 || c.securePort(c.Nodes) > 65535 {
		return c, fmt.Errorf("%w: BasePort=%d with %d node(s) needs ports %d..%d", ErrBadConfig,
			c.BasePort, c.Nodes, c.BasePort, c.controllerPort(c.Nodes))
	}
	if c.CacheDir == "" {
		c.CacheDir = os.Getenv("WHIPPET_KAFKA_CACHE")
	}
	if c.CacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return c, fmt.Errorf("%w: no CacheDir and no user cache dir: %w", ErrBadConfig, err)
		}
		c.CacheDir = filepath.Join(base, "whippet", "kafka")
	}
	if abs, err := filepath.Abs(c.CacheDir); err == nil {
		c.CacheDir = abs
	}
	if c.JavaOpts == nil {
		c.JavaOpts = DefaultJavaOpts
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.StateDir != "" {
		abs, err := filepath.Abs(c.StateDir)
		if err != nil {
			return c, fmt.Errorf("%w: StateDir: %w", ErrBadConfig, err)
		}
		c.StateDir = abs
	}
	return c, nil
}

func (c Config) progress(format string, args ...any) {
	if c.Stdout != nil {
		fmt.Fprintf(c.Stdout, format+"\n", args...)
	}
}

// Cluster is a local Kafka cluster recorded in a state directory.
type Cluster struct {
	// Brokers are the bootstrap addresses, one per node ("127.0.0.1:19092", ...).
	Brokers []string
	// Version is the broker version detected from the broker log ("Kafka version: X").
	Version string
	// Nodes is the number of nodes.
	Nodes int
	// LogPaths are the broker logs, one per node.
	LogPaths []string
	// StateDir is the cluster's state directory.
	StateDir string
	// Reused is true when Up found the cluster already running and healthy.
	Reused bool
	// ReadyIn is how long the cluster took from starting the JVMs to ready.
	ReadyIn time.Duration
	// SecureBrokers are the SASL_SSL addresses, one per node; nil without
	// Config.Security. See SecureClientOpts.
	SecureBrokers []string
	// CAFile is the PEM file of the CA that signed the secure listener's
	// certificate; "" without Config.Security.
	CAFile string

	mu sync.Mutex // guards st.Node[*].PID
	st state
}

// state is cluster.json.
type state struct {
	Version          string      `json:"version"`
	RequestedVersion string      `json:"requested_version"`
	Nodes            int         `json:"nodes"`
	BasePort         int         `json:"base_port"`
	Brokers          []string    `json:"brokers"`
	LogPaths         []string    `json:"log_paths"`
	StateDir         string      `json:"state_dir"`
	ClusterID        string      `json:"cluster_id"`
	Classpath        string      `json:"classpath"`
	Logging          string      `json:"logging"`
	Managed          bool        `json:"managed"` // started by Acquire: the last lease stops it
	StartedAt        time.Time   `json:"started_at"`
	ReadyInMillis    int64       `json:"ready_in_ms"`
	Node             []nodeState `json:"node"`
	Security         *secState   `json:"security,omitempty"`
}

type nodeState struct {
	ID         int      `json:"id"`
	PID        int      `json:"pid"`
	Broker     string   `json:"broker"`
	Controller string   `json:"controller"`
	Dir        string   `json:"dir"`
	DataDir    string   `json:"data_dir"`
	Properties string   `json:"properties"`
	LogPath    string   `json:"log_path"`
	StdoutPath string   `json:"stdout_path"`
	Command    []string `json:"command"`
}

const stateFileName = "cluster.json"

func (c *Cluster) sync() {
	c.Brokers = c.st.Brokers
	c.Version = c.st.Version
	c.Nodes = c.st.Nodes
	c.LogPaths = c.st.LogPaths
	c.StateDir = c.st.StateDir
	c.ReadyIn = time.Duration(c.st.ReadyInMillis) * time.Millisecond
	c.syncSecurity()
}

// Load returns the cluster recorded in stateDir, whether or not its
// processes still run (see Alive and Check). It returns an error wrapping
// ErrNotRunning if stateDir holds no cluster.
func Load(stateDir string) (*Cluster, error) {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("localkafka: %w", err)
	}
	return loadState(abs)
}

func loadState(dir string) (*Cluster, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotRunning, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("localkafka: read state: %w", err)
	}
	c := &Cluster{}
	if err := json.Unmarshal(b, &c.st); err != nil {
		return nil, fmt.Errorf("localkafka: corrupt %s: %w", filepath.Join(dir, stateFileName), err)
	}
	c.sync()
	return c, nil
}

func (c *Cluster) save() error {
	c.mu.Lock()
	b, err := json.MarshalIndent(&c.st, "", "  ")
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("localkafka: encode state: %w", err)
	}
	path := filepath.Join(c.st.StateDir, stateFileName)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("localkafka: write state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("localkafka: write state: %w", err)
	}
	return nil
}

// PIDs returns the process id of each node's JVM (index 0 is node 1).
func (c *Cluster) PIDs() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	pids := make([]int, len(c.st.Node))
	for i, n := range c.st.Node {
		pids[i] = n.PID
	}
	return pids
}

// Alive reports, per node (index 0 is node 1), whether its JVM runs.
func (c *Cluster) Alive() []bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	alive := make([]bool, len(c.st.Node))
	for i, n := range c.st.Node {
		alive[i] = n.alive()
	}
	return alive
}

func (n nodeState) alive() bool {
	return n.PID > 0 && processAlive(n.PID) && processIsOurs(n.PID, n.Properties)
}

// aliveAfter looks at node i again after d: a node seen gone once during
// start-up is checked a second time before the start-up is called failed
// (CI once failed a start on a node that was starting normally).
func (c *Cluster) aliveAfter(i int, d time.Duration) bool {
	time.Sleep(d)
	return c.Alive()[i]
}

func (c *Cluster) allAlive() bool {
	for _, a := range c.Alive() {
		if !a {
			return false
		}
	}
	return len(c.st.Node) > 0
}

// Check returns nil if every node runs and the cluster answers: all brokers
// in metadata, a replicated topic can be created, coordinators are found.
func (c *Cluster) Check(ctx context.Context) error {
	for i, a := range c.Alive() {
		if !a {
			return fmt.Errorf("%w: node %d (pid %d) is not running; log: %s", ErrNotReady, i+1, c.PIDs()[i], c.st.Node[i].LogPath)
		}
	}
	if err := probe(ctx, c.Brokers, len(c.st.Node)); err != nil {
		return err
	}
	return c.probeSecure(ctx)
}

// Up starts the cluster cfg describes in cfg.StateDir and waits until it is
// ready, or reuses the cluster already running there if it is healthy and has
// the same version, node count and ports. A stale or unhealthy cluster in the
// state dir is stopped and replaced. The JVMs are detached (own process group)
// and keep running after the calling process exits; stop them with Down.
func Up(ctx context.Context, cfg Config) (*Cluster, error) {
	cfg, unlock, err := prepare(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return up(ctx, cfg, false, false)
}

// prepare validates cfg, creates the state dir and locks it.
func prepare(ctx context.Context, cfg Config) (Config, func(), error) {
	if !supported {
		return cfg, nil, ErrUnsupported
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return cfg, nil, err
	}
	if cfg.StateDir == "" {
		return cfg, nil, fmt.Errorf("%w: StateDir is required", ErrBadConfig)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return cfg, nil, fmt.Errorf("localkafka: create state dir: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(cfg.StateDir, ".lock"))
	if err != nil {
		return cfg, nil, fmt.Errorf("localkafka: lock state dir: %w", err)
	}
	return cfg, unlock, nil
}

// up runs with the state dir locked. inUse means other processes hold leases
// on the cluster: it is then reused as long as its processes run.
func up(ctx context.Context, cfg Config, managed, inUse bool) (*Cluster, error) {
	if old, err := loadState(cfg.StateDir); err == nil {
		if old.allAlive() {
			if !old.sameShape(cfg) {
				if inUse {
					return nil, fmt.Errorf("%w: %s runs Apache Kafka %s with %d node(s) at %s, in use by other processes; "+
						"wanted %s with %d node(s) at port %d", ErrBusy, cfg.StateDir, old.Version, old.Nodes,
						strings.Join(old.Brokers, ","), cfg.Version, cfg.Nodes, cfg.BasePort)
				}
				if !managed || !old.st.Managed { // never replace a cluster someone started with Up
					return nil, fmt.Errorf("%w: %s runs Apache Kafka %s with %d node(s) at %s%s; wanted %s with %d node(s) at port %d%s: run Down first",
						ErrBusy, cfg.StateDir, old.Version, old.Nodes, strings.Join(old.Brokers, ","), old.securityNote(),
						cfg.Version, cfg.Nodes, cfg.BasePort, cfg.securityNote())
				}
				cfg.progress("localkafka: replacing Apache Kafka %s (%d node(s)) in %s", old.Version, old.Nodes, cfg.StateDir)
			} else {
				if inUse {
					old.Reused = true
					return old, nil
				}
				cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				err := old.Check(cctx)
				cancel()
				if err == nil {
					old.Reused = true
					return old, nil
				}
				cfg.progress("localkafka: cluster in %s is unhealthy (%v); restarting it", cfg.StateDir, err)
			}
		}
		if err := downLocked(ctx, old, cfg.progress); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, ErrNotRunning) {
		return nil, err
	}
	return start(ctx, cfg, managed)
}

func (c *Cluster) sameShape(cfg Config) bool {
	return (c.st.RequestedVersion == cfg.Version || c.st.Version == cfg.Version) &&
		c.st.Nodes == cfg.Nodes && c.st.BasePort == cfg.BasePort && c.sameSecurity(cfg)
}

func findJava() (string, error) {
	if home := os.Getenv("JAVA_HOME"); home != "" {
		p := filepath.Join(home, "bin", "java")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("java")
	if err != nil {
		return "", fmt.Errorf("%w: install a JDK/JRE 17+ or set JAVA_HOME", ErrNoJava)
	}
	return p, nil
}

// Available reports whether Up can work here without downloading anything it
// cannot: java is installed, and mvn is installed or the jars of version are
// already cached. The error says what is missing.
func Available(cfg Config) error {
	if !supported {
		return ErrUnsupported
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	if _, err := findJava(); err != nil {
		return err
	}
	if _, ok := cachedClasspath(cfg.CacheDir, cfg.Version); ok {
		return nil
	}
	_, err = findMaven()
	return err
}

// checkPorts fails with ErrPortInUse if a port the cluster needs is taken.
func checkPorts(cfg Config) error {
	for i := 1; i <= cfg.Nodes; i++ {
		for _, p := range []struct {
			port int
			what string
		}{{cfg.brokerPort(i), "PLAINTEXT"}, {cfg.controllerPort(i), "CONTROLLER"}, {cfg.securePort(i), SecureListenerName}} {
			if p.what == SecureListenerName && cfg.Security == nil {
				continue
			}
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("%w: %s (node %d %s listener) is taken: %w; another Kafka may run there "+
					"(whippet kafka status), or pick another base port (KAFKA_BASE_PORT)", ErrPortInUse, addr, i, p.what, err)
			}
			l.Close()
		}
	}
	return nil
}

func newClusterID() string {
	for {
		var b [16]byte
		_, _ = rand.Read(b[:])
		id := base64.RawURLEncoding.EncodeToString(b[:])
		if id[0] != '-' { // Kafka's Uuid.randomUuid avoids these too (they look like flags)
			return id
		}
	}
}

// start formats and launches a fresh cluster. The state dir is locked.
func start(ctx context.Context, cfg Config, managed bool) (*Cluster, error) {
	java, err := findJava()
	if err != nil {
		return nil, err
	}
	major, err := majorVersion(cfg.Version)
	if err != nil {
		return nil, err
	}
	cp, err := EnsureJars(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := checkPorts(cfg); err != nil {
		return nil, err
	}

	c := &Cluster{st: state{
		RequestedVersion: cfg.Version,
		Nodes:            cfg.Nodes,
		BasePort:         cfg.BasePort,
		StateDir:         cfg.StateDir,
		ClusterID:        newClusterID(),
		Classpath:        cp.Glob(),
		Logging:          cp.Logging,
		Managed:          managed,
	}}
	toolsLog, err := writeToolsLogConfig(cfg.StateDir, cp.Logging)
	if err != nil {
		return nil, err
	}
	sec, scramArgs, err := setupSecurity(cfg)
	if err != nil {
		return nil, err
	}
	c.st.Security = sec
	for i := 1; i <= cfg.Nodes; i++ {
		n, err := prepareNode(cfg, i, major, cp, java)
		if err != nil {
			return nil, err
		}
		c.st.Node = append(c.st.Node, n)
		c.st.Brokers = append(c.st.Brokers, n.Broker)
		c.st.LogPaths = append(c.st.LogPaths, n.LogPath)
	}
	c.sync()

	// Format every node's storage (in parallel: each is a short JVM run).
	errs := make([]error, cfg.Nodes)
	var wg sync.WaitGroup
	for i, n := range c.st.Node {
		wg.Go(func() { errs[i] = formatNode(ctx, java, toolsLog, cp, c.st.ClusterID, n, scramArgs) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	cfg.progress("localkafka: starting Apache Kafka %s (%d node(s)) in %s", cfg.Version, cfg.Nodes, cfg.StateDir)
	started := time.Now()
	c.st.StartedAt = started.UTC()
	for i := range c.st.Node {
		if err := c.launch(i, true); err != nil {
			c.killAll()
			return nil, err
		}
	}
	if err := c.save(); err != nil {
		c.killAll()
		return nil, err
	}

	err = c.waitReady(ctx, cfg.StartTimeout)
	if err == nil && sec != nil {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if serr := c.probeSecure(sctx); serr != nil {
			err = c.notReady(serr, 0)
		}
		cancel()
	}
	if err != nil {
		c.killAll()
		_ = os.Remove(filepath.Join(cfg.StateDir, stateFileName))
		return nil, err
	}
	c.st.ReadyInMillis = time.Since(started).Milliseconds()
	c.st.Version = detectVersion(c.st.Node[0].LogPath)
	if c.st.Version == "" {
		cfg.progress("localkafka: warning: no \"Kafka version:\" line in %s; recording the requested version", c.st.Node[0].LogPath)
		c.st.Version = cfg.Version
	}
	c.sync()
	if err := c.save(); err != nil {
		c.killAll()
		return nil, err
	}
	cfg.progress("localkafka: Apache Kafka %s ready at %s in %s", c.Version, strings.Join(c.Brokers, ","), c.ReadyIn.Round(10*time.Millisecond))
	return c, nil
}

func writeToolsLogConfig(dir, logging string) (string, error) {
	name := "tools-log4j2.properties"
	if logging == loggingLog4j1 {
		name = "tools-log4j.properties"
	}
	b, err := assets.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("localkafka: %w", err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", fmt.Errorf("localkafka: write %s: %w", path, err)
	}
	return path, nil
}

// logFlag is the JVM flag pointing the logging backend at path.
func logFlag(logging, path string) string {
	if logging == loggingLog4j1 {
		return "-Dlog4j.configuration=file:" + filepath.ToSlash(path)
	}
	return "-Dlog4j2.configurationFile=" + filepath.ToSlash(path)
}

// prepareNode writes node i's directory: fresh data dir and logs, config
// files, and the java command line.
func prepareNode(cfg Config, i, major int, cp Classpath, java string) (nodeState, error) {
	dir := filepath.Join(cfg.StateDir, "node"+strconv.Itoa(i))
	n := nodeState{
		ID:         i,
		Broker:     net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.brokerPort(i))),
		Controller: net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.controllerPort(i))),
		Dir:        dir,
		DataDir:    filepath.Join(dir, "data"),
		Properties: filepath.Join(dir, "server.properties"),
		LogPath:    filepath.Join(dir, "server.log"),
		StdoutPath: filepath.Join(dir, "stdout.log"),
	}
	if err := os.RemoveAll(n.DataDir); err != nil {
		return n, fmt.Errorf("localkafka: clear %s: %w", n.DataDir, err)
	}
	if err := os.MkdirAll(n.DataDir, 0o755); err != nil {
		return n, fmt.Errorf("localkafka: %w", err)
	}
	old, _ := filepath.Glob(n.LogPath + "*")
	for _, f := range append(old, n.StdoutPath) {
		_ = os.Remove(f)
	}
	props := serverProperties(cfg, i, n.DataDir, major)
	header := fmt.Sprintf("Generated by whippet localkafka: Apache Kafka %s, node %d of %d.", cfg.Version, i, cfg.Nodes)
	if err := os.WriteFile(n.Properties, renderProperties(header, props), 0o644); err != nil {
		return n, fmt.Errorf("localkafka: write %s: %w", n.Properties, err)
	}
	tmpl, logCfg := log4j2Tmpl, filepath.Join(dir, "log4j2.properties")
	if cp.Logging == loggingLog4j1 {
		tmpl, logCfg = log4j1Tmpl, filepath.Join(dir, "log4j.properties")
	}
	f, err := os.Create(logCfg)
	if err != nil {
		return n, fmt.Errorf("localkafka: %w", err)
	}
	err = tmpl.Execute(f, struct{ LogFile string }{filepath.ToSlash(n.LogPath)})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("localkafka: write %s: %w", logCfg, err)
	}
	n.Command = append([]string{java}, cfg.JavaOpts...)
	n.Command = append(n.Command,
		logFlag(cp.Logging, logCfg),
		"-Dkafka.logs.dir="+dir,
		"-cp", cp.Glob(),
		"kafka.Kafka", n.Properties)
	return n, nil
}

// formatNode formats n's storage. secretArgs are more StorageTool format
// arguments (the --add-scram users of the secure listener): they go through
// an owner-only java @argfile, never on the command line.
func formatNode(ctx context.Context, java, toolsLog string, cp Classpath, clusterID string, n nodeState, secretArgs []string) error {
	// Static controller.quorum.voters: no --standalone/--initial-controllers (4.1+ rejects them).
	main := []string{"kafka.tools.StorageTool", "format", "-t", clusterID, "-c", n.Properties}
	if len(secretArgs) > 0 {
		argFile, err := writeArgFile(n.Dir, append(main, secretArgs...))
		if err != nil {
			return err
		}
		defer os.Remove(argFile)
		main = []string{"@" + argFile}
	}
	cmd := exec.CommandContext(ctx, java, append([]string{"-Xmx256m", logFlag(cp.Logging, toolsLog), "-cp", cp.Glob()}, main...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("localkafka: format storage of node %d (%s): %w\n%s", n.ID, strings.Join(cmd.Args, " "), err, tail(string(out), 30))
	}
	return nil
}

// launch starts node index i (0-based) detached, appending to its stdout log
// unless fresh.
func (c *Cluster) launch(i int, fresh bool) error {
	c.mu.Lock()
	n := c.st.Node[i]
	c.mu.Unlock()
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if fresh {
		flags |= os.O_TRUNC
	}
	out, err := os.OpenFile(n.StdoutPath, flags, 0o644)
	if err != nil {
		return fmt.Errorf("localkafka: %w", err)
	}
	defer out.Close()
	fmt.Fprintf(out, "# %s whippet localkafka: %s\n", time.Now().Format(time.RFC3339), strings.Join(n.Command, " "))
	cmd := exec.Command(n.Command[0], n.Command[1:]...)
	cmd.Dir = n.Dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = detachedAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("localkafka: start node %d: %w", n.ID, err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release() // reaped by processAlive (Wait4) or by init once we exit
	_ = os.WriteFile(filepath.Join(n.Dir, "kafka.pid"), []byte(strconv.Itoa(pid)+"\n"), 0o644)
	c.mu.Lock()
	c.st.Node[i].PID = pid
	c.mu.Unlock()
	return nil
}

// killAll SIGKILLs every node we started (used when start-up fails).
func (c *Cluster) killAll() {
	c.mu.Lock()
	nodes := append([]nodeState(nil), c.st.Node...)
	c.mu.Unlock()
	for _, n := range nodes {
		if n.alive() {
			_ = signalKill(n.PID)
		}
	}
	for _, n := range nodes {
		waitExit(context.Background(), n.PID, 5*time.Second)
	}
}

// waitExit waits up to d for pid to exit; it reports whether it did.
func waitExit(ctx context.Context, pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if !processAlive(pid) {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitReady polls until probe succeeds, a node exits, or timeout.
func (c *Cluster) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		for i, a := range c.Alive() {
			if !a && !c.aliveAfter(i, 300*time.Millisecond) {
				return c.notReady(fmt.Errorf("node %d exited during start-up", i+1), i)
			}
		}
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		last = probe(actx, c.Brokers, len(c.st.Node))
		acancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return c.notReady(fmt.Errorf("not ready after %s: %w (last check: %v)", timeout, ctx.Err(), last), 0)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// notReady builds the start-up failure error with the tails of node i's logs.
func (c *Cluster) notReady(cause error, i int) error {
	n := c.st.Node[i]
	return fmt.Errorf("%w: Apache Kafka %s (%d node(s)) in %s: %w\n--- tail of %s ---\n%s\n--- tail of %s (JVM output) ---\n%s",
		ErrNotReady, c.st.RequestedVersion, c.st.Nodes, c.st.StateDir, cause,
		n.LogPath, tailFile(n.LogPath, 25), n.StdoutPath, tailFile(n.StdoutPath, 10))
}

var versionLineRE = regexp.MustCompile(`Kafka version: (\S+)`)

// detectVersion returns the version in the first AppInfoParser
// "Kafka version: X" line of the broker log, or "".
func detectVersion(logPath string) string {
	f, err := os.Open(logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 8<<20))
	if m := versionLineRE.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return ""
}

// Down stops the cluster in stateDir: SIGTERM to every node, a bounded wait
// (15s, or less if ctx ends sooner), SIGKILL for what is left. It then
// removes the data directories, pid files and cluster.json, and keeps the
// logs and configs for post-mortems. Down on a state dir without a cluster
// is a no-op.
func Down(ctx context.Context, stateDir string) error {
	if !supported {
		return ErrUnsupported
	}
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return fmt.Errorf("localkafka: %w", err)
	}
	if _, err := os.Stat(abs); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	unlock, err := lockFile(ctx, filepath.Join(abs, ".lock"))
	if err != nil {
		return fmt.Errorf("localkafka: lock state dir: %w", err)
	}
	defer unlock()
	c, err := loadState(abs)
	if errors.Is(err, ErrNotRunning) {
		return nil
	}
	if err != nil {
		return err
	}
	return downLocked(ctx, c, nil)
}

// GracefulStopTimeout bounds how long Down and Stop wait after SIGTERM before
// they SIGKILL.
const GracefulStopTimeout = 15 * time.Second

func downLocked(ctx context.Context, c *Cluster, progress func(string, ...any)) error {
	c.mu.Lock()
	nodes := append([]nodeState(nil), c.st.Node...)
	c.mu.Unlock()
	var running []nodeState
	for _, n := range nodes {
		if n.alive() {
			_ = signalCont(n.PID) // a paused JVM cannot handle SIGTERM
			if err := signalTerm(n.PID); err != nil {
				return fmt.Errorf("localkafka: stop node %d: %w", n.ID, err)
			}
			running = append(running, n)
		}
	}
	deadline := time.Now().Add(GracefulStopTimeout)
	var errs []error
	for _, n := range running {
		if waitExit(ctx, n.PID, time.Until(deadline)) {
			continue
		}
		if progress != nil {
			progress("localkafka: node %d did not stop within %s; killing it", n.ID, GracefulStopTimeout)
		}
		_ = signalKill(n.PID)
		if !waitExit(context.Background(), n.PID, 10*time.Second) {
			errs = append(errs, fmt.Errorf("localkafka: node %d (pid %d) survived SIGKILL", n.ID, n.PID))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, n := range nodes {
		if err := os.RemoveAll(n.DataDir); err != nil {
			errs = append(errs, fmt.Errorf("localkafka: remove %s: %w", n.DataDir, err))
		}
		_ = os.Remove(filepath.Join(n.Dir, "kafka.pid"))
	}
	_ = os.RemoveAll(filepath.Join(c.st.StateDir, leasesDirName))
	_ = os.RemoveAll(securityDir(c.st.StateDir)) // the broker key and the users' passwords
	if err := os.Remove(filepath.Join(c.st.StateDir, stateFileName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("localkafka: %w", err))
	}
	return errors.Join(errs...)
}

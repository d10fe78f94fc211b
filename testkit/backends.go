package testkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/testkit/localkafka"
)

// DefaultLocalBasePort is node 1's port of the local backend's cluster,
// away from the 19092 of `whippet kafka up` so both can run at once.
const DefaultLocalBasePort = 29092

// environment is what backend selection reads from the process environment.
type environment struct {
	Mode    string   // WHIPPET_KAFKA, lower-cased; "" means auto
	Brokers []string // KAFKA_BROKERS
	CI      bool     // CI is true/1/yes
}

func readEnv() environment {
	e := environment{Mode: strings.ToLower(strings.TrimSpace(os.Getenv("WHIPPET_KAFKA")))}
	for _, b := range strings.Split(os.Getenv("KAFKA_BROKERS"), ",") {
		if b = strings.TrimSpace(b); b != "" {
			e.Brokers = append(e.Brokers, b)
		}
	}
	switch strings.ToLower(strings.TrimSpace(os.Getenv("CI"))) {
	case "true", "1", "yes":
		e.CI = true
	}
	return e
}

// plan decides which backends to try, in order. It calls the probes only
// when their answer matters. skipped explains the auto-mode backends it left
// out. It never returns kfake when env.CI is set.
func plan(env environment, docker, local func() error) (candidates []Backend, skipped []string, err error) {
	switch env.Mode {
	case "external":
		if len(env.Brokers) == 0 {
			return nil, nil, errors.New("testkit: WHIPPET_KAFKA=external needs KAFKA_BROKERS (host:port,...)")
		}
		return []Backend{BackendExternal}, nil, nil
	case "docker":
		if err := docker(); err != nil {
			return nil, nil, fmt.Errorf("testkit: WHIPPET_KAFKA=docker but Docker cannot be used: %w", err)
		}
		return []Backend{BackendDocker}, nil, nil
	case "local":
		if err := local(); err != nil {
			return nil, nil, fmt.Errorf("testkit: WHIPPET_KAFKA=local but it cannot run here: %w", err)
		}
		return []Backend{BackendLocal}, nil, nil
	case "kfake":
		if env.CI {
			return nil, nil, errors.New("testkit: WHIPPET_KAFKA=kfake is not allowed with CI=true: " +
				"CI tests need a real Apache Kafka (use testkit.Fake explicitly for fake-only unit tests)")
		}
		return []Backend{BackendKfake}, nil, nil
	case "", "auto":
	default:
		return nil, nil, fmt.Errorf("testkit: WHIPPET_KAFKA=%q: want auto, external, docker, local or kfake", env.Mode)
	}
	if len(env.Brokers) > 0 {
		return []Backend{BackendExternal}, nil, nil
	}
	if err := docker(); err == nil {
		candidates = append(candidates, BackendDocker)
	} else {
		skipped = append(skipped, "docker: "+err.Error())
	}
	if err := local(); err == nil {
		candidates = append(candidates, BackendLocal)
	} else {
		skipped = append(skipped, "local: "+err.Error())
	}
	if !env.CI {
		candidates = append(candidates, BackendKfake)
	}
	if len(candidates) == 0 {
		return nil, skipped, fmt.Errorf("testkit: CI=true and no real Apache Kafka is available (kfake is not allowed in CI). "+
			"Set KAFKA_BROKERS, or provide Docker, or Java 17+ and Maven:\n  %s", strings.Join(skipped, "\n  "))
	}
	return candidates, skipped, nil
}

// --- external ---

// ExternalWait bounds how long the external backend waits for KAFKA_BROKERS to answer.
const ExternalWait = 20 * time.Second

func startExternal(ctx context.Context, env environment) (*Cluster, func(context.Context) error, error) {
	if err := waitBrokers(ctx, env.Brokers, ExternalWait); err != nil {
		return nil, nil, fmt.Errorf("KAFKA_BROKERS=%s does not answer: %w", strings.Join(env.Brokers, ","), err)
	}
	c := &Cluster{Brokers: env.Brokers, Backend: BackendExternal, Version: "unknown", Real: true}
	// `whippet kafka up` records the cluster in KAFKA_STATE_DIR; use it if it is this one.
	if dir := os.Getenv("KAFKA_STATE_DIR"); dir != "" {
		if lc, err := localkafka.Load(dir); err == nil && slices.Equal(lc.Brokers, env.Brokers) {
			c.Version = lc.Version
			if len(lc.LogPaths) > 0 {
				c.LogPath = lc.LogPaths[0]
			}
		}
	}
	if v := strings.TrimSpace(os.Getenv("KAFKA_VERSION")); v != "" {
		c.Version = v
	}
	return c, func(context.Context) error { return nil }, nil
}

// waitBrokers polls the brokers' metadata until they answer or d passes.
func waitBrokers(ctx context.Context, brokers []string, d time.Duration) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DialTimeout(2*time.Second))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, 3*time.Second)
		m, err := adm.BrokerMetadata(actx)
		acancel()
		if err == nil && len(m.Brokers) > 0 {
			return nil
		}
		if err == nil {
			err = errors.New("metadata lists no brokers")
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// --- local ---

func localConfig() (localkafka.Config, error) {
	cfg, err := localkafka.ConfigFromEnv()
	if err != nil {
		return cfg, err
	}
	// Not KAFKA_STATE_DIR: that is `whippet kafka up`'s cluster, which tests reach through KAFKA_BROKERS.
	cfg.StateDir = os.Getenv("WHIPPET_TESTKIT_STATE_DIR")
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(os.TempDir(), fmt.Sprintf("whippet-testkit-kafka-%d", os.Getuid()))
	}
	if cfg.BasePort == 0 {
		cfg.BasePort = DefaultLocalBasePort
	}
	return cfg, nil
}

func localAvailable() error {
	cfg, err := localConfig()
	if err != nil {
		return err
	}
	return localkafka.Available(cfg)
}

func startLocal(ctx context.Context, _ environment) (*Cluster, func(context.Context) error, error) {
	cfg, err := localConfig()
	if err != nil {
		return nil, nil, err
	}
	lc, release, err := localkafka.Acquire(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	c := &Cluster{Brokers: lc.Brokers, Backend: BackendLocal, Version: lc.Version, Real: true}
	if len(lc.LogPaths) > 0 {
		c.LogPath = lc.LogPaths[0]
	}
	return c, release, nil
}

// --- docker ---

// DockerCluster is what a Docker starter registered with RegisterDocker
// returns: the container's bootstrap addresses, the Kafka version it runs,
// where to read its log, and how to remove it.
type DockerCluster struct {
	Brokers []string
	Version string
	LogHint string // e.g. "docker logs <id>"
	Stop    func(context.Context) error
}

var dockerStarter struct {
	mu    sync.Mutex
	start func(context.Context) (*DockerCluster, error)
}

// RegisterDocker installs the Docker backend's starter. Package
// testkit/docker calls it from its init function; tests that want Docker
// import that package (for its side effect) rather than calling this.
func RegisterDocker(start func(context.Context) (*DockerCluster, error)) {
	dockerStarter.mu.Lock()
	defer dockerStarter.mu.Unlock()
	dockerStarter.start = start
}

func registeredDocker() func(context.Context) (*DockerCluster, error) {
	dockerStarter.mu.Lock()
	defer dockerStarter.mu.Unlock()
	return dockerStarter.start
}

// errNoDockerBackend says why docker was not tried when nothing registered it.
var errNoDockerBackend = errors.New(`the Docker backend is not linked in (import _ "github.com/whippet-go/whippet/testkit/docker")`)

// dockerUsable reports whether the Docker backend can be tried: registered,
// and an engine answers.
func dockerUsable(ctx context.Context) error {
	if registeredDocker() == nil {
		return errNoDockerBackend
	}
	return dockerAvailable(ctx)
}

func startDocker(ctx context.Context) (*Cluster, func(context.Context) error, error) {
	start := registeredDocker()
	if start == nil {
		return nil, nil, errNoDockerBackend
	}
	dc, err := start(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := waitBrokers(ctx, dc.Brokers, time.Minute); err != nil {
		_ = dc.Stop(context.Background())
		return nil, nil, fmt.Errorf("the Kafka container started but does not answer: %w", err)
	}
	c := &Cluster{Brokers: dc.Brokers, Backend: BackendDocker, Version: dc.Version, Real: true, logHint: dc.LogHint}
	return c, dc.Stop, nil
}

// dockerAvailable pings the Docker engine (GET /_ping) with a short timeout.
// Without DOCKER_HOST it tries the usual sockets; if none exists it fails
// at once, without dialling anything.
func dockerAvailable(ctx context.Context) error {
	network, addr, err := dockerEndpoint()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if network == "tcp" && os.Getenv("DOCKER_TLS_VERIFY") != "" {
			// TLS engines answer plain HTTP with an error; reaching the port is enough here.
			if c, derr := net.DialTimeout("tcp", addr, time.Second); derr == nil {
				c.Close()
				return nil
			}
		}
		return fmt.Errorf("docker engine at %s://%s: %w", network, addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("docker engine at %s://%s: /_ping: %s", network, addr, resp.Status)
	}
	return nil
}

func dockerEndpoint() (network, addr string, err error) {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		switch {
		case strings.HasPrefix(h, "unix://"):
			return "unix", strings.TrimPrefix(h, "unix://"), nil
		case strings.HasPrefix(h, "tcp://"):
			return "tcp", strings.TrimSuffix(strings.TrimPrefix(h, "tcp://"), "/"), nil
		default:
			return "", "", fmt.Errorf("DOCKER_HOST=%s: only unix:// and tcp:// are probed", h)
		}
	}
	var socks []string
	socks = append(socks, "/var/run/docker.sock")
	if home, err := os.UserHomeDir(); err == nil {
		socks = append(socks,
			filepath.Join(home, ".docker", "run", "docker.sock"),
			filepath.Join(home, ".docker", "desktop", "docker.sock"),
			filepath.Join(home, ".colima", "default", "docker.sock"),
			filepath.Join(home, ".rd", "docker.sock"))
	}
	if xdg := os.Getenv("XDG_RUNTIME_DIR"); xdg != "" {
		socks = append(socks, filepath.Join(xdg, "docker.sock"))
	}
	for _, s := range socks {
		if st, err := os.Stat(s); err == nil && st.Mode()&os.ModeSocket != 0 {
			return "unix", s, nil
		}
	}
	return "", "", errors.New("no Docker engine (no DOCKER_HOST, no docker.sock)")
}

// Package securetest is test plumbing for the security tests of whippet's
// packages: a real Apache Kafka with a SASL_SSL listener of its own (package
// localkafka), a logger that keeps everything logged at Debug level as
// text, and checks that a secret appears nowhere in what was captured.
package securetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mrand "math/rand/v2"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/whippet-go/whippet/testkit/localkafka"
)

// Cluster is a running secure cluster and its user.
type Cluster struct {
	*localkafka.Cluster
	// User is the SCRAM-SHA-512 user (with its random password).
	User localkafka.User
}

// Start starts a 1-node Apache Kafka (localkafka.DefaultVersion, or
// $KAFKA_VERSION) with a secure listener and one user with a random
// password, in a temporary state dir at a free base port, and stops it when
// the test ends. It fails the test if Kafka cannot run here; with -short
// (and CI not "true") it skips it, as package localkafka's tests do.
func Start(t testing.TB) *Cluster {
	t.Helper()
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("starts a real broker; skipped with -short (as package localkafka's tests)")
	}
	var pw [18]byte
	_, _ = rand.Read(pw[:])
	user := localkafka.User{Name: "whippet-test", Password: "pw-" + hex.EncodeToString(pw[:])}
	cfg := localkafka.Config{
		Version:  os.Getenv("KAFKA_VERSION"),
		StateDir: t.TempDir(),
		Security: &localkafka.Security{Users: []localkafka.User{user}},
	}
	if err := localkafka.Available(cfg); err != nil {
		t.Fatalf("securetest: a real Kafka is needed: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var lastErr error
	for try := 0; try < 5; try++ {
		cfg.BasePort = FreeBasePort()
		c, err := localkafka.Up(ctx, cfg)
		if errors.Is(err, localkafka.ErrPortInUse) {
			lastErr = err
			continue
		}
		if err != nil {
			t.Fatalf("securetest: start Kafka: %v", err)
		}
		t.Cleanup(func() {
			dctx, dcancel := context.WithTimeout(context.Background(), time.Minute)
			defer dcancel()
			if err := localkafka.Down(dctx, cfg.StateDir); err != nil {
				t.Errorf("securetest: stop Kafka: %v", err)
			}
		})
		return &Cluster{Cluster: c, User: user}
	}
	t.Fatalf("securetest: no free ports: %v", lastErr)
	return nil
}

// FreeBasePort returns a base port whose node-1 ports (+0, +1, +2) are free,
// between 21092 and 29000 (below Linux's ephemeral range, away from 19092
// and 29092), starting at a random place so that test binaries started
// together rarely pick the same one.
func FreeBasePort() int {
	const lo, step, n = 21092, 500, 16
	start := mrand.IntN(n)
	for i := range n {
		base := lo + ((start+i)%n)*step
		if portsFree(base, base+1, base+2) {
			return base
		}
	}
	return lo
}

func portsFree(ports ...int) bool {
	for _, p := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// Opts returns the client options that reach the secure listener as the
// cluster's user.
func (c *Cluster) Opts(t testing.TB) []kgo.Opt {
	t.Helper()
	return c.OptsAs(t, c.User)
}

// OptsAs returns the client options that reach the secure listener with
// any name and password.
func (c *Cluster) OptsAs(t testing.TB, u localkafka.User) []kgo.Opt {
	t.Helper()
	opts, err := c.SecureClientOptsAs(u)
	if err != nil {
		t.Fatal(err)
	}
	return opts
}

// WrongUser is the cluster's user with a wrong (random) password.
func (c *Cluster) WrongUser() localkafka.User {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return localkafka.User{Name: c.User.Name, Password: "wrong-" + hex.EncodeToString(b[:])}
}

// Capture collects, as text, everything logged through its Logger (every
// level, every field, JSON-encoded) plus any text added with Add.
type Capture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// NewCapture returns an empty Capture.
func NewCapture() *Capture { return &Capture{} }

// Write implements io.Writer for the logger's core and for stderr-like uses.
func (c *Capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

// Sync implements zapcore.WriteSyncer.
func (c *Capture) Sync() error { return nil }

// Logger returns a zap logger at Debug level that writes to the Capture.
func (c *Capture) Logger() *zap.Logger {
	enc := zapcore.NewJSONEncoder(zap.NewDevelopmentEncoderConfig())
	return zap.New(zapcore.NewCore(enc, c, zapcore.DebugLevel))
}

// Add appends more captured text (an error's message, a command's output).
func (c *Capture) Add(what, text string) {
	fmt.Fprintf(c, "--- %s ---\n%s\n", what, text)
}

// AddMetrics appends the text exposition of everything g gathers (names,
// help, label names and values).
func (c *Capture) AddMetrics(t testing.TB, g prometheus.Gatherer) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		fmt.Fprintf(&b, "%s %q\n", mf.GetName(), mf.GetHelp())
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				fmt.Fprintf(&b, "  %s=%q\n", l.GetName(), l.GetValue())
			}
		}
	}
	c.Add("metrics", b.String())
}

// String returns everything captured.
func (c *Capture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// Lines returns the number of captured lines (to show the capture is not
// empty, so that "no secret found" means something).
func (c *Capture) Lines() int { return strings.Count(c.String(), "\n") }

// AssertNoSecret fails the test if any secret occurs in the captured text.
// It also fails if the capture is shorter than minLines, so that an empty
// capture cannot pass.
func (c *Capture) AssertNoSecret(t testing.TB, minLines int, secrets ...string) {
	t.Helper()
	text := c.String()
	if n := strings.Count(text, "\n"); n < minLines {
		t.Errorf("captured only %d lines, want at least %d: the check would prove nothing", n, minLines)
	}
	for _, s := range secrets {
		if s == "" {
			t.Fatal("AssertNoSecret: empty secret")
		}
		if i := strings.Index(text, s); i >= 0 {
			lo, hi := max(0, i-200), min(len(text), i+len(s)+50)
			t.Errorf("a secret was captured (%d lines captured); around it: ...%s...", strings.Count(text, "\n"),
				strings.ReplaceAll(text[lo:hi], s, "<SECRET>"))
		}
	}
}

// KeyMaterial returns the base64 body lines of the PEM private keys in the
// files, to look for in captured text: a leaked key would show them.
func KeyMaterial(t testing.TB, files ...string) []string {
	t.Helper()
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		in := false
		for _, l := range strings.Split(string(b), "\n") {
			switch {
			case strings.HasPrefix(l, "-----BEGIN") && strings.Contains(l, "PRIVATE KEY"):
				in = true
			case strings.HasPrefix(l, "-----END"):
				in = false
			case in && len(l) >= 16:
				out = append(out, l)
			}
		}
	}
	return out
}

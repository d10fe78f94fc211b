package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/consumer/admin"
	"github.com/whippet-go/whippet/internal/securetest"
	"github.com/whippet-go/whippet/retry"
)

func TestSecurityFlagsUsage(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	t.Setenv("WHIPPET_SASL_PASSWORD", "")
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := "-brokers=127.0.0.1:1" // never contacted: these errors come first
	for _, tc := range []struct {
		args     []string
		code     int
		inStderr string
	}{
		{[]string{"dlq", "list", b, "-topic", "t", "-sasl-password", "hunter2"}, 2, "-sasl-password is not accepted"},
		{[]string{"dlq", "list", b, "-topic", "t", "--sasl-password=hunter2"}, 2, "set WHIPPET_SASL_PASSWORD or use -sasl-password-file"},
		{[]string{"dlq", "list", b, "-topic", "t", "-sasl-mechanism", "GSSAPI", "-sasl-user", "u"}, 2, `-sasl-mechanism "GSSAPI": want one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512`},
		{[]string{"dlq", "list", b, "-topic", "t", "-sasl-user", "u"}, 2, "need -sasl-mechanism"},
		{[]string{"dlq", "list", b, "-topic", "t", "-sasl-mechanism", "SCRAM-SHA-512"}, 2, "needs -sasl-user"},
		{[]string{"dlq", "list", b, "-topic", "t", "-sasl-mechanism", "scram-sha-256", "-sasl-user", "u"}, 2, "needs a password: set WHIPPET_SASL_PASSWORD"},
		{[]string{"dlq", "list", b, "-topic", "t", "-sasl-mechanism", "PLAIN", "-sasl-user", "u", "-sasl-password-file", empty}, 1, "is empty"},
		{[]string{"dlq", "list", b, "-topic", "t", "-sasl-mechanism", "PLAIN", "-sasl-user", "u", "-sasl-password-file", filepath.Join(dir, "nope")}, 1, "-sasl-password-file: open"},
		{[]string{"dlq", "list", b, "-topic", "t", "-tls-cert", notPEM}, 2, "-tls-cert and -tls-key go together"},
		{[]string{"dlq", "list", b, "-topic", "t", "-tls-ca", notPEM}, 1, "holds no PEM certificate"},
		{[]string{"dlq", "list", b, "-topic", "t", "-tls-ca", filepath.Join(dir, "nope")}, 1, "-tls-ca: open"},
		{[]string{"dlq", "list", b, "-topic", "t", "-tls-cert", notPEM, "-tls-key", notPEM}, 1, "-tls-cert"},
		{[]string{"dlq", "list", "-h"}, 0, "-sasl-password-file"},
		{[]string{"spool", "drain", "-dir", dir, b, "-sasl-password", "hunter2"}, 2, "-sasl-password is not accepted"},
		{[]string{"spool", "drain", "-dir", dir, b, "-sasl-mechanism", "GSSAPI", "-sasl-user", "u"}, 2, `-sasl-mechanism "GSSAPI": want one of`},
		{[]string{"spool", "drain", "-dir", dir, b, "-sasl-mechanism", "PLAIN"}, 2, "needs -sasl-user"},
		{[]string{"spool", "drain", "-dir", dir, b, "-tls-ca", notPEM}, 1, "holds no PEM certificate"},
		{[]string{"spool", "drain", "-dir", dir, "-tls"}, 2, "no brokers"},
		{[]string{"spool", "drain", "-h"}, 0, "-sasl-password-file"},
	} {
		code, stdout, stderr := cli(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.inStderr) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tc.args, code, stderr, tc.code, tc.inStderr)
		}
		if strings.Contains(stdout+stderr, "hunter2") {
			t.Errorf("run(%q) repeated the password: %s%s", tc.args, stdout, stderr)
		}
	}
}

// TestSecureCLI starts Apache Kafka with `whippet kafka up -secure`, then
// lists and shows dead-letter records through the SASL_SSL listener with
// the env file's settings (password from a file, then from the
// environment), checks that a wrong password fails with a message naming
// the user, the mechanism and the TLS trust, and that no output of any
// command holds the password or the broker's key.
func TestSecureCLI(t *testing.T) {
	if testing.Short() && os.Getenv("CI") != "true" {
		t.Skip("starts a real broker; skipped with -short")
	}
	dir := t.TempDir()
	base := strconv.Itoa(securetest.FreeBasePort())
	capture := securetest.NewCapture()
	run := func(args ...string) (int, string, string) {
		t.Helper()
		code, stdout, stderr := cli(t, args...)
		capture.Add("whippet "+strings.Join(args, " "), stdout+stderr)
		return code, stdout, stderr
	}
	code, stdout, stderr := run("kafka", "up", "-secure", "-state-dir", dir, "-base-port", base, "-timeout", "3m")
	t.Cleanup(func() { cli(t, "kafka", "down", "-state-dir", dir) })
	if code != 0 {
		t.Fatalf("kafka up -secure: %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "SASL_SSL at 127.0.0.1:") || !strings.Contains(stdout, "user(s) whippet") {
		t.Errorf("kafka up -secure does not say where the secure listener is:\n%s", stdout)
	}
	env := readEnv(t, filepath.Join(dir, "env"))
	for _, k := range []string{"KAFKA_BROKERS", "KAFKA_SECURE_BROKERS", "KAFKA_CA_FILE", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USER", "KAFKA_SASL_PASSWORD_FILE"} {
		if env[k] == "" {
			t.Fatalf("env file lacks %s: %v", k, env)
		}
	}
	pwBytes, err := os.ReadFile(env["KAFKA_SASL_PASSWORD_FILE"])
	if err != nil {
		t.Fatal(err)
	}
	password := strings.TrimSpace(string(pwBytes))

	// Dead letters, written over PLAINTEXT.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	plain, err := kgo.NewClient(kgo.SeedBrokers(env["KAFKA_BROKERS"]))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	const topic, dlqTopic = "payments", "payments-g-dlq"
	if _, err := kadm.NewClient(plain).CreateTopics(ctx, 1, 1, nil, topic, dlqTopic); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		now := time.Now()
		info := retry.Info{Attempt: 1, OriginalTopic: topic, OriginalOffset: int64(i), OriginalTimestamp: now, Group: "g",
			FirstFailure: now, LastFailure: now, LastError: "declined", Reason: retry.ReasonExhausted}
		rec := &kgo.Record{Topic: dlqTopic, Key: []byte("k" + strconv.Itoa(i)), Value: []byte("v"), Headers: info.Headers(nil)}
		if err := plain.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	secure := []string{"-brokers", env["KAFKA_SECURE_BROKERS"], "-tls-ca", env["KAFKA_CA_FILE"],
		"-sasl-mechanism", env["KAFKA_SASL_MECHANISM"], "-sasl-user", env["KAFKA_SASL_USER"], "-topic", dlqTopic}
	t.Run("password file", func(t *testing.T) {
		code, stdout, stderr := run(append([]string{"dlq", "list", "-json", "-sasl-password-file", env["KAFKA_SASL_PASSWORD_FILE"]}, secure...)...)
		if code != 0 || strings.Count(stdout, "\n") != 2 || !strings.Contains(stdout, "declined") {
			t.Fatalf("dlq list over SASL_SSL: %d\nstdout %s\nstderr %s", code, stdout, stderr)
		}
	})
	t.Run("password from the environment", func(t *testing.T) {
		t.Setenv("WHIPPET_SASL_PASSWORD", password)
		code, stdout, stderr := run(append([]string{"dlq", "show", "-partition", "0", "-offset", "1"}, secure...)...)
		if code != 0 || !strings.Contains(stdout, "k1") {
			t.Fatalf("dlq show over SASL_SSL: %d\nstdout %s\nstderr %s", code, stdout, stderr)
		}
	})
	wrong := "wrong-" + password[:8]
	t.Run("wrong password", func(t *testing.T) {
		t.Setenv("WHIPPET_SASL_PASSWORD", wrong)
		start := time.Now()
		code, stdout, stderr := run(append([]string{"dlq", "list", "-timeout", "1m"}, secure...)...)
		t.Logf("wrong password: exit %d after %s: %s", code, time.Since(start), stderr)
		want := `Kafka refused the connection (SASL SCRAM-SHA-512 as user "whippet", TLS trusting ` + env["KAFKA_CA_FILE"] + `)`
		// SASL_AUTHENTICATION_FAILED, not a deadline: it did not wait for -timeout.
		if code != 1 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "SASL_AUTHENTICATION_FAILED") {
			t.Errorf("exit %d, stdout %q, stderr %q; want 1 and %q", code, stdout, stderr, want)
		}
	})
	t.Run("plaintext client", func(t *testing.T) {
		code, _, stderr := run("dlq", "list", "-brokers", env["KAFKA_SECURE_BROKERS"], "-topic", dlqTopic, "-timeout", "1m")
		if code != 1 || !strings.Contains(stderr, "(no SASL, no TLS)") || !strings.Contains(stderr, "tls") {
			t.Errorf("plaintext dlq list on the SASL_SSL port: exit %d, stderr %q", code, stderr)
		}
	})

	// A spool filled while Kafka was unreachable, drained through the
	// SASL_SSL listener with the same flags as dlq.
	spoolConn := []string{"-brokers", env["KAFKA_SECURE_BROKERS"], "-tls-ca", env["KAFKA_CA_FILE"],
		"-sasl-mechanism", env["KAFKA_SASL_MECHANISM"], "-sasl-user", env["KAFKA_SASL_USER"], "-timeout", "1m"}
	const spoolTopic = "orders"
	if _, err := kadm.NewClient(plain).CreateTopics(ctx, 1, 1, nil, spoolTopic); err != nil {
		t.Fatal(err)
	}
	spoolDir := filepath.Join(t.TempDir(), "spool")
	fillSpool(t, spoolDir, spoolTopic, "a", "b")
	t.Run("spool drain, wrong password", func(t *testing.T) {
		t.Setenv("WHIPPET_SASL_PASSWORD", wrong)
		code, stdout, stderr := run(append([]string{"spool", "drain", "-dir", spoolDir}, spoolConn...)...)
		t.Logf("spool drain, wrong password: exit %d: %s", code, stderr)
		want := `Kafka refused the connection (SASL SCRAM-SHA-512 as user "whippet", TLS trusting ` + env["KAFKA_CA_FILE"] + `)`
		if code != 1 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "SASL_AUTHENTICATION_FAILED") {
			t.Errorf("exit %d, stdout %q, stderr %q; want 1 and %q", code, stdout, stderr, want)
		}
	})
	t.Run("spool drain", func(t *testing.T) {
		code, stdout, stderr := run(append([]string{"spool", "drain", "-dir", spoolDir, "-sasl-password-file", env["KAFKA_SASL_PASSWORD_FILE"]}, spoolConn...)...)
		if code != 0 || !strings.Contains(stdout, "drained: 2 relayed") {
			t.Fatalf("spool drain over SASL_SSL: %d\nstdout %s\nstderr %s", code, stdout, stderr)
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(env["KAFKA_BROKERS"]), kgo.ConsumeTopics(spoolTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		var got []string
		for len(got) < 2 && ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
		}
		if strings.Join(got, ",") != "a,b" {
			t.Errorf("%s holds %q after the drain, want a, b", spoolTopic, got)
		}
	})

	code, stdout, _ = run("kafka", "status", "-state-dir", dir)
	if code != 0 || !strings.Contains(stdout, "SASL_SSL at") {
		t.Errorf("kafka status: %d\n%s", code, stdout)
	}
	keyLines := securetest.KeyMaterial(t, filepath.Join(dir, "security", "broker.pem"))
	capture.AssertNoSecret(t, 10, append([]string{password, wrong}, keyLines...)...)

	if code, stdout, stderr := run("kafka", "down", "-state-dir", dir); code != 0 {
		t.Errorf("kafka down: %d %s %s", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "security")); !os.IsNotExist(err) {
		t.Errorf("kafka down left the secrets in %s: %v", filepath.Join(dir, "security"), err)
	}
}

func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "="); ok && !strings.HasPrefix(k, "#") {
			env[k] = v
		}
	}
	return env
}

// TestAdminTLS drives an admin API served over https by a server whose
// certificate only the given CA vouches for: refused without -tls-ca,
// accepted with it (flag or environment).
func TestAdminTLS(t *testing.T) {
	// The consumer never runs: New does no network I/O, and info asks nothing of it.
	c, err := consumer.New(whippet.Connection{Brokers: []string{"127.0.0.1:1"}}, consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil }), consumer.Group("g"), consumer.Topics("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	h, err := admin.New(admin.Consumer("c", c), admin.Title("tls-service"))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/whippet/", http.StripPrefix("/whippet", h))
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WHIPPET_ADMIN_TOKEN", "")
	t.Setenv("WHIPPET_ADMIN_TLS_CA", "")
	u := "-url=" + srv.URL + "/whippet"

	code, _, stderr := cli(t, "admin", u, "info")
	if code != 1 || !strings.Contains(stderr, "certificate") {
		t.Errorf("https without -tls-ca: exit %d, stderr %q; want 1 and a certificate error", code, stderr)
	}
	code, stdout, stderr := cli(t, "admin", u, "-tls-ca", ca, "info")
	if code != 0 || !strings.Contains(stdout, "tls-service") {
		t.Errorf("https with -tls-ca: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	t.Setenv("WHIPPET_ADMIN_TLS_CA", ca)
	code, stdout, stderr = cli(t, "admin", u, "info")
	if code != 0 || !strings.Contains(stdout, "tls-service") {
		t.Errorf("https with WHIPPET_ADMIN_TLS_CA: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, _, stderr = cli(t, "admin", u, "-tls-cert", ca, "info")
	if code != 2 || !strings.Contains(stderr, "-tls-cert and -tls-key go together") {
		t.Errorf("-tls-cert alone: exit %d, stderr %q", code, stderr)
	}
}

// The flags become one whippet.Connection: trimmed seed brokers, TLS and
// SASL as asked, nothing more without them.
func TestKafkaFlagsConnection(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "")
	t.Setenv("WHIPPET_SASL_PASSWORD", "pw")
	parse := func(args ...string) *kafkaFlags {
		t.Helper()
		var k kafkaFlags
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		k.register(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return &k
	}
	conn, err := parse("-brokers", " a:1, b:2 ,", "-tls-server-name", "kafka.internal",
		"-sasl-mechanism", "scram-sha-256", "-sasl-user", "u").connection()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(conn.Brokers, []string{"a:1", "b:2"}) {
		t.Errorf("Brokers = %q, want [a:1 b:2]", conn.Brokers)
	}
	if conn.TLS == nil || conn.TLS.ServerName != "kafka.internal" || conn.TLS.MinVersion != tls.VersionTLS12 {
		t.Errorf("TLS = %+v, want TLS 1.2+ expecting kafka.internal", conn.TLS)
	}
	if conn.SASL == nil || conn.SASL.Name() != "SCRAM-SHA-256" {
		t.Errorf("SASL = %v, want SCRAM-SHA-256", conn.SASL)
	}
	if conn.ClientID != "" || conn.ClientOptions != nil || conn.Logger != nil || conn.Registerer != nil {
		t.Errorf("Connection %+v sets more than brokers, TLS and SASL", conn)
	}

	conn, err = parse("-brokers", "a:1").connection()
	if err != nil || conn.TLS != nil || conn.SASL != nil {
		t.Errorf("without security flags: %+v, %v; want plaintext, no SASL", conn, err)
	}
	if _, err := parse("-brokers", " , ").connection(); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "no brokers") {
		t.Errorf("no brokers: %v, want a usage error", err)
	}
}

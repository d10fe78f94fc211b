package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/whippet-go/whippet/testkit/localkafka"
)

const kafkaUsage = `usage: whippet kafka <up|down|status> [flags]

  up      start Apache Kafka on 127.0.0.1 from Maven Central jars (or reuse the
          healthy cluster already in the state dir) and write <state-dir>/env
  down    stop it (SIGTERM, then SIGKILL) and delete its data
  status  show what runs in the state dir; exit 1 if nothing healthy runs

Environment (flags win): KAFKA_VERSION, KAFKA_NODES, KAFKA_STATE_DIR,
KAFKA_BASE_PORT, KAFKA_SECURE, WHIPPET_KAFKA_CACHE, WHIPPET_KAFKA_JAVA_OPTS.

With -secure, each node also listens at its port + 2 with SASL_SSL: TLS
(a throwaway CA, <state-dir>/security/ca.pem) and SCRAM-SHA-512 with a user
"whippet" whose random password is in <state-dir>/security/whippet.password.
The env file then also has KAFKA_SECURE_BROKERS, KAFKA_CA_FILE,
KAFKA_SASL_MECHANISM, KAFKA_SASL_USER and KAFKA_SASL_PASSWORD_FILE, e.g.
  whippet dlq list -brokers $KAFKA_SECURE_BROKERS -tls-ca $KAFKA_CA_FILE \
    -sasl-mechanism SCRAM-SHA-512 -sasl-user $KAFKA_SASL_USER \
    -sasl-password-file $KAFKA_SASL_PASSWORD_FILE -topic T
`

func runKafka(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, kafkaUsage)
		return fmt.Errorf("%w: missing subcommand (up, down or status)", errUsage)
	}
	env, err := localkafka.ConfigFromEnv()
	if err != nil {
		return err
	}
	if env.StateDir == "" {
		env.StateDir = ".kafka"
	}
	if env.Version == "" {
		env.Version = localkafka.DefaultVersion
	}
	if env.Nodes == 0 {
		env.Nodes = 1
	}
	if env.BasePort == 0 {
		env.BasePort = localkafka.DefaultBasePort
	}

	sub := args[0]
	fs := flag.NewFlagSet("whippet kafka "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, kafkaUsage)
		fmt.Fprintf(stderr, "\nflags of %s:\n", sub)
		fs.PrintDefaults()
	}
	stateDir := fs.String("state-dir", env.StateDir, "state directory (cluster.json, configs, logs, data) [KAFKA_STATE_DIR]")
	var (
		version  *string
		nodes    *int
		basePort *int
		timeout  *time.Duration
		secure   *bool
	)
	if sub == "up" {
		version = fs.String("version", env.Version, "Apache Kafka version [KAFKA_VERSION]")
		nodes = fs.Int("nodes", env.Nodes, "number of broker+controller nodes (1 or 3) [KAFKA_NODES]")
		basePort = fs.Int("base-port", env.BasePort, "PLAINTEXT port of node 1; node i uses base+(i-1)*10 and +1 [KAFKA_BASE_PORT]")
		timeout = fs.Duration("timeout", localkafka.DefaultStartTimeout, "how long to wait for the cluster to be ready (jar download not included)")
		envSecure := os.Getenv("KAFKA_SECURE") == "true" || os.Getenv("KAFKA_SECURE") == "1"
		secure = fs.Bool("secure", envSecure, "also listen with SASL_SSL (TLS + SCRAM-SHA-512) at each node's port + 2 [KAFKA_SECURE]")
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w%w: %w", errUsage, errQuiet, err) // flag printed it with the usage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	dir, err := filepath.Abs(*stateDir)
	if err != nil {
		return err
	}

	switch sub {
	case "up":
		cfg := env
		cfg.StateDir, cfg.Version, cfg.Nodes, cfg.BasePort, cfg.StartTimeout = dir, *version, *nodes, *basePort, *timeout
		cfg.Stdout = stderr
		if *secure {
			cfg.Security = &localkafka.Security{}
		}
		return kafkaUp(ctx, cfg, stdout)
	case "down":
		return kafkaDown(ctx, dir, stdout)
	case "status":
		return kafkaStatus(ctx, dir, stdout)
	default:
		fmt.Fprint(stderr, kafkaUsage)
		return fmt.Errorf("%w: unknown subcommand %q", errUsage, sub)
	}
}

func kafkaUp(ctx context.Context, cfg localkafka.Config, stdout io.Writer) error {
	c, err := localkafka.Up(ctx, cfg)
	if err != nil {
		return err
	}
	envPath := filepath.Join(c.StateDir, "env")
	if err := writeEnvFile(envPath, c); err != nil {
		return err
	}
	state := "ready"
	if c.Reused {
		state = "already running"
	}
	fmt.Fprintf(stdout, "Apache Kafka %s %s at %s (%s, logs: %s)\n",
		c.Version, state, strings.Join(c.Brokers, ","), plural(c.Nodes, "node"), strings.Join(c.LogPaths, " "))
	printSecure(stdout, c)
	if !c.Reused {
		fmt.Fprintf(stdout, "ready in %s; env: %s; stop with: whippet kafka down -state-dir %s\n",
			c.ReadyIn.Round(10*time.Millisecond), envPath, c.StateDir)
	}
	return nil
}

// writeEnvFile writes `export KEY=value` lines, which both sh (`. file`)
// and make (`include file`) read and pass on to their child processes.
// Values are not quoted (make would keep the quotes): they are addresses,
// versions and paths.
func writeEnvFile(path string, c *localkafka.Cluster) error {
	content := fmt.Sprintf("# Written by `whippet kafka up`: source it (sh) or include it (make); both export the variables.\n"+
		"export KAFKA_BROKERS=%s\nexport KAFKA_VERSION=%s\nexport KAFKA_STATE_DIR=%s\n",
		strings.Join(c.Brokers, ","), c.Version, c.StateDir)
	if len(c.SecureBrokers) > 0 { // names, not secrets: the password stays in its owner-only file
		users, err := c.SASLUsers()
		if err != nil {
			return err
		}
		pw, err := c.PasswordFile(users[0].Name)
		if err != nil {
			return err
		}
		content += fmt.Sprintf("export KAFKA_SECURE_BROKERS=%s\nexport KAFKA_CA_FILE=%s\nexport KAFKA_SASL_MECHANISM=%s\n"+
			"export KAFKA_SASL_USER=%s\nexport KAFKA_SASL_PASSWORD_FILE=%s\n",
			strings.Join(c.SecureBrokers, ","), c.CAFile, localkafka.SASLMechanism, users[0].Name, pw)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return fmt.Errorf("write env file: %w", err)
	}
	return nil
}

func kafkaDown(ctx context.Context, dir string, stdout io.Writer) error {
	c, err := localkafka.Load(dir)
	if errors.Is(err, localkafka.ErrNotRunning) {
		_ = os.Remove(filepath.Join(dir, "env"))
		fmt.Fprintf(stdout, "no Apache Kafka in %s\n", dir)
		return nil
	}
	if err != nil {
		return err
	}
	if err := localkafka.Down(ctx, dir); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(dir, "env"))
	fmt.Fprintf(stdout, "Apache Kafka %s stopped (%s, state dir %s; logs kept)\n", c.Version, plural(c.Nodes, "node"), dir)
	return nil
}

func kafkaStatus(ctx context.Context, dir string, stdout io.Writer) error {
	c, err := localkafka.Load(dir)
	if errors.Is(err, localkafka.ErrNotRunning) {
		fmt.Fprintf(stdout, "not running (no cluster in %s)\n", dir)
		return errQuiet
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	health := c.Check(ctx)
	state := "running"
	if health != nil {
		state = "UNHEALTHY"
	}
	fmt.Fprintf(stdout, "Apache Kafka %s %s at %s (%s, state dir %s)\n",
		c.Version, state, strings.Join(c.Brokers, ","), plural(c.Nodes, "node"), c.StateDir)
	pids, alive := c.PIDs(), c.Alive()
	for i := range pids {
		s := "up"
		if !alive[i] {
			s = "DOWN"
		}
		fmt.Fprintf(stdout, "  node %d: %-4s pid %-7d %s  log: %s\n", i+1, s, pids[i], c.Brokers[i], c.LogPaths[i])
	}
	printSecure(stdout, c)
	if health != nil {
		fmt.Fprintf(stdout, "  problem: %v\n", health)
		return errQuiet
	}
	return nil
}

// printSecure prints where the secure listener is and who may log in (not
// the password).
func printSecure(w io.Writer, c *localkafka.Cluster) {
	if len(c.SecureBrokers) == 0 {
		return
	}
	var names []string
	if users, err := c.SASLUsers(); err == nil {
		for _, u := range users {
			names = append(names, u.Name)
		}
	}
	fmt.Fprintf(w, "SASL_SSL at %s: %s, user(s) %s, CA %s\n", strings.Join(c.SecureBrokers, ","),
		localkafka.SASLMechanism, strings.Join(names, ","), c.CAFile)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

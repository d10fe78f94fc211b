package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/whippet-go/whippet/testkit/localkafka"
)

func TestRunUsage(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		inStderr string
	}{
		{nil, 2, "usage: whippet <command>"},
		{[]string{"help"}, 0, "kafka"},
		{[]string{"nope"}, 2, `unknown command "nope"`},
		{[]string{"kafka"}, 2, "missing subcommand"},
		{[]string{"kafka", "sideways"}, 2, `unknown subcommand "sideways"`},
		{[]string{"kafka", "up", "-nodes"}, 2, "flag needs an argument"},
		{[]string{"kafka", "up", "-version", "latest", "-state-dir", "x"}, 1, "bad Kafka version"},
		{[]string{"kafka", "status", "extra"}, 2, "unexpected arguments"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.inStderr) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.inStderr)
		}
	}
}

func TestStatusAndDownWithoutCluster(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"kafka", "status", "-state-dir", dir}, &stdout, &stderr); code != 1 ||
		!strings.Contains(stdout.String(), "not running") {
		t.Errorf("status: code %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"kafka", "down", "-state-dir", dir}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "no Apache Kafka") {
		t.Errorf("down: code %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

func TestWriteEnvFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "env")
	c := &localkafka.Cluster{Brokers: []string{"127.0.0.1:19092", "127.0.0.1:19102"}, Version: "4.4.0", StateDir: "/s"}
	if err := writeEnvFile(p, c); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	for _, line := range []string{"export KAFKA_BROKERS=127.0.0.1:19092,127.0.0.1:19102\n", "export KAFKA_VERSION=4.4.0\n", "export KAFKA_STATE_DIR=/s\n"} {
		if !strings.Contains(string(b), line) {
			t.Errorf("env file lacks %q:\n%s", line, b)
		}
	}
}

// The env file's variables reach the child processes of a shell that
// sources it (`. .kafka/env`, as README shows) and the recipes of a
// Makefile that includes it.
func TestEnvFileReachesChildProcesses(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "env")
	c := &localkafka.Cluster{Brokers: []string{"127.0.0.1:19092", "127.0.0.1:19102"}, Version: "4.4.0", StateDir: "/s"}
	if err := writeEnvFile(p, c); err != nil {
		t.Fatal(err)
	}
	// A clean environment: the test may run with KAFKA_BROKERS set.
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	const want = "127.0.0.1:19092,127.0.0.1:19102 4.4.0 /s"

	sh := exec.Command("bash", "-c", `set -e; . "$1"; bash -c 'echo "$KAFKA_BROKERS $KAFKA_VERSION $KAFKA_STATE_DIR"'`, "bash", p)
	sh.Env = env
	out, err := sh.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != want {
		t.Errorf("a child of a shell that sourced the env file sees %q (%v), want %q", out, err, want)
	}

	mk := filepath.Join(dir, "Makefile")
	makefile := "include " + p + "\nall:\n\t@echo \"$$KAFKA_BROKERS $$KAFKA_VERSION $$KAFKA_STATE_DIR\"\n"
	if err := os.WriteFile(mk, []byte(makefile), 0o644); err != nil {
		t.Fatal(err)
	}
	m := exec.Command("make", "--no-print-directory", "-s", "-f", mk)
	m.Env = env
	out, err = m.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != want {
		t.Errorf("a recipe of a Makefile that includes the env file sees %q (%v), want %q", out, err, want)
	}
}

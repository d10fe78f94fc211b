package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGitHeadIgnoresWhatTheRunWrites checks that a run's own writes (the
// results page, go.work.sum) do not mark the commit measured as changed,
// and that any other change does.
func TestGitHeadIgnoresWhatTheRunWrites(t *testing.T) {
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.invalid"}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("init", "-q")
	for _, f := range []string{"bench/RESULTS.md", "go.work.sum", "consumer/consumer.go"} {
		write(f, "committed\n")
	}
	git("add", ".")
	git("commit", "-q", "-m", "init")
	t.Chdir(dir)

	write("bench/RESULTS.md", "this run's table\n")
	write("go.work.sum", "completed by go run\n")
	if got := gitHead("bench/RESULTS.md"); strings.Contains(got, "uncommitted") || got == "unknown" {
		t.Errorf("with only the run's own writes changed: %q, want the bare commit", got)
	}
	write("consumer/consumer.go", "changed\n")
	if got := gitHead("bench/RESULTS.md"); !strings.HasSuffix(got, " (with uncommitted changes)") {
		t.Errorf("with a source file changed: %q, want it marked as having uncommitted changes", got)
	}
}

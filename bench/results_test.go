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

// TestTargetsShowTheRatiosRoundByRound checks that the S1 and S4 target
// lines pair each round of whippet with the same round of the yardstick,
// skipping a round either failed, and that the verdict stays the ratio of
// the medians.
func TestTargetsShowTheRatiosRoundByRound(t *testing.T) {
	rows := []*row{
		{scenario: "S1", contender: "whippet", rates: []float64{90, 100, 80}, rounds: []int{0, 1, 3}},
		// Round 2 failed for whippet and round 3 for franz-go: rounds 0 and 1 pair.
		{scenario: "S1", contender: "franz-go", rates: []float64{100, 125, 200}, rounds: []int{0, 1, 2}},
		{scenario: "S4", contender: "whippet", rates: []float64{80, 90}, rounds: []int{0, 1}},
		{scenario: "S4", contender: "franz-go-consume", rates: []float64{100}, rounds: []int{1}},
	}
	tg := targets(rows, 0)
	// Medians 90 and 125: 0.72, missed; rounds 0.9 and 0.8.
	if want := "- S1: whippet at 0.720× franz-go (target ≥ 0.95×): missed by 23.0%. Round by round, whippet ÷ franz-go was 0.900× in the median round, from 0.800× to 0.900× over 2 rounds.\n"; !strings.Contains(tg, want) {
		t.Errorf("targets are\n%s\nwant the line\n%s", tg, want)
	}
	// One round in common says nothing round by round.
	if want := "- S4: whippet's load at 0.900× a plain franz-go consume of the topic (target ≥ 0.85×): met.\n"; !strings.Contains(tg, want) {
		t.Errorf("targets are\n%s\nwant the line\n%s", tg, want)
	}
}

package main

import (
	"context"
	"strings"
	"testing"
)

// Without ../shared/peers/greyhound next to the repository, the Greyhound
// peer is "not available", with the reason, and the run goes on.
func TestGreyhoundNotAvailableWithoutSource(t *testing.T) {
	t.Chdir(t.TempDir())
	p := buildGreyhound(context.Background())
	if p.err == nil || !strings.Contains(p.err.Error(), "no Greyhound source at ../shared/peers/greyhound") {
		t.Fatalf("err = %v, want no Greyhound source at ../shared/peers/greyhound", p.err)
	}
	if p.argv != nil {
		t.Fatalf("argv = %v for a peer that is not available", p.argv)
	}
}

// The build-time steps apply to the file contents they expect and say when
// they no longer do.
func TestGreyhoundBuildSteps(t *testing.T) {
	if len(greyhoundSteps) != 2 {
		t.Fatalf("%d steps, want 2", len(greyhoundSteps))
	}
	if out, ok := greyhoundSteps[0].apply([]byte("object X")); out != nil || !ok {
		t.Fatalf("step 0 (%s) = %q, %v; want the file left out", greyhoundSteps[0].what, out, ok)
	}
	in := "import zio._\nimport zio.managed._\n\ntrait ProducerR\n"
	out, ok := greyhoundSteps[1].apply([]byte(in))
	if !ok || string(out) != "import zio._\n\ntrait ProducerR\n" {
		t.Fatalf("step 1 = %q, %v", out, ok)
	}
	if _, ok := greyhoundSteps[1].apply(out); ok {
		t.Fatal("step 1 applied to a file without the import")
	}
}

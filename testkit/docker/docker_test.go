package docker_test

import (
	"context"
	"strings"
	"testing"

	"github.com/whippet-go/whippet/testkit"
	_ "github.com/whippet-go/whippet/testkit/docker"
)

// Importing the package links the Docker backend in: WHIPPET_KAFKA=docker then
// asks the Docker engine, and without one says so (instead of "not linked in").
func TestImportLinksTheDockerBackend(t *testing.T) {
	t.Setenv("WHIPPET_KAFKA", "docker")
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	_, _, err := testkit.Start(context.Background())
	if err == nil {
		t.Fatal("testkit.Start with a missing Docker socket succeeded")
	}
	if strings.Contains(err.Error(), "not linked in") || !strings.Contains(err.Error(), "/nonexistent/docker.sock") {
		t.Fatalf("testkit.Start = %v; want the Docker engine probe's error", err)
	}
}

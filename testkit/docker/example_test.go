package docker_test

import (
	"testing"

	"github.com/whippet-go/whippet/testkit"
	_ "github.com/whippet-go/whippet/testkit/docker" // links the Docker backend into testkit
)

// A test binary that may run Kafka in Docker imports the package for its side
// effect; testkit.Shared then tries Docker (WHIPPET_KAFKA=docker forces it).
func Example() {
	var m *testing.M // your TestMain's argument
	if m != nil {
		testkit.Main(m)
	}
}

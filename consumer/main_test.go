package consumer_test

import (
	"os"
	"testing"

	"github.com/whippet-go/whippet/testkit"
)

func TestMain(m *testing.M) {
	// The kill test re-runs this binary as a consumer process it can SIGKILL.
	if os.Getenv(childEnv) != "" {
		runChild()
		return
	}
	testkit.Main(m)
}

package kvstore_test

import (
	"os"
	"testing"

	"github.com/whippet-go/whippet/testkit"
)

func TestMain(m *testing.M) {
	// The cross-process tests re-run this binary as a writer or a reader.
	if os.Getenv(childEnv) != "" {
		runChild()
		return
	}
	testkit.Main(m)
}

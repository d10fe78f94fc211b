package consumer_test

import (
	"os"
	"testing"

	"github.com/whippet-go/whippet/testkit"
)

func TestMain(m *testing.M) {
	// The kill tests re-run this binary as a consumer process they can SIGKILL.
	switch os.Getenv(childEnv) {
	case "":
	case "retry":
		runRetryChild()
		return
	case "txn":
		runTxnChild()
		return
	case "batch":
		runBatchChild()
		return
	default:
		runChild()
		return
	}
	testkit.Main(m)
}

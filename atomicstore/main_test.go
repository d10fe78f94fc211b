package atomicstore_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/testkit"
)

const childEnv = "WHIPPET_ATOMICSTORE_CHILD"

func TestMain(m *testing.M) {
	// The kill test re-runs this binary as a processor process it can SIGKILL.
	if os.Getenv(childEnv) != "" {
		runProcessorChild()
		return
	}
	testkit.Main(m)
}

// runProcessorChild runs a counter processor until SIGTERM.
func runProcessorChild() {
	conn := whippet.Connection{
		Brokers: strings.Split(os.Getenv("WHIPPET_TEST_BROKERS"), ","),
		// The broker's minimum, so a killed process leaves the group soon.
		ClientOptions: []kgo.Opt{kgo.SessionTimeout(6 * time.Second)},
	}
	p, err := atomicstore.NewProcessor(conn, os.Getenv("WHIPPET_TEST_NAME"), codec.String(), atomicstore.Int64(),
		atomicstore.TransactionalID(os.Getenv("WHIPPET_TEST_TXN_ID")),
		atomicstore.TransactionBatch(1000, 50*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := p.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

package aggregator_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/aggregator"
	"github.com/whippet-go/whippet/atomicstore"
	"github.com/whippet-go/whippet/testkit"
)

const childEnv = "WHIPPET_AGGREGATOR_CHILD"

func TestMain(m *testing.M) {
	// The kill test re-runs this binary as processor and worker processes.
	switch os.Getenv(childEnv) {
	case "":
		testkit.Main(m)
	case "processor":
		runProcessorChild()
	default:
		runWorkerChild()
	}
}

func childConn() whippet.Connection {
	return whippet.Connection{
		Brokers: strings.Split(os.Getenv("WHIPPET_TEST_BROKERS"), ","),
		// The broker's minimum, so a killed process leaves the group soon.
		ClientOptions: []kgo.Opt{kgo.SessionTimeout(6 * time.Second)},
	}
}

func childOpts() []atomicstore.Option { return []atomicstore.Option{atomicstore.Partitions(3)} }

func runProcessorChild() {
	p, err := aggregator.NewProcessor(childConn(), os.Getenv("WHIPPET_TEST_NAME"), append(childOpts(),
		atomicstore.TransactionalID(os.Getenv("WHIPPET_TEST_TXN_ID")),
		atomicstore.TransactionBatch(100, 20*time.Millisecond))...)
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

// runWorkerChild reports tasks [from, to) of a batch, each twice when
// dup says so, slowly enough to be killed half-way.
func runWorkerChild() {
	a, err := aggregator.Open(context.Background(), childConn(), os.Getenv("WHIPPET_TEST_NAME"), childOpts()...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer a.Close(context.Background())
	var from, to int
	fmt.Sscanf(os.Getenv("WHIPPET_TEST_RANGE"), "%d-%d", &from, &to)
	batch := os.Getenv("WHIPPET_TEST_BATCH")
	for task := from; task < to; task++ {
		for range 1 + task%3/2 { // every third task reported twice
			if err := a.Report(context.Background(), batch, task); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		time.Sleep(5 * time.Millisecond)
		fmt.Println(strconv.Itoa(task))
	}
}

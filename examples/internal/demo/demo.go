// Package demo holds what every example program does the same way: take
// -brokers from the command line, and start an embedded kfake cluster when
// none are given, so that `make demo` needs nothing but Go.
package demo

import (
	"flag"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Main parses the -brokers flag and calls run with its value; an error is
// printed and ends the program with exit code 1.
func Main(run func(brokers string) error) {
	brokers := flag.String("brokers", "", "comma-separated Kafka brokers; empty starts an embedded kfake cluster")
	flag.Parse()
	if err := run(*brokers); err != nil {
		log.Printf("FAILED: %v", err)
		os.Exit(1)
	}
}

// Cluster returns the brokers to use: those of the comma-separated list, or,
// when it is empty, those of a new embedded kfake cluster with the topics
// created with the given partitions. stop ends what Cluster started.
func Cluster(brokers string, partitions int32, topics ...string) (addrs []string, stop func(), err error) {
	if brokers != "" {
		return strings.Split(brokers, ","), func() {}, nil
	}
	opts := []kfake.Opt{kfake.NumBrokers(1)}
	if len(topics) > 0 {
		opts = append(opts, kfake.SeedTopics(partitions, topics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("starting the embedded kfake cluster: %w", err)
	}
	fmt.Fprintln(os.Stderr, "embedded kfake cluster at", strings.Join(c.ListenAddrs(), ","))
	return c.ListenAddrs(), c.Close, nil
}

// Command whippet is the whippet operator CLI.
//
//	whippet kafka up|down|status          run a local Apache Kafka from Maven jars
//	whippet dlq list|show|replay|purge    inspect, replay and purge dead-letter queues
//	whippet admin -url URL ...            drive a service's admin API (consumers, blocked, skip, dlq, ...)
//
// Each subcommand has its own flags; run `whippet <command> -h`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one top-level subcommand. New ones (dlq, partitions, ...) are
// added to commands.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{name: "kafka", summary: "run a local Apache Kafka from Maven Central jars (up|down|status)", run: runKafka},
	{name: "dlq", summary: "list, show, replay and purge dead-letter records (list|show|replay|purge)", run: runDLQ},
	{name: "admin", summary: "drive a service's admin API: consumers, blocked, skip, skip-all, block, pause, resume, actions, dlq", run: runAdmin},
	{name: "spool", summary: "inspect or drain a producer's durable spool directory (status|drain)", run: runSpool},
}

// errUsage marks errors caused by bad arguments (exit code 2).
var errUsage = errors.New("usage")

// errQuiet marks an error whose message was already printed (exit code 1).
var errQuiet = errors.New("quiet")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errQuiet): // already reported
			if errors.Is(err, errUsage) {
				return 2
			}
			return 1
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "whippet %s: %v\n", c.name, err)
			return 2
		default:
			fmt.Fprintf(stderr, "whippet %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "whippet: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: whippet <command> [arguments]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/producer/spool"
)

const spoolUsage = `usage: whippet spool <status|drain> -dir DIR [flags]

  status  what a durable spool directory holds: records waiting for Kafka,
          bytes, the oldest record's age, possible duplicates, and the records
          set aside as dead (with why)
  drain   relay every spooled record to Kafka, then exit (-timeout, default 5m)

The directory must not be open in a running service (its whippet_spool_*
metrics say the same there). Brokers: -brokers host:port,... (default
$KAFKA_BROKERS); drain only.
`

func runSpool(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, spoolUsage)
		return fmt.Errorf("%w: missing subcommand (status or drain)", errUsage)
	}
	sub := args[0]
	if sub == "-h" || sub == "-help" || sub == "--help" || sub == "help" {
		fmt.Fprint(stderr, spoolUsage)
		return flag.ErrHelp
	}
	if sub != "status" && sub != "drain" {
		fmt.Fprint(stderr, spoolUsage)
		return fmt.Errorf("%w: unknown subcommand %q (status or drain)", errUsage, sub)
	}
	fs := flag.NewFlagSet("spool "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "the spool directory (required)")
	brokers := fs.String("brokers", os.Getenv("KAFKA_BROKERS"), "seed brokers, comma-separated [KAFKA_BROKERS] (drain)")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long drain waits for the spool to empty")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("%w: -dir is required", errUsage)
	}
	if sub == "status" {
		return spoolStatus(*dir, stdout)
	}
	if *brokers == "" {
		return fmt.Errorf("%w: no brokers: set -brokers or KAFKA_BROKERS", errUsage)
	}
	return spoolDrain(ctx, *dir, strings.Split(*brokers, ","), *timeout, stdout)
}

func spoolStatus(dir string, w io.Writer) error {
	info, err := spool.Inspect(dir)
	if errors.Is(err, spool.ErrLocked) {
		return fmt.Errorf("%w (a running service has it open: read its whippet_spool_* metrics)", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "records: %d\nbytes: %d\n", info.Records, info.Bytes)
	if !info.Oldest.IsZero() {
		fmt.Fprintf(w, "oldest: %s (%s ago)\n", info.Oldest.UTC().Format(time.RFC3339), time.Since(info.Oldest).Round(time.Second))
	}
	fmt.Fprintf(w, "possible duplicates: %d\ndead: %d\n", info.PossibleDuplicates, len(info.Dead))
	for _, d := range info.Dead {
		fmt.Fprintf(w, "  dead %s topic=%s key=%q id=%s: %s\n", d.Spooled.UTC().Format(time.RFC3339), d.Record.Topic, d.Record.Key, spool.RecordID(d.Record), d.Reason)
	}
	for _, d := range info.Dropped {
		fmt.Fprintf(w, "cut off while opening: %s at %d: %d bytes (%s)\n", d.Segment, d.Offset, d.Bytes, d.Reason)
	}
	return nil
}

func spoolDrain(ctx context.Context, dir string, brokers []string, timeout time.Duration, w io.Writer) error {
	if _, err := os.Stat(dir); err != nil {
		return err
	}
	p, err := spool.New(whippet.Connection{Brokers: brokers}, dir)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := p.Stats().Records
	fmt.Fprintf(w, "draining %d records from %s\n", start, dir)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		st := p.Stats()
		if st.Records == 0 {
			if err := p.Close(context.Background()); err != nil {
				return err
			}
			fmt.Fprintf(w, "drained: %d relayed, %d set aside as dead, %d possible duplicates\n", st.Relayed, st.Dead, st.PossibleDuplicates)
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			_ = p.Close(context.Background())
			return fmt.Errorf("%d records still spooled after %v (last relay error: %s): %w", st.Records, timeout, st.LastRelayError, context.Cause(ctx))
		}
	}
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/internal/secure"
	"github.com/whippet-go/whippet/producer/spool"
)

const spoolUsage = `usage: whippet spool <status|drain> -dir DIR [flags]

  status  what a durable spool directory holds: records waiting for Kafka,
          bytes, the oldest record's age, possible duplicates, and the records
          set aside as dead (with why)
  drain   relay every spooled record to Kafka, then exit (-timeout, default 5m)

The directory must not be open in a running service (its whippet_spool_*
metrics say the same there). drain reaches Kafka as dlq does: -brokers
host:port,... (default $KAFKA_BROKERS), TLS and SASL: see "Connection
security" below. It stops at once when Kafka refuses the connection (the
records stay spooled).
Exit status: 0 ok, 1 failure, 2 usage.
` + securityUsage

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
	if err := rejectPasswordFlag(args[1:]); err != nil {
		return err
	}
	fs := flag.NewFlagSet("whippet spool "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, spoolUsage)
		fmt.Fprintf(stderr, "\nflags of %s:\n", sub)
		fs.PrintDefaults()
	}
	dir := fs.String("dir", "", "the spool directory (required)")
	var kafka kafkaFlags
	var timeout time.Duration
	if sub == "drain" {
		kafka.register(fs)
		fs.DurationVar(&timeout, "timeout", 5*time.Minute, "how long drain waits for the spool to empty")
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w%w: %w", errUsage, errQuiet, err) // flag printed it with the usage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if *dir == "" {
		return fmt.Errorf("%w: -dir is required", errUsage)
	}
	if sub == "status" {
		return spoolStatus(*dir, stdout)
	}
	conn, err := kafka.connection()
	if err != nil {
		return err
	}
	if timeout <= 0 {
		return fmt.Errorf("%w: -timeout must be positive", errUsage)
	}
	if err := spoolDrain(ctx, conn, *dir, timeout, stdout); err != nil {
		return kafka.security.explain(err)
	}
	return nil
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

// spoolDrain relays what dir holds through conn until the spool is empty,
// timeout passes, or Kafka refuses the connection (SASL or TLS: retrying
// with the same settings cannot help; the error then unwraps to franz-go's).
func spoolDrain(ctx context.Context, conn whippet.Connection, dir string, timeout time.Duration, w io.Writer) error {
	if _, err := os.Stat(dir); err != nil {
		return err
	}
	auth := secure.NewWatch(nil)
	conn.ClientOptions = append(slices.Clip(conn.ClientOptions), kgo.WithHooks(auth))
	p, err := spool.New(conn, dir)
	if err != nil {
		return err
	}
	auth.SetClient(p.Client())
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
		case <-auth.Next():
			_ = p.Close(context.Background())
			return fmt.Errorf("%d records stay spooled: %w", p.Stats().Records, auth.Err())
		case <-ctx.Done():
			_ = p.Close(context.Background())
			return fmt.Errorf("%d records still spooled after %v (last relay error: %s): %w", st.Records, timeout, st.LastRelayError, context.Cause(ctx))
		}
	}
}

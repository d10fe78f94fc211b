package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/retry"
)

const dlqUsage = `usage: whippet dlq <list|show|replay|purge> [flags]

  list    list dead-letter records, oldest first, filtered and paged
  show    show one record in full (-partition P -offset O)
  replay  produce the selected records back to their original topic, without
          the retry headers, marked whippet-replayed-from; the dead-letter
          topic is not changed, so replaying twice produces twice. Records go
          only to the topic the dead-letter topic belongs to: one whose
          original-topic header names another is refused, unless -to TOPIC
          names the target (every selected record then goes there)
  purge   delete records for good: -all, or -before TIME; needs -yes, and
          without it only shows what it would delete. Kafka deletes whole
          prefixes of partitions: purge cannot select by key, error or reason

The dead-letter topic: -topic NAME, or -source TOPIC -group GROUP for
"<topic>-<group>-dlq". Brokers: -brokers host:port,... (default $KAFKA_BROKERS);
TLS and SASL: see "Connection security" below.
Times (-since, -until, -before) are RFC 3339 (2026-05-01T10:00:00Z) or a
duration ago (90m, 2h, 7d), and compare with when records were dead-lettered.
Exit status: 0 ok, 1 failure (or records skipped, or purge without -yes), 2 usage.
` + securityUsage

// reasons are the values -reason accepts.
var reasons = []retry.Reason{retry.ReasonExhausted, retry.ReasonNonRetriable, retry.ReasonDecode, retry.ReasonSkipped}

type dlqFlags struct {
	topic, source, group string
	timeout              time.Duration
	// list, replay
	key, errText, reason, since, until, cursor string
	partition, limit                           int
	jsonOut, dryRun                            bool
	// replay
	to string
	// show
	offset int64
	// purge
	all, yes bool
	before   string

	keySet bool

	kafka kafkaFlags
}

func runDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, dlqUsage)
		return fmt.Errorf("%w: missing subcommand (list, show, replay or purge)", errUsage)
	}
	sub := args[0]
	if sub == "-h" || sub == "-help" || sub == "--help" || sub == "help" {
		fmt.Fprint(stderr, dlqUsage)
		return flag.ErrHelp
	}
	if !slices.Contains([]string{"list", "show", "replay", "purge"}, sub) {
		fmt.Fprint(stderr, dlqUsage)
		return fmt.Errorf("%w: unknown subcommand %q", errUsage, sub)
	}
	if sub == "purge" {
		for _, a := range args[1:] {
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if strings.HasPrefix(a, "-") && slices.Contains([]string{"key", "error", "reason", "partition", "limit"}, name) {
				return fmt.Errorf("%w: purge cannot select by %s: Kafka deletes whole prefixes of partitions (use -all or -before)", errUsage, name)
			}
		}
	}
	if err := rejectPasswordFlag(args[1:]); err != nil {
		return err
	}
	fs := flag.NewFlagSet("whippet dlq "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, dlqUsage)
		fmt.Fprintf(stderr, "\nflags of %s:\n", sub)
		fs.PrintDefaults()
	}
	var o dlqFlags
	o.kafka.register(fs)
	fs.StringVar(&o.topic, "topic", "", "the dead-letter topic")
	fs.StringVar(&o.source, "source", "", "the consumed topic whose dead-letter topic to use (with -group)")
	fs.StringVar(&o.group, "group", "", "the consumer group whose dead-letter topic to use (with -source)")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "give up after this long")
	switch sub {
	case "list", "replay":
		fs.StringVar(&o.key, "key", "", "only records with exactly this key")
		fs.StringVar(&o.errText, "error", "", "only records whose last error contains this text")
		fs.StringVar(&o.reason, "reason", "", "only records dead-lettered for this reason: exhausted, non-retriable, decode or skipped")
		fs.StringVar(&o.since, "since", "", "only records dead-lettered at or after this time")
		fs.StringVar(&o.until, "until", "", "only records dead-lettered before this time")
		fs.IntVar(&o.partition, "partition", -1, "only this partition of the dead-letter topic (-1: all)")
		fs.StringVar(&o.cursor, "cursor", "", "continue where a previous limited call stopped (it prints the cursor)")
		fs.BoolVar(&o.jsonOut, "json", false, "print one JSON object per line")
		if sub == "list" {
			fs.IntVar(&o.limit, "limit", 100, "print at most this many records (0: all)")
		} else {
			fs.IntVar(&o.limit, "limit", 0, "replay at most this many records (0: all)")
			fs.BoolVar(&o.dryRun, "dry-run", false, "only print what would be replayed")
			fs.StringVar(&o.to, "to", "", "replay every selected record to this topic, whatever topic its headers name (default: the topic the dead-letter topic belongs to)")
		}
	case "show":
		fs.IntVar(&o.partition, "partition", -1, "the record's partition (required)")
		fs.Int64Var(&o.offset, "offset", -1, "the record's offset (required)")
		fs.BoolVar(&o.jsonOut, "json", false, "print the record as one JSON object")
	case "purge":
		fs.BoolVar(&o.all, "all", false, "purge every record (up to the end of each partition now)")
		fs.StringVar(&o.before, "before", "", "purge the records dead-lettered before this time")
		fs.BoolVar(&o.yes, "yes", false, "really delete; without it, only show what would be deleted")
		fs.BoolVar(&o.jsonOut, "json", false, "print the result as one JSON object")
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
	fs.Visit(func(f *flag.Flag) { o.keySet = o.keySet || f.Name == "key" })

	topic, err := o.dlqTopic()
	if err != nil {
		return err
	}
	conn, err := o.kafka.connection()
	if err != nil {
		return err
	}
	if o.timeout <= 0 {
		return fmt.Errorf("%w: -timeout must be positive", errUsage)
	}
	now := time.Now()
	var (
		filter dlq.Filter
		scope  dlq.PurgeScope
	)
	switch sub {
	case "list", "replay":
		if filter, err = o.filter(now); err != nil {
			return err
		}
	case "show":
		if o.partition < 0 || o.offset < 0 {
			return fmt.Errorf("%w: show needs -partition and -offset (both >= 0)", errUsage)
		}
	case "purge":
		switch {
		case o.all == (o.before != ""):
			return fmt.Errorf("%w: purge needs exactly one of -all and -before", errUsage)
		case o.all:
			scope = dlq.PurgeAll()
		default:
			t, err := dlq.ParseTime(o.before, now)
			if err != nil {
				return fmt.Errorf("%w: -before: %w", errUsage, err)
			}
			scope = dlq.PurgeBefore(t)
		}
	}

	c, err := dlq.New(conn)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, trimmed{err})
	}
	defer c.Close(context.Background()) // no call is in progress by then
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	switch sub {
	case "list":
		err = dlqList(ctx, c, topic, filter, o.jsonOut, stdout, stderr)
	case "show":
		err = dlqShow(ctx, c, topic, int32(o.partition), o.offset, o.jsonOut, stdout)
	case "replay":
		var opts []dlq.ActionOption
		if o.dryRun {
			opts = append(opts, dlq.DryRun())
		}
		if o.source != "" {
			opts = append(opts, dlq.ReplaySource(o.source))
		}
		if o.to != "" {
			opts = append(opts, dlq.ReplayTo(o.to))
		}
		err = dlqReplay(ctx, c, topic, filter, opts, o.dryRun, o.jsonOut, stdout, stderr)
	case "purge":
		err = dlqPurge(ctx, c, topic, scope, o.yes, o.jsonOut, stdout, stderr)
	}
	if errors.Is(err, dlq.ErrInvalidArgument) {
		return fmt.Errorf("%w: %w", errUsage, trimmed{err})
	}
	if err != nil && !errors.Is(err, errQuiet) {
		return o.kafka.security.explain(trimmed{err})
	}
	return err
}

// hiddenText stands for a payload the admin API did not show.
const hiddenText = "(hidden: needs the view-payloads permission)"

// otherTopicHint tells how to replay a record refused for naming another
// topic than the dead-letter topic's source.
func otherTopicHint(other bool) string {
	if !other {
		return ""
	}
	return "; to replay it to a topic of your choice, name it with -to TOPIC"
}

// trimmed drops the "dlq: " prefix of the package's errors, which would
// repeat the "whippet dlq: " the command prints.
type trimmed struct{ err error }

func (e trimmed) Error() string { return strings.TrimPrefix(e.err.Error(), "dlq: ") }
func (e trimmed) Unwrap() error { return e.err }

func (o *dlqFlags) dlqTopic() (string, error) {
	switch {
	case o.topic != "" && (o.source != "" || o.group != ""):
		return "", fmt.Errorf("%w: give -topic, or -source and -group, not both", errUsage)
	case o.topic != "":
		return o.topic, nil
	case o.source != "" && o.group != "":
		return retry.DLQTopicName(o.source, o.group), nil
	case o.source != "" || o.group != "":
		return "", fmt.Errorf("%w: -source and -group go together", errUsage)
	}
	return "", fmt.Errorf("%w: missing -topic (or -source and -group)", errUsage)
}

func (o *dlqFlags) filter(now time.Time) (dlq.Filter, error) {
	f := dlq.Filter{Error: o.errText, Reason: retry.Reason(o.reason), Limit: o.limit, Cursor: o.cursor}
	if o.keySet {
		f.Key = []byte(o.key)
	}
	if o.reason != "" && !slices.Contains(reasons, f.Reason) {
		return f, fmt.Errorf("%w: -reason %q: want one of %v", errUsage, o.reason, reasons)
	}
	if o.partition >= 0 {
		f.Partitions = []int32{int32(o.partition)}
	}
	if o.limit < 0 {
		return f, fmt.Errorf("%w: -limit must be >= 0", errUsage)
	}
	var err error
	if o.since != "" {
		if f.Since, err = dlq.ParseTime(o.since, now); err != nil {
			return f, fmt.Errorf("%w: -since: %w", errUsage, err)
		}
	}
	if o.until != "" {
		if f.Until, err = dlq.ParseTime(o.until, now); err != nil {
			return f, fmt.Errorf("%w: -until: %w", errUsage, err)
		}
	}
	return f, nil
}

func dlqList(ctx context.Context, c *dlq.Client, topic string, f dlq.Filter, jsonOut bool, stdout, stderr io.Writer) error {
	page, err := c.List(ctx, topic, f)
	if err != nil {
		return err
	}
	views := make([]dlq.RecordView, len(page.Records))
	for i := range page.Records {
		views[i] = page.Records[i].View(dlq.ViewOptions{})
	}
	if jsonOut {
		enc := json.NewEncoder(stdout)
		for i := range views {
			if err := enc.Encode(&views[i]); err != nil {
				return err
			}
		}
	} else if err := printRecordTable(stdout, views); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%d record(s) in %s\n", len(page.Records), topic)
	if page.Next != "" {
		fmt.Fprintf(stderr, "more: add -cursor %s\n", page.Next)
	}
	return nil
}

// printRecordTable prints dead-letter records one a line, as `whippet dlq
// list` and `whippet admin dlq list` do.
func printRecordTable(w io.Writer, views []dlq.RecordView) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "POSITION\tDEAD-LETTERED\tKEY\tATTEMPTS\tREASON\tERROR")
	for _, r := range views {
		key, errText := display(viewBytes(r.Key, r.KeyEncoding)), oneLine(r.Error)
		if r.PayloadHidden {
			key, errText = hiddenText, hiddenText
		}
		fmt.Fprintf(tw, "%d/%d\t%s\t%s\t%d\t%s\t%s\n", r.Partition, r.Offset, formatTime(r.Timestamp),
			truncate(key, 32), r.Attempts, dash(r.Reason), truncate(errText, 72))
	}
	return tw.Flush()
}

func dlqShow(ctx context.Context, c *dlq.Client, topic string, partition int32, offset int64, jsonOut bool, stdout io.Writer) error {
	r, err := c.Get(ctx, topic, partition, offset)
	if err != nil {
		return err
	}
	v := r.View(dlq.ViewOptions{})
	if jsonOut {
		return json.NewEncoder(stdout).Encode(&v)
	}
	return printRecord(stdout, &v)
}

// printRecord prints one dead-letter record in full, as `whippet dlq show`
// and `whippet admin dlq show` do: text values as they are, binary ones as a
// hex dump.
func printRecord(w io.Writer, r *dlq.RecordView) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	hidden := func(s string) string {
		if r.PayloadHidden {
			return hiddenText
		}
		return s
	}
	line("record", r.Position)
	line("dead-lettered", formatTime(r.Timestamp))
	if !r.DeadLetter {
		line("note", "no retry headers: not written by a whippet consumer")
	}
	line("reason", r.Reason)
	line("attempts", strconv.Itoa(r.Attempts))
	line("error", hidden(oneLine(r.Error)))
	line("group", r.Group)
	line("original", fmt.Sprintf("%s/%d/%d at %s", r.OriginalTopic, r.OriginalPartition, r.OriginalOffset, formatTime(r.OriginalTimestamp)))
	line("first failure", formatTime(r.FirstFailure))
	line("last failure", formatTime(r.LastFailure))
	if r.ReplayedFrom != "" {
		line("replayed", fmt.Sprintf("from %s at %s (replay %d)", r.ReplayedFrom, formatTime(r.ReplayedAt), r.ReplayCount))
	}
	line("key", hidden(displayFull(viewBytes(r.Key, r.KeyEncoding))))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "headers (%d):\n", len(r.Headers))
	for _, h := range r.Headers {
		fmt.Fprintf(w, "  %s: %s\n", h.Key, hidden(displayFull(viewBytes(&h.Value, h.Encoding))))
	}
	value := viewBytes(r.Value, r.ValueEncoding)
	cut := ""
	if r.ValueTruncated {
		cut = fmt.Sprintf(", the first %d shown", len(value))
	}
	switch {
	case r.PayloadHidden:
		fmt.Fprintf(w, "value (%d bytes): %s\n", r.ValueSize, hiddenText)
	case value == nil:
		fmt.Fprintln(w, "value: null")
	case printable(value):
		fmt.Fprintf(w, "value (%d bytes, text%s):\n%s\n", r.ValueSize, cut, value)
	default:
		fmt.Fprintf(w, "value (%d bytes, hex%s):\n%s", r.ValueSize, cut, hex.Dump(value))
	}
	return nil
}

func dlqReplay(ctx context.Context, c *dlq.Client, topic string, f dlq.Filter, opts []dlq.ActionOption, dryRun, jsonOut bool, stdout, stderr io.Writer) error {
	res, err := c.Replay(ctx, topic, f, opts...)
	enc := json.NewEncoder(stdout)
	for _, r := range res.Replayed {
		switch {
		case jsonOut:
			to := r.To.String()
			if dryRun {
				to = r.To.Topic
			}
			_ = enc.Encode(map[string]any{"from": r.From.String(), "to": to, "dry_run": dryRun})
		case dryRun:
			fmt.Fprintf(stdout, "would replay %s to %s\n", r.From, r.To.Topic)
		default:
			fmt.Fprintf(stdout, "replayed %s to %s\n", r.From, r.To)
		}
	}
	for _, s := range res.Skipped {
		if jsonOut {
			_ = enc.Encode(map[string]any{"from": s.From.String(), "skipped": s.Reason})
		}
		fmt.Fprintf(stderr, "skipped %s: %s%s\n", s.From, s.Reason, otherTopicHint(s.OtherTopic))
	}
	if err != nil {
		return fmt.Errorf("%w (%d record(s) replayed before the failure)", err, len(res.Replayed))
	}
	if dryRun {
		fmt.Fprintf(stderr, "dry run: would replay %d record(s) from %s; nothing produced\n", len(res.Replayed), topic)
	} else {
		fmt.Fprintf(stderr, "replayed %d record(s) from %s\n", len(res.Replayed), topic)
	}
	if res.Next != "" {
		fmt.Fprintf(stderr, "more: add -cursor %s\n", res.Next)
	}
	if len(res.Skipped) > 0 {
		return fmt.Errorf("%d selected record(s) skipped, not replayed", len(res.Skipped))
	}
	return nil
}

func dlqPurge(ctx context.Context, c *dlq.Client, topic string, scope dlq.PurgeScope, yes, jsonOut bool, stdout, stderr io.Writer) error {
	var opts []dlq.ActionOption
	if !yes {
		opts = append(opts, dlq.DryRun())
	}
	res, err := c.Purge(ctx, topic, scope, opts...)
	if err != nil && len(res.Partitions) == 0 {
		return err
	}
	if jsonOut {
		type part struct {
			Partition int32 `json:"partition"`
			From      int64 `json:"from"`
			To        int64 `json:"to"`
			Deleted   int64 `json:"deleted"`
		}
		out := struct {
			Topic      string `json:"topic"`
			Scope      string `json:"scope"`
			DryRun     bool   `json:"dry_run"`
			Deleted    int64  `json:"deleted"`
			Partitions []part `json:"partitions"`
		}{Topic: topic, Scope: scope.String(), DryRun: res.DryRun, Deleted: res.Deleted, Partitions: []part{}}
		for _, p := range res.Partitions {
			out.Partitions = append(out.Partitions, part(p))
		}
		if e := json.NewEncoder(stdout).Encode(out); e != nil {
			return e
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PARTITION\tFROM\tTO\tRECORDS")
		for _, p := range res.Partitions {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\n", p.Partition, p.From, p.To, p.Deleted)
		}
		if e := tw.Flush(); e != nil {
			return e
		}
	}
	if err != nil {
		return err
	}
	if !yes {
		fmt.Fprintf(stderr, "would purge %d record(s) from %s (%s); nothing deleted: add -yes to purge\n", res.Deleted, topic, scope)
		return fmt.Errorf("%w: not purged without -yes", errQuiet)
	}
	fmt.Fprintf(stderr, "purged %d record(s) from %s (%s)\n", res.Deleted, topic, scope)
	return nil
}

// viewBytes returns the bytes a JSON view holds: text, or base64 when enc
// says so; nil for null.
func viewBytes(v *string, enc string) []byte {
	switch {
	case v == nil:
		return nil
	case enc == "base64":
		if b, err := base64.StdEncoding.DecodeString(*v); err == nil {
			return b
		}
	}
	return []byte(*v)
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// printable reports whether b reads as text.
func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if !unicode.IsPrint(r) && r != '\n' && r != '\r' && r != '\t' {
			return false
		}
	}
	return true
}

// display shows bytes on one line: text if printable, else 0x-prefixed hex.
func display(b []byte) string {
	switch {
	case b == nil:
		return "(null)"
	case printable(b):
		return oneLine(string(b))
	}
	return "0x" + hex.EncodeToString(b)
}

// displayFull is display, with base64 rather than hex for long binary values.
func displayFull(b []byte) string {
	if b != nil && !printable(b) && len(b) > 64 {
		return "base64:" + base64.StdEncoding.EncodeToString(b)
	}
	return display(b)
}

func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ", "\t", " ").Replace(s)
}

// truncate shortens s to at most n runes, marking the cut with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

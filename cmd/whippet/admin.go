package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/whippet-go/whippet/consumer/admin"
)

const adminUsage = `usage: whippet admin -url URL <command> [flags] [TOPIC/PARTITION]

Drives the admin API a service mounts (package consumer/admin): what its
dashboard shows and does, from a terminal. Every action is authorized and
logged by the service with who did it.

  info                        the service, and who the API says you are
  consumers                   consumers and their partitions: lag, buffered, paused, blocked
  blocked                     the records that block partitions (key, offset, error, attempts)
  skip TOPIC/PARTITION        dead-letter the record that blocks the partition; it goes on
  skip-all TOPIC/PARTITION    dead-letter every failing record of the partition, until block
  block TOPIC/PARTITION       undo skip-all: failing records are retried in place again
  seek TOPIC/PARTITION (-offset N | -time T | -end)
                              move the partition to an offset, its first record at or after a
                              time, or its end, and commit it; TOPIC/all moves every partition of
                              the topic this instance has. Records that block it are let go, not
                              dead-lettered: handled again if the new position is at or before them
  pause [TOPIC/PARTITION]     pause a partition; without one, the whole consumer
  resume [TOPIC/PARTITION]    resume a partition; without one, the whole consumer
  actions                     the actions taken through the API and who took them, newest first
  dlq topics                  the service's dead-letter topics and their record counts
  dlq list [-topic T] [-key K] [-error E] [-reason R] [-partition P] [-since S] [-until U] [-limit N] [-cursor C]
  dlq show [-topic T] PARTITION/OFFSET
  dlq replay [-topic T] (-position P/O ... | -all | filter flags) [-dry-run] [-to TOPIC]
  dlq purge [-topic T] (-all | -before TIME) [-yes]

Flags, before or after the command:
  -url URL          the admin handler, e.g. http://host:8080/whippet [$WHIPPET_ADMIN_URL]
  -consumer NAME    the consumer, when the service registers several
  -H 'Name: value'  send a header (repeatable), e.g. -H 'X-Forwarded-User: alice'
  -token-file FILE  send "Authorization: Bearer <the file's first line>" [$WHIPPET_ADMIN_TOKEN_FILE]
  -token TOKEN      the same with the token itself [$WHIPPET_ADMIN_TOKEN]; prefer -token-file
                    or the variable: a command line shows in ps and the shell history
  -json             print the API's JSON answer
  -timeout D        give up after D (default 1m)
  -tls-ca FILE      for https: trust the CA certificates in this PEM file [$WHIPPET_ADMIN_TLS_CA]
  -tls-cert FILE -tls-key FILE
                    for https: present this client certificate [$WHIPPET_ADMIN_TLS_CERT, $WHIPPET_ADMIN_TLS_KEY]

Keys, values, header values and error texts are shown only to who the service
lets read payloads (its hook's view-payloads permission); filtering by -key or
-error needs it too. replay sends records only to the topic the dead-letter
topic belongs to, unless -to names another.
-topic may be left out when the service has one dead-letter topic. Times are
RFC 3339 or a duration ago (90m, 2h, 7d). To work on dead-letter topics
directly through Kafka instead, use "whippet dlq".
Exit status: 0 ok, 1 failure (or replayed records skipped, or purge without -yes), 2 usage.
`

var adminCommands = []string{"info", "consumers", "blocked", "skip", "skip-all", "block", "seek", "pause", "resume", "actions", "dlq"}

// headerFlags collects repeated -H flags.
type headerFlags []string

func (h *headerFlags) String() string { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error {
	name, _, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("want 'Name: value', got %q", v)
	}
	*h = append(*h, v)
	return nil
}

// positionsFlag collects repeated -position P/O flags.
type positionsFlag []admin.PartitionOffset

func (p *positionsFlag) String() string { return fmt.Sprint(*p) }
func (p *positionsFlag) Set(v string) error {
	po, err := parsePartitionOffset(v)
	if err != nil {
		return err
	}
	*p = append(*p, po)
	return nil
}

func parsePartitionOffset(v string) (admin.PartitionOffset, error) {
	ps, os, ok := strings.Cut(v, "/")
	p, perr := strconv.ParseInt(ps, 10, 32)
	o, oerr := strconv.ParseInt(os, 10, 64)
	if !ok || perr != nil || oerr != nil || p < 0 || o < 0 {
		return admin.PartitionOffset{}, fmt.Errorf("want PARTITION/OFFSET, like 0/42, got %q", v)
	}
	return admin.PartitionOffset{Partition: int32(p), Offset: o}, nil
}

type adminFlags struct {
	url, consumer, token string
	tokenFile            string
	headers              headerFlags
	jsonOut              bool
	timeout              time.Duration
	// dlq
	topic, key, errText, reason, since, until, cursor, before, to string
	partition, limit                                              int
	positions                                                     positionsFlag
	all, dryRun, yes                                              bool
	keySet                                                        bool
	// seek
	seekOffset      int64
	seekTime        string
	seekEnd, offSet bool
	// https
	caFile, certFile, keyFile string
}

func (o *adminFlags) common(fs *flag.FlagSet) {
	fs.StringVar(&o.url, "url", o.url, "the admin handler's URL [WHIPPET_ADMIN_URL]")
	fs.StringVar(&o.consumer, "consumer", o.consumer, "the consumer, when the service registers several")
	fs.Var(&o.headers, "H", "send a header 'Name: value' (repeatable)")
	fs.StringVar(&o.token, "token", o.token, `send "Authorization: Bearer TOKEN" [WHIPPET_ADMIN_TOKEN]; prefer -token-file`)
	fs.StringVar(&o.tokenFile, "token-file", o.tokenFile, `send "Authorization: Bearer <the file's first line>" [WHIPPET_ADMIN_TOKEN_FILE]`)
	fs.BoolVar(&o.jsonOut, "json", o.jsonOut, "print the API's JSON answer")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "give up after this long")
	fs.StringVar(&o.caFile, "tls-ca", o.caFile, "for https: PEM file of the CA certificates to trust [WHIPPET_ADMIN_TLS_CA]")
	fs.StringVar(&o.certFile, "tls-cert", o.certFile, "for https: PEM file of the client certificate [WHIPPET_ADMIN_TLS_CERT]")
	fs.StringVar(&o.keyFile, "tls-key", o.keyFile, "for https: PEM file of the client certificate's key [WHIPPET_ADMIN_TLS_KEY]")
}

// parseInterleaved parses flags that may come before or after positional
// arguments, and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := adminFlags{url: os.Getenv("WHIPPET_ADMIN_URL"), token: os.Getenv("WHIPPET_ADMIN_TOKEN"), tokenFile: os.Getenv("WHIPPET_ADMIN_TOKEN_FILE"), timeout: time.Minute, partition: -1,
		caFile: os.Getenv("WHIPPET_ADMIN_TLS_CA"), certFile: os.Getenv("WHIPPET_ADMIN_TLS_CERT"), keyFile: os.Getenv("WHIPPET_ADMIN_TLS_KEY")}
	top := flag.NewFlagSet("whippet admin", flag.ContinueOnError)
	top.SetOutput(stderr)
	top.Usage = func() { fmt.Fprint(stderr, adminUsage) }
	o.common(top)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w%w: %w", errUsage, errQuiet, err)
	}
	rest := top.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, adminUsage)
		return fmt.Errorf("%w: missing command (%s)", errUsage, strings.Join(adminCommands, ", "))
	}
	cmd, rest := rest[0], rest[1:]
	if cmd == "help" {
		fmt.Fprint(stderr, adminUsage)
		return flag.ErrHelp
	}
	if !slices.Contains(adminCommands, cmd) {
		fmt.Fprint(stderr, adminUsage)
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
	sub := ""
	if cmd == "dlq" {
		if len(rest) == 0 || !slices.Contains([]string{"topics", "list", "show", "replay", "purge"}, rest[0]) {
			fmt.Fprint(stderr, adminUsage)
			if len(rest) == 0 {
				return fmt.Errorf("%w: missing dlq command (topics, list, show, replay or purge)", errUsage)
			}
			return fmt.Errorf("%w: unknown dlq command %q", errUsage, rest[0])
		}
		sub, rest = rest[0], rest[1:]
	}
	name := strings.TrimSpace("whippet admin " + cmd + " " + sub)
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, adminUsage)
		fmt.Fprintf(stderr, "\nflags of %s:\n", name)
		fs.PrintDefaults()
	}
	o.common(fs)
	if cmd == "dlq" && sub != "topics" {
		fs.StringVar(&o.topic, "topic", "", "the dead-letter topic (may be left out when the service has one)")
	}
	if cmd == "seek" {
		fs.Int64Var(&o.seekOffset, "offset", 0, "move to this offset (kept within the partition's records)")
		fs.StringVar(&o.seekTime, "time", "", "move to the first record at or after this time (RFC 3339, or a duration ago: 90m, 2h, 7d)")
		fs.BoolVar(&o.seekEnd, "end", false, "move to the end: the records there now are not handled")
	}
	switch sub {
	case "list", "replay":
		fs.StringVar(&o.key, "key", "", "only records with exactly this key")
		fs.StringVar(&o.errText, "error", "", "only records whose last error contains this text")
		fs.StringVar(&o.reason, "reason", "", "only records dead-lettered for this reason: exhausted, non-retriable, decode or skipped")
		fs.StringVar(&o.since, "since", "", "only records dead-lettered at or after this time")
		fs.StringVar(&o.until, "until", "", "only records dead-lettered before this time")
		fs.IntVar(&o.partition, "partition", -1, "only this partition of the dead-letter topic (-1: all)")
		if sub == "list" {
			fs.IntVar(&o.limit, "limit", 50, "print at most this many records (1 to 1000)")
			fs.StringVar(&o.cursor, "cursor", "", "continue where a previous call stopped (it prints the cursor)")
		} else {
			fs.Var(&o.positions, "position", "replay the record at PARTITION/OFFSET (repeatable)")
			fs.BoolVar(&o.all, "all", false, "replay every record of the topic")
			fs.BoolVar(&o.dryRun, "dry-run", false, "only print what would be replayed")
			fs.StringVar(&o.to, "to", "", "replay every selected record to this topic, whatever topic its headers name (default: the topic the dead-letter topic belongs to)")
		}
	case "purge":
		fs.BoolVar(&o.all, "all", false, "purge every record (up to the end of each partition now)")
		fs.StringVar(&o.before, "before", "", "purge the records dead-lettered before this time")
		fs.BoolVar(&o.yes, "yes", false, "really delete; without it, only show what would be deleted")
	}
	pos, err := parseInterleaved(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w%w: %w", errUsage, errQuiet, err)
	}
	fs.Visit(func(f *flag.Flag) {
		o.keySet = o.keySet || f.Name == "key"
		o.offSet = o.offSet || f.Name == "offset"
	})
	if o.url == "" {
		return fmt.Errorf("%w: no admin URL: set -url or WHIPPET_ADMIN_URL (e.g. http://host:8080/whippet)", errUsage)
	}
	base, err := url.Parse(strings.TrimRight(o.url, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fmt.Errorf("%w: -url %q: want an http:// or https:// URL like http://host:8080/whippet", errUsage, o.url)
	}
	if o.timeout <= 0 {
		return fmt.Errorf("%w: -timeout must be positive", errUsage)
	}
	if o.tokenFile != "" {
		if o.token, err = readTokenFile(o.tokenFile); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	if o.caFile != "" || o.certFile != "" || o.keyFile != "" {
		if tr.TLSClientConfig, err = tlsConfig(o.caFile, o.certFile, o.keyFile, ""); err != nil {
			return err
		}
	}
	a := &adminClient{base: base.String(), o: &o, stdout: stdout, stderr: stderr, http: &http.Client{Transport: tr}}
	switch cmd {
	case "info":
		return a.info(ctx, pos)
	case "consumers":
		return a.consumers(ctx, pos)
	case "blocked":
		return a.blocked(ctx, pos)
	case "skip", "skip-all", "block", "pause", "resume":
		return a.act(ctx, cmd, pos)
	case "seek":
		return a.seek(ctx, pos)
	case "actions":
		return a.actions(ctx, pos)
	}
	return a.dlq(ctx, sub, pos)
}

type adminClient struct {
	base           string
	o              *adminFlags
	stdout, stderr io.Writer
	http           *http.Client
}

// apiError is an error answer of the admin API.
type apiError struct {
	status int
	admin.ErrorResponse
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.status, http.StatusText(e.status), e.ErrorResponse.Error)
}

// call sends a request and decodes a 2xx JSON answer into out; with -json
// (print true), it also prints the answer.
func (a *adminClient) call(ctx context.Context, method, path string, body, out any, print bool) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.o.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.o.token)
	}
	for _, h := range a.o.headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	res, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		return fmt.Errorf("%s%s answered %s with %q, not the admin API's JSON: is -url the admin handler's mount point?",
			a.base, path, res.Status, truncate(oneLine(string(data)), 120))
	}
	if res.StatusCode >= 300 {
		e := &apiError{status: res.StatusCode}
		if err := json.Unmarshal(data, &e.ErrorResponse); err != nil || e.ErrorResponse.Error == "" {
			e.ErrorResponse.Error = truncate(oneLine(string(data)), 200)
		}
		return e
	}
	if print && a.o.jsonOut {
		if _, err := a.stdout.Write(data); err != nil {
			return err
		}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
		}
	}
	return nil
}

func noArgs(pos []string) error {
	if len(pos) > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, pos)
	}
	return nil
}

func (a *adminClient) info(ctx context.Context, pos []string) error {
	if err := noArgs(pos); err != nil {
		return err
	}
	var info admin.Info
	if err := a.call(ctx, "GET", "/api/info", nil, &info, true); err != nil || a.o.jsonOut {
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "service\t%s\n", info.Title)
	fmt.Fprintf(tw, "consumers\t%s\n", strings.Join(info.Consumers, ", "))
	if info.ReadOnly {
		fmt.Fprintf(tw, "access\tread-only: the service gave its admin handler no authorization hook\n")
	} else {
		who := info.Who
		if who == "" {
			who = "(unnamed)"
		}
		fmt.Fprintf(tw, "you are\t%s\n", who)
	}
	if !info.Payloads {
		fmt.Fprintf(tw, "payloads\t%s\n", hiddenText)
	}
	fmt.Fprintf(tw, "dead letters\t%v\n", map[bool]string{true: "browsable", false: "not served"}[info.DLQ])
	return tw.Flush()
}

func (a *adminClient) consumers(ctx context.Context, pos []string) error {
	if err := noArgs(pos); err != nil {
		return err
	}
	var cs []admin.ConsumerView
	path := "/api/consumers"
	if a.o.consumer != "" {
		var c admin.ConsumerView
		if err := a.call(ctx, "GET", path+"/"+url.PathEscape(a.o.consumer), nil, &c, true); err != nil {
			return err
		}
		cs = []admin.ConsumerView{c}
	} else if err := a.call(ctx, "GET", path, nil, &cs, true); err != nil {
		return err
	}
	if a.o.jsonOut {
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONSUMER\tGROUP\tPARTITION\tSTATE\tNEXT\tLAG\tBUFFERED")
	for _, c := range cs {
		if len(c.Partitions) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\tno partition assigned to this instance\t\t\t\n", c.Name, c.Group)
		}
		for _, p := range c.Partitions {
			next := "-"
			if p.NextOffset >= 0 {
				next = strconv.FormatInt(p.NextOffset, 10)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s/%d\t%s\t%s\t%d\t%d\n", c.Name, c.Group, p.Topic, p.Partition, partitionState(&p), next, p.Lag, p.Buffered)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range cs {
		line := fmt.Sprintf("%s: %d partition(s), lag %d, %d buffered", c.Name, len(c.Partitions), c.Lag, c.Buffered)
		if c.InFlight != nil {
			line += fmt.Sprintf(", %d handler(s) running", *c.InFlight)
		}
		if c.BlockedPartitions > 0 {
			line += fmt.Sprintf(", %d blocked", c.BlockedPartitions)
		}
		if c.Paused {
			line += ", the whole consumer is paused"
		}
		fmt.Fprintln(a.stderr, line)
	}
	return nil
}

func partitionState(p *admin.PartitionView) string {
	var s []string
	for _, b := range p.Blocked {
		if b.Forwarding {
			s = append(s, fmt.Sprintf("forward of %d failing", b.Offset))
		} else if b.Waiting {
			s = append(s, fmt.Sprintf("retry %d waiting", b.Offset))
		} else {
			s = append(s, fmt.Sprintf("blocked at %d", b.Offset))
		}
	}
	if p.Paused {
		s = append(s, "paused")
	}
	if p.Backpressure {
		s = append(s, "backpressure")
	}
	if p.SkipAll {
		s = append(s, "skip-all")
	}
	if len(s) == 0 {
		return "running"
	}
	return strings.Join(s, ", ")
}

func (a *adminClient) blocked(ctx context.Context, pos []string) error {
	if err := noArgs(pos); err != nil {
		return err
	}
	names := []string{a.o.consumer}
	if a.o.consumer == "" {
		var info admin.Info
		if err := a.call(ctx, "GET", "/api/info", nil, &info, false); err != nil {
			return err
		}
		names = info.Consumers
	}
	all := []admin.BlockedView{}
	for _, n := range names {
		var bs []admin.BlockedView
		if err := a.call(ctx, "GET", "/api/consumers/"+url.PathEscape(n)+"/blocked", nil, &bs, false); err != nil {
			return err
		}
		all = append(all, bs...)
	}
	if a.o.jsonOut {
		return json.NewEncoder(a.stdout).Encode(all)
	}
	if len(all) == 0 {
		fmt.Fprintln(a.stderr, "no partition is blocked")
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONSUMER\tPARTITION\tOFFSET\tKEY\tATTEMPTS\tBLOCKED FOR\tNEXT ATTEMPT\tERROR")
	now := time.Now()
	for _, b := range all {
		key := "(null)"
		if b.Key != nil {
			key = *b.Key
			if b.KeyEncoding == "base64" {
				key = "base64:" + key
			}
		}
		next := "in " + b.NextAttempt.Sub(now).Round(time.Second).String()
		if b.NextAttempt.IsZero() || !b.NextAttempt.After(now) {
			next = "now"
		}
		errText := oneLine(b.Error)
		if b.PayloadHidden {
			key, errText = hiddenText, hiddenText
		}
		if b.Forwarding {
			errText = "(forward failing, cannot be skipped) " + errText
		} else if b.Waiting {
			errText = "(retry waiting for its due time) " + errText
		}
		fmt.Fprintf(tw, "%s\t%s/%d\t%d\t%s\t%d\t%s\t%s\t%s\n", b.Consumer, b.Topic, b.Partition, b.Offset, truncate(oneLine(key), 32),
			b.Attempts, now.Sub(b.Since).Round(time.Second), next, truncate(errText, 80))
	}
	return tw.Flush()
}

// pickConsumer returns the consumer an action is for: -consumer, or the only
// one (of those consuming topic, if given).
func (a *adminClient) pickConsumer(ctx context.Context, topic string) (string, error) {
	if a.o.consumer != "" {
		return a.o.consumer, nil
	}
	var cs []admin.ConsumerView
	if err := a.call(ctx, "GET", "/api/consumers", nil, &cs, false); err != nil {
		return "", err
	}
	var names, fit []string
	for _, c := range cs {
		names = append(names, c.Name)
		owns := slices.ContainsFunc(c.Partitions, func(p admin.PartitionView) bool { return p.Topic == topic })
		if topic == "" || slices.Contains(c.Topics, topic) || owns {
			fit = append(fit, c.Name)
		}
	}
	switch {
	case len(fit) == 1:
		return fit[0], nil
	case len(fit) == 0 && topic != "":
		return "", fmt.Errorf("no consumer of the service consumes %q (consumers: %s)", topic, strings.Join(names, ", "))
	}
	return "", fmt.Errorf("%w: the service has several consumers (%s): choose one with -consumer", errUsage, strings.Join(fit, ", "))
}

func (a *adminClient) act(ctx context.Context, cmd string, pos []string) error {
	var (
		topic     string
		partition = -1
	)
	switch {
	case len(pos) == 1:
		i := strings.LastIndexByte(pos[0], '/')
		p, err := strconv.Atoi(pos[0][i+1:])
		if i <= 0 || err != nil || p < 0 {
			return fmt.Errorf("%w: want TOPIC/PARTITION, like orders/3, got %q", errUsage, pos[0])
		}
		topic, partition = pos[0][:i], p
	case len(pos) > 1:
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, pos[1:])
	case cmd != "pause" && cmd != "resume":
		return fmt.Errorf("%w: %s needs TOPIC/PARTITION, like orders/3", errUsage, cmd)
	}
	name, err := a.pickConsumer(ctx, topic)
	if err != nil {
		return err
	}
	path := "/api/consumers/" + url.PathEscape(name) + "/" + cmd
	if topic != "" {
		path = fmt.Sprintf("/api/consumers/%s/partitions/%s/%d/%s", url.PathEscape(name), url.PathEscape(topic), partition, cmd)
	}
	var rec admin.ActionRecord
	if err := a.call(ctx, "POST", path, nil, &rec, true); err != nil || a.o.jsonOut {
		return err
	}
	fmt.Fprintf(a.stdout, "%s (%s, as %s)\n", rec.Detail, name, rec.Who)
	return nil
}

func (a *adminClient) actions(ctx context.Context, pos []string) error {
	if err := noArgs(pos); err != nil {
		return err
	}
	var recs []admin.ActionRecord
	if err := a.call(ctx, "GET", "/api/actions", nil, &recs, true); err != nil || a.o.jsonOut {
		return err
	}
	if len(recs) == 0 {
		fmt.Fprintln(a.stderr, "no action taken yet")
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tWHO\tACTION\tTARGET\tRESULT")
	for _, r := range recs {
		target := r.Consumer
		if r.Topic != "" {
			if target != "" {
				target += " "
			}
			target += r.Topic
			if r.Partition >= 0 {
				target += "/" + strconv.Itoa(int(r.Partition))
			}
		}
		result := r.Detail
		if r.Error != "" {
			result = "failed: " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", formatTime(r.At), r.Who, r.Action, target, truncate(oneLine(result), 100))
	}
	return tw.Flush()
}

// readTokenFile returns the first line of the file named by -token-file,
// trimmed; an empty token is an error. The error never quotes the content.
func readTokenFile(name string) (string, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("%w: -token-file: %w", errUsage, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	token := strings.TrimSpace(line)
	if token == "" {
		return "", fmt.Errorf("%w: -token-file %s: the first line is empty", errUsage, name)
	}
	return token, nil
}

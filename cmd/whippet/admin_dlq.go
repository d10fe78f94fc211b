package main

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/whippet-go/whippet/consumer/admin"
)

// dlqTopic returns -topic, or the service's only dead-letter topic.
func (a *adminClient) dlqTopic(ctx context.Context) (string, error) {
	if a.o.topic != "" {
		return a.o.topic, nil
	}
	var ts []admin.DLQTopicView
	if err := a.call(ctx, "GET", "/api/dlq", nil, &ts, false); err != nil {
		return "", err
	}
	if len(ts) == 1 {
		return ts[0].Topic, nil
	}
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.Topic
	}
	return "", fmt.Errorf("%w: the service has several dead-letter topics (%s): choose one with -topic", errUsage, strings.Join(names, ", "))
}

func (a *adminClient) dlq(ctx context.Context, sub string, pos []string) error {
	if sub == "topics" {
		if err := noArgs(pos); err != nil {
			return err
		}
		return a.dlqTopics(ctx)
	}
	if sub != "show" {
		if err := noArgs(pos); err != nil {
			return err
		}
	}
	if o := a.o; sub == "replay" {
		filtered := o.keySet || o.errText != "" || o.reason != "" || o.since != "" || o.until != "" || o.partition >= 0
		n := 0
		for _, set := range []bool{len(o.positions) > 0, o.all, filtered} {
			if set {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("%w: replay needs exactly one of -position, -all and filter flags (-key, -error, -reason, -partition, -since, -until)", errUsage)
		}
	}
	if sub == "purge" && a.o.all == (a.o.before != "") {
		return fmt.Errorf("%w: purge needs exactly one of -all and -before", errUsage)
	}
	var at admin.PartitionOffset
	if sub == "show" {
		if len(pos) != 1 {
			return fmt.Errorf("%w: show needs PARTITION/OFFSET, like 0/42", errUsage)
		}
		var err error
		if at, err = parsePartitionOffset(pos[0]); err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
	}
	topic, err := a.dlqTopic(ctx)
	if err != nil {
		return err
	}
	base := "/api/dlq/" + url.PathEscape(topic)
	switch sub {
	case "list":
		return a.dlqList(ctx, base)
	case "show":
		var r admin.DLQRecord
		if err := a.call(ctx, "GET", fmt.Sprintf("%s/%d/%d", base, at.Partition, at.Offset), nil, &r, true); err != nil || a.o.jsonOut {
			return err
		}
		return printRecord(a.stdout, &r)
	case "replay":
		return a.dlqReplay(ctx, base, topic)
	}
	return a.dlqPurge(ctx, base, topic)
}

func (a *adminClient) dlqTopics(ctx context.Context) error {
	var ts []admin.DLQTopicView
	if err := a.call(ctx, "GET", "/api/dlq", nil, &ts, true); err != nil || a.o.jsonOut {
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tRECORDS\tCONSUMER\tGROUP\tSOURCE")
	for _, t := range ts {
		n := strconv.FormatInt(t.Records, 10)
		switch {
		case t.Error != "":
			n = "? (" + t.Error + ")"
		case !t.Exists:
			n = "no topic yet"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Topic, n, dash(t.Consumer), dash(t.Group), dash(t.Source))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (a *adminClient) dlqList(ctx context.Context, base string) error {
	o := a.o
	q := url.Values{}
	if o.keySet {
		q.Set("key", o.key)
	}
	for k, v := range map[string]string{"error": o.errText, "reason": o.reason, "since": o.since, "until": o.until, "cursor": o.cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if o.partition >= 0 {
		q.Set("partition", strconv.Itoa(o.partition))
	}
	q.Set("limit", strconv.Itoa(o.limit))
	var page admin.DLQPage
	if err := a.call(ctx, "GET", base+"?"+q.Encode(), nil, &page, true); err != nil {
		return err
	}
	if !o.jsonOut {
		if err := printRecordTable(a.stdout, page.Records); err != nil {
			return err
		}
	}
	fmt.Fprintf(a.stderr, "%d record(s) in %s\n", len(page.Records), page.Topic)
	if page.Next != "" {
		fmt.Fprintf(a.stderr, "more: add -cursor %s\n", page.Next)
	}
	return nil
}

func (a *adminClient) dlqReplay(ctx context.Context, base, topic string) error {
	o := a.o
	req := admin.ReplayRequest{DryRun: o.dryRun, All: o.all, To: o.to}
	if len(o.positions) > 0 {
		req.Positions = o.positions
	} else if !o.all {
		f := &admin.ReplayFilter{Error: o.errText, Reason: o.reason, Since: o.since, Until: o.until}
		if o.keySet {
			f.Key = &o.key
		}
		if o.partition >= 0 {
			f.Partitions = []int32{int32(o.partition)}
		}
		req.Filter = f
	}
	var res admin.ReplayResponse
	if err := a.call(ctx, "POST", base+"/replay", req, &res, true); err != nil {
		return err
	}
	if !o.jsonOut {
		for _, r := range res.Replayed {
			if res.DryRun {
				fmt.Fprintf(a.stdout, "would replay %s to %s\n", r.From, r.To)
			} else {
				fmt.Fprintf(a.stdout, "replayed %s to %s\n", r.From, r.To)
			}
		}
		for _, s := range res.Skipped {
			fmt.Fprintf(a.stderr, "skipped %s: %s%s\n", s.From, s.Reason, otherTopicHint(s.OtherTopic))
		}
	}
	if res.DryRun {
		fmt.Fprintf(a.stderr, "dry run: would replay %d record(s) from %s; nothing produced\n", len(res.Replayed), topic)
	} else {
		fmt.Fprintf(a.stderr, "replayed %d record(s) from %s\n", len(res.Replayed), topic)
	}
	if len(res.Skipped) > 0 {
		return fmt.Errorf("%d selected record(s) skipped, not replayed", len(res.Skipped))
	}
	return nil
}

func (a *adminClient) dlqPurge(ctx context.Context, base, topic string) error {
	o := a.o
	req := admin.PurgeRequest{All: o.all, Before: o.before, DryRun: !o.yes}
	var res admin.PurgeResponse
	if err := a.call(ctx, "POST", base+"/purge", req, &res, true); err != nil {
		return err
	}
	if !o.jsonOut {
		tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PARTITION\tFROM\tTO\tRECORDS")
		for _, p := range res.Partitions {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\n", p.Partition, p.From, p.To, p.Deleted)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if !o.yes {
		fmt.Fprintf(a.stderr, "would purge %d record(s) from %s (%s); nothing deleted: add -yes to purge\n", res.Deleted, topic, res.Scope)
		return fmt.Errorf("%w: not purged without -yes", errQuiet)
	}
	fmt.Fprintf(a.stderr, "purged %d record(s) from %s (%s)\n", res.Deleted, topic, res.Scope)
	return nil
}

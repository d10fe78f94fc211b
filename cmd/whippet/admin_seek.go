package main

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/whippet-go/whippet/consumer/admin"
)

// seek moves TOPIC/PARTITION, or every partition of TOPIC the instance has
// (TOPIC/all), through the admin API.
func (a *adminClient) seek(ctx context.Context, pos []string) error {
	if len(pos) != 1 {
		return fmt.Errorf("%w: seek needs TOPIC/PARTITION or TOPIC/all, like orders/3, and one of -offset, -time and -end", errUsage)
	}
	i := strings.LastIndexByte(pos[0], '/')
	if i <= 0 {
		return fmt.Errorf("%w: want TOPIC/PARTITION or TOPIC/all, like orders/3, got %q", errUsage, pos[0])
	}
	topic, part := pos[0][:i], pos[0][i+1:]
	partition := -1
	if part != "all" {
		p, err := strconv.Atoi(part)
		if err != nil || p < 0 {
			return fmt.Errorf("%w: want TOPIC/PARTITION or TOPIC/all, like orders/3, got %q", errUsage, pos[0])
		}
		partition = p
	}
	var req admin.SeekRequest
	n := 0
	if a.o.offSet {
		if a.o.seekOffset < 0 {
			return fmt.Errorf("%w: -offset must be >= 0, got %d", errUsage, a.o.seekOffset)
		}
		req.Offset, n = &a.o.seekOffset, n+1
	}
	if a.o.seekTime != "" {
		req.Time, n = a.o.seekTime, n+1
	}
	if a.o.seekEnd {
		req.End, n = true, n+1
	}
	if n != 1 {
		return fmt.Errorf("%w: seek needs exactly one of -offset, -time and -end", errUsage)
	}
	name, err := a.pickConsumer(ctx, topic)
	if err != nil {
		return err
	}
	path := fmt.Sprintf("/api/consumers/%s/topics/%s/seek", url.PathEscape(name), url.PathEscape(topic))
	if partition >= 0 {
		path = fmt.Sprintf("/api/consumers/%s/partitions/%s/%d/seek", url.PathEscape(name), url.PathEscape(topic), partition)
	}
	var rec admin.ActionRecord
	if err := a.call(ctx, "POST", path, req, &rec, true); err != nil || a.o.jsonOut {
		return err
	}
	fmt.Fprintf(a.stdout, "%s (%s, as %s)\n", rec.Detail, name, rec.Who)
	return nil
}

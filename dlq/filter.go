package dlq

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/whippet-go/whippet/internal/check"
	"github.com/whippet-go/whippet/retry"
)

// Filter selects dead-letter records for List and Replay. The zero Filter
// selects every record. All set fields must match.
type Filter struct {
	// Key, if not nil, selects records whose key equals it exactly (a
	// non-nil empty Key selects records with an empty or null key).
	Key []byte
	// Error, if not empty, selects records whose last error
	// (retry.Info.LastError) contains it (case-sensitive).
	Error string
	// Reason, if not empty, selects records dead-lettered for that reason.
	Reason retry.Reason
	// Partitions, if not empty, restricts the search to these partitions of
	// the dead-letter topic.
	Partitions []int32
	// Since and Until, if not zero, select records dead-lettered at or
	// after Since and before Until, by the dead-letter record's Kafka
	// timestamp (Record.Timestamp), the time PurgeBefore uses too.
	Since, Until time.Time
	// Limit, if > 0, is the most records one call returns (or replays);
	// Page.Next then continues. 0 means no limit.
	Limit int
	// Cursor continues a previous call with the same filter: pass the
	// Page.Next (or ReplayResult.Next) it returned. Empty starts at the
	// oldest record still in the topic.
	Cursor string
}

// validate checks f and parses its cursor.
func (f *Filter) validate() (cursor map[int32]int64, err error) {
	errs := check.NewErrors("dlq", ErrInvalidArgument)
	if f.Limit < 0 {
		errs.Add("Filter.Limit", "must be >= 0, got %d", f.Limit)
	}
	for _, p := range f.Partitions {
		if p < 0 {
			errs.Add("Filter.Partitions", "must be >= 0, got %d", p)
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		errs.Add("Filter.Until", "must be after Since (%s), got %s", f.Since.Format(time.RFC3339), f.Until.Format(time.RFC3339))
	}
	cursor, cerr := parseCursor(f.Cursor)
	if cerr != nil {
		errs.Add("Filter.Cursor", "%v", cerr)
	}
	return cursor, errs.Err()
}

// wants reports whether partition p is searched.
func (f *Filter) wants(p int32) bool {
	return len(f.Partitions) == 0 || slices.Contains(f.Partitions, p)
}

// match reports whether r is selected.
func (f *Filter) match(r *Record) bool {
	switch {
	case f.Key != nil && !bytes.Equal(f.Key, r.Key):
		return false
	case f.Error != "" && !strings.Contains(r.Info.LastError, f.Error):
		return false
	case f.Reason != "" && r.Info.Reason != f.Reason:
		return false
	case !f.Since.IsZero() && r.Timestamp.Before(f.Since):
		return false
	case !f.Until.IsZero() && !r.Timestamp.Before(f.Until):
		return false
	}
	return true
}

// A cursor is the next offset to read in each partition:
// "<partition>:<offset>" pairs, comma-separated, in partition order.
// Partitions it does not name start at the log start.

func formatCursor(next map[int32]int64) string {
	ps := make([]int32, 0, len(next))
	for p := range next {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(int64(p), 10))
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(next[p], 10))
	}
	return b.String()
}

func parseCursor(s string) (map[int32]int64, error) {
	if s == "" {
		return nil, nil
	}
	next := map[int32]int64{}
	for part := range strings.SplitSeq(s, ",") {
		ps, os, ok := strings.Cut(part, ":")
		p, perr := strconv.ParseInt(ps, 10, 32)
		o, oerr := strconv.ParseInt(os, 10, 64)
		if !ok || perr != nil || oerr != nil || p < 0 || o < 0 {
			return nil, fmt.Errorf("malformed cursor %q: want the Next of a previous page", s)
		}
		if _, dup := next[int32(p)]; dup {
			return nil, fmt.Errorf("malformed cursor %q: partition %d appears twice; want the Next of a previous page", s, p)
		}
		next[int32(p)] = o
	}
	return next, nil
}

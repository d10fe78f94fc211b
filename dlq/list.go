package dlq

import (
	"context"
	"fmt"
)

// Page is one page of List.
type Page struct {
	// Records are the selected records, each partition's in offset order,
	// the partitions merged by Timestamp (ties: lower partition first). When
	// timestamps grow within each partition, as they do when the consumer
	// dead-letters, that is time order; records of one key (one partition)
	// always keep their order.
	Records []Record
	// Next, if not empty, continues the listing: pass it as Filter.Cursor
	// with the same filter. It is empty when no selected record is left
	// before the end offsets this call saw.
	Next string
}

// List returns the records of dlqTopic that f selects, from the oldest
// record still in the topic (or f.Cursor) up to the end offsets seen when
// the call began: records dead-lettered meanwhile are left for the next
// page. It reads the partitions directly: no consumer group, no committed
// offset is touched. An empty topic returns at once.
//
// Every record is read and matched in memory; Since and Until do not skip
// ahead, because Kafka timestamps are not guaranteed to grow.
func (c *Client) List(ctx context.Context, dlqTopic string, f Filter) (Page, error) {
	if err := c.enter(); err != nil {
		return Page{}, err
	}
	defer c.leave()
	s, err := c.scan(ctx, dlqTopic, &f)
	if err != nil {
		return Page{}, err
	}
	var page Page
	for f.Limit == 0 || len(page.Records) < f.Limit {
		rec, ok, err := s.pop(ctx)
		if err != nil {
			return Page{}, err
		}
		if !ok {
			return page, nil
		}
		page.Records = append(page.Records, rec)
	}
	if ps, err := s.peek(ctx); err != nil {
		return Page{}, err
	} else if ps != nil {
		page.Next = s.cursor()
	}
	return page, nil
}

// scan validates the arguments of List and Replay and opens a scanner.
func (c *Client) scan(ctx context.Context, dlqTopic string, f *Filter) (*scanner, error) {
	if err := checkTopic("dlqTopic", dlqTopic); err != nil {
		return nil, err
	}
	cursor, err := f.validate()
	if err != nil {
		return nil, err
	}
	s, err := c.openScan(ctx, dlqTopic, f, cursor)
	if err != nil {
		return nil, err
	}
	for _, p := range f.Partitions {
		if _, ok := s.leaders[p]; !ok {
			return nil, &ConfigError{Pkg: "dlq", Sentinel: ErrInvalidArgument, Field: "Filter.Partitions",
				Rule: fmt.Sprintf("%q has %d partitions, no partition %d", dlqTopic, len(s.leaders), p)}
		}
	}
	return s, nil
}

// Get returns the record of dlqTopic at partition and offset. The error
// matches ErrNotFound if there is none: the partition does not exist, the
// offset was deleted (retention, Purge) or is not written yet, or it holds a
// transaction marker or an aborted record.
func (c *Client) Get(ctx context.Context, dlqTopic string, partition int32, offset int64) (Record, error) {
	if err := c.enter(); err != nil {
		return Record{}, err
	}
	defer c.leave()
	if err := checkTopic("dlqTopic", dlqTopic); err != nil {
		return Record{}, err
	}
	if partition < 0 || offset < 0 {
		return Record{}, &ConfigError{Pkg: "dlq", Sentinel: ErrInvalidArgument, Field: "partition, offset",
			Rule: fmt.Sprintf("must be >= 0, got %d and %d", partition, offset)}
	}
	pos := Position{Topic: dlqTopic, Partition: partition, Offset: offset}
	s, err := c.openScan(ctx, dlqTopic, &Filter{Partitions: []int32{partition}}, nil)
	if err != nil {
		return Record{}, err
	}
	ps := s.byPart[partition]
	switch {
	case ps == nil:
		return Record{}, fmt.Errorf("%w: %s: %q has %d partitions", ErrNotFound, pos, dlqTopic, len(s.leaders))
	case offset < ps.next:
		return Record{}, fmt.Errorf("%w: %s: deleted (the partition starts at offset %d)", ErrNotFound, pos, ps.next)
	case offset >= ps.end:
		return Record{}, fmt.Errorf("%w: %s: the partition ends at offset %d", ErrNotFound, pos, ps.end)
	}
	ps.next, ps.end = offset, offset+1
	rec, ok, err := s.pop(ctx)
	if err != nil {
		return Record{}, err
	}
	if !ok || rec.Offset != offset {
		return Record{}, fmt.Errorf("%w: %s: a transaction marker or an aborted record", ErrNotFound, pos)
	}
	return rec, nil
}

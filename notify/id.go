package notify

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalidID is matched by ParseID's error for a string that is not an ID.
var ErrInvalidID = errors.New("notify: invalid notification id")

// ID identifies a notification: the partition and offset Kafka stored it at.
// It is what the browser sees ("<partition>-<offset>", e.g. "3-1042") and
// sends back as last=<id> to resume. IDs of one channel grow with every
// notification, since a channel's notifications share one partition.
type ID struct {
	Partition int32
	Offset    int64
}

// String returns "<partition>-<offset>".
func (id ID) String() string {
	return strconv.FormatInt(int64(id.Partition), 10) + "-" + strconv.FormatInt(id.Offset, 10)
}

// ParseID parses "<partition>-<offset>". The offset may be -1 (the position
// before a partition's first record, as in a "subscribed" frame).
func ParseID(s string) (ID, error) {
	ps, os, ok := strings.Cut(s, "-")
	if !ok {
		return ID{}, fmt.Errorf("%w %q: want <partition>-<offset>", ErrInvalidID, s)
	}
	p, err := strconv.ParseInt(ps, 10, 32)
	if err != nil || p < 0 {
		return ID{}, fmt.Errorf("%w %q: bad partition", ErrInvalidID, s)
	}
	o, err := strconv.ParseInt(os, 10, 64)
	if err != nil || o < -1 {
		return ID{}, fmt.Errorf("%w %q: bad offset", ErrInvalidID, s)
	}
	return ID{Partition: int32(p), Offset: o}, nil
}

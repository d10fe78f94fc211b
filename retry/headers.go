package retry

import (
	"context"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Header names whippet writes on records it forwards to a retry topic or a
// dead-letter queue. Values are decimal strings (times in Unix milliseconds),
// readable by any tool and by other languages.
const (
	// HeaderAttempt is the number of the handling attempt the record is for:
	// the first handling is attempt 1, so a record in the first retry topic
	// carries 2. On a dead-letter record it is the number of attempts made.
	HeaderAttempt = "whippet-attempt"
	// HeaderDue is when the record may be handled again (Unix ms, rounded
	// up).
	HeaderDue = "whippet-due"
	// HeaderOriginalTopic, HeaderOriginalPartition, HeaderOriginalOffset and
	// HeaderOriginalTimestamp locate the record as first consumed.
	HeaderOriginalTopic     = "whippet-original-topic"
	HeaderOriginalPartition = "whippet-original-partition"
	HeaderOriginalOffset    = "whippet-original-offset"
	HeaderOriginalTimestamp = "whippet-original-timestamp"
	// HeaderGroup is the consumer group that failed to handle the record.
	HeaderGroup = "whippet-group"
	// HeaderFirstFailure and HeaderLastFailure are when the first and the
	// last attempt failed (Unix ms).
	HeaderFirstFailure = "whippet-first-failure"
	HeaderLastFailure  = "whippet-last-failure"
	// HeaderError is the last error's message (at most MaxErrorLength bytes).
	HeaderError = "whippet-error"
	// HeaderDLQReason, on a dead-letter record, says why it was dead-lettered:
	// one of the Reason values.
	HeaderDLQReason = "whippet-dlq-reason"
)

// Reason says why a record was dead-lettered.
type Reason string

// The reasons a record is dead-lettered.
const (
	// ReasonExhausted: every attempt of the retry policy failed.
	ReasonExhausted Reason = "exhausted"
	// ReasonNonRetriable: the error was classified as not worth retrying.
	ReasonNonRetriable Reason = "non-retriable"
	// ReasonDecode: the record could not be decoded (a poison pill).
	ReasonDecode Reason = "decode"
	// ReasonSkipped: an operator skipped the record while it blocked its
	// partition.
	ReasonSkipped Reason = "skipped"
)

// Greyhound's non-blocking retry headers, read so that a group migrating from
// Greyhound drains its old retry topics: the record is due at
// submitTimestamp + backOffTimeMs, and GH_RetryAttempt counts retries from 0.
const (
	GreyhoundSubmitTimestamp = "submitTimestamp"
	GreyhoundBackOffTimeMs   = "backOffTimeMs"
	GreyhoundOriginalTopic   = "GH_OriginalTopic"
	GreyhoundRetryAttempt    = "GH_RetryAttempt"
)

// MaxErrorLength bounds the error message kept in HeaderError.
const MaxErrorLength = 1024

// Info is what whippet knows about a record's failures, carried in headers.
type Info struct {
	// Attempt is the number of the handling attempt (1 for the first).
	Attempt int
	// Due is when the record may be handled; zero if not set.
	Due time.Time
	// OriginalTopic, OriginalPartition, OriginalOffset and OriginalTimestamp
	// locate the record as first consumed.
	OriginalTopic     string
	OriginalPartition int32
	OriginalOffset    int64
	OriginalTimestamp time.Time
	// Group is the consumer group that failed to handle the record.
	Group string
	// FirstFailure and LastFailure are when the first and the last attempt
	// failed.
	FirstFailure time.Time
	LastFailure  time.Time
	// LastError is the last error's message.
	LastError string
	// Reason is why the record was dead-lettered; empty unless it was.
	Reason Reason
}

// FirstAttempt returns the information of a first attempt at rec: attempt 1,
// rec itself as the original. The consumer uses it for every record of a
// subscribed topic, whatever headers it carries: retry headers count only on
// records of the group's own retry topics, so a producer cannot forge an
// attempt count or the origin a dead letter records.
func FirstAttempt(rec *kgo.Record) Info {
	return Info{
		Attempt:           1,
		OriginalTopic:     rec.Topic,
		OriginalPartition: rec.Partition,
		OriginalOffset:    rec.Offset,
		OriginalTimestamp: rec.Timestamp,
	}
}

// InfoFor returns the retry information of rec: from whippet's headers if it
// carries them, else from Greyhound's, else that of a first attempt at rec
// itself. ok reports whether rec carried retry headers.
func InfoFor(rec *kgo.Record) (info Info, ok bool) {
	info = FirstAttempt(rec)
	var ghSubmit, ghBackoff int64
	var ghTopic string
	ghAttempt := -1
	for _, h := range rec.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderAttempt:
			// Bounded, so that counting further attempts cannot overflow.
			if n, err := strconv.Atoi(v); err == nil && n > 0 && n <= maxAttempt {
				info.Attempt, ok = n, true
			}
		case HeaderDue:
			info.Due = parseMillis(v)
		case HeaderOriginalTopic:
			info.OriginalTopic = v
		case HeaderOriginalPartition:
			if n, err := strconv.ParseInt(v, 10, 32); err == nil {
				info.OriginalPartition = int32(n)
			}
		case HeaderOriginalOffset:
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				info.OriginalOffset = n
			}
		case HeaderOriginalTimestamp:
			info.OriginalTimestamp = parseMillis(v)
		case HeaderGroup:
			info.Group = v
		case HeaderFirstFailure:
			info.FirstFailure = parseMillis(v)
		case HeaderLastFailure:
			info.LastFailure = parseMillis(v)
		case HeaderError:
			info.LastError = v
		case HeaderDLQReason:
			info.Reason = Reason(v)
		case GreyhoundSubmitTimestamp:
			ghSubmit, _ = strconv.ParseInt(v, 10, 64)
		case GreyhoundBackOffTimeMs:
			ghBackoff, _ = strconv.ParseInt(v, 10, 64)
		case GreyhoundOriginalTopic:
			ghTopic = v
		case GreyhoundRetryAttempt:
			if n, err := strconv.Atoi(v); err == nil && n >= 0 && n <= maxAttempt-2 {
				ghAttempt = n
			}
		}
	}
	if !ok && ghAttempt >= 0 {
		// Greyhound's first retry is attempt 0; ours counts handlings from 1.
		// Its headers count only when whippet's are absent, wherever they
		// are among the headers.
		ok = true
		info.Attempt = ghAttempt + 2
		if ghTopic != "" {
			info.OriginalTopic = ghTopic
		}
		if ghSubmit > 0 && ghBackoff >= 0 && ghSubmit <= math.MaxInt64-ghBackoff {
			info.Due = time.UnixMilli(ghSubmit + ghBackoff)
		}
	}
	return info, ok
}

// maxAttempt bounds the attempt numbers read from headers: far more
// attempts than any policy makes, and far from overflowing when counted on.
const maxAttempt = math.MaxInt32

// Headers returns the original headers without the retry headers (see
// IsRetryHeader), followed by the headers that encode info. Greyhound's
// headers are dropped too, so a migrated record is not read twice.
func (info Info) Headers(original []kgo.RecordHeader) []kgo.RecordHeader {
	out := make([]kgo.RecordHeader, 0, len(original)+10)
	for _, h := range original {
		if !IsRetryHeader(h.Key) {
			out = append(out, h)
		}
	}
	add := func(k, v string) { out = append(out, kgo.RecordHeader{Key: k, Value: []byte(v)}) }
	add(HeaderAttempt, strconv.Itoa(info.Attempt))
	if !info.Due.IsZero() {
		// Rounded up to the next millisecond, so that the record is never
		// handled before info.Due.
		add(HeaderDue, strconv.FormatInt(info.Due.Add(time.Millisecond-time.Nanosecond).UnixMilli(), 10))
	}
	add(HeaderOriginalTopic, info.OriginalTopic)
	add(HeaderOriginalPartition, strconv.FormatInt(int64(info.OriginalPartition), 10))
	add(HeaderOriginalOffset, strconv.FormatInt(info.OriginalOffset, 10))
	add(HeaderOriginalTimestamp, millis(info.OriginalTimestamp))
	if info.Group != "" {
		add(HeaderGroup, info.Group)
	}
	if !info.FirstFailure.IsZero() {
		add(HeaderFirstFailure, millis(info.FirstFailure))
	}
	if !info.LastFailure.IsZero() {
		add(HeaderLastFailure, millis(info.LastFailure))
	}
	if info.LastError != "" {
		msg := info.LastError
		if len(msg) > MaxErrorLength {
			// Cut at a rune boundary, so that valid UTF-8 stays valid;
			// bytes that are not UTF-8 are cut where they are.
			n := MaxErrorLength
			for i := n; i > n-utf8.UTFMax; i-- {
				if utf8.RuneStart(msg[i]) {
					n = i
					break
				}
			}
			msg = msg[:n]
		}
		add(HeaderError, msg)
	}
	if info.Reason != "" {
		add(HeaderDLQReason, string(info.Reason))
	}
	return out
}

// IsRetryHeader reports whether a header is one of the retry or dead-letter
// headers above, or one of Greyhound's retry headers: the headers that
// describe a record's failures rather than the record itself.
func IsRetryHeader(k string) bool {
	switch k {
	case HeaderAttempt, HeaderDue, HeaderOriginalTopic, HeaderOriginalPartition, HeaderOriginalOffset,
		HeaderOriginalTimestamp, HeaderGroup, HeaderFirstFailure, HeaderLastFailure, HeaderError, HeaderDLQReason,
		GreyhoundSubmitTimestamp, GreyhoundBackOffTimeMs, GreyhoundOriginalTopic, GreyhoundRetryAttempt:
		return true
	}
	return false
}

func millis(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func parseMillis(v string) time.Time {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

type infoKey struct{}

// WithInfo returns ctx carrying info; the consumer gives every handler a
// context made this way.
func WithInfo(ctx context.Context, info Info) context.Context {
	return context.WithValue(ctx, infoKey{}, info)
}

// InfoFrom returns the retry information of the record being handled. On a
// first attempt the consumer attaches none (it costs an allocation per
// record): InfoFrom then returns Info{Attempt: 1} and ok false, so
// info.Attempt is right whether or not the caller looks at ok. ok is true
// for every retry, in place or from a retry topic.
func InfoFrom(ctx context.Context) (Info, bool) {
	if info, ok := ctx.Value(infoKey{}).(Info); ok {
		return info, true
	}
	return Info{Attempt: 1}, false
}

package dlq

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/whippet-go/whippet/internal/jsonbytes"
)

// maxDays is the most days ParseTime accepts: more than a time.Duration
// holds would wrap around.
const maxDays = math.MaxInt64 / int64(24*time.Hour)

// timeError is an unparsable time: its message says why, without a prefix,
// so that a caller can name its flag or parameter in front of it.
type timeError struct{ msg string }

func (e *timeError) Error() string        { return e.msg }
func (e *timeError) Is(target error) bool { return target == ErrInvalidArgument }

// ParseTime reads a time as the whippet CLI and the admin API take it (for
// Filter.Since and Until and for PurgeBefore): an RFC 3339 time
// ("2026-05-01T10:00:00Z", fractional seconds allowed), or a duration before
// now: a Go duration ("90m", "2h", "1h30m") or whole days ("7d"). A negative
// duration (a time after now) is refused, and so are more days than a
// time.Duration holds (106751, some 292 years), rather than wrapping around.
// The error matches ErrInvalidArgument; its message quotes s and says what
// was expected, without naming the flag or parameter, which the caller
// adds.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int64
		if days, err = strconv.ParseInt(n, 10, 64); err == nil && days > maxDays {
			return time.Time{}, &timeError{fmt.Sprintf("%q is more days ago than a duration holds (at most %dd)", s, maxDays)}
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d < 0 {
		return time.Time{}, &timeError{fmt.Sprintf("%q is neither an RFC 3339 time (2026-05-01T10:00:00Z) nor a duration ago (90m, 2h, 7d)", s)}
	}
	return now.Add(-d), nil
}

// RecordView is a dead-letter record as JSON: what `whippet dlq list|show
// -json` prints and what the admin API (package consumer/admin) answers, the
// same fields for both. Bytes (key, value, header values) are JSON strings
// when they are valid UTF-8, else base64 with a sibling "*_encoding":
// "base64" field; a null key or value is JSON null. Times are RFC 3339 in
// UTC and left out when unknown. Make one with Record.View.
type RecordView struct {
	// Topic, Partition and Offset locate the record in the dead-letter
	// topic; Position is the same as "<topic>/<partition>/<offset>".
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Position  string `json:"position"`
	// Timestamp is when it was dead-lettered (Record.Timestamp).
	Timestamp time.Time `json:"timestamp,omitzero"`
	// Key and Value are the original record's. ValueSize is the value's
	// length in bytes, whole even when Value is cut (ValueTruncated, see
	// ViewOptions.MaxValue).
	Key            *string `json:"key"`
	KeyEncoding    string  `json:"key_encoding,omitempty"`
	Value          *string `json:"value"`
	ValueEncoding  string  `json:"value_encoding,omitempty"`
	ValueSize      int     `json:"value_size"`
	ValueTruncated bool    `json:"value_truncated,omitempty"`
	// Headers are the original record's headers (Record.Headers), never
	// null.
	Headers []HeaderView `json:"headers"`
	// DeadLetter is false for a record without retry headers (not written
	// by a whippet consumer).
	DeadLetter bool `json:"dead_letter"`
	// Attempts, Reason, Error, Group, the Original* fields and the failure
	// times are the failure information of the retry headers (Record.Info).
	Attempts          int       `json:"attempts"`
	Reason            string    `json:"reason"`
	Error             string    `json:"error"`
	Group             string    `json:"group"`
	OriginalTopic     string    `json:"original_topic"`
	OriginalPartition int32     `json:"original_partition"`
	OriginalOffset    int64     `json:"original_offset"`
	OriginalTimestamp time.Time `json:"original_timestamp,omitzero"`
	FirstFailure      time.Time `json:"first_failure,omitzero"`
	LastFailure       time.Time `json:"last_failure,omitzero"`
	// ReplayedFrom, ReplayedAt and ReplayCount are set when the original
	// record was itself produced by a replay (Record.Replayed).
	ReplayedFrom string    `json:"replayed_from,omitempty"`
	ReplayedAt   time.Time `json:"replayed_at,omitzero"`
	ReplayCount  int       `json:"replay_count,omitempty"`
	// PayloadHidden is true when the view leaves out the payload
	// (ViewOptions.HidePayload): Key and Value are null, header values
	// and Error empty; ValueSize is still the value's size.
	PayloadHidden bool `json:"payload_hidden,omitempty"`
}

// HeaderView is a record header as JSON.
type HeaderView struct {
	// Key is the header's name.
	Key string `json:"key"`
	// Value is its value: text, or base64 when Encoding says so.
	Value string `json:"value"`
	// Encoding is "base64" when the value is not UTF-8.
	Encoding string `json:"encoding,omitempty"`
}

// ViewOptions says how Record.View shows a record. The zero value shows it
// whole.
type ViewOptions struct {
	// MaxValue, if > 0, cuts values longer than MaxValue bytes (a text
	// value at a rune boundary) and sets RecordView.ValueTruncated. The
	// default, 0, shows whole values.
	MaxValue int
	// HidePayload leaves out what the record says rather than where it
	// failed: key, value, header values (not their names) and the error
	// text, which often quotes the payload. It sets
	// RecordView.PayloadHidden. The admin API hides payloads from who lacks
	// its view-payloads permission. Default: false, shown.
	HidePayload bool
}

// View returns the JSON view of r.
func (r *Record) View(o ViewOptions) RecordView {
	v := RecordView{
		Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Position: r.Position.String(),
		Timestamp: utc(r.Timestamp), ValueSize: len(r.Value), Headers: []HeaderView{}, DeadLetter: r.DeadLetter,
		Attempts: r.Info.Attempt, Reason: string(r.Info.Reason), Error: r.Info.LastError, Group: r.Info.Group,
		OriginalTopic: r.Info.OriginalTopic, OriginalPartition: r.Info.OriginalPartition,
		OriginalOffset: r.Info.OriginalOffset, OriginalTimestamp: utc(r.Info.OriginalTimestamp),
		FirstFailure: utc(r.Info.FirstFailure), LastFailure: utc(r.Info.LastFailure),
	}
	v.Key, v.KeyEncoding = jsonbytes.Encode(r.Key)
	value := r.Value
	if o.MaxValue > 0 && len(value) > o.MaxValue {
		value, v.ValueTruncated = value[:o.MaxValue], true
		for !utf8.Valid(value) && utf8.Valid(r.Value) && len(value) > o.MaxValue-utf8.UTFMax {
			value = value[:len(value)-1] // do not cut a rune of a text value in two
		}
	}
	v.Value, v.ValueEncoding = jsonbytes.Encode(value)
	for _, h := range r.Headers {
		val, enc := jsonbytes.Encode(h.Value)
		hv := HeaderView{Key: h.Key, Encoding: enc}
		if val != nil {
			hv.Value = *val
		}
		v.Headers = append(v.Headers, hv)
	}
	if m := r.Replayed; m != nil {
		v.ReplayedFrom, v.ReplayedAt, v.ReplayCount = m.From.String(), utc(m.At), m.Count
	}
	if o.HidePayload {
		v.Key, v.KeyEncoding, v.Value, v.ValueEncoding, v.ValueTruncated, v.Error = nil, "", nil, "", false, ""
		for i := range v.Headers {
			v.Headers[i].Value, v.Headers[i].Encoding = "", ""
		}
		v.PayloadHidden = true
	}
	return v
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

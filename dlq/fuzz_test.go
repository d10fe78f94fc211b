package dlq

import (
	"maps"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/internal/check"
	"github.com/whippet-go/whippet/retry"
)

// FuzzParsePosition checks that ParsePosition accepts only a valid topic, a
// partition and an offset (both >= 0), and that what it accepts prints back
// (Position.String) to a string it parses to the same Position.
func FuzzParsePosition(f *testing.F) {
	for _, s := range []string{"orders-g-dlq/0/0", "a.b_c-D/12/9223372036854775807", "x/2147483647/1", "/0/0", "t/-1/0",
		"t/0/-1", "t//1", "t/0/", "t/0", "t", "", "a/b/c/1/2", "t/+1/+2", "t/01/002", "bad topic/0/1", "../1/2", "t/2147483648/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePosition(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "dlq: position ") {
				t.Fatalf("error %q does not say what it parsed", err)
			}
			return
		}
		if rule := check.TopicRule(p.Topic); rule != "" || p.Partition < 0 || p.Offset < 0 {
			t.Fatalf("ParsePosition(%q) = %+v: accepted an invalid position", s, p)
		}
		q, err := ParsePosition(p.String())
		if err != nil || q != p {
			t.Fatalf("%+v prints as %q, which parses to %+v, %v", p, p.String(), q, err)
		}
	})
}

// FuzzCursor checks that a cursor the parser accepts has partitions and
// offsets >= 0, and formats back to a cursor that parses to the same
// positions; a rejected one is reported on Filter.Cursor.
func FuzzCursor(f *testing.F) {
	for _, s := range []string{"", "0:0", "0:5,1:7,2:0", "2147483647:9223372036854775807", "0:1,0:2", "0", ":1", "0:",
		"-1:0", "0:-1", "0:1,", ",0:1", "a:b", "0:1;1:2", "+1:+2", " 0:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		next, err := parseCursor(s)
		if err != nil {
			ferr := (&Filter{Cursor: s}).validateErr()
			if ferr == nil || !strings.Contains(ferr.Error(), "dlq: Filter.Cursor: ") {
				t.Fatalf("Filter error %v does not name Filter.Cursor", ferr)
			}
			return
		}
		for p, o := range next {
			if p < 0 || o < 0 {
				t.Fatalf("parseCursor(%q) accepted %d:%d", s, p, o)
			}
		}
		again, err := parseCursor(formatCursor(next))
		if err != nil || !maps.Equal(again, next) || (s == "") != (len(next) == 0) {
			t.Fatalf("cursor %q = %v formats as %q, which parses to %v, %v", s, next, formatCursor(next), again, err)
		}
	})
}

// validateErr returns only the error of validate.
func (f *Filter) validateErr() error { _, err := f.validate(); return err }

var fuzzKeys = []string{
	retry.HeaderAttempt, retry.HeaderOriginalTopic, retry.HeaderOriginalPartition, retry.HeaderOriginalOffset,
	retry.HeaderError, retry.HeaderDLQReason, retry.GreyhoundRetryAttempt, retry.GreyhoundOriginalTopic,
	HeaderReplayedFrom, HeaderReplayedAt, HeaderReplayCount, "trace-id", "tenant",
}

// FuzzParse checks Parse on a dead-letter record with arbitrary headers: it
// never panics, Record.Headers are the other headers in their order, and the
// record Replay would produce from it parses back (once dead-lettered again)
// as replayed from its position, one replay more, with the same headers.
func FuzzParse(f *testing.F) {
	line := func(k, v string) string { return string(rune('A'+slices.Index(fuzzKeys, k))) + "=" + v + "\n" }
	f.Add(line(retry.HeaderAttempt, "3")+line(retry.HeaderOriginalTopic, "orders")+line(retry.HeaderError, "boom")+
		line(retry.HeaderDLQReason, "exhausted")+line("trace-id", "t1"), []byte("k"), []byte("v"))
	f.Add(line(retry.HeaderAttempt, "1")+line(retry.HeaderOriginalTopic, "orders")+line(HeaderReplayedFrom, "orders-g-dlq/0/7")+
		line(HeaderReplayedAt, "1700000000000")+line(HeaderReplayCount, "2"), []byte(nil), []byte("v"))
	f.Add(line(HeaderReplayedFrom, "not a position")+line(HeaderReplayCount, "-4")+line("tenant", "a")+line("tenant", "b"), []byte{}, []byte(nil))
	f.Add(line(retry.GreyhoundRetryAttempt, "0")+line(retry.GreyhoundOriginalTopic, "orders"), []byte("k"), []byte("v"))
	// Found by review, kept as a regression: a replay count that overflowed
	// when Replay counted on.
	f.Add(line(retry.HeaderAttempt, "2")+line(retry.HeaderOriginalTopic, "orders")+line(HeaderReplayedFrom, "orders-g-dlq/0/7")+
		line(HeaderReplayCount, "9223372036854775807"), []byte("k"), []byte("v"))

	f.Fuzz(func(t *testing.T, spec string, key, value []byte) {
		var hs []kgo.RecordHeader
		for l := range strings.SplitSeq(spec, "\n") {
			i, v, ok := strings.Cut(l, "=")
			if !ok || i == "" {
				continue
			}
			n := int(i[0]) - 'A'
			if n < 0 || n >= len(fuzzKeys) {
				n = int(i[0]) % len(fuzzKeys)
			}
			hs = append(hs, kgo.RecordHeader{Key: fuzzKeys[n], Value: []byte(v)})
		}
		rec := &kgo.Record{Topic: "orders-g-dlq", Partition: 2, Offset: 41, Key: key, Value: value, Headers: hs}
		r := Parse(rec)
		var other []kgo.RecordHeader
		for _, h := range hs {
			if !retry.IsRetryHeader(h.Key) && !IsReplayHeader(h.Key) {
				other = append(other, h)
			}
		}
		if !headersEqual(r.Headers, other) {
			t.Fatalf("Record.Headers %v, want %v", r.Headers, other)
		}
		if r.Replayed != nil && (r.Replayed.Count < 1 || r.Replayed.Count >= math.MaxInt32) {
			t.Fatalf("replay count %d", r.Replayed.Count)
		}
		if !r.DeadLetter || check.TopicRule(r.Info.OriginalTopic) != "" {
			return // Replay skips it
		}
		out := replayRecord(&r, r.Info.OriginalTopic, 1_700_000_000_000)
		// The replayed record fails again and is dead-lettered: its
		// headers go through the consumer's retry.Info.Headers.
		info := retry.Info{Attempt: 1, OriginalTopic: out.Topic, Reason: retry.ReasonExhausted}
		again := Parse(&kgo.Record{Topic: "orders-g-dlq", Partition: 0, Offset: 99, Key: out.Key, Value: out.Value, Headers: info.Headers(out.Headers)})
		count := 1
		if r.Replayed != nil {
			count = r.Replayed.Count + 1
		}
		if again.Replayed == nil || again.Replayed.From != r.Position || again.Replayed.Count != count || again.Replayed.At.UnixMilli() != 1_700_000_000_000 {
			t.Fatalf("replayed record reads back as %+v, want from %v, count %d", again.Replayed, r.Position, count)
		}
		if !headersEqual(again.Headers, other) || string(again.Key) != string(key) || string(again.Value) != string(value) {
			t.Fatalf("replay changed the record: headers %v, want %v", again.Headers, other)
		}
	})
}

func headersEqual(a, b []kgo.RecordHeader) bool {
	return slices.EqualFunc(a, b, func(x, y kgo.RecordHeader) bool { return x.Key == y.Key && string(x.Value) == string(y.Value) })
}

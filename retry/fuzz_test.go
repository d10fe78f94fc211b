package retry_test

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/retry"
)

// headerKeys are the keys FuzzInfoFor draws from: every header InfoFor reads,
// and two that it must pass through untouched.
var headerKeys = []string{
	retry.HeaderAttempt, retry.HeaderDue, retry.HeaderOriginalTopic, retry.HeaderOriginalPartition,
	retry.HeaderOriginalOffset, retry.HeaderOriginalTimestamp, retry.HeaderGroup, retry.HeaderFirstFailure,
	retry.HeaderLastFailure, retry.HeaderError, retry.HeaderDLQReason,
	retry.GreyhoundSubmitTimestamp, retry.GreyhoundBackOffTimeMs, retry.GreyhoundOriginalTopic, retry.GreyhoundRetryAttempt,
	"trace-id", "content-type",
}

// fuzzHeaders turns fuzz input into headers: spec is a list of "i=value"
// entries separated by '\n', i a byte indexing headerKeys from 'A'. It
// keeps the first value of each key, so that the order of the headers must
// not matter.
func fuzzHeaders(spec string) []kgo.RecordHeader {
	var hs []kgo.RecordHeader
	seen := map[string]bool{}
	for line := range strings.SplitSeq(spec, "\n") {
		i, v, ok := strings.Cut(line, "=")
		if !ok || i == "" {
			continue
		}
		n := int(i[0]) - 'A'
		if n < 0 || n >= len(headerKeys) {
			n = int(i[0]) % len(headerKeys)
		}
		k := headerKeys[n]
		if !seen[k] {
			seen[k] = true
			hs = append(hs, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
	}
	return hs
}

// hdr builds a fuzzHeaders line for key.
func hdr(key, value string) string {
	return string(rune('A'+slices.Index(headerKeys, key))) + "=" + value + "\n"
}

// FuzzInfoFor checks InfoFor on arbitrary headers (whippet's, Greyhound's,
// malformed, in any order): it never panics, the attempt is at least 1, the
// result does not depend on the order of the headers, no time is before the
// epoch, and what Headers writes reads back as the same Info.
func FuzzInfoFor(f *testing.F) {
	f.Add(hdr(retry.HeaderAttempt, "3")+hdr(retry.HeaderDue, "1700000003000")+hdr(retry.HeaderOriginalTopic, "orders")+
		hdr(retry.HeaderOriginalPartition, "7")+hdr(retry.HeaderOriginalOffset, "42")+hdr(retry.HeaderOriginalTimestamp, "1700000000000")+
		hdr(retry.HeaderGroup, "g")+hdr(retry.HeaderFirstFailure, "1700000001000")+hdr(retry.HeaderLastFailure, "1700000002000")+
		hdr(retry.HeaderError, "boom")+hdr(retry.HeaderDLQReason, "exhausted")+hdr("trace-id", "t1"), int64(1_700_000_000_000))
	f.Add(hdr(retry.GreyhoundSubmitTimestamp, "1700000000000")+hdr(retry.GreyhoundBackOffTimeMs, "5000")+
		hdr(retry.GreyhoundOriginalTopic, "orders")+hdr(retry.GreyhoundRetryAttempt, "1"), int64(1))
	f.Add(hdr(retry.HeaderAttempt, "-1")+hdr(retry.HeaderDue, "x")+hdr(retry.HeaderOriginalPartition, "99999999999"), int64(0))
	f.Add("", int64(-5))
	// Found by review, kept as regressions: an attempt that overflows when
	// Greyhound's count is converted or when counted on, a due time that
	// overflows, and Greyhound's topic read before whippet's attempt.
	f.Add(hdr(retry.GreyhoundRetryAttempt, "9223372036854775807"), int64(1))
	f.Add(hdr(retry.HeaderAttempt, "9223372036854775807"), int64(1))
	f.Add(hdr(retry.GreyhoundRetryAttempt, "0")+hdr(retry.GreyhoundSubmitTimestamp, "9223372036854775807")+
		hdr(retry.GreyhoundBackOffTimeMs, "10"), int64(1))
	f.Add(hdr(retry.GreyhoundRetryAttempt, "0")+hdr(retry.GreyhoundSubmitTimestamp, "1000")+hdr(retry.GreyhoundBackOffTimeMs, "-2000"), int64(1))
	f.Add(hdr(retry.GreyhoundOriginalTopic, "old")+hdr(retry.HeaderAttempt, "2"), int64(1))

	f.Fuzz(func(t *testing.T, spec string, ts int64) {
		hs := fuzzHeaders(spec)
		rec := &kgo.Record{Topic: "src", Partition: 3, Offset: 99, Headers: hs}
		if ts > 0 && ts < math.MaxInt64/2 {
			rec.Timestamp = time.UnixMilli(ts)
		}
		info, ok := retry.InfoFor(rec)
		if info.Attempt < 1 {
			t.Fatalf("Attempt %d < 1 from %v", info.Attempt, hs)
		}
		for name, tm := range map[string]time.Time{"Due": info.Due, "OriginalTimestamp": info.OriginalTimestamp,
			"FirstFailure": info.FirstFailure, "LastFailure": info.LastFailure} {
			if !tm.IsZero() && tm.UnixMilli() <= 0 {
				t.Fatalf("%s %v is not after the epoch, from %v", name, tm, hs)
			}
		}

		rev := slices.Clone(hs)
		slices.Reverse(rev)
		info2, ok2 := retry.InfoFor(&kgo.Record{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Timestamp: rec.Timestamp, Headers: rev})
		if info2 != info || ok2 != ok {
			t.Fatalf("header order matters:\n%+v %v\n%+v %v", info, ok, info2, ok2)
		}

		out := info.Headers(hs)
		var kept []kgo.RecordHeader
		for _, h := range hs {
			if !retry.IsRetryHeader(h.Key) {
				kept = append(kept, h)
			}
		}
		if len(out) < len(kept) || !slices.EqualFunc(out[:len(kept)], kept, func(a, b kgo.RecordHeader) bool {
			return a.Key == b.Key && string(a.Value) == string(b.Value)
		}) {
			t.Fatalf("Headers did not keep the other headers first and in order: %v from %v", out, hs)
		}
		back, ok3 := retry.InfoFor(&kgo.Record{Topic: "elsewhere", Partition: 1, Offset: 5, Headers: out})
		want := info
		if len(want.LastError) > retry.MaxErrorLength {
			if !strings.HasPrefix(want.LastError, back.LastError) || len(back.LastError) > retry.MaxErrorLength ||
				len(back.LastError) < retry.MaxErrorLength-utf8.UTFMax {
				t.Fatalf("LastError of %d bytes cut to %d", len(want.LastError), len(back.LastError))
			}
			if utf8.ValidString(want.LastError) && !utf8.ValidString(back.LastError) {
				t.Fatal("cutting LastError broke its UTF-8")
			}
			want.LastError = back.LastError
		}
		if !ok3 || back != want {
			t.Fatalf("Headers do not read back:\nwrote %+v\nread  %+v (ok %v)\nheaders %v", want, back, ok3, out)
		}
	})
}

// FuzzExponential checks that an Exponential backoff that validates gives
// waits within [0, Max] for every retry it makes, and none after.
func FuzzExponential(f *testing.F) {
	f.Add(int64(time.Second), int64(time.Minute), 2.0, 0.2, 5)
	f.Add(int64(time.Millisecond), int64(time.Hour), 1.5, 0.0, retry.Forever)
	f.Add(int64(1), int64(1), 1.0, 0.999, 1)
	// Found by review, kept as regressions: NaN passed validation, and a
	// Max near the largest Duration overflowed through float64.
	f.Add(int64(time.Second), int64(time.Minute), math.NaN(), 0.0, 3)
	f.Add(int64(time.Second), int64(time.Minute), 2.0, math.NaN(), 3)
	f.Add(int64(math.MaxInt64), int64(math.MaxInt64), 2.0, 0.0, 3)
	f.Add(int64(time.Second), int64(math.MaxInt64), math.Inf(1), 0.5, 3)

	f.Fuzz(func(t *testing.T, initial, maxWait int64, mult, jitter float64, retries int) {
		e := retry.Exponential{Initial: time.Duration(initial), Max: time.Duration(maxWait), Multiplier: mult, Jitter: jitter, Retries: retries}
		p := retry.BlockingBackoff(e)
		err := p.Validate()
		if err != nil {
			if !strings.Contains(err.Error(), "Exponential.") {
				t.Fatalf("error %q does not name the field", err)
			}
			return
		}
		last := 60
		if retries != retry.Forever {
			last = min(retries, 60)
		}
		for n := 1; n <= last; n++ {
			d, ok := e.Delay(n)
			if !ok || d < 0 || d > e.Max {
				t.Fatalf("%+v: Delay(%d) = %v, %v; want a wait in [0, %v]", e, n, d, ok, e.Max)
			}
		}
		if retries != retry.Forever {
			if _, ok := e.Delay(retries + 1); ok && retries < math.MaxInt {
				t.Fatalf("%+v: a retry after the last", e)
			}
		}
	})
}

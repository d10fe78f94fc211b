package dlq_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/dlq"
	"github.com/whippet-go/whippet/retry"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-04-30T10:00:00Z":      time.Date(2026, 4, 30, 10, 0, 0, 0, time.UTC),
		"2026-04-30T10:00:00+02:00": time.Date(2026, 4, 30, 8, 0, 0, 0, time.UTC),
		"90m":                       now.Add(-90 * time.Minute),
		"1h30m":                     now.Add(-90 * time.Minute),
		"2h":                        now.Add(-2 * time.Hour),
		"7d":                        now.Add(-7 * 24 * time.Hour),
		"0s":                        now,
		"106751d":                   now.Add(-106751 * 24 * time.Hour),
	} {
		if got, err := dlq.ParseTime(in, now); err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, msg := range map[string]string{
		"": "neither", "-2h": "neither", "-1d": "neither", "yesterday": "neither", "2026-04-30": "neither", "xd": "neither", "1.5d": "neither",
		// More days than a Duration holds used to wrap around: 213504d
		// came out as 25 minutes ago.
		"106752d": "at most 106751d", "213504d": "at most 106751d", "9223372036854775807d": "at most 106751d",
	} {
		_, err := dlq.ParseTime(in, now)
		if !errors.Is(err, dlq.ErrInvalidArgument) || !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), `"`+in+`"`) {
			t.Errorf("ParseTime(%q) = %v; want an invalid argument quoting it, saying %q", in, err, msg)
		}
	}
}

func TestRecordView(t *testing.T) {
	at := time.UnixMilli(1777636800123)
	info := retry.Info{Attempt: 3, OriginalTopic: "orders", OriginalPartition: 2, OriginalOffset: 9, OriginalTimestamp: at,
		Group: "billing", LastFailure: at, LastError: "boom", Reason: retry.ReasonExhausted}
	r := dlq.Parse(&kgo.Record{Topic: "orders-billing-dlq", Partition: 1, Offset: 4, Timestamp: at, Key: []byte("k"),
		Value: []byte("héllo wörld"), Headers: info.Headers([]kgo.RecordHeader{{Key: "bin", Value: []byte{0xff}}})})
	v := r.View(dlq.ViewOptions{})
	if v.Position != "orders-billing-dlq/1/4" || *v.Key != "k" || *v.Value != "héllo wörld" || v.ValueSize != 13 || v.ValueTruncated ||
		v.Timestamp.Location() != time.UTC || !v.Timestamp.Equal(at) || v.Error != "boom" || v.OriginalTopic != "orders" ||
		len(v.Headers) != 1 || v.Headers[0].Value != "/w==" || v.Headers[0].Encoding != "base64" {
		t.Errorf("View = %+v", v)
	}
	// Cut at 2 bytes: "h" and the first byte of "é" would not be UTF-8.
	if v := r.View(dlq.ViewOptions{MaxValue: 2}); *v.Value != "h" || !v.ValueTruncated || v.ValueSize != 13 || v.ValueEncoding != "" {
		t.Errorf("View(MaxValue 2) value %q truncated %v size %d", *v.Value, v.ValueTruncated, v.ValueSize)
	}
}

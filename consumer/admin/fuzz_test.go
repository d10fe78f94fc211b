package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/dlq"
)

var fuzzNow = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)

// FuzzParseWhen checks the time parameters (since, until, before): a value
// is an RFC 3339 time, or a duration ("90m") or a number of days ("7d") that
// many ago, exactly; anything else is a 400 naming the parameter.
func FuzzParseWhen(f *testing.F) {
	for _, s := range []string{"2026-05-01T10:00:00Z", "2026-05-01T10:00:00.123+02:00", "90m", "2h", "7d", "0d", "-1d", "-5m", "",
		"d", "1.5d", "7days", "106751d", "9223372036854775807ns",
		// Found by review, kept as regressions: day counts past what a
		// Duration holds wrapped around to some other time.
		"106752d", "213504d", "9223372036854775807d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseWhen("since", s, fuzzNow)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != http.StatusBadRequest || ae.param != "since" || !strings.HasPrefix(ae.msg, "since: ") {
				t.Fatalf("parseWhen(%q) = %v: want a 400 naming since", s, err)
			}
			return
		}
		if _, perr := time.Parse(time.RFC3339Nano, s); perr == nil {
			return
		}
		var want time.Duration
		if n, ok := strings.CutSuffix(s, "d"); ok {
			days, err := strconv.Atoi(n)
			if err != nil {
				t.Fatalf("parseWhen(%q) accepted a bad day count", s)
			}
			want = time.Duration(days) * 24 * time.Hour
			if want/(24*time.Hour) != time.Duration(days) {
				t.Fatalf("parseWhen(%q) accepted a day count that overflows", s)
			}
		} else if want, err = time.ParseDuration(s); err != nil {
			t.Fatalf("parseWhen(%q) accepted neither a time nor a duration", s)
		}
		if want < 0 || fuzzNow.Sub(got) != want {
			t.Fatalf("parseWhen(%q) = %v, want %v before %v", s, got, want, fuzzNow)
		}
	})
}

// FuzzListQuery checks the query of GET /api/dlq/{topic}: it gives a
// filter within bounds (limit 1 to maxListLimit, partitions >= 0, times not
// after now), or a 400 that names the parameter at fault.
func FuzzListQuery(f *testing.F) {
	for _, q := range []string{"", "limit=10", "key=k1&error=boom&reason=decode", "partition=0,1&partition=2", "since=2h&until=1h",
		"cursor=0:5,1:7", "limit=0", "limit=1001", "limit=x", "partition=-1", "partition=a", "reason=bogus", "since=yesterday",
		"color=red", "key", "key=&key=b", "%zz", "limit=%31", "since=9223372036854775807d"} {
		f.Add(q)
	}
	h := &Handler{now: func() time.Time { return fuzzNow }}
	params := []string{"key", "error", "reason", "partition", "since", "until", "limit", "cursor", "query"}
	f.Fuzz(func(t *testing.T, raw string) {
		r := httptest.NewRequest(http.MethodGet, "/api/dlq/t", nil)
		r.URL.RawQuery = raw
		flt, err := h.filterOf(r)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != http.StatusBadRequest || ae.param == "" || !strings.HasPrefix(ae.msg, ae.param+": ") {
				t.Fatalf("query %q: %v: want a 400 naming the parameter", raw, err)
			}
			if _, known := r.URL.Query()[ae.param]; !known && !slices.Contains(params, ae.param) {
				t.Fatalf("query %q: the error names %q, which the query does not have", raw, ae.param)
			}
			return
		}
		if flt.Limit < 1 || flt.Limit > maxListLimit {
			t.Fatalf("query %q: limit %d", raw, flt.Limit)
		}
		for _, p := range flt.Partitions {
			if p < 0 {
				t.Fatalf("query %q: partition %d", raw, p)
			}
		}
		if flt.Since.After(fuzzNow) && !r.URL.Query().Has("since") || flt.Until.After(fuzzNow) && !r.URL.Query().Has("until") {
			t.Fatalf("query %q: times set from nowhere", raw)
		}
	})
}

// FuzzActionBody posts arbitrary bodies to every action of a read-only
// handler: each answer is a JSON error (a 400 that names the parameter at
// fault, or the 403 of a read-only handler, or a 404), never a 5xx, and no
// request reaches Kafka (the brokers are unreachable and the timeout long,
// so one that did would show as a 504 or hang).
func FuzzActionBody(f *testing.F) {
	paths := []string{"/api/dlq/t-g-dlq/replay", "/api/dlq/t-g-dlq/purge", "/api/dlq/other/replay",
		"/api/consumers/svc/partitions/t/0/skip", "/api/consumers/svc/partitions/t/x/pause", "/api/consumers/svc/pause",
		"/api/consumers/nobody/resume"}
	for i, b := range []string{`{"positions":[{"partition":0,"offset":5}]}`, `{"all":true,"dry_run":true}`,
		`{"filter":{"reason":"decode","since":"2h"}}`, `{"filter":{}}`, `{"filter":{"since":"99999999d"}}`, `{"positions":[{"partition":-1,"offset":0}]}`,
		`{"all":true,"filter":{"key":"k"}}`, `{"before":"7d"}`, `{"before":"soon"}`, `{}`, `{"all":true}{}`, `{"unknown":1}`, `[`, ``} {
		f.Add(uint8(i), b)
	}
	c, err := consumer.New(whippet.Connection{Brokers: []string{"127.0.0.1:1"}}, consumer.HandlerFunc(func(context.Context, *kgo.Record) error { return nil }), consumer.Group("g"), consumer.Topics("t"))
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close(context.Background())
	d, err := dlq.New(whippet.Connection{Brokers: []string{"127.0.0.1:1"}})
	if err != nil {
		f.Fatal(err)
	}
	defer d.Close(context.Background())
	h, err := New(Consumer("svc", c), DLQ(d), Timeout(time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pathIndex uint8, body string) {
		path := paths[int(pathIndex)%len(paths)]
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
		var e ErrorResponse
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
			t.Fatalf("POST %s %q: %d %q: not a JSON error", path, body, w.Code, w.Body)
		}
		switch w.Code {
		case http.StatusBadRequest:
			if e.Param == "" || !strings.HasPrefix(e.Error, e.Param+": ") {
				t.Fatalf("POST %s %q: 400 %q does not name the parameter", path, body, e.Error)
			}
		case http.StatusForbidden, http.StatusNotFound:
		default:
			t.Fatalf("POST %s %q: %d %q", path, body, w.Code, e.Error)
		}
	})
}

package retry_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/whippet-go/whippet/codec"
	"github.com/whippet-go/whippet/retry"
)

func TestInfoRoundTripsThroughHeaders(t *testing.T) {
	ms := func(n int64) time.Time { return time.UnixMilli(n) }
	info := retry.Info{
		Attempt: 3, Due: ms(1_700_000_003_000), OriginalTopic: "orders", OriginalPartition: 7, OriginalOffset: 42,
		OriginalTimestamp: ms(1_700_000_000_000), Group: "g", FirstFailure: ms(1_700_000_001_000),
		LastFailure: ms(1_700_000_002_000), LastError: "boom", Reason: retry.ReasonExhausted,
	}
	user := []kgo.RecordHeader{{Key: "trace", Value: []byte("t1")}, {Key: retry.HeaderAttempt, Value: []byte("1")}}
	rec := &kgo.Record{Topic: "orders-g-retry-1", Headers: info.Headers(user)}
	got, ok := retry.InfoFor(rec)
	if !ok || got != info {
		t.Fatalf("InfoFor = %+v, %v; want %+v", got, ok, info)
	}
	if rec.Headers[0].Key != "trace" || strings.Count(fmt.Sprint(rec.Headers), retry.HeaderAttempt) != 1 {
		t.Fatalf("headers %v: the user's must come first, and old retry headers must be replaced", rec.Headers)
	}
}

func TestDueHeaderRoundsUpToTheMillisecond(t *testing.T) {
	base := time.UnixMilli(1_700_000_003_000)
	for _, extra := range []time.Duration{0, time.Nanosecond, 400 * time.Microsecond, time.Millisecond - time.Nanosecond, time.Millisecond} {
		due := base.Add(extra)
		got, _ := retry.InfoFor(&kgo.Record{Headers: retry.Info{Attempt: 2, Due: due}.Headers(nil)})
		if got.Due.Before(due) || got.Due.Sub(due) >= time.Millisecond {
			t.Errorf("due %v read back as %v: want the next whole millisecond at or after it", due, got.Due)
		}
	}
}

func TestInfoForAFirstAttempt(t *testing.T) {
	ts := time.UnixMilli(1_700_000_000_000)
	got, ok := retry.InfoFor(&kgo.Record{Topic: "t", Partition: 2, Offset: 9, Timestamp: ts})
	if ok || got.Attempt != 1 || got.OriginalTopic != "t" || got.OriginalPartition != 2 || got.OriginalOffset != 9 || !got.OriginalTimestamp.Equal(ts) {
		t.Fatalf("InfoFor(plain record) = %+v, %v", got, ok)
	}
}

func TestInfoForReadsGreyhoundRetryHeaders(t *testing.T) {
	rec := &kgo.Record{Topic: "orders-g-retry-1", Headers: []kgo.RecordHeader{
		{Key: retry.GreyhoundSubmitTimestamp, Value: []byte("1700000000000")},
		{Key: retry.GreyhoundBackOffTimeMs, Value: []byte("5000")},
		{Key: retry.GreyhoundOriginalTopic, Value: []byte("orders")},
		{Key: retry.GreyhoundRetryAttempt, Value: []byte("1")},
	}}
	got, ok := retry.InfoFor(rec)
	if !ok || got.Attempt != 3 || got.OriginalTopic != "orders" || got.Due.UnixMilli() != 1_700_000_005_000 {
		t.Fatalf("InfoFor(Greyhound record) = %+v, %v; want attempt 3 of orders due at submit+backoff", got, ok)
	}
	for _, h := range got.Headers(rec.Headers) {
		if strings.HasPrefix(h.Key, "GH_") || h.Key == retry.GreyhoundSubmitTimestamp {
			t.Fatalf("Greyhound header %s kept on the forwarded record", h.Key)
		}
	}
}

func TestExponentialBackoff(t *testing.T) {
	e := retry.Exponential{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Retries: 5}
	want := []time.Duration{100, 200, 400, 800, 1000}
	for i, w := range want {
		d, ok := e.Delay(i + 1)
		if !ok || d != w*time.Millisecond {
			t.Fatalf("Delay(%d) = %v, %v; want %v", i+1, d, ok, w*time.Millisecond)
		}
	}
	if _, ok := e.Delay(6); ok {
		t.Fatal("Delay past Retries must report false")
	}
	e.Retries = retry.Forever
	if d, ok := e.Delay(1_000_000); !ok || d != time.Second {
		t.Fatalf("Forever: Delay(1e6) = %v, %v", d, ok)
	}
	e.Jitter = 0.5
	for i := 0; i < 100; i++ {
		if d, _ := e.Delay(1); d < 50*time.Millisecond || d > 100*time.Millisecond {
			t.Fatalf("jittered delay %v outside [50ms, 100ms]", d)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	for name, tc := range map[string]struct {
		p    retry.Policy
		want string
	}{
		"no retry":              {retry.NoRetry(), ""},
		"blocking":              {retry.Blocking(time.Second), ""},
		"blocking empty":        {retry.Blocking(), "at least one interval"},
		"blocking negative":     {retry.Blocking(-time.Second), "interval 0 must be ≥ 0"},
		"non-blocking negative": {retry.NonBlocking(time.Second, -1), "NonBlocking interval 1"},
		"exp zero initial":      {retry.BlockingBackoff(retry.Exponential{Max: 1, Multiplier: 2, Retries: 1}), "Initial must be > 0"},
		"exp max below":         {retry.BlockingBackoff(retry.Exponential{Initial: 2, Max: 1, Multiplier: 2, Retries: 1}), "Max must be ≥ Initial"},
		"exp multiplier":        {retry.BlockingBackoff(retry.Exponential{Initial: 1, Max: 1, Multiplier: 0.5, Retries: 1}), "Multiplier must be ≥ 1"},
		"exp jitter":            {retry.BlockingBackoff(retry.Exponential{Initial: 1, Max: 1, Multiplier: 1, Jitter: 1, Retries: 1}), "Jitter must be in [0, 1)"},
		"exp retries":           {retry.BlockingBackoff(retry.Exponential{Initial: 1, Max: 1, Multiplier: 1}), "Retries must be > 0 or Forever"},
		"nil predicate":         {retry.NoRetry().NonRetriableIf(nil), "predicate 0 is nil"},
	} {
		err := tc.p.Validate()
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate() = %v, want %q", name, err, tc.want)
		}
	}
}

var errGone = errors.New("customer gone")

func TestClassify(t *testing.T) {
	p := retry.NonBlocking(time.Second).NonRetriableErrors(errGone)
	_, decodeErr := codec.JSON[struct{}]().Decode([]byte("{"))
	cases := map[error]retry.Reason{
		errors.New("timeout"):                       "",
		retry.NonRetriable(errors.New("bad input")): retry.ReasonNonRetriable,
		fmt.Errorf("lookup: %w", errGone):           retry.ReasonNonRetriable,
		decodeErr:                                   retry.ReasonDecode,
	}
	for err, want := range cases {
		if got := p.Classify(err); got != want {
			t.Errorf("Classify(%v) = %q, want %q", err, got, want)
		}
	}
	if got := p.RetryDecodeErrors().Classify(decodeErr); got != "" {
		t.Errorf("with RetryDecodeErrors, a decode error is classified %q", got)
	}
	if !errors.Is(retry.NonRetriable(errGone), errGone) || retry.NonRetriable(nil) != nil {
		t.Error("NonRetriable must keep the wrapped error and map nil to nil")
	}
}

func TestTopicNames(t *testing.T) {
	if got := retry.TopicName("orders", "billing", 0); got != "orders-billing-retry-0" {
		t.Errorf("TopicName = %q", got)
	}
	if got := retry.DLQTopicName("orders", "billing"); got != "orders-billing-dlq" {
		t.Errorf("DLQTopicName = %q", got)
	}
	for _, tc := range []struct {
		topic, group string
		n            int
	}{{"orders", "billing", 0}, {"a-b", "c", 12}, {"a", "b-c", 3}, {"o-retry-1", "g", 1}, {"x", "g-retry-2", 0}} {
		if topic, n, ok := retry.ParseTopicName(retry.TopicName(tc.topic, tc.group, tc.n), tc.group); !ok || topic != tc.topic || n != tc.n {
			t.Errorf("ParseTopicName(TopicName(%q, %q, %d)) = %q, %d, %v", tc.topic, tc.group, tc.n, topic, n, ok)
		}
		if !retry.IsDLQTopicName(retry.DLQTopicName(tc.topic, tc.group), tc.group) {
			t.Errorf("IsDLQTopicName(DLQTopicName(%q, %q)) = false", tc.topic, tc.group)
		}
	}
	for _, name := range []string{"orders", "orders-billing-retry-", "orders-billing-retry-01", "orders-billing-retry--1",
		"orders-billing-retry-+1", "-billing-retry-0", "orders-other-retry-0", "orders-billing-dlq"} {
		if topic, n, ok := retry.ParseTopicName(name, "billing"); ok {
			t.Errorf("ParseTopicName(%q, billing) = %q, %d, true", name, topic, n)
		}
	}
	for _, name := range []string{"orders", "-billing-dlq", "orders-billing-dlq-x", "orders-other-dlq"} {
		if retry.IsDLQTopicName(name, "billing") {
			t.Errorf("IsDLQTopicName(%q, billing) = true", name)
		}
	}
}

func TestInfoFromContext(t *testing.T) {
	if info, ok := retry.InfoFrom(context.Background()); ok || info.Attempt != 1 {
		t.Fatalf("InfoFrom(a plain context) = %+v, %v; want Attempt 1, false (a first attempt)", info, ok)
	}
	ctx := retry.WithInfo(context.Background(), retry.Info{Attempt: 2})
	if info, ok := retry.InfoFrom(ctx); !ok || info.Attempt != 2 {
		t.Fatalf("InfoFrom = %+v, %v", info, ok)
	}
}

func TestDecide(t *testing.T) {
	boom := errors.New("boom")
	both := retry.BlockingThenNonBlocking(retry.Blocking(time.Millisecond, 2*time.Millisecond), retry.NonBlocking(time.Second, time.Minute))
	cases := []struct {
		name            string
		p               retry.Policy
		stage, blocking int
		err             error
		want            retry.Decision
	}{
		{"no retry", retry.NoRetry(), -1, 0, boom, retry.Decision{Action: retry.DeadLetter, Reason: retry.ReasonExhausted}},
		{"first blocking retry", both, -1, 0, boom, retry.Decision{Action: retry.RetryInPlace, Delay: time.Millisecond}},
		{"second blocking retry", both, -1, 1, boom, retry.Decision{Action: retry.RetryInPlace, Delay: 2 * time.Millisecond}},
		{"blocking exhausted: first stage", both, -1, 2, boom, retry.Decision{Action: retry.Forward, Stage: 0, Delay: time.Second}},
		{"a retry topic is never retried in place", both, 0, 0, boom, retry.Decision{Action: retry.Forward, Stage: 1, Delay: time.Minute}},
		{"last stage: exhausted", both, 1, 0, boom, retry.Decision{Action: retry.DeadLetter, Reason: retry.ReasonExhausted}},
		{"non-retriable", both, -1, 0, retry.NonRetriable(boom), retry.Decision{Action: retry.DeadLetter, Reason: retry.ReasonNonRetriable}},
		{"decode", both, 0, 0, fmt.Errorf("x: %w", codec.ErrDecode), retry.Decision{Action: retry.DeadLetter, Reason: retry.ReasonDecode}},
		{"decode retried on request", both.RetryDecodeErrors(), -1, 0, codec.ErrDecode, retry.Decision{Action: retry.RetryInPlace, Delay: time.Millisecond}},
		{"forever", retry.BlockingBackoff(retry.Exponential{Initial: time.Millisecond, Max: 4 * time.Millisecond, Multiplier: 2, Retries: retry.Forever}), -1, 1000, boom,
			retry.Decision{Action: retry.RetryInPlace, Delay: 4 * time.Millisecond}},
	}
	for _, c := range cases {
		if got := c.p.Decide(c.stage, c.blocking, c.err); got != c.want {
			t.Errorf("%s: Decide(%d, %d, %v) = %+v, want %+v", c.name, c.stage, c.blocking, c.err, got, c.want)
		}
	}
}

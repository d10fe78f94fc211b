package retry_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/whippet-go/whippet/retry"
)

// TestPolicyErrorsNameTheField checks each rule of Policy.Validate: the
// error names the field (or the interval's index) and the value given. The
// consumer reports these as its ConfigError on Retry or RetryFor.
func TestPolicyErrorsNameTheField(t *testing.T) {
	exp := func(mut func(*retry.Exponential)) retry.Policy {
		e := retry.Exponential{Initial: time.Second, Max: time.Minute, Multiplier: 2, Jitter: 0.1, Retries: 5}
		mut(&e)
		return retry.BlockingBackoff(e)
	}
	for _, tc := range []struct {
		name string
		p    retry.Policy
		want string
	}{
		{"no blocking interval", retry.Blocking(), "Blocking needs at least one interval"},
		{"no non-blocking interval", retry.NonBlocking(), "NonBlocking needs at least one interval (NoRetry dead-letters at once)"},
		{"no non-blocking interval after blocking", retry.BlockingThenNonBlocking(retry.Blocking(0), retry.NonBlocking()), "NonBlocking needs at least one interval (NoRetry dead-letters at once)"},
		{"negative blocking interval", retry.Blocking(time.Second, time.Second, -time.Millisecond), "Blocking interval 2 must be ≥ 0, got -1ms"},
		{"negative non-blocking interval", retry.BlockingThenNonBlocking(retry.Blocking(time.Second), retry.NonBlocking(time.Minute, -time.Hour)), "NonBlocking interval 1 must be ≥ 0, got -1h0m0s"},
		{"nil predicate", retry.NonBlocking(time.Second).NonRetriableErrors().NonRetriableIf(nil), "NonRetriableIf predicate 1 is nil"},
		{"initial", exp(func(e *retry.Exponential) { e.Initial = -time.Second }), "Exponential.Initial must be > 0, got -1s"},
		{"max", exp(func(e *retry.Exponential) { e.Max = 0 }), "Exponential.Max must be ≥ Initial (1s), got 0s"},
		{"multiplier", exp(func(e *retry.Exponential) { e.Multiplier = 0.9 }), "Exponential.Multiplier must be ≥ 1, got 0.9"},
		{"multiplier NaN", exp(func(e *retry.Exponential) { e.Multiplier = math.NaN() }), "Exponential.Multiplier must be ≥ 1, got NaN"},
		{"jitter", exp(func(e *retry.Exponential) { e.Jitter = -0.1 }), "Exponential.Jitter must be in [0, 1), got -0.1"},
		{"jitter NaN", exp(func(e *retry.Exponential) { e.Jitter = math.NaN() }), "Exponential.Jitter must be in [0, 1), got NaN"},
		{"retries", exp(func(e *retry.Exponential) { e.Retries = -2 }), "Exponential.Retries must be > 0 or Forever, got -2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
	if err := exp(func(*retry.Exponential) {}).Validate(); err != nil {
		t.Fatalf("a valid policy: %v", err)
	}
}

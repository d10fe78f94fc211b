// Package retry holds whippet's retry policies, error classification, and the
// headers and topic names of retried and dead-lettered records.
//
// A Policy says what the consumer does when a handler fails:
//
//   - Blocking retries retry the record in place after each interval of a
//     Backoff. The record's partition waits (its fetching paused), so the
//     partition keeps its order; other partitions go on. An operator can skip
//     the blocking record (see consumer.Consumer.Skip).
//   - Non-blocking retries forward the failed record to the retry topic of its
//     next attempt, "<topic>-<group>-retry-<n>", with a due time; the same
//     consumer group consumes the retry topics and handles each record at its
//     due time, never before. Other records keep flowing; order is not kept.
//   - BlockingThenNonBlocking does the first, then the second.
//
// When the policy is exhausted, or the error is classified as not worth
// retrying (NonRetriable, a decode failure), the record goes to the
// dead-letter topic "<topic>-<group>-dlq" with headers saying why (see Info).
// Every record ends handled, forwarded or dead-lettered: nothing is dropped.
package retry

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/whippet-go/whippet/codec"
)

// ErrNonRetriable is matched by errors wrapped with NonRetriable.
var ErrNonRetriable = errors.New("non-retriable")

// NonRetriable marks err as not worth retrying: the record goes straight to
// the dead-letter topic. errors.Is(NonRetriable(err), err) holds.
func NonRetriable(err error) error {
	if err == nil {
		return nil
	}
	return &nonRetriable{err}
}

type nonRetriable struct{ err error }

func (e *nonRetriable) Error() string   { return "non-retriable: " + e.err.Error() }
func (e *nonRetriable) Unwrap() []error { return []error{ErrNonRetriable, e.err} }

// Backoff says how long to wait before each blocking retry.
type Backoff interface {
	// Delay returns the wait before retry n (1 for the first retry) and
	// false when there is no retry n.
	Delay(n int) (time.Duration, bool)
}

// Intervals is a Backoff that waits each interval once, in order.
type Intervals []time.Duration

// Delay implements Backoff.
func (iv Intervals) Delay(n int) (time.Duration, bool) {
	if n < 1 || n > len(iv) {
		return 0, false
	}
	return iv[n-1], true
}

// Forever is the Retries value of an Exponential backoff that never gives up.
const Forever = -1

// Exponential is a Backoff whose waits grow by Multiplier from Initial up to
// Max. With Jitter j, each wait is drawn uniformly from [d·(1-j), d], so that
// many consumers failing together do not retry together.
type Exponential struct {
	// Initial is the first wait. Must be > 0.
	Initial time.Duration
	// Max caps every wait. Must be ≥ Initial.
	Max time.Duration
	// Multiplier is the growth of each wait over the previous one. Must be ≥ 1.
	Multiplier float64
	// Jitter is the fraction of each wait that is randomized, in [0, 1).
	Jitter float64
	// Retries is how many retries to make, or Forever. Must not be 0.
	Retries int
}

// Delay implements Backoff.
func (e Exponential) Delay(n int) (time.Duration, bool) {
	if n < 1 || (e.Retries != Forever && n > e.Retries) {
		return 0, false
	}
	d := float64(e.Initial)
	for i := 1; i < n && d < float64(e.Max); i++ {
		d *= e.Multiplier
	}
	// Capped in Duration terms: float64(Max) may round above the largest
	// Duration, and converting that back would overflow.
	w := e.Max
	if d < float64(e.Max) {
		w = time.Duration(d)
	}
	if e.Jitter > 0 {
		w -= time.Duration(float64(w) * e.Jitter * rand.Float64())
	}
	return w, true
}

func (e Exponential) validate() error {
	switch {
	case e.Initial <= 0:
		return fmt.Errorf("Exponential.Initial must be > 0, got %v", e.Initial)
	case e.Max < e.Initial:
		return fmt.Errorf("Exponential.Max must be ≥ Initial (%v), got %v", e.Initial, e.Max)
	case !(e.Multiplier >= 1): // NaN too
		return fmt.Errorf("Exponential.Multiplier must be ≥ 1, got %v", e.Multiplier)
	case !(e.Jitter >= 0 && e.Jitter < 1): // NaN too
		return fmt.Errorf("Exponential.Jitter must be in [0, 1), got %v", e.Jitter)
	case e.Retries == 0 || e.Retries < Forever:
		return fmt.Errorf("Exponential.Retries must be > 0 or Forever, got %d", e.Retries)
	}
	return nil
}

// Policy is what a consumer does with a record whose handler failed. The zero
// Policy (and NoRetry) sends it straight to the dead-letter topic.
type Policy struct {
	blocking       Backoff
	nonBlocking    []time.Duration
	nonRetriableIf []func(error) bool
	retryDecode    bool
	noStages       bool // NonBlocking was given no interval
}

// NoRetry sends failed records straight to the dead-letter topic. It is the
// consumer's default.
func NoRetry() Policy { return Policy{} }

// Blocking retries a failed record in place, once after each interval. A
// zero interval retries at once. It needs at least one interval.
func Blocking(intervals ...time.Duration) Policy {
	return Policy{blocking: Intervals(append([]time.Duration(nil), intervals...))}
}

// BlockingBackoff retries a failed record in place with the waits of b, e.g.
// an Exponential backoff, possibly Forever.
func BlockingBackoff(b Backoff) Policy { return Policy{blocking: b} }

// NonBlocking forwards a failed record to retry topic n (numbered from 0:
// <topic>-<group>-retry-0 is the first) after its (n+1)-th failure, due
// intervals[n] later, and to the dead-letter topic after len(intervals)+1
// failed attempts. A zero interval makes a retry due at once (still through
// its retry topic, so the partition goes on). It needs at least one
// interval: NoRetry is the policy that dead-letters at once.
func NonBlocking(intervals ...time.Duration) Policy {
	return Policy{nonBlocking: append([]time.Duration(nil), intervals...), noStages: len(intervals) == 0}
}

// BlockingThenNonBlocking retries in place as blocking does, then forwards to
// retry topics as nonBlocking does. Classification options of both are kept.
func BlockingThenNonBlocking(blocking, nonBlocking Policy) Policy {
	return Policy{
		blocking:       blocking.blocking,
		nonBlocking:    nonBlocking.nonBlocking,
		nonRetriableIf: append(append([]func(error) bool(nil), blocking.nonRetriableIf...), nonBlocking.nonRetriableIf...),
		retryDecode:    blocking.retryDecode || nonBlocking.retryDecode,
		noStages:       nonBlocking.noStages,
	}
}

// NonRetriableIf adds a predicate: an error for which it returns true goes
// straight to the dead-letter topic.
func (p Policy) NonRetriableIf(pred func(error) bool) Policy {
	p.nonRetriableIf = append(append([]func(error) bool(nil), p.nonRetriableIf...), pred)
	return p
}

// NonRetriableErrors treats every error matching one of targets (errors.Is)
// as non-retriable.
func (p Policy) NonRetriableErrors(targets ...error) Policy {
	return p.NonRetriableIf(func(err error) bool {
		for _, t := range targets {
			if errors.Is(err, t) {
				return true
			}
		}
		return false
	})
}

// RetryDecodeErrors retries decode failures like other errors. By default a
// record that cannot be decoded (an error matching codec.ErrDecode, which
// every whippet codec returns) is a poison pill: it goes straight to the
// dead-letter topic with ReasonDecode, since retrying cannot help.
func (p Policy) RetryDecodeErrors() Policy {
	p.retryDecode = true
	return p
}

// BlockingBackoff returns the policy's blocking backoff, or nil.
func (p Policy) BlockingBackoff() Backoff { return p.blocking }

// NonBlockingIntervals returns the due delays of the retry topics, in order.
func (p Policy) NonBlockingIntervals() []time.Duration {
	return append([]time.Duration(nil), p.nonBlocking...)
}

// Classify returns why err must not be retried: ReasonDecode,
// ReasonNonRetriable, or "" when it may be retried.
func (p Policy) Classify(err error) Reason {
	if !p.retryDecode && errors.Is(err, codec.ErrDecode) {
		return ReasonDecode
	}
	if errors.Is(err, ErrNonRetriable) {
		return ReasonNonRetriable
	}
	for _, pred := range p.nonRetriableIf {
		if pred(err) {
			return ReasonNonRetriable
		}
	}
	return ""
}

// Validate checks the policy's intervals and backoff.
func (p Policy) Validate() error {
	if e, ok := p.blocking.(Exponential); ok {
		if err := e.validate(); err != nil {
			return err
		}
	}
	if iv, ok := p.blocking.(Intervals); ok {
		if len(iv) == 0 {
			return errors.New("Blocking needs at least one interval")
		}
		for i, d := range iv {
			if d < 0 {
				return fmt.Errorf("Blocking interval %d must be ≥ 0, got %v", i, d)
			}
		}
	}
	if p.noStages {
		return errors.New("NonBlocking needs at least one interval (NoRetry dead-letters at once)")
	}
	for i, d := range p.nonBlocking {
		if d < 0 {
			return fmt.Errorf("NonBlocking interval %d must be ≥ 0, got %v", i, d)
		}
	}
	for i, pred := range p.nonRetriableIf {
		if pred == nil {
			return fmt.Errorf("NonRetriableIf predicate %d is nil", i)
		}
	}
	return nil
}

// String describes the policy, for logs.
func (p Policy) String() string {
	s := "dead-letter"
	if len(p.nonBlocking) > 0 {
		s = fmt.Sprintf("non-blocking %v, then %s", p.nonBlocking, s)
	}
	if p.blocking != nil {
		s = fmt.Sprintf("blocking %v, then %s", p.blocking, s)
	}
	return s
}

// Action is what a Decision does with a failed record.
type Action int

const (
	// RetryInPlace attempts the record again after Decision.Delay, with its
	// partition (or, in key-parallel mode, its key) held behind it.
	RetryInPlace Action = iota + 1
	// Forward produces the record to retry topic Decision.Stage, due
	// Decision.Delay later, and goes on with the partition.
	Forward
	// DeadLetter produces the record to the dead-letter topic with
	// Decision.Reason.
	DeadLetter
)

// Decision is what a Policy decides about a failed attempt (see Decide).
type Decision struct {
	Action Action
	// Delay is the wait before the next attempt: in place (RetryInPlace),
	// or the due delay of the retry topic (Forward).
	Delay time.Duration
	// Stage is the retry topic's number (Forward).
	Stage int
	// Reason is why the record is dead-lettered (DeadLetter): ReasonDecode
	// or ReasonNonRetriable for an error Classify rejects, ReasonExhausted
	// when the retries ran out.
	Reason Reason
}

// Decide says what comes after a failed attempt with error err, at a record
// of stage (-1 for a subscribed topic, n for retry topic n) that has been
// retried in place blockingRetries times since it was fetched: an error
// Classify rejects is dead-lettered; on a subscribed topic the blocking
// backoff retries in place while it has a delay for retry blockingRetries+1;
// then the record goes to the next retry topic, and after the last to the
// dead-letter topic as exhausted. Retry topics are never retried in place:
// their partitions hold the records of many failures in due order.
func (p Policy) Decide(stage, blockingRetries int, err error) Decision {
	if reason := p.Classify(err); reason != "" {
		return Decision{Action: DeadLetter, Reason: reason}
	}
	if stage < 0 && p.blocking != nil {
		if d, ok := p.blocking.Delay(blockingRetries + 1); ok {
			return Decision{Action: RetryInPlace, Delay: d}
		}
	}
	if next := stage + 1; next < len(p.nonBlocking) {
		return Decision{Action: Forward, Stage: next, Delay: p.nonBlocking[next]}
	}
	return Decision{Action: DeadLetter, Reason: ReasonExhausted}
}

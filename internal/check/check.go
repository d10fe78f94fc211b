// Package check holds what every whippet package needs to validate its
// options the same way: an error that names the package, the field and the
// rule, and the shared rules themselves.
package check

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode"
)

// Error reports one invalid configuration value. Each public package exposes
// it as its own ConfigError (a type alias) and matches its own ErrInvalidConfig
// sentinel, so errors.Is(err, producer.ErrInvalidConfig) works as users expect.
// Its message reads "<pkg>: <Field>: <Rule>[: <Err>]".
type Error struct {
	// Pkg is the package reporting the error, e.g. "consumer".
	Pkg string
	// Field is the option or argument that is wrong, e.g. "Brokers" or
	// "Brokers[1]".
	Field string
	// Rule is the rule the value broke, in words.
	Rule string
	// Err is an underlying cause, if any.
	Err error
	// Sentinel is the package's ErrInvalidConfig, matched by Is.
	Sentinel error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err != nil {
		return e.Pkg + ": " + e.Field + ": " + e.Rule + ": " + e.Err.Error()
	}
	return e.Pkg + ": " + e.Field + ": " + e.Rule
}

// Is reports whether target is the package's ErrInvalidConfig.
func (e *Error) Is(target error) bool { return e.Sentinel != nil && target == e.Sentinel }

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// Errors collects the violations of one validation pass.
type Errors struct {
	pkg      string
	sentinel error
	errs     []error
}

// NewErrors starts a validation pass for pkg whose errors match sentinel.
func NewErrors(pkg string, sentinel error) *Errors {
	return &Errors{pkg: pkg, sentinel: sentinel}
}

// Add records that field breaks rule; the rule is a format string.
func (v *Errors) Add(field, rule string, args ...any) {
	if len(args) > 0 {
		rule = fmt.Sprintf(rule, args...)
	}
	v.errs = append(v.errs, &Error{Pkg: v.pkg, Field: field, Rule: rule, Sentinel: v.sentinel})
}

// AddCause records that field breaks rule because of cause.
func (v *Errors) AddCause(field, rule string, cause error) {
	v.errs = append(v.errs, &Error{Pkg: v.pkg, Field: field, Rule: rule, Err: cause, Sentinel: v.sentinel})
}

// Err returns every recorded violation joined (errors.Join: one per line), or
// nil.
func (v *Errors) Err() error { return errors.Join(v.errs...) }

// TopicRule returns the Kafka topic-name rule name breaks, or "" if it is
// valid: 1 to 249 characters of [a-zA-Z0-9._-], and not "." or "..".
func TopicRule(name string) string {
	switch {
	case name == "":
		return "must not be empty"
	case len(name) > 249:
		return fmt.Sprintf("must be at most 249 characters, got %d", len(name))
	case name == "." || name == "..":
		return fmt.Sprintf("must not be %q", name)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return fmt.Sprintf("must contain only ASCII letters, digits, '.', '_' and '-', got %q", name)
		}
	}
	return ""
}

// Brokers records the violations of a seed broker list: at least one broker,
// each "host:port" with a non-empty host (no spaces) and a port from 1 to
// 65535.
func (v *Errors) Brokers(field string, brokers []string) {
	if len(brokers) == 0 {
		v.Add(field, "at least one seed broker is required")
	}
	for _, b := range brokers {
		host, port, err := net.SplitHostPort(b)
		switch {
		case err != nil:
			v.Add(field, "%q is not host:port: %v", b, err)
		case host == "" || strings.IndexFunc(host, unicode.IsSpace) >= 0 || strings.IndexFunc(host, unicode.IsControl) >= 0:
			v.Add(field, "%q has no host, or a host with spaces or control characters", b)
		default:
			if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
				v.Add(field, "%q has an invalid port", b)
			}
		}
	}
}

// SeedPortRule returns the rule a seed broker "host[:port]" breaks with its
// port, or "" if it has none (franz-go then uses 9092) or a valid one: a
// port that franz-go would reject, or that no broker listens on, is
// reported on the Brokers option rather than as a rejected client
// configuration.
func SeedPortRule(seed string) string {
	_, port, err := net.SplitHostPort(seed)
	if err != nil {
		return "" // no port, or an IPv6 literal without one
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return "the port must be a number from 1 to 65535"
	}
	return ""
}

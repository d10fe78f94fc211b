// Package secure recognizes the Kafka connection failures that come from
// authentication or TLS set-up (a wrong password, an untrusted certificate,
// a plaintext client on a TLS listener, SASL missing), which retrying with
// the same configuration cannot fix, so that whippet's packages report them
// at once instead of retrying silently. It never sees a password: it works
// on the errors franz-go returns, which carry none.
package secure

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
)

// IsAuthError reports whether err is a connection set-up failure that the
// security configuration certainly caused: SASL authentication failed, the
// SASL mechanism is not enabled, the broker's certificate is not trusted or
// does not match, the TLS handshake failed, or a plaintext client reached a
// TLS listener. A broker that hangs up at once (kgo.ErrFirstReadEOF, often
// SASL missing) is not one of them: a broker shutting down does that too.
func IsAuthError(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, kerr.SaslAuthenticationFailed) || errors.Is(err, kerr.UnsupportedSaslMechanism) ||
		errors.Is(err, kerr.IllegalSaslState) {
		return true
	}
	var (
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		header    tls.RecordHeaderError
		alert     tls.AlertError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) ||
		errors.As(err, &verify) || errors.As(err, &header) || errors.As(err, &alert) {
		return true
	}
	// A plaintext client on a TLS listener reads the TLS alert as a huge
	// response size; franz-go says so in its message.
	return strings.Contains(err.Error(), "plaintext connection speaking to a tls endpoint")
}

// MaybeAuthError is IsAuthError, or a broker that hung up at once
// (kgo.ErrFirstReadEOF: franz-go's guess is TLS or SASL missing). Use it to
// explain a final error, not to stop retrying.
func MaybeAuthError(err error) bool {
	var firstRead *kgo.ErrFirstReadEOF
	return IsAuthError(err) || errors.As(err, &firstRead)
}

// AuthError is a connection to a broker that failed authentication or TLS
// set-up. Its message names the broker and the SASL mechanisms configured,
// never a credential; it unwraps to franz-go's error, so
// errors.Is(err, kerr.SaslAuthenticationFailed) and the crypto/x509 error
// types work on it.
type AuthError struct {
	// Broker is the broker's address (host:port).
	Broker string
	// Mechanisms are the names of the SASL mechanisms the client was
	// configured with (e.g. "SCRAM-SHA-512"); empty without SASL.
	Mechanisms []string
	// Err is franz-go's error.
	Err error
}

func (e *AuthError) Error() string {
	how := "without SASL"
	if len(e.Mechanisms) > 0 {
		how = "with SASL " + strings.Join(e.Mechanisms, ",")
	}
	return fmt.Sprintf("authentication or TLS failed connecting to broker %s %s: %v", e.Broker, how, e.Err)
}

func (e *AuthError) Unwrap() error { return e.Err }

// Mechanisms returns the names of the SASL mechanisms cl is configured with.
func Mechanisms(cl *kgo.Client) []string {
	var names []string
	for _, v := range cl.OptValues(kgo.SASL) {
		if ms, ok := v.([]sasl.Mechanism); ok {
			for _, m := range ms {
				names = append(names, m.Name())
			}
		}
	}
	return names
}

// Watch is a franz-go hook (kgo.HookBrokerConnect) that tells when
// connection attempts fail with an IsAuthError error. Add it with
// kgo.WithHooks, then call SetClient.
type Watch struct {
	onFail func(*AuthError) // called when a failure streak starts

	next atomic.Pointer[chan struct{}] // closed at the next failed attempt; read without the lock (every sync produce)

	mu      sync.Mutex
	last    *AuthError // the last attempt's failure; nil after a success
	mechs   []string
	failing bool
}

// NewWatch returns a Watch; onFail, if not nil, is called (on a franz-go
// goroutine, so it must be quick) with the first failure after a success
// or after the start, not with every retry.
func NewWatch(onFail func(*AuthError)) *Watch {
	w := &Watch{onFail: onFail}
	ch := make(chan struct{})
	w.next.Store(&ch)
	return w
}

// SetClient records the SASL mechanisms of the client the Watch is hooked
// into, for the error messages.
func (w *Watch) SetClient(cl *kgo.Client) {
	m := Mechanisms(cl)
	w.mu.Lock()
	w.mechs = m
	w.mu.Unlock()
}

// Next returns a channel that is closed when the next connection attempt
// fails authentication or TLS set-up.
func (w *Watch) Next() <-chan struct{} { return *w.next.Load() }

// Err returns the failure of the last connection attempt (an *AuthError)
// if it failed authentication or TLS set-up, or nil.
func (w *Watch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		return nil
	}
	return w.last
}

// OnBrokerConnect implements kgo.HookBrokerConnect. franz-go calls it after
// each connection attempt, with the error of the dial, TLS handshake,
// ApiVersions or SASL step.
func (w *Watch) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil && !IsAuthError(err) {
		return // network trouble: franz-go retries, the outcome is unknown
	}
	w.mu.Lock()
	if err == nil {
		w.last, w.failing = nil, false
		w.mu.Unlock()
		return
	}
	ae := &AuthError{Broker: net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port))), Mechanisms: w.mechs, Err: err}
	first := !w.failing
	w.last, w.failing = ae, true
	ch := make(chan struct{})
	close(*w.next.Swap(&ch))
	w.mu.Unlock()
	if first && w.onFail != nil {
		w.onFail(ae)
	}
}

var _ kgo.HookBrokerConnect = (*Watch)(nil)

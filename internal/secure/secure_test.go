package secure

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

func TestIsAuthError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{io.EOF, false},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, false},
		{kerr.UnknownTopicOrPartition, false},
		{fmt.Errorf("x: %w", kerr.SaslAuthenticationFailed), true},
		{kerr.UnsupportedSaslMechanism, true},
		{fmt.Errorf("unable to dial: %w", x509.UnknownAuthorityError{}), true},
		{x509.HostnameError{Host: "h"}, true},
		{&tls.CertificateVerificationError{Err: errors.New("bad")}, true},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, true},
		{&kgo.ErrFirstReadEOF{}, false}, // also a broker shutting down: MaybeAuthError only
		{errors.New("invalid large response size 352518912 > limit 104857600; the first three bytes received appear to be a tls alert record for TLS v1.2; is this a plaintext connection speaking to a tls endpoint?"), true},
	} {
		if got := IsAuthError(tc.err); got != tc.want {
			t.Errorf("IsAuthError(%v) = %v, want %v", tc.err, got, tc.want)
		}
		_, firstRead := tc.err.(*kgo.ErrFirstReadEOF)
		if got := MaybeAuthError(tc.err); got != (tc.want || firstRead) {
			t.Errorf("MaybeAuthError(%v) = %v", tc.err, got)
		}
	}
}

func TestWatch(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"),
		kgo.SASL(scram.Auth{User: "alice", Pass: "hunter2"}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var calls []*AuthError
	w := NewWatch(func(e *AuthError) { calls = append(calls, e) })
	w.SetClient(cl)
	meta := kgo.BrokerMetadata{Host: "127.0.0.1", Port: 9094}
	next := w.Next()

	w.OnBrokerConnect(meta, 0, nil, io.EOF) // network trouble: not ours
	if w.Err() != nil || isClosed(next) {
		t.Fatal("a network error counted as an authentication failure")
	}
	w.OnBrokerConnect(meta, 0, nil, kerr.SaslAuthenticationFailed)
	if !isClosed(next) {
		t.Fatal("Next was not closed by an authentication failure")
	}
	err = w.Err()
	var ae *AuthError
	if !errors.As(err, &ae) || !errors.Is(err, kerr.SaslAuthenticationFailed) {
		t.Fatalf("Err = %v, want an *AuthError wrapping SaslAuthenticationFailed", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "127.0.0.1:9094") || !strings.Contains(msg, "SCRAM-SHA-512") || strings.Contains(msg, "hunter2") {
		t.Errorf("message %q: want the broker and mechanism, never the password", msg)
	}
	next2 := w.Next()
	w.OnBrokerConnect(meta, 0, nil, kerr.SaslAuthenticationFailed) // a retry: Next again, onFail not again
	if !isClosed(next2) || len(calls) != 1 {
		t.Errorf("after a second failure: Next closed %v, onFail called %d times; want true and 1", isClosed(next2), len(calls))
	}
	w.OnBrokerConnect(meta, 0, nil, nil) // recovered
	if w.Err() != nil {
		t.Errorf("Err after a successful connection = %v", w.Err())
	}
	w.OnBrokerConnect(meta, 0, nil, kerr.SaslAuthenticationFailed) // a new streak
	if len(calls) != 2 {
		t.Errorf("onFail called %d times after a new failure streak, want 2", len(calls))
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

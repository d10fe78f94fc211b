package testkit

import (
	"net"
	"sync/atomic"
	"testing"
)

// CountingListener listens on a loopback port until the test ends and
// counts the connections made to it, closing each at once. Pass its address
// as a broker to prove that something fails before any network I/O: an
// invalid configuration must leave the count at zero.
func CountingListener(t testing.TB) (addr string, conns *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns = new(atomic.Int32)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String(), conns
}

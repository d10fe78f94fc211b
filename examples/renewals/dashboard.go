package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/whippet-go/whippet"
	"github.com/whippet-go/whippet/consumer"
	"github.com/whippet-go/whippet/consumer/admin"
	"github.com/whippet-go/whippet/dlq"
)

// dashboard serves the admin page of c on addr until ctx ends; ready, if
// set, gets its URL once it listens.
func dashboard(ctx context.Context, conn whippet.Connection, c *consumer.Consumer, addr string, ready func(url string)) error {
	dead, err := dlq.New(conn)
	if err != nil {
		return err
	}
	defer dead.Close(context.Background())
	h, err := admin.New(
		admin.Consumer("renewals", c),
		admin.DLQ(dead),
		admin.Title("renewal-service (demo)"),
		// A demo on your machine: anyone on it is the operator. A service
		// asks its own authentication here (see admin.AuthorizeFunc).
		admin.Authorize(func(r *http.Request, a admin.Action) (string, error) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return "", errors.New("the demo lets only this machine act")
			}
			return "demo operator", nil
		}),
	)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/whippet/", http.StripPrefix("/whippet", h))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("serving the dashboard: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	at := ln.Addr().(*net.TCPAddr)
	host := at.IP.String()
	if at.IP.IsUnspecified() { // -serve :8080 listens everywhere; this machine is one of them
		host = "127.0.0.1"
	}
	url := fmt.Sprintf("http://%s/whippet/", net.JoinHostPort(host, fmt.Sprint(at.Port)))
	fmt.Printf("dashboard: open %s (Ctrl-C to stop)\n", url)
	fmt.Println("  - Blocked partitions: user-10's request #4 keeps failing (bank unreachable): Skip it")
	fmt.Println("  - Dead letters: user-07's skipped request: Replay it, and it is renewed")
	fmt.Println("  - Consumers: Seek… a partition to offset 0 (or 1h), and its renewals are handled again")
	if ready != nil {
		ready(url)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving the dashboard: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(shut)
}

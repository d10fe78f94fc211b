//go:build !unix

package spool

// lockDir does not lock where flock is missing: run one process per spool.
func lockDir(string) (func(), error) { return func() {}, nil }

package wal

import (
	"os"
	"syscall"
)

// fdatasync makes f's data durable without forcing a metadata-only update
// (the file size is data for this purpose, so appends are covered).
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }

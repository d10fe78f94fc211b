//go:build unix

package localkafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

const supported = true

// detachedAttr puts the broker into its own process group, so that it
// outlives the process that started it (make kafka-up) and does not get the
// terminal's Ctrl-C.
func detachedAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// processAlive reports whether pid runs. It reaps pid if it is an exited
// child of ours, and treats zombies as dead.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	var ws syscall.WaitStatus
	if wpid, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil); err == nil && wpid == pid {
		return false // our child, exited, now reaped
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
		// pid (comm) S ...: the state follows the last ')'.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'Z' {
			return false
		}
	}
	return true
}

// processIsOurs reports whether pid's command line mentions marker (the
// node's server.properties path), so a recycled pid is never signalled.
// Without /proc (macOS) it trusts the pid file.
func processIsOurs(pid int, marker string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, statErr := os.Stat("/proc/self/cmdline"); statErr == nil {
				return false // /proc works, the pid is gone
			}
			return true
		}
		return true
	}
	return cmdlineMayBe(b, marker)
}

// cmdlineMayBe reports whether a process with command line cmdline may be
// the one whose command line has marker. An empty command line may: the
// kernel shows none while a process is between images (execve), or when it
// cannot read it for the moment. Only a command line without marker is
// another process.
func cmdlineMayBe(cmdline []byte, marker string) bool {
	return len(cmdline) == 0 || bytes.Contains(cmdline, []byte(marker))
}

func signalTerm(pid int) error { return sig(pid, syscall.SIGTERM) }
func signalKill(pid int) error { return sig(pid, syscall.SIGKILL) }
func signalStop(pid int) error { return sig(pid, syscall.SIGSTOP) }
func signalCont(pid int) error { return sig(pid, syscall.SIGCONT) }

func sig(pid int, s syscall.Signal) error {
	if err := syscall.Kill(pid, s); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to pid %d: %w", s, pid, err)
	}
	return nil
}

// lockFile takes an exclusive flock on path, polling until ctx is done.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for lock %s (held by another process): %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

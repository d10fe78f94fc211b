//go:build linux

// Package tmpfstest gives a test a directory on a small tmpfs, to fill a
// disk for real. The test runs again in a child process (this test binary,
// for that test alone) with a mount namespace of its own, so that the mount
// is seen by no other process and goes away with the child, whatever
// happens to it. As root the child needs only the mount namespace; as
// another user it also gets a user namespace that maps the user to root
// there (unprivileged user namespaces must then be allowed).
package tmpfstest

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// envChild marks the child process, inside its mount namespace.
const envChild = "WHIPPET_TMPFS_CHILD"

// Run calls body with a directory on a tmpfs of size bytes. Call it from a
// top-level test, once: in the test process it runs the test again in a
// child process and fails t if the child fails (logging the child's output
// either way); in the child it mounts the tmpfs and calls body.
func Run(t *testing.T, size int64, body func(t *testing.T, dir string)) {
	t.Helper()
	if os.Getenv(envChild) == "" {
		runChild(t)
		return
	}
	// A new mount namespace copies the propagation of the parent's mounts:
	// make them private first, or a shared / would carry the tmpfs back.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		t.Fatalf("tmpfstest: making / private in the child's mount namespace: %v", err)
	}
	dir, err := os.MkdirTemp("", "whippet-tmpfs-")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		os.Remove(dir)
		t.Fatalf("tmpfstest: mount a tmpfs of %d bytes on %s: %v", size, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("tmpfstest: unmount %s: %v", dir, err)
		}
		os.Remove(dir)
	})
	body(t, dir)
}

func runChild(t *testing.T) {
	t.Helper()
	name := t.Name()
	cmd := exec.Command(os.Args[0], "-test.run=^"+regexp.QuoteMeta(name)+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envChild+"=1")
	attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() != 0 {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
	}
	cmd.SysProcAttr = attr
	out, err := cmd.CombinedOutput()
	for line := range strings.SplitSeq(strings.TrimRight(string(out), "\n"), "\n") {
		t.Log("child: " + line)
	}
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("tmpfstest: cannot start the test in a mount namespace of its own (as a user other than root this needs unprivileged user namespaces): %v", err)
	}
	if err != nil {
		t.Fatalf("tmpfstest: %s failed on its tmpfs: %v", name, err)
	}
	if !strings.Contains(string(out), "--- PASS: "+name+" ") {
		t.Fatalf("tmpfstest: the child process did not run %s", name)
	}
}

package kvstore

import (
	"os"
	"syscall"
	"unsafe"
)

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14).
const madvPopulateWrite = 23

var pageSize = uintptr(os.Getpagesize())

// populate has the kernel map the whole pages of b now, writable, without
// changing what they hold: what a first write to each page would do, in
// one system call instead of a page fault per page. The kernel does it for
// the memory presize made while the loader waits for its first records, on
// another goroutine, instead of the loader taking the faults as it fills
// the index (a cold load of a million keys: 40 MB, about 10,000 faults of
// a few microseconds each). An older kernel refuses (EINVAL): the pages
// are then faulted in on first use, as without it.
func populate(b []byte) {
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	start := (lo + pageSize - 1) &^ (pageSize - 1)
	end := (lo + uintptr(len(b))) &^ (pageSize - 1)
	if end > start {
		_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, start, end-start, madvPopulateWrite)
	}
}

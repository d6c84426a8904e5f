//go:build unix

package weights

import (
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapFile maps the whole file read-only. Files too small to hold a header are read instead
// (mmap of an empty file fails) so that the header parser reports them.
func mapFile(path string) ([]byte, func([]byte) error, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("weights: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("weights: %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("weights: %s: not a regular file", path)
	}
	size := st.Size()
	if size < 8 {
		data, err := io.ReadAll(f)
		if err != nil {
			return nil, nil, fmt.Errorf("weights: %s: %w", path, err)
		}
		return data, func([]byte) error { return nil }, nil
	}
	if size > math.MaxInt {
		return nil, nil, fmt.Errorf("weights: %s: %d bytes is too large to map", path, size)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("weights: %s: mmap: %w", path, err)
	}
	mappedFiles.Store(&data[0], true)
	return data, func(b []byte) error {
		mappedFiles.Delete(&b[0])
		if err := syscall.Munmap(b); err != nil {
			return fmt.Errorf("weights: %s: munmap: %w", path, err)
		}
		return nil
	}, nil
}

// dropPages tells the kernel that this process no longer needs the pages wholly inside b, a
// part of a read-only file mapping whose values have been copied out: they leave the process's
// resident set (and come back from the page cache if read again), so a converted weight is not
// held twice.
func dropPages(data, b []byte) {
	if len(b) == 0 || len(data) == 0 {
		return
	}
	if _, ok := mappedFiles.Load(&data[0]); !ok {
		return
	}
	page := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(&b[0]))
	end := start + uintptr(len(b))
	lo := (start + page - 1) &^ (page - 1)
	hi := end &^ (page - 1)
	if hi <= lo {
		return
	}
	off := lo - start
	_ = unix.Madvise(b[off:off+(hi-lo)], unix.MADV_DONTNEED)
}

// mappedFiles records the first byte of every live mapping, so that dropPages never advises
// memory that was read into the heap.
var mappedFiles sync.Map

//go:build unix

package weights

import (
	"fmt"
	"io"
	"math"
	"os"
	"syscall"
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
	return data, func(b []byte) error {
		if err := syscall.Munmap(b); err != nil {
			return fmt.Errorf("weights: %s: munmap: %w", path, err)
		}
		return nil
	}, nil
}

//go:build !unix

package weights

import (
	"fmt"
	"os"
)

// mapFile reads the whole file into memory on systems without mmap support here.
func mapFile(path string) ([]byte, func([]byte) error, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("weights: %w", err)
	}
	return data, func([]byte) error { return nil }, nil
}

// dropPages does nothing where files are read into memory.
func dropPages(data, b []byte) {}

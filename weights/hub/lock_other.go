//go:build !unix

package hub

import (
	"context"
	"os"
	"path/filepath"
)

// lockFile creates the lock file huggingface_hub would use but, without flock on this system,
// does not lock it: concurrent downloads of one blob may both run, and the last rename wins.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Package oracle finds the reference fixtures computed by diffusers and the original CLIP code
// (see ../shared/oracle/README.md) and offers the comparison metrics their README prescribes.
//
// Tests locate the fixtures through the SDXS_ORACLE_DIR environment variable, else at
// ../shared/oracle relative to the repository root. When the folder is absent the tests skip,
// except under CI=true, where a missing oracle is a failure.
package oracle

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Dir returns the oracle folder, skipping the test when it is absent (failing it under CI=true).
func Dir(tb testing.TB) string {
	tb.Helper()
	dir, ok := find()
	if !ok {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("oracle: reference fixtures not found (set SDXS_ORACLE_DIR or provide ../shared/oracle); required under CI=true")
		}
		tb.Skip("oracle: reference fixtures not found (set SDXS_ORACLE_DIR or provide ../shared/oracle)")
	}
	return dir
}

// Path joins elem to the oracle folder, skipping (or failing under CI) as Dir does.
func Path(tb testing.TB, elem ...string) string {
	tb.Helper()
	return filepath.Join(append([]string{Dir(tb)}, elem...)...)
}

func find() (string, bool) {
	if d := os.Getenv("SDXS_ORACLE_DIR"); d != "" {
		if isDir(d) {
			return d, true
		}
		return "", false
	}
	// The repository root is two levels above this file.
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", false
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	d := filepath.Join(root, "..", "shared", "oracle")
	if isDir(d) {
		return filepath.Clean(d), true
	}
	return "", false
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

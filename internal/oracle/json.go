package oracle

import (
	"encoding/json"
	"os"
	"testing"
)

// JSON decodes the JSON file at elem under the oracle folder (a cases.json) into v. It skips
// (or fails under CI) as Dir does, and fails the test if the file cannot be read or decoded.
func JSON(tb testing.TB, v any, elem ...string) {
	tb.Helper()
	p := Path(tb, elem...)
	data, err := os.ReadFile(p)
	if err != nil {
		tb.Fatalf("oracle: %v", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		tb.Fatalf("oracle: %s: %v", p, err)
	}
}

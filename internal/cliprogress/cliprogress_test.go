package cliprogress

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sdxs-go/sdxs/weights/hub"
)

func TestBarShowsFileAndBytes(t *testing.T) {
	var buf bytes.Buffer
	fn := New(&buf)
	fn(hub.Progress{Repo: "org/name", File: "unet/w.safetensors", Size: 4 << 20, Index: 1, Files: 2})
	fn(hub.Progress{Repo: "org/name", File: "unet/w.safetensors", Downloaded: 4 << 20, Size: 4 << 20, Index: 1, Files: 2, Done: true})
	out := buf.String()
	for _, want := range []string{"[1/2] unet/w.safetensors", "4.2 MB", "100%"} {
		if !strings.Contains(out, want) {
			t.Errorf("bar output lacks %q: %q", want, out)
		}
	}
}

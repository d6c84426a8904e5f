// Package cliprogress draws the examples' download progress bars (bytes, rate, ETA) on a
// terminal with schollz/progressbar, and stays quiet when stderr is not a terminal.
package cliprogress

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/sdxs-go/sdxs/weights/hub"
)

// Stderr returns a hub progress callback drawing on stderr, or nil when stderr is not a
// terminal (pass it to sdxs.WithProgress either way).
func Stderr() func(hub.Progress) {
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil
	}
	return New(os.Stderr)
}

// New returns a hub progress callback that draws one bar per file on w.
func New(w io.Writer) func(hub.Progress) {
	var bar *progressbar.ProgressBar
	var file string
	return func(p hub.Progress) {
		if bar == nil || p.File != file {
			if bar != nil {
				bar.Finish()
			}
			file = p.File
			bar = progressbar.NewOptions64(p.Size,
				progressbar.OptionSetWriter(w),
				progressbar.OptionSetDescription(fmt.Sprintf("[%d/%d] %s", p.Index, p.Files, p.File)),
				progressbar.OptionShowBytes(true),
				progressbar.OptionShowCount(),
				progressbar.OptionSetWidth(24),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
			)
		}
		bar.Set64(p.Downloaded)
		if p.Done {
			bar.Finish()
			bar = nil
		}
	}
}

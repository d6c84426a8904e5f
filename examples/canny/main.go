// Command canny writes the Canny edge map of a picture, as OpenCV's cv2.Canny computes it, for
// use as the control image of a canny ControlNet.
//
//	go run ./examples/canny -in photo.jpg -out edges.png -low 100 -high 200
//
// -gray takes the edges of the grayscale picture instead of the RGB one, -blur applies a
// Gaussian blur of that sigma first, -l2 uses the L2 gradient magnitude, and -width/-height
// resize the picture first (Lanczos, as diffusers does).
package main

import (
	"flag"
	"fmt"
	"image/png"
	"os"

	"github.com/sdxs-go/sdxs/imageproc"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "canny:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		in     = flag.String("in", "", "PNG or JPEG picture (required)")
		out    = flag.String("out", "edges.png", "PNG file to write")
		low    = flag.Float64("low", imageproc.DefaultCannyLow, "low hysteresis threshold")
		high   = flag.Float64("high", imageproc.DefaultCannyHigh, "high hysteresis threshold")
		l2     = flag.Bool("l2", false, "use the L2 gradient magnitude")
		gray   = flag.Bool("gray", false, "edges of the grayscale picture instead of the RGB one")
		blur   = flag.Float64("blur", 0, "Gaussian blur sigma applied first (0: none)")
		width  = flag.Int("width", 0, "resize to this width first (0: keep)")
		height = flag.Int("height", 0, "resize to this height first (0: keep)")
	)
	flag.Parse()
	if *in == "" {
		flag.Usage()
		return fmt.Errorf("-in is required")
	}
	if *width < 0 || *height < 0 {
		return fmt.Errorf("-width %d, -height %d: must not be negative", *width, *height)
	}
	img, err := imageproc.DecodeFile(*in)
	if err != nil {
		return err
	}
	if *width > 0 || *height > 0 {
		b := img.Bounds()
		w, h := *width, *height
		if w == 0 {
			w = b.Dx()
		}
		if h == 0 {
			h = b.Dy()
		}
		r := imageproc.Resize(img, w, h)
		if r == nil {
			return fmt.Errorf("canny: cannot resize to %d×%d", w, h)
		}
		img = r
	}
	edges, err := imageproc.Canny(img, imageproc.CannyOptions{Low: *low, High: *high, L2Gradient: *l2, Gray: *gray, Blur: *blur})
	if err != nil {
		return err
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := png.Encode(f, edges); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

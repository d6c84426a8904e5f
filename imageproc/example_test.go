package imageproc_test

import (
	"fmt"
	"image"
	"image/color"

	"github.com/sdxs-go/sdxs/imageproc"
)

// A canny ControlNet's conditioning: the edge map of a picture (here a white square on black;
// a real one comes from imageproc.DecodeFile), resized and scaled as diffusers prepares it.
func Example() {
	pic := image.NewRGBA(image.Rect(0, 0, 96, 64))
	for y := 16; y < 48; y++ {
		for x := 32; x < 64; x++ {
			pic.Set(x, y, color.White)
		}
	}
	edges, err := imageproc.Canny(pic, imageproc.CannyOptions{}) // cv2.Canny(rgb, 100, 200)
	if err != nil {
		panic(err)
	}
	cond := imageproc.ControlTensor(edges, 64, 64, false) // [3, 64, 64] in [0, 1]
	w, h := imageproc.DefaultSize(pic, 8)
	init := imageproc.InitTensor(pic, w, h) // [3, h, w] in [-1, 1]
	fmt.Println(len(cond), edges.GrayAt(31, 30).Y, edges.GrayAt(40, 30).Y, len(init), init[0])
	// Output: 12288 255 0 18432 -1
}

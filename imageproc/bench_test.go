package imageproc

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkCanny512 times Canny with the defaults on a random 512×512 RGB picture.
func BenchmarkCanny512(b *testing.B) {
	img := randomRGBA(rand.New(rand.NewPCG(7, 8)), 512, 512)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Canny(img, CannyOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResize768To512 times a Lanczos downscale of a 768×768 RGB picture to 512×512.
func BenchmarkResize768To512(b *testing.B) {
	img := randomRGBA(rand.New(rand.NewPCG(9, 10)), 768, 768)
	b.ReportAllocs()
	for b.Loop() {
		Resize(img, 512, 512)
	}
}

// BenchmarkResize256To512 times a Lanczos upscale of a 256×256 RGB picture to 512×512.
func BenchmarkResize256To512(b *testing.B) {
	img := randomRGBA(rand.New(rand.NewPCG(11, 12)), 256, 256)
	b.ReportAllocs()
	for b.Loop() {
		Resize(img, 512, 512)
	}
}

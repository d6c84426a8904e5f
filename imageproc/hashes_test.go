package imageproc

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"image"
	"os"
	"path/filepath"
	"testing"
)

// synth is the picture of testdata/gen_hashes.py: per channel a 32-bit hash of (x, y, c, seed),
// its low byte, with diagonal bars of 4×3 white blocks.
func synth(w, h int, seed uint32) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for c := 0; c < 3; c++ {
				v := uint32(x)*0x9E3779B1 + uint32(y)*0x85EBCA77 + uint32(c)*0xC2B2AE3D + seed*0x27D4EB2F
				v ^= v >> 15
				v *= 0x2C1B3C6D
				v ^= v >> 12
				if (x/4+y/3)%5 == 0 {
					v = 255
				}
				img.Pix[y*img.Stride+4*x+c] = uint8(v)
			}
			img.Pix[y*img.Stride+4*x+3] = 255
		}
	}
	return img
}

func rgbSHA(img *image.RGBA) string {
	h := sha256.New()
	for y := 0; y < img.Rect.Dy(); y++ {
		for x := 0; x < img.Rect.Dx(); x++ {
			h.Write(img.Pix[y*img.Stride+4*x : y*img.Stride+4*x+3])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

type hashCases struct {
	Probe  string `json:"synth_37x23_12345"`
	Resize []struct {
		W, H, TW, TH int
		Seed         uint32
		SHA256       string
	}
	Canny []struct {
		W, H      int
		Seed      uint32
		Low, High float64
		L2, Gray  bool
		Blur      float64
		Edges     int
		SHA256    string
	}
}

func loadHashes(t *testing.T) *hashCases {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "hashes.json"))
	if err != nil {
		t.Fatal(err)
	}
	var c hashCases
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Resize) < 100 || len(c.Canny) < 100 {
		t.Fatalf("hashes.json has %d resize and %d canny cases, want ≥ 100 each", len(c.Resize), len(c.Canny))
	}
	if got := rgbSHA(synth(37, 23, 12345)); got != c.Probe {
		t.Fatalf("synth differs from gen_hashes.py's: %s, want %s", got, c.Probe)
	}
	return &c
}

// TestResizePillowHashes checks Resize against 150 random Pillow LANCZOS resizes (sizes 1…70
// to 1…90, some along one axis only), by digest: every level must be equal.
func TestResizePillowHashes(t *testing.T) {
	for i, c := range loadHashes(t).Resize {
		got := Resize(synth(c.W, c.H, c.Seed), c.TW, c.TH)
		if s := rgbSHA(got); s != c.SHA256 {
			t.Errorf("case %d: %d×%d (seed %d) → %d×%d differs from Pillow", i, c.W, c.H, c.Seed, c.TW, c.TH)
		}
	}
}

// TestCannyOpenCVHashes checks Canny against 150 random cv2.Canny runs (sizes 1…80, random
// thresholds, L1/L2, RGB/gray, blurs), by digest: every pixel must be equal.
func TestCannyOpenCVHashes(t *testing.T) {
	for i, c := range loadHashes(t).Canny {
		opts := CannyOptions{Low: c.Low, High: c.High, L2Gradient: c.L2, Gray: c.Gray, Blur: c.Blur}
		if c.Low == 0 && c.High == 0 {
			continue // the zero options mean the defaults here, not thresholds of 0
		}
		e, err := Canny(synth(c.W, c.H, c.Seed), opts)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(e.Pix)
		if hex.EncodeToString(sum[:]) != c.SHA256 {
			n := 0
			for _, v := range e.Pix {
				if v != 0 {
					n++
				}
			}
			t.Errorf("case %d: %d×%d seed %d %+v: %d edge pixels, OpenCV %d", i, c.W, c.H, c.Seed, opts, n, c.Edges)
		}
	}
}

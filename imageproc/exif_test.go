package imageproc

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

func TestTIFFOrientation(t *testing.T) {
	entry := func(bo string, typ uint16, v uint32) []byte {
		b := []byte(bo)
		put16 := func(x uint16) {
			if bo == "II" {
				b = append(b, byte(x), byte(x>>8))
			} else {
				b = append(b, byte(x>>8), byte(x))
			}
		}
		put32 := func(x uint32) {
			if bo == "II" {
				b = append(b, byte(x), byte(x>>8), byte(x>>16), byte(x>>24))
			} else {
				b = append(b, byte(x>>24), byte(x>>16), byte(x>>8), byte(x))
			}
		}
		put16(42)
		put32(8)
		put16(2)      // two entries
		put16(0x010f) // Make, ignored
		put16(2)      // ASCII
		put32(4)      // count
		put32(0)      // value
		put16(0x0112) // Orientation
		put16(typ)    // type
		put32(1)      // count
		if typ == 3 { // SHORT: left-justified in the value field
			put16(uint16(v))
			put16(0)
		} else {
			put32(v)
		}
		return b
	}
	for _, c := range []struct {
		bo   string
		typ  uint16
		v    uint32
		want int
	}{
		{"II", 3, 6, 6}, {"MM", 3, 8, 8}, {"MM", 4, 3, 3}, {"II", 3, 9, 1}, {"II", 3, 0, 1}, {"MM", 5, 6, 1},
	} {
		if got := tiffOrientation(entry(c.bo, c.typ, c.v)); got != c.want {
			t.Errorf("%s type %d value %d: orientation %d, want %d", c.bo, c.typ, c.v, got, c.want)
		}
	}
	if got := tiffOrientation([]byte("II*\x00\xff\xff\xff\x7f")); got != 1 {
		t.Errorf("IFD offset past the end: orientation %d, want 1", got)
	}
}

// TestDecodeCorruptEXIF mutates and truncates pictures carrying EXIF data: Decode may refuse
// them, but must never panic, and what it returns must be a whole picture.
func TestDecodeCorruptEXIF(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, name := range []string{"o6.jpg", "o6.png", "o8.jpg"} {
		data, err := os.ReadFile(filepath.Join("testdata", "exif", name))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 300; i++ {
			d := bytes.Clone(data)
			switch i % 3 {
			case 0:
				d = d[:r.IntN(len(d))]
			default:
				for j := 0; j < 1+r.IntN(4); j++ {
					d[r.IntN(min(len(d), 200))] = byte(r.IntN(256))
				}
			}
			img, err := Decode(bytes.NewReader(d))
			if err == nil && img.Bounds().Empty() {
				t.Fatalf("%s mutation %d: empty picture without error", name, i)
			}
		}
	}
}

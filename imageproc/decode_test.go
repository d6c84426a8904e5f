package imageproc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func encodePNG(t *testing.T, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// pngWithSize returns a PNG whose IHDR declares w×h (with a fixed CRC) over the data of a 1×1
// picture: what a decompression bomb or a forged header looks like to DecodeConfig.
func pngWithSize(t *testing.T, w, h uint32) []byte {
	t.Helper()
	data := encodePNG(t, image.NewGray(image.Rect(0, 0, 1, 1)))
	binary.BigEndian.PutUint32(data[16:], w)
	binary.BigEndian.PutUint32(data[20:], h)
	binary.BigEndian.PutUint32(data[29:], crc32.ChecksumIEEE(data[12:29]))
	return data
}

func TestDecodeBadInput(t *testing.T) {
	good := encodePNG(t, image.NewRGBA(image.Rect(0, 0, 7, 5)))
	cases := []struct {
		name string
		data []byte
		want string
		fmt  bool // wraps ErrFormat
	}{
		{"empty", nil, "not a PNG or JPEG image: empty input", true},
		{"text", []byte("hello, this is a text file\n"), `not a PNG or JPEG image: unknown format (starts with "hello, t")`, true},
		{"truncated header", good[:20], "reading picture header", false},
		{"truncated data", good[:len(good)-20], "decoding png picture (7×5)", false},
		{"zero width", pngWithSize(t, 0, 5), "reading picture header", false},
		{"huge", pngWithSize(t, 1<<20, 1<<20), "larger than 32768 on a side", false},
		{"too many pixels", pngWithSize(t, 30000, 30000), "more than 67108864 pixels", false},
		{"jpeg truncated", []byte{0xff, 0xd8, 0xff, 0xe0, 0, 16}, "reading picture header", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, err := Decode(bytes.NewReader(c.data))
			if err == nil {
				t.Fatalf("Decode accepted it: %T %v", img, img.Bounds())
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "imageproc: ") {
				t.Fatalf("error %q, want it to contain %q", err, c.want)
			}
			if errors.Is(err, ErrFormat) != c.fmt {
				t.Fatalf("errors.Is(%q, ErrFormat) = %v, want %v", err, !c.fmt, c.fmt)
			}
		})
	}
}

func TestDecodeFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(p, []byte("not a picture"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeFile(p); err == nil || !strings.Contains(err.Error(), p) || !errors.Is(err, ErrFormat) {
		t.Fatalf("DecodeFile(text) error %v, want one naming %s and wrapping ErrFormat", err, p)
	}
	missing := filepath.Join(dir, "missing.png")
	if _, err := DecodeFile(missing); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("DecodeFile(missing) error %v, want os.ErrNotExist", err)
	}

	src := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	src.SetNRGBA(1, 1, color.NRGBA{200, 100, 50, 0})
	p = filepath.Join(dir, "a.png")
	if err := os.WriteFile(p, encodePNG(t, src), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := DecodeFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// Fully transparent, yet the colour survives: alpha is dropped, not composited.
	if got := ToRGB(img).RGBAAt(1, 1); got != (color.RGBA{200, 100, 50, 255}) {
		t.Fatalf("ToRGB of a transparent pixel = %v, want {200 100 50 255}", got)
	}
}

package lora

import (
	"archive/zip"
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// oracleRecords returns the records of a torch.save archive by name under its "<prefix>/"
// folder, or nil when it cannot be opened.
func oracleRecords(tb testing.TB, path string) map[string][]byte {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return nil
	}
	defer zr.Close()
	out := map[string][]byte{}
	for _, f := range zr.File {
		r, err := f.Open()
		if err != nil {
			tb.Fatal(err)
		}
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			tb.Fatal(err)
		}
		_, rest, _ := bytes.Cut([]byte(f.Name), []byte("/"))
		out[string(rest)] = b
	}
	return out
}

// oracleDirOrEmpty is where the oracle would be, for the fuzz seeds (which run without it).
func oracleDirOrEmpty() string {
	if d := os.Getenv("SDXS_ORACLE_DIR"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "..", "shared", "oracle")
}

// FuzzTorchZipPickle: whatever data.pkl holds (the oracle's pickle with bytes changed, or
// anything else), reading the archive returns tensors or an error, never panics and never
// resolves a global outside the allowed ones.
func FuzzTorchZipPickle(f *testing.F) {
	recs := oracleRecords(f, filepath.Join(oracleDirOrEmpty(), "sdxs-dreamshaper-tiny", "lora", "peft-bin", "adapter_model.bin"))
	if recs != nil {
		f.Add(recs["data.pkl"])
	}
	f.Add(tensorPickle("w", 6, [2]byte{3, 2}, [2]byte{1, 3}))
	f.Add([]byte{0x80, 2, 'c', 'o', 's', '\n', 's', 'y', 's', 't', 'e', 'm', '\n', '.'})
	f.Add([]byte{0x80, 2, 0xff})
	f.Fuzz(func(t *testing.T, pkl []byte) {
		records := map[string][]byte{"data.pkl": pkl, "data/0": halfBytes(1, 2, 3, 4, 5, 6)}
		for k, v := range recs {
			if k != "data.pkl" {
				records[k] = v
			}
		}
		path := writeZip(t, records)
		_, _ = readTorchZip(path) // must not panic
	})
}

// TestCorruptedPickles flips bytes of the oracle's pickle at random: every result is tensors or
// an error, never a panic.
func TestCorruptedPickles(t *testing.T) {
	recs := oracleRecords(t, oracleLoRA(t, "peft-bin", "adapter_model.bin"))
	if recs == nil {
		t.Fatal("cannot read the oracle's adapter_model.bin")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	orig := recs["data.pkl"]
	failed := 0
	for i := 0; i < 200; i++ {
		pkl := bytes.Clone(orig)
		for j := 0; j < 1+rng.IntN(4); j++ {
			pkl[rng.IntN(len(pkl))] = byte(rng.IntN(256))
		}
		records := map[string][]byte{}
		for k, v := range recs {
			records[k] = v
		}
		records["data.pkl"] = pkl
		if _, err := readTorchZip(writeZip(t, records)); err != nil {
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("no corrupted pickle was refused")
	}
	t.Logf("%d of 200 corrupted pickles refused, the rest read", failed)
}

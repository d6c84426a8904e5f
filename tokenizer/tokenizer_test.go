package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/weights"
)

// clipTokenizer loads the real CLIP vocabulary of the oracle (skipping when it is absent).
func clipTokenizer(tb testing.TB) *Tokenizer {
	tb.Helper()
	dir := oracle.Path(tb, "clip-tokenizer")
	tk, err := LoadFiles(filepath.Join(dir, "vocab.json"), filepath.Join(dir, "merges.txt"), Options{})
	require.NoError(tb, err)
	return tk
}

func readJSON(tb testing.TB, path string, v any) {
	tb.Helper()
	data, err := os.ReadFile(path)
	require.NoError(tb, err)
	require.NoError(tb, json.Unmarshal(data, v), path)
}

func TestEncodeOracleCases(t *testing.T) {
	tk := clipTokenizer(t)
	var cases []struct {
		Prompt string `json:"prompt"`
		IDs    []int  `json:"ids"`
	}
	readJSON(t, oracle.Path(t, "clip-tokenizer", "cases.json"), &cases)
	require.NotEmpty(t, cases)
	for i, c := range cases {
		assert.Equal(t, c.IDs, tk.Encode(c.Prompt), "case %d: %q", i, c.Prompt)
	}
	// The cache must give the same answers on a second pass.
	for i, c := range cases {
		assert.Equal(t, c.IDs, tk.Encode(c.Prompt), "case %d (cached): %q", i, c.Prompt)
	}
}

func TestInputIDsOracle(t *testing.T) {
	for _, m := range []struct {
		name string
		pad  int
	}{{"sdxs-dreamshaper-tiny", 49407}, {"sdxs-09-tiny", 0}} {
		t.Run(m.name, func(t *testing.T) {
			dir := oracle.Path(t, m.name)
			tk, err := Load(filepath.Join(dir, "model", "tokenizer"))
			require.NoError(t, err)
			assert.Equal(t, m.pad, tk.PadID())
			assert.Equal(t, 49406, tk.BOS())
			assert.Equal(t, 49407, tk.EOS())
			assert.Equal(t, 77, tk.MaxLength())
			assert.Equal(t, 49408, tk.VocabSize())

			var cases []struct {
				Prompt string `json:"prompt"`
			}
			readJSON(t, filepath.Join(dir, "cases.json"), &cases)
			require.NotEmpty(t, cases)
			ref, err := weights.Open(filepath.Join(dir, "reference.safetensors"))
			require.NoError(t, err)
			defer ref.Close()
			for i, c := range cases {
				want, shape, err := ref.Int64(fmt.Sprintf("case%d.input_ids", i))
				require.NoError(t, err)
				require.Equal(t, []int{1, 77}, shape)
				assert.Equal(t, want, tk.InputIDs(c.Prompt), "case %d: %q", i, c.Prompt)
			}
		})
	}
}

func TestInputIDsLayout(t *testing.T) {
	tk := clipTokenizer(t)
	ids := tk.InputIDs("a photo of a cat")
	require.Len(t, ids, 77)
	assert.Equal(t, []int64{49406, 320, 1125, 539, 320, 2368, 49407, 49407}, ids[:8])

	long := ""
	for i := 0; i < 100; i++ {
		long += "cat "
	}
	ids = tk.InputIDs(long)
	require.Len(t, ids, 77)
	assert.Equal(t, int64(49406), ids[0])
	assert.Equal(t, int64(2368), ids[75])
	assert.Equal(t, int64(49407), ids[76])

	ids = tk.InputIDs("")
	assert.Equal(t, []int64{49406, 49407, 49407}, ids[:3])
}

func TestByteAlphabetMatchesVocabulary(t *testing.T) {
	var vocab map[string]int
	readJSON(t, oracle.Path(t, "clip-tokenizer", "vocab.json"), &vocab)
	seen := map[rune]bool{}
	for b := 0; b < 256; b++ {
		r := byteRunes[b]
		assert.False(t, seen[r], "byte %#x: rune %U used twice", b, r)
		seen[r] = true
		id, ok := vocab[string(r)]
		if assert.True(t, ok, "byte %#x", b) {
			assert.Less(t, id, 256, "byte %#x", b)
		}
		id, ok = vocab[string(r)+endOfWord]
		if assert.True(t, ok, "byte %#x</w>", b) {
			assert.True(t, id >= 256 && id < 512, "byte %#x</w>: id %d", b, id)
		}
	}
}

// tinyTokenizer builds a tokenizer over the byte alphabet plus a few merges, without the oracle.
func tinyTokenizer(t *testing.T, opts Options) *Tokenizer {
	t.Helper()
	vocab := map[string]int{}
	add := func(s string) { vocab[s] = len(vocab) }
	for b := 0; b < 256; b++ {
		add(string(byteRunes[b]))
	}
	for b := 0; b < 256; b++ {
		add(string(byteRunes[b]) + endOfWord)
	}
	merges := [][2]string{{"h", "e"}, {"l", "l"}, {"l", "o</w>"}, {"he", "ll"}, {"hell", "o</w>"}}
	for _, m := range merges {
		add(m[0] + m[1])
	}
	add(startOfText)
	add(endOfText)
	tk, err := New(vocab, merges, opts)
	require.NoError(t, err)
	return tk
}

func TestNewTiny(t *testing.T) {
	tk := tinyTokenizer(t, Options{Pad: "!", MaxLength: 6})
	const hello = 512 + 4 // symbol ids: byte b → b, byte b + "</w>" → 256+b, then the merges
	assert.Equal(t, []int{hello, hello}, tk.Encode("Hello  HELLO"))
	assert.Equal(t, []int{517, hello, 518}, tk.Encode("<|startoftext|>hello<|endoftext|>"))
	// "hel" → h e l</w> → he l</w>
	assert.Equal(t, []int{512, 256 + 'l'}, tk.Encode("hel"))
	assert.Equal(t, []int64{517, hello, 518, '!', '!', '!'}, tk.InputIDs("hello"))
	assert.Equal(t, []int64{517, hello, hello, hello, hello, 518}, tk.InputIDs("hello hello hello hello hello"))
	assert.Equal(t, 6, tk.MaxLength())
	assert.Equal(t, int('!'), tk.PadID())
	assert.Equal(t, 517, tk.BOS())
	assert.Equal(t, 518, tk.EOS())
	assert.Equal(t, []int{}, tk.Encode("   "))
}

func TestNewErrors(t *testing.T) {
	base := map[string]int{"a": 0, "b": 1, "ab": 2, "<|startoftext|>": 3, "<|endoftext|>": 4}
	merges := [][2]string{{"a", "b"}}
	_, err := New(base, merges, Options{})
	require.NoError(t, err)

	_, err = New(base, [][2]string{{"a", "c"}}, Options{})
	assert.ErrorContains(t, err, `"c" is not in the vocabulary`)
	_, err = New(base, [][2]string{{"b", "a"}}, Options{})
	assert.ErrorContains(t, err, `"ba" is not in the vocabulary`)
	_, err = New(base, merges, Options{Pad: "!"})
	assert.ErrorContains(t, err, `pad token "!"`)
	_, err = New(base, merges, Options{MaxLength: 1})
	assert.ErrorContains(t, err, "max length")
	_, err = New(map[string]int{"a": 0, "b": 2}, nil, Options{BOS: "a", EOS: "a", Pad: "a", Unk: "a"})
	assert.ErrorContains(t, err, "ids are not")
	_, err = New(map[string]int{}, nil, Options{})
	assert.ErrorContains(t, err, "empty vocabulary")
}

// writeTokenizerDir writes a small tokenizer folder and returns its path.
func writeTokenizerDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	return dir
}

const (
	tinyVocab  = `{"a": 0, "b": 1, "a</w>": 2, "b</w>": 3, "ab</w>": 4, "!": 5, "<|startoftext|>": 6, "<|endoftext|>": 7}`
	tinyMerges = "#version: 0.2\na b</w>\n"
)

func TestLoad(t *testing.T) {
	dir := writeTokenizerDir(t, map[string]string{
		"vocab.json":              tinyVocab,
		"merges.txt":              tinyMerges,
		"special_tokens_map.json": `{"bos_token": {"content": "<|startoftext|>", "lstrip": false}, "eos_token": "<|endoftext|>", "pad_token": "!", "unk_token": null}`,
		"tokenizer_config.json":   `{"model_max_length": 5, "pad_token": "<|endoftext|>", "do_lower_case": true}`,
	})
	tk, err := Load(dir)
	require.NoError(t, err)
	assert.Equal(t, 5, tk.PadID(), "special_tokens_map.json overrides tokenizer_config.json")
	assert.Equal(t, 5, tk.MaxLength())
	assert.Equal(t, []int{4, 2, 3}, tk.Encode("AB a b"))
	assert.Equal(t, []int64{6, 4, 7, 5, 5}, tk.InputIDs("ab"))

	// Without the optional JSON files, CLIP's defaults apply.
	dir = writeTokenizerDir(t, map[string]string{"vocab.json": tinyVocab, "merges.txt": tinyMerges})
	tk, err = Load(dir)
	require.NoError(t, err)
	assert.Equal(t, 7, tk.PadID())
	assert.Equal(t, 77, tk.MaxLength())

	// transformers' "no limit" placeholder keeps the default length.
	dir = writeTokenizerDir(t, map[string]string{"vocab.json": tinyVocab, "merges.txt": tinyMerges,
		"tokenizer_config.json": `{"model_max_length": 1000000000000000019884624838656}`})
	tk, err = Load(dir)
	require.NoError(t, err)
	assert.Equal(t, 77, tk.MaxLength())
}

func TestLoadErrors(t *testing.T) {
	for _, c := range []struct {
		name  string
		files map[string]string
		want  []string
		notEx bool
	}{
		{"missing vocab", map[string]string{"merges.txt": tinyMerges}, []string{"vocab.json"}, true},
		{"bad vocab JSON", map[string]string{"vocab.json": `{"a": 0,`, "merges.txt": tinyMerges}, []string{"vocab.json", "invalid JSON"}, false},
		{"vocab not an object", map[string]string{"vocab.json": `["a"]`, "merges.txt": tinyMerges}, []string{"vocab.json"}, false},
		{"missing merges", map[string]string{"vocab.json": tinyVocab}, []string{"merges.txt"}, true},
		{"malformed merges", map[string]string{"vocab.json": tinyVocab, "merges.txt": "#version: 0.2\na b c\n"}, []string{"merges.txt", "line 2"}, false},
		{"merge out of vocabulary", map[string]string{"vocab.json": tinyVocab, "merges.txt": "#version: 0.2\nb a\n"}, []string{"merges.txt", `"ba"`}, false},
		{"bad special_tokens_map", map[string]string{"vocab.json": tinyVocab, "merges.txt": tinyMerges, "special_tokens_map.json": `{"pad_token": 3}`}, []string{"special_tokens_map.json"}, false},
		{"bad tokenizer_config", map[string]string{"vocab.json": tinyVocab, "merges.txt": tinyMerges, "tokenizer_config.json": `{`}, []string{"tokenizer_config.json", "invalid JSON"}, false},
		{"bad model_max_length", map[string]string{"vocab.json": tinyVocab, "merges.txt": tinyMerges, "tokenizer_config.json": `{"model_max_length": "77"}`}, []string{"tokenizer_config.json", "model_max_length"}, false},
		{"pad out of vocabulary", map[string]string{"vocab.json": tinyVocab, "merges.txt": tinyMerges, "special_tokens_map.json": `{"pad_token": "<pad>"}`}, []string{`"<pad>"`, "vocab.json"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(writeTokenizerDir(t, c.files))
			require.Error(t, err)
			for _, w := range c.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Equal(t, c.notEx, errorsIsNotExist(err), "%v", err)
		})
	}
	_, err := Load(filepath.Join(t.TempDir(), "nowhere"))
	assert.True(t, errorsIsNotExist(err), "%v", err)
}

func errorsIsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

func TestConcurrentEncode(t *testing.T) {
	tk := clipTokenizer(t)
	prompts := []string{
		"portrait photo of a girl, photograph, highly detailed face",
		"a close-up picture of an old man standing in the rain",
		"café naïve résumé 日本語 🐱🚀",
		"supercalifragilisticexpialidocious",
	}
	want := make([][]int64, len(prompts))
	for i, p := range prompts {
		want[i] = clipTokenizer(t).InputIDs(p) // fresh tokenizers: no shared cache
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for k := 0; k < 50; k++ {
				i := (g + k) % len(prompts)
				assert.Equal(t, want[i], tk.InputIDs(prompts[i]))
			}
		}(g)
	}
	wg.Wait()
}

func BenchmarkInputIDs(b *testing.B) {
	tk := clipTokenizer(b)
	prompt := "portrait photo of a girl, photograph, highly detailed face, depth of field, moody light, golden hour"
	b.ReportAllocs()
	for b.Loop() {
		tk.InputIDs(prompt)
	}
}

func BenchmarkInputIDsUncached(b *testing.B) {
	tk := clipTokenizer(b)
	prompt := "portrait photo of a girl, photograph, highly detailed face, depth of field, moody light, golden hour"
	b.ReportAllocs()
	for b.Loop() {
		tk.mu.Lock()
		clear(tk.cache)
		tk.mu.Unlock()
		tk.InputIDs(prompt)
	}
}

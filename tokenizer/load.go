package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// MaxMerges is the number of merges CLIP uses: the original tokenizer and transformers'
// CLIPTokenizer both read merges[1:49152-256-2+1], i.e. the first 48,894 merges after the
// "#version" header. LoadFiles ignores the lines beyond; diffusers pipelines ship exactly this
// many.
const MaxMerges = 49152 - 256 - 2

// maxSaneLength bounds model_max_length; transformers writes int(1e30) when a tokenizer has
// no limit, which is treated as absent.
const maxSaneLength = 1 << 20

// Load reads the tokenizer of a diffusers pipeline from its tokenizer/ folder: vocab.json,
// merges.txt, special_tokens_map.json and tokenizer_config.json (see ReadOptions).
func Load(dir string) (*Tokenizer, error) {
	opts, err := ReadOptions(dir)
	if err != nil {
		return nil, err
	}
	return LoadFiles(filepath.Join(dir, "vocab.json"), filepath.Join(dir, "merges.txt"), opts)
}

// LoadFiles reads a tokenizer from a vocab.json file (token → id) and a merges.txt file (one
// "left right" pair per line in rank order, after an optional "#version" header line; at most
// MaxMerges are used), with the special tokens and length of opts. Errors name the file.
func LoadFiles(vocabPath, mergesPath string, opts Options) (*Tokenizer, error) {
	vocab, err := readVocab(vocabPath)
	if err != nil {
		return nil, err
	}
	merges, err := readMerges(mergesPath)
	if err != nil {
		return nil, err
	}
	t, err := New(vocab, merges, opts)
	if err != nil {
		return nil, fmt.Errorf("%w (vocabulary %s, merges %s)", err, vocabPath, mergesPath)
	}
	return t, nil
}

func readVocab(path string) (map[string]int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: reading vocabulary: %w", err)
	}
	var vocab map[string]int
	if err := json.Unmarshal(data, &vocab); err != nil {
		return nil, fmt.Errorf("tokenizer: vocabulary %s: invalid JSON: %w", path, err)
	}
	if len(vocab) == 0 {
		return nil, fmt.Errorf("tokenizer: vocabulary %s is empty", path)
	}
	return vocab, nil
}

func readMerges(path string) ([][2]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: reading merges: %w", err)
	}
	defer f.Close()
	var merges [][2]string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for line := 1; sc.Scan() && len(merges) < MaxMerges; line++ {
		text := strings.TrimSuffix(sc.Text(), "\r")
		if line == 1 && strings.HasPrefix(text, "#") {
			continue // "#version: 0.2"
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, fmt.Errorf("tokenizer: merges %s: line %d: want two tokens, got %q", path, line, text)
		}
		merges = append(merges, [2]string{fields[0], fields[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokenizer: reading merges %s: %w", path, err)
	}
	if len(merges) == 0 {
		return nil, fmt.Errorf("tokenizer: merges %s holds no merges", path)
	}
	return merges, nil
}

// ReadOptions reads the special tokens and model_max_length of a tokenizer/ folder from
// tokenizer_config.json, then special_tokens_map.json, whose entries take precedence as in
// transformers. Tokens may be strings or objects with a "content" field; null or absent
// entries keep CLIP's defaults, as does a model_max_length above 2^20 (transformers' "no
// limit" placeholder). A missing file is not an error (transformers loads CLIP tokenizers
// without them); an unreadable or invalid one is, naming the file.
func ReadOptions(dir string) (Options, error) {
	var opts Options
	for _, name := range []string{"tokenizer_config.json", "special_tokens_map.json"} {
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Options{}, fmt.Errorf("tokenizer: reading %s: %w", name, err)
		}
		if err := parseOptions(data, &opts); err != nil {
			return Options{}, fmt.Errorf("tokenizer: %s: %w", path, err)
		}
	}
	return opts, nil
}

// tokenField is a special-token entry: a string, an object with "content", or null.
type tokenField struct {
	value string
	set   bool
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *tokenField) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	if len(b) > 0 && b[0] == '{' {
		var obj struct {
			Content *string `json:"content"`
		}
		if err := json.Unmarshal(b, &obj); err != nil {
			return err
		}
		if obj.Content == nil {
			return fmt.Errorf("token object without a \"content\" string")
		}
		f.value, f.set = *obj.Content, true
		return nil
	}
	if err := json.Unmarshal(b, &f.value); err != nil {
		return fmt.Errorf("token must be a string or an object with \"content\": %w", err)
	}
	f.set = true
	return nil
}

// parseOptions overlays the entries present in a tokenizer JSON file onto opts.
func parseOptions(data []byte, opts *Options) error {
	var cfg struct {
		BOS            tokenField       `json:"bos_token"`
		EOS            tokenField       `json:"eos_token"`
		Pad            tokenField       `json:"pad_token"`
		Unk            tokenField       `json:"unk_token"`
		ModelMaxLength *json.RawMessage `json:"model_max_length"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	for _, p := range []struct {
		f   tokenField
		dst *string
	}{{cfg.BOS, &opts.BOS}, {cfg.EOS, &opts.EOS}, {cfg.Pad, &opts.Pad}, {cfg.Unk, &opts.Unk}} {
		if p.f.set {
			*p.dst = p.f.value
		}
	}
	if cfg.ModelMaxLength != nil && string(*cfg.ModelMaxLength) != "null" {
		var v float64
		if err := json.Unmarshal(*cfg.ModelMaxLength, &v); err != nil {
			return fmt.Errorf("model_max_length: %w", err)
		}
		switch {
		case v != math.Trunc(v) || v < 2:
			return fmt.Errorf("model_max_length %v is not an integer ≥ 2", v)
		case v <= maxSaneLength:
			opts.MaxLength = int(v)
		}
	}
	return nil
}

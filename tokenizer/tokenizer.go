// Package tokenizer implements the CLIP BPE tokenizer used by Stable Diffusion text encoders,
// producing the same ids as the original OpenAI CLIP tokenizer (without ftfy) and as the
// diffusers/transformers CLIPTokenizer of a pipeline's tokenizer/ folder.
//
// Encoding a prompt takes four steps:
//
//  1. Cleaning: HTML entities are unescaped twice (Python html.unescape semantics), runs of
//     Unicode white space become one space, the text is trimmed and lower-cased (Python
//     str.lower semantics, including the final-sigma rule).
//  2. Pre-tokenization with CLIP's pattern
//     <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//     (letters in runs, every digit on its own, other symbols in runs, white space dropped).
//  3. Each word is mapped byte by byte to GPT-2's printable byte alphabet; its last symbol
//     carries the end-of-word suffix "</w>".
//  4. Byte-pair merges are applied by rank with the BPE model of
//     github.com/nlpodyssey/gotokenizers (models/bpemodel, with its EndOfWordSuffix option),
//     and the resulting symbols are looked up in the vocabulary. "<|startoftext|>" and
//     "<|endoftext|>" written literally in a prompt map directly to their ids.
//
// Encode returns the bare BPE ids; InputIDs builds the fixed-length sequence a text encoder
// takes: [bos] + ids[:max-2] + [eos], padded with the pad token to model_max_length (77).
// Stable Diffusion 1.x tokenizers pad with "<|endoftext|>" (49407), SD 2.x ones with "!" (0).
//
// A Tokenizer is safe for concurrent use; the BPE results of words are cached.
package tokenizer

import (
	"fmt"
	"sort"
	"sync"

	"github.com/nlpodyssey/gotokenizers/models/bpemodel"
	"github.com/nlpodyssey/gotokenizers/vocabulary"
)

// DefaultMaxLength is the sequence length of CLIP text encoders, used when Options.MaxLength
// is zero.
const DefaultMaxLength = 77

// endOfWord is the suffix CLIP's vocabulary appends to the last symbol of a word.
const endOfWord = "</w>"

// cacheLimit bounds the number of cached words; the cache is emptied when it is reached.
const cacheLimit = 1 << 16

// Options are the special tokens and the sequence length of a tokenizer. Empty fields take
// CLIP's defaults (those of transformers' CLIPTokenizer).
type Options struct {
	// BOS is the start-of-text token; default "<|startoftext|>".
	BOS string
	// EOS is the end-of-text token; default "<|endoftext|>".
	EOS string
	// Pad is the padding token; default "<|endoftext|>". Stable Diffusion 2.x uses "!".
	Pad string
	// Unk replaces symbols missing from the vocabulary (which never happens with CLIP's
	// complete byte alphabet); default "<|endoftext|>".
	Unk string
	// MaxLength is the length of InputIDs sequences, at least 2; default DefaultMaxLength.
	MaxLength int
}

// withDefaults returns o with CLIP's defaults in its empty fields.
func (o Options) withDefaults() Options {
	if o.BOS == "" {
		o.BOS = startOfText
	}
	if o.EOS == "" {
		o.EOS = endOfText
	}
	if o.Pad == "" {
		o.Pad = endOfText
	}
	if o.Unk == "" {
		o.Unk = endOfText
	}
	if o.MaxLength == 0 {
		o.MaxLength = DefaultMaxLength
	}
	return o
}

// Tokenizer is a CLIP BPE tokenizer. Create one with Load, LoadFiles or New; it is safe for
// concurrent use.
type Tokenizer struct {
	model     *bpemodel.BPEModel
	vocabSize int
	special   map[string]int // literal special tokens, atomic as in CLIP's seeded cache
	bos, eos  int
	pad       int
	maxLen    int

	mu    sync.RWMutex
	cache map[string][]int // word → ids; bpemodel's own cache is a no-op in v0.2.0
}

// New builds a tokenizer from a vocabulary (token → id, the content of vocab.json; ids must be
// exactly 0 … len(vocab)-1) and the merges in rank order (each pair's concatenation must be in
// the vocabulary). A pair listed twice keeps its later rank, as in CLIP's dict of ranks. The
// special tokens of opts must be in the vocabulary.
func New(vocab map[string]int, merges [][2]string, opts Options) (*Tokenizer, error) {
	opts = opts.withDefaults()
	if opts.MaxLength < 2 {
		return nil, fmt.Errorf("tokenizer: max length %d is less than 2", opts.MaxLength)
	}
	voc, err := buildVocabulary(vocab)
	if err != nil {
		return nil, err
	}
	mm := bpemodel.NewMergeMap()
	for rank, m := range merges {
		left, ok1 := vocab[m[0]]
		right, ok2 := vocab[m[1]]
		merged, ok3 := vocab[m[0]+m[1]]
		switch {
		case !ok1:
			return nil, fmt.Errorf("tokenizer: merge %d (%q %q): %q is not in the vocabulary", rank, m[0], m[1], m[0])
		case !ok2:
			return nil, fmt.Errorf("tokenizer: merge %d (%q %q): %q is not in the vocabulary", rank, m[0], m[1], m[1])
		case !ok3:
			return nil, fmt.Errorf("tokenizer: merge %d (%q %q): %q is not in the vocabulary", rank, m[0], m[1], m[0]+m[1])
		}
		mm.Set(left, right, bpemodel.MergeValue{Rank: rank, ID: merged})
	}

	t := &Tokenizer{
		vocabSize: len(vocab),
		special:   make(map[string]int, 2),
		maxLen:    opts.MaxLength,
		cache:     make(map[string][]int),
	}
	for _, s := range []string{startOfText, endOfText} {
		if id, ok := vocab[s]; ok {
			t.special[s] = id
		}
	}
	for _, st := range []struct {
		name, tok string
		dst       *int
	}{{"bos", opts.BOS, &t.bos}, {"eos", opts.EOS, &t.eos}, {"pad", opts.Pad, &t.pad}, {"unk", opts.Unk, nil}} {
		id, ok := vocab[st.tok]
		if !ok {
			return nil, fmt.Errorf("tokenizer: %s token %q is not in the vocabulary", st.name, st.tok)
		}
		if st.dst != nil {
			*st.dst = id
		}
	}
	// Cache capacity and dropout 0; no continuing-subword prefix; CLIP's "</w>" suffix on the
	// last symbol of every word; unknown symbols become the unk token, one each.
	t.model = bpemodel.New(voc, mm, 0, 0, opts.Unk, "", endOfWord, false)
	return t, nil
}

// buildVocabulary converts a token → id map into a gotokenizers vocabulary, which assigns ids
// in insertion order and so needs them dense.
func buildVocabulary(vocab map[string]int) (*vocabulary.Vocabulary, error) {
	if len(vocab) == 0 {
		return nil, fmt.Errorf("tokenizer: empty vocabulary")
	}
	terms := make([]string, 0, len(vocab))
	for term := range vocab {
		terms = append(terms, term)
	}
	sort.Slice(terms, func(i, j int) bool { return vocab[terms[i]] < vocab[terms[j]] })
	voc := vocabulary.NewVocabulary()
	for i, term := range terms {
		if vocab[term] != i {
			return nil, fmt.Errorf("tokenizer: vocabulary ids are not 0…%d: token %q has id %d", len(vocab)-1, term, vocab[term])
		}
		voc.AddTerm(term)
	}
	return voc, nil
}

// Encode returns the BPE token ids of text, without start/end tokens, padding or truncation.
// The result is never nil.
func (t *Tokenizer) Encode(text string) []int {
	ids := make([]int, 0, 32)
	splitWords(cleanText(text), func(word string) {
		ids = append(ids, t.encodeWord(word)...)
	})
	return ids
}

// encodeWord returns the ids of one pre-tokenized word. The returned slice is shared with the
// cache and must not be modified.
func (t *Tokenizer) encodeWord(word string) []int {
	symbols := byteEncode(word)
	if id, ok := t.special[symbols]; ok {
		return []int{id}
	}
	t.mu.RLock()
	ids, ok := t.cache[symbols]
	t.mu.RUnlock()
	if ok {
		return ids
	}
	tokens, err := t.model.Tokenize(symbols)
	if err != nil {
		// bpemodel fails only for an unk token or a merge result outside the vocabulary, both
		// of which New has ruled out.
		panic(fmt.Sprintf("tokenizer: internal error: %v", err))
	}
	ids = make([]int, len(tokens))
	for i, tok := range tokens {
		ids[i] = tok.ID
	}
	t.mu.Lock()
	if len(t.cache) >= cacheLimit {
		clear(t.cache)
	}
	t.cache[symbols] = ids
	t.mu.Unlock()
	return ids
}

// InputIDs returns the text encoder input for prompt: the BOS id, the first MaxLength()-2 ids
// of Encode(prompt), the EOS id, then the pad id up to MaxLength() entries — what
// StableDiffusionPipeline obtains from CLIPTokenizer with padding="max_length" and
// truncation=True.
func (t *Tokenizer) InputIDs(prompt string) []int64 {
	ids := t.Encode(prompt)
	if n := t.maxLen - 2; len(ids) > n {
		ids = ids[:n]
	}
	out := make([]int64, t.maxLen)
	out[0] = int64(t.bos)
	for i, id := range ids {
		out[1+i] = int64(id)
	}
	out[1+len(ids)] = int64(t.eos)
	for i := 2 + len(ids); i < len(out); i++ {
		out[i] = int64(t.pad)
	}
	return out
}

// MaxLength returns the length of InputIDs sequences (model_max_length, 77 for CLIP).
func (t *Tokenizer) MaxLength() int { return t.maxLen }

// PadID returns the id of the padding token (49407 for SD 1.x, 0 for SD 2.x).
func (t *Tokenizer) PadID() int { return t.pad }

// BOS returns the id of the start-of-text token (49406 for CLIP).
func (t *Tokenizer) BOS() int { return t.bos }

// EOS returns the id of the end-of-text token (49407 for CLIP).
func (t *Tokenizer) EOS() int { return t.eos }

// VocabSize returns the number of tokens in the vocabulary (49408 for CLIP).
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

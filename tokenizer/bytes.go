package tokenizer

import "strings"

// byteRunes is GPT-2's bytes_to_unicode table, used by CLIP: every byte value maps to one
// printable rune, so that any UTF-8 text becomes a string of vocabulary symbols. The bytes that
// are printable in Latin-1 ('!'–'~', '¡'–'¬', '®'–'ÿ') map to themselves; the others (control
// characters, space, U+007F–U+00A0, the soft hyphen) map in increasing order to U+0100,
// U+0101, ….
//
// gotokenizers holds the same table, but unexported inside its ByteLevelPreTokenizer, whose
// only entry point splits a whole pre-tokenized string with a github.com/dlclark/regexp2
// pattern (a dependency this module does not carry), keeps the unmatched white space as
// pre-tokens (CLIP drops it) and tracks alignments CLIP does not need. The table is therefore
// rebuilt here; the tests check it against the first 512 entries of CLIP's vocabulary.
var byteRunes = func() (t [256]rune) {
	next := rune(256)
	for b := range t {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF {
			t[b] = rune(b)
		} else {
			t[b] = next
			next++
		}
	}
	return t
}()

// byteEncode maps every byte of word to its byteRunes symbol.
func byteEncode(word string) string {
	var b strings.Builder
	b.Grow(2 * len(word))
	for i := 0; i < len(word); i++ {
		b.WriteRune(byteRunes[word[i]])
	}
	return b.String()
}

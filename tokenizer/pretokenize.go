package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// The two special tokens of CLIP. The original tokenizer seeds its BPE cache with them, so when
// they appear literally in a (cleaned) prompt they map to their own ids instead of being split.
const (
	startOfText = "<|startoftext|>"
	endOfText   = "<|endoftext|>"
)

// literals are the fixed-string alternatives of CLIP's pattern, in the order they are tried.
var literals = []string{startOfText, endOfText, "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}

// splitWords returns the words of a cleaned text as re.findall with CLIP's pattern
//
//	<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//
// and re.IGNORECASE (regex module, simple case folding) would: at each position the first
// alternative that matches wins; \p{N} takes a single character; white space matches nothing
// and is skipped. The literal alternatives are compared case-insensitively with simple case
// folding, so "'ſ" is matched by 's as in Python.
func splitWords(s string, emit func(word string)) {
	for i := 0; i < len(s); {
		if n := matchLiteral(s[i:]); n > 0 {
			emit(s[i : i+n])
			i += n
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case unicode.IsLetter(r):
			j := i + size
			for j < len(s) {
				r2, sz := utf8.DecodeRuneInString(s[j:])
				if !unicode.IsLetter(r2) {
					break
				}
				j += sz
			}
			emit(s[i:j])
			i = j
		case unicode.IsNumber(r):
			emit(s[i : i+size])
			i += size
		case unicode.IsSpace(r):
			i += size
		default:
			j := i + size
			for j < len(s) {
				r2, sz := utf8.DecodeRuneInString(s[j:])
				if unicode.IsSpace(r2) || unicode.IsLetter(r2) || unicode.IsNumber(r2) {
					break
				}
				j += sz
			}
			emit(s[i:j])
			i = j
		}
	}
}

// matchLiteral returns the byte length of the first literal alternative matching at the start
// of s, or 0.
func matchLiteral(s string) int {
	if len(s) < 2 || (s[0] != '<' && s[0] != '\'') {
		return 0
	}
	for _, lit := range literals {
		if n := foldPrefix(s, lit); n > 0 {
			return n
		}
	}
	return 0
}

// foldPrefix returns the byte length of the prefix of s that equals lit under simple case
// folding, or 0 when s does not start with lit.
func foldPrefix(s, lit string) int {
	i := 0
	for _, want := range lit {
		if i >= len(s) {
			return 0
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if !foldEqual(r, want) {
			return 0
		}
		i += size
	}
	return i
}

// foldEqual reports whether a and b are in the same simple case-folding orbit.
func foldEqual(a, b rune) bool {
	if a == b {
		return true
	}
	for f := unicode.SimpleFold(a); f != a; f = unicode.SimpleFold(f) {
		if f == b {
			return true
		}
	}
	return false
}

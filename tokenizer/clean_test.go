package tokenizer

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// The expected values below were computed with CPython 3.11 (html.unescape, str.lower).

func TestUnescapeHTMLMatchesPython(t *testing.T) {
	for _, c := range [][2]string{
		{"&amp;amp;", "&amp;"},
		{"&lt;b&gt;", "<b>"},
		{"&ampx", "&x"},
		{"&#39;", "'"},
		{"&#x27;", "'"},
		{"&#1;", ""},
		{"&#128;", "€"},
		{"&#x;", "&#x;"},
		{"&#0;", "\uFFFD"},
		{"&#99999999999999999999;", "\uFFFD"},
		{"&notit;", "¬it;"},
		{"&AElig", "Æ"},
		{"&fjlig;", "fj"},
		{"&;", "&;"},
		{"&#x7f;", ""},
		{"&#13;", "\r"},
		{"&#xD800;", "\uFFFD"},
		{"&#xFFFE;", ""},
		{"&#157;", "\u009d"},
		{"&amp-;", "&-;"},
		{"&ampé", "&é"},
		{"&NotEqualTilde;", "≂̸"},
		{"&copy2023", "©2023"},
		{"&#X1F431;", "🐱"},
		{"no entities", "no entities"},
		{"a & b &", "a & b &"},
	} {
		assert.Equal(t, c[1], unescapeHTML(c[0]), "%q", c[0])
	}
}

func TestPyLower(t *testing.T) {
	for _, c := range [][2]string{
		{"İSTANBUL", "i̇stanbul"},
		{"ΟΔΟΣ", "οδος"},
		{"Σ", "σ"},
		{"ΑΣ Α", "ας α"},
		{"ΑΣ'Α", "ασ'α"},
		{"ΑΣ.", "ας."},
		{"ẞ", "ß"},
		{"ǅ", "ǆ"},
		{"MiXeD ASCII", "mixed ascii"},
	} {
		assert.Equal(t, c[1], pyLower(c[0]), "%q", c[0])
	}
}

func TestCleanText(t *testing.T) {
	for _, c := range [][2]string{
		{"  a\u00a0\u3000b\t\n", "a b"},
		{"\x1c a \x1d", "a"},                // str.strip removes U+001C–U+001F …
		{"a\x1cb", "a\x1cb"},                // … but the regex module's \s does not match them
		{"&amp;amp;lt;b&amp;gt;", "&lt;b>"}, // unescaped exactly twice
		{"&lt;&nbsp;x&gt;", "< x>"},
		{"A\u2028B\u0085C", "a b c"},
		{"bad\xffutf8", "bad\uFFFDutf8"},
		{"", ""},
	} {
		assert.Equal(t, c[1], cleanText(c[0]), "%q", c[0])
	}
}

func TestSplitWords(t *testing.T) {
	split := func(s string) []string {
		var out []string
		splitWords(s, func(w string) { out = append(out, w) })
		return out
	}
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"don't can't we'll", []string{"don", "'t", "can", "'t", "we", "'ll"}},
		{"a1b 123", []string{"a", "1", "b", "1", "2", "3"}},
		{"!!'s", []string{"!!'", "s"}},
		{"x's", []string{"x", "'s"}},
		{"'re've'm'd", []string{"'re", "'ve", "'m", "'d"}},
		{"<|endoftext|>x<|startoftext|>", []string{"<|endoftext|>", "x", "<|startoftext|>"}},
		{"!<|endoftext|>", []string{"!<|", "endoftext", "|>"}},
		{"<|ſtartoftext|>", []string{"<|ſtartoftext|>"}}, // re.IGNORECASE: ſ folds to s
		{"x'ſ", []string{"x", "'ſ"}},
		{"café ⅻ ²", []string{"café", "ⅻ", "²"}},
		{"🐱🚀 ©®", []string{"🐱🚀", "©®"}},
		{"  ", nil},
	} {
		assert.Equal(t, c.want, split(c.in), "%q", c.in)
	}
}

func TestByteEncode(t *testing.T) {
	assert.Equal(t, "hello", byteEncode("hello"))
	assert.Equal(t, "Ġ", byteEncode(" "))
	assert.Equal(t, "Ã©", byteEncode("é"))
	// All 256 symbols are distinct.
	var all strings.Builder
	for b := 0; b < 256; b++ {
		all.WriteByte(byte(b))
	}
	seen := map[rune]bool{}
	for _, r := range byteEncode(all.String()) {
		seen[r] = true
	}
	assert.Len(t, seen, 256)
}

package tokenizer

import (
	"html"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// cleanText applies the text normalisation of the original OpenAI CLIP tokenizer, without ftfy:
//
//	text = html.unescape(html.unescape(text)).strip()   # basic_clean
//	text = re.sub(r'\s+', ' ', text).strip()            # whitespace_clean
//	text = text.lower()
//
// with Python semantics: unescapeHTML follows Python's html.unescape, \s of the regex module is
// the Unicode White_Space property (unicode.IsSpace), str.strip also removes U+001C–U+001F
// (pyIsSpace) and str.lower uses the full lower-case mapping with the final-sigma rule
// (pyLower). Invalid UTF-8 bytes, which a Python str cannot hold, become U+FFFD first.
func cleanText(s string) string {
	s = validUTF8(s)
	s = unescapeHTML(unescapeHTML(s))
	s = strings.TrimFunc(s, pyIsSpace)
	s = collapseSpace(s)
	s = strings.TrimFunc(s, pyIsSpace)
	return pyLower(s)
}

// validUTF8 replaces every byte of s that is not part of a valid UTF-8 sequence with U+FFFD.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		b.WriteRune(r) // range yields utf8.RuneError for each invalid byte
	}
	return b.String()
}

// pyIsSpace reports whether Python's str.isspace() is true for r: the White_Space characters
// plus the information separators U+001C–U+001F (bidirectional class B or S).
func pyIsSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1C && r <= 0x1F)
}

// collapseSpace replaces every run of White_Space characters (the regex module's \s) with a
// single ASCII space.
func collapseSpace(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	inSpace := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			if !inSpace {
				b.WriteByte(' ')
			}
			inSpace = true
			continue
		}
		inSpace = false
		b.WriteRune(r)
	}
	return b.String()
}

// unescapeHTML implements Python's html.unescape. Go's html.UnescapeString differs from it on
// numeric references: Python drops the code points the HTML5 standard calls invalid (U+0001–
// U+0008, U+000B, U+000E–U+001F, U+007F, U+FDD0–U+FDEF and the U+xxFFFE/U+xxFFFF
// non-characters; U+0080–U+009F go through the Windows-1252 table first) and leaves "&#x;" and
// "&#X;" alone, while Go keeps the former and turns the latter into U+FFFD; Go also wraps huge
// decimal values around. Numeric references are therefore decoded here. For named references
// Python captures up to 32 characters, looks the whole capture up, then the longest prefix
// among the legacy names that may omit the semicolon; since every entity name is ASCII
// alphanumeric this gives the same result as html.UnescapeString on "&" + the alphanumeric run
// (+ ";" when it follows directly), which is what is delegated to the standard library.
func unescapeHTML(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for {
		j := strings.IndexByte(s, '&')
		if j < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:j])
		s = s[j:]
		repl, n := charRef(s)
		if n == 0 {
			b.WriteByte('&')
			s = s[1:]
			continue
		}
		b.WriteString(repl)
		s = s[n:]
	}
}

// charRef decodes the character reference at the start of s (s[0] == '&'), returning the
// replacement and the number of bytes consumed, or n == 0 when Python's pattern does not match.
func charRef(s string) (string, int) {
	if len(s) < 2 {
		return "", 0
	}
	if s[1] == '#' {
		return numericCharRef(s)
	}
	i := 1
	for i < len(s) && isASCIIAlnum(s[i]) {
		i++
	}
	if i == 1 {
		return "", 0
	}
	if i < len(s) && s[i] == ';' {
		i++
	}
	return html.UnescapeString(s[:i]), i
}

func isASCIIAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// numericCharRef decodes "&#[0-9]+;?" and "&#[xX][0-9a-fA-F]+;?" as Python's html.unescape does.
func numericCharRef(s string) (string, int) {
	i := 2
	base := 10
	isDigit := func(c byte) bool { return '0' <= c && c <= '9' }
	if i < len(s) && (s[i] == 'x' || s[i] == 'X') {
		base = 16
		isDigit = isHexDigit
		i++
	}
	start := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i == start {
		return "", 0 // "&#" or "&#x" without digits: no match, left as is
	}
	digits := s[start:i]
	if i < len(s) && s[i] == ';' {
		i++
	}
	num, err := strconv.ParseUint(digits, base, 32)
	if err != nil || num > unicode.MaxRune {
		return "\uFFFD", i // only overflow is possible: beyond U+10FFFF
	}
	return pyCharRefValue(rune(num)), i
}

// pyCharRefValue maps a numeric character reference to its text as Python's html module does.
func pyCharRefValue(r rune) string {
	switch {
	case r == 0:
		return "\uFFFD"
	case r == 0x0D:
		return "\r"
	case r >= 0x80 && r <= 0x9F:
		// The Windows-1252 replacements of the HTML5 standard; Go's table is identical to
		// Python's _invalid_charrefs for this range.
		return html.UnescapeString("&#" + strconv.Itoa(int(r)) + ";")
	case r >= 0xD800 && r <= 0xDFFF:
		return "\uFFFD"
	case r >= 0x01 && r <= 0x08, r == 0x0B, r >= 0x0E && r <= 0x1F, r == 0x7F,
		r >= 0xFDD0 && r <= 0xFDEF, r&0xFFFE == 0xFFFE:
		return ""
	}
	return string(r)
}

// pyLower implements Python's str.lower(): the full lower-case mapping (which differs from the
// simple one only for U+0130, lowered to "i\u0307") and the Final_Sigma rule of U+03A3.
func pyLower(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	rs := []rune(s)
	var b strings.Builder
	b.Grow(len(s) + 4)
	for i, r := range rs {
		switch r {
		case 0x130:
			b.WriteString("i\u0307")
		case 0x3A3:
			if finalSigma(rs, i) {
				b.WriteRune(0x3C2)
			} else {
				b.WriteRune(0x3C3)
			}
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// finalSigma reports whether the capital sigma at rs[i] is in the Final_Sigma context:
// preceded by a cased letter (skipping case-ignorable characters) and not followed by one.
func finalSigma(rs []rune, i int) bool {
	j := i - 1
	for j >= 0 && isCaseIgnorable(rs[j]) {
		j--
	}
	if j < 0 || !isCased(rs[j]) {
		return false
	}
	j = i + 1
	for j < len(rs) && isCaseIgnorable(rs[j]) {
		j++
	}
	return j == len(rs) || !isCased(rs[j])
}

// isCased is the Unicode Cased property: Lowercase, Uppercase or Titlecase_Letter.
func isCased(r rune) bool {
	return unicode.IsLower(r) || unicode.IsUpper(r) || unicode.IsTitle(r) ||
		unicode.Is(unicode.Other_Lowercase, r) || unicode.Is(unicode.Other_Uppercase, r)
}

// isCaseIgnorable is the Unicode Case_Ignorable property: general categories Mn, Me, Cf, Lm
// and Sk plus the Word_Break classes MidLetter, MidNumLet and Single_Quote.
func isCaseIgnorable(r rune) bool {
	switch r {
	case '\'', '.', ':', 0xB7, 0x387, 0x55F, 0x5F4, 0x2018, 0x2019, 0x2024, 0x2027,
		0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A:
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}

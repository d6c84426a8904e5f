package tokenizer

import (
	"bufio"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/oracle"
)

// referenceBPE is the merge loop of the original CLIP tokenizer written out literally: find the
// pair of lowest rank, merge all its occurrences left to right, repeat. bpemodel instead uses a
// priority queue of (rank, position); the two agree when every merge's parts are created by
// merges of lower rank, which TestBPEModelMatchesReference checks on CLIP's merges.
func referenceBPE(symbols string, ranks map[[2]string]int) []string {
	rs := []rune(symbols)
	word := make([]string, len(rs))
	for i, r := range rs {
		word[i] = string(r)
	}
	word[len(word)-1] += endOfWord
	for len(word) > 1 {
		best, bestRank := -1, math.MaxInt
		for i := 0; i+1 < len(word); i++ {
			if r, ok := ranks[[2]string{word[i], word[i+1]}]; ok && r < bestRank {
				best, bestRank = i, r
			}
		}
		if best < 0 {
			break
		}
		first, second := word[best], word[best+1]
		var next []string
		for i := 0; i < len(word); {
			if i+1 < len(word) && word[i] == first && word[i+1] == second {
				next = append(next, first+second)
				i += 2
			} else {
				next = append(next, word[i])
				i++
			}
		}
		word = next
	}
	return word
}

func TestBPEModelMatchesReference(t *testing.T) {
	tk := clipTokenizer(t)
	var vocab map[string]int
	readJSON(t, oracle.Path(t, "clip-tokenizer", "vocab.json"), &vocab)
	f, err := os.Open(oracle.Path(t, "clip-tokenizer", "merges.txt"))
	require.NoError(t, err)
	defer f.Close()
	ranks := map[[2]string]int{}
	sc := bufio.NewScanner(f)
	for line := 0; sc.Scan(); line++ {
		if line == 0 {
			continue
		}
		p := strings.Fields(sc.Text())
		require.Len(t, p, 2)
		ranks[[2]string{p[0], p[1]}] = len(ranks)
	}
	require.NoError(t, sc.Err())

	check := func(symbols string) bool {
		var want []int
		for _, s := range referenceBPE(symbols, ranks) {
			want = append(want, vocab[s])
		}
		tokens, err := tk.model.Tokenize(symbols)
		require.NoError(t, err)
		got := make([]int, len(tokens))
		for i, tok := range tokens {
			got[i] = tok.ID
		}
		return assert.Equal(t, want, got, "%q", symbols)
	}

	// Every vocabulary entry, as a whole word and with its suffix removed.
	failures := 0
	for tok := range vocab {
		w := strings.TrimSuffix(tok, endOfWord)
		if w == "" || w == startOfText || w == endOfText {
			continue
		}
		if !check(w) {
			failures++
		}
		if failures > 10 {
			t.FailNow()
		}
	}
	// Random strings over frequent symbols, and concatenations of vocabulary entries.
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("abcdeilmnorstu!.,'0123")
	var entries []string
	for tok := range vocab {
		if w := strings.TrimSuffix(tok, endOfWord); w != "" && !strings.Contains(w, "<|") {
			entries = append(entries, w)
		}
	}
	for i := 0; i < 20000 && failures <= 10; i++ {
		var b strings.Builder
		if i%2 == 0 {
			for n := 1 + rng.IntN(16); n > 0; n-- {
				b.WriteRune(alphabet[rng.IntN(len(alphabet))])
			}
		} else {
			for n := 1 + rng.IntN(3); n > 0; n-- {
				b.WriteString(entries[rng.IntN(len(entries))])
			}
		}
		if !check(b.String()) {
			failures++
		}
	}
}

package tokenizer_test

import (
	"fmt"
	"log"

	"github.com/sdxs-go/sdxs/tokenizer"
)

// Load the tokenizer of a diffusers pipeline folder and build the text encoder input of a
// prompt. (No "Output:" line: the example needs a downloaded model, so it is compiled, not run.)
func Example() {
	tok, err := tokenizer.Load("path/to/sdxs-512-0.9/tokenizer")
	if err != nil {
		log.Fatal(err)
	}
	ids := tok.InputIDs("a photo of a cat")
	fmt.Println(len(ids) == tok.MaxLength())    // true: padded to 77
	fmt.Println(ids[:7])                        // [49406 320 1125 539 320 2368 49407]
	fmt.Println(ids[7] == int64(tok.PadID()))   // true: "!" (0) for SD 2.x, 49407 for SD 1.x
	fmt.Println(tok.Encode("A photo of a cat")) // [320 1125 539 320 2368]
}

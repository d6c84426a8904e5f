package conv_test

import (
	"fmt"

	"github.com/sdxs-go/sdxs/internal/conv"
)

// A 3×3 box filter (every weight 1/9) on a 2-channel 4×5 image whose
// channels are constant 9 and 18: inside the image the outputs are 9 and
// 18, at the corners (where 5 of the 9 taps fall in the zero padding) 4 and 8.
func ExampleWinograd() {
	const cin, cout, h, w = 2, 2, 4, 5
	p := conv.NewWinograd(cin, cout, h, w)

	weights := make([]float32, cout*cin*9) // [Cout, Cin, 3, 3]
	for o := 0; o < cout; o++ {
		for k := 0; k < 9; k++ {
			weights[(o*cin+o)*9+k] = 1.0 / 9 // output channel o sees input channel o
		}
	}
	tw := p.TransformWeights(weights) // once per weight tensor

	x := make([]float32, cin*h*w)
	for i := range x {
		x[i] = float32(9 * (1 + i/(h*w)))
	}
	out := make([]float32, cout*p.OutH()*p.OutW())
	p.Run(out, x, tw, nil, make([]float32, p.ScratchSize()))

	for o := 0; o < cout; o++ {
		for y := 0; y < p.OutH(); y++ {
			for xx := 0; xx < p.OutW(); xx++ {
				fmt.Printf("%6.2f", out[(o*p.OutH()+y)*p.OutW()+xx])
			}
			fmt.Println()
		}
	}
	// Output:
	//   4.00  6.00  6.00  6.00  4.00
	//   6.00  9.00  9.00  9.00  6.00
	//   6.00  9.00  9.00  9.00  6.00
	//   4.00  6.00  6.00  6.00  4.00
	//   8.00 12.00 12.00 12.00  8.00
	//  12.00 18.00 18.00 18.00 12.00
	//  12.00 18.00 18.00 18.00 12.00
	//   8.00 12.00 12.00 12.00  8.00
}

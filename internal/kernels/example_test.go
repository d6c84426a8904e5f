package kernels_test

import (
	"fmt"

	"github.com/sdxs-go/sdxs/internal/kernels"
)

// A linear layer y = x·Wᵀ with PyTorch's weight layout (out×in): W is B,
// transposed.
func ExampleSgemm() {
	x := []float32{ // 2 tokens × 3 features
		1, 2, 3,
		4, 5, 6,
	}
	w := []float32{ // 2 outputs × 3 features
		1, 0, -1,
		0.5, 0.5, 0.5,
	}
	y := make([]float32, 2*2)
	kernels.Sgemm(false, true, 2, 2, 3, 1, x, 3, w, 3, 0, y, 2)
	fmt.Println(y)
	// Output: [-2 3 -2 7.5]
}

func ExampleSoftmaxInPlace() {
	scores := []float32{1, 2, 3, float32(-1e30)}
	kernels.SoftmaxInPlace(scores)
	fmt.Printf("%.4f\n", scores)
	// Output: [0.0900 0.2447 0.6652 0.0000]
}

package conv

import "github.com/sdxs-go/sdxs/internal/kernels"

// im2colPlan is the baseline the benchmarks compare with: a 3×3, stride-1,
// pad-1 convolution as im2col (in column chunks) followed by kernels.Sgemm.
type im2colPlan struct {
	cin, cout, h, w, chunk int
}

func newIm2col(cin, cout, h, w int) *im2colPlan {
	hw := h * w
	chunk := hw
	if k := 9 * cin; k*chunk > 1<<21 {
		chunk = max(64, (1<<21)/k&^63)
	}
	return &im2colPlan{cin, cout, h, w, min(chunk, hw)}
}

func (q *im2colPlan) scratchSize() int { return 9 * q.cin * q.chunk }

// im2col fills col [9·Cin, n] with the 3×3 patches of the output pixels
// p0 … p0+n−1.
func (q *im2colPlan) im2col(x, col []float32, p0, n int) {
	for r := 0; r < 9*q.cin; r++ {
		ci, ky, kx := r/9, r%9/3, r%3
		dst := col[r*n : (r+1)*n]
		src := x[ci*q.h*q.w : (ci+1)*q.h*q.w]
		y, x0 := p0/q.w, p0%q.w
		for i := 0; i < n; {
			run := min(q.w-x0, n-i)
			d := dst[i : i+run]
			iy := y + ky - 1
			if iy < 0 || iy >= q.h {
				clear(d)
			} else {
				row := src[iy*q.w : (iy+1)*q.w]
				off := x0 + kx - 1 // input column of d[0]
				lo, hi := max(0, -off), min(run, q.w-off)
				if hi <= lo {
					clear(d)
				} else {
					clear(d[:lo])
					copy(d[lo:hi], row[off+lo:off+hi])
					clear(d[hi:])
				}
			}
			i += run
			x0 = 0
			y++
		}
	}
}

func (q *im2colPlan) run(out, x, w, bias, scratch []float32) {
	hw := q.h * q.w
	beta := float32(0)
	if bias != nil {
		for o := 0; o < q.cout; o++ {
			row := out[o*hw : (o+1)*hw]
			for i := range row {
				row[i] = bias[o]
			}
		}
		beta = 1
	}
	k := 9 * q.cin
	for p0 := 0; p0 < hw; p0 += q.chunk {
		n := min(q.chunk, hw-p0)
		col := scratch[:k*n]
		q.im2col(x, col, p0, n)
		kernels.Sgemm(false, false, q.cout, n, k, 1, w, k, col, n, beta, out[p0:], hw)
	}
}

// im2colConv convolves with the baseline (pad 1).
func im2colConv(x, w, bias []float32, cin, cout, h, wd int) []float32 {
	q := newIm2col(cin, cout, h, wd)
	out := make([]float32, cout*h*wd)
	q.run(out, x, w, bias, make([]float32, q.scratchSize()))
	return out
}

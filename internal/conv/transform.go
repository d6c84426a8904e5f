package conv

// The plain-Go input and output transforms. The assembly versions compute
// the same operations in the same order, so their results are identical.

// bt returns Bᵀp for F(4, 3): 4p0 − 5p2 + p4, −4p1 − 4p2 + p3 + p4,
// 4p1 − 4p2 − p3 + p4, −2p1 − p2 + 2p3 + p4, 2p1 − p2 − 2p3 + p4 and
// 4p1 − 5p3 + p5, factored so that every multiplier is a power of two.
func bt(p *[tileIn]float32) (h [tileIn]float32) {
	t1 := p[4] - p[2]
	t2 := p[4] - 4*p[2]
	t3 := p[3] - 4*p[1]
	t4 := 2 * (p[3] - p[1])
	h[0] = 4*(p[0]-p[2]) + t1
	h[1] = t2 + t3
	h[2] = t2 - t3
	h[3] = t1 + t4
	h[4] = t1 - t4
	h[5] = 4*(p[1]-p[3]) + (p[5] - p[3])
	return h
}

// at returns Aᵀm for F(4, 3): m0 + m1 + m2 + m3 + m4, m1 − m2 + 2(m3 − m4),
// m1 + m2 + 4(m3 + m4) and m1 − m2 + 8(m3 − m4) + m5.
func at(m *[tileIn]float32) (q [tileOut]float32) {
	s12 := m[1] + m[2]
	d12 := m[1] - m[2]
	s34 := m[3] + m[4]
	d34 := m[3] - m[4]
	q[0] = (m[0] + s12) + s34
	q[1] = d12 + 2*d34
	q[2] = s12 + 4*s34
	q[3] = (d12 + 8*d34) + m[5]
	return q
}

// inputTransformGo transforms n consecutive tiles of one tile row of one
// channel. plane is the [h, w] channel; tile i reads the 6×6 window whose
// top-left corner is (ys, xs+4i), with zeros outside the plane. Position ξ
// of tile i goes to v[ξ·ldv+i].
func inputTransformGo(v []float32, ldv int, plane []float32, h, w, ys, xs, n int) {
	rowsIn := ys >= 0 && ys+tileIn <= h
	for i := 0; i < n; i++ {
		c := xs + tileOut*i
		var d [tileIn][tileIn]float32
		if rowsIn && c >= 0 && c+tileIn <= w {
			for r := range d {
				copy(d[r][:], plane[(ys+r)*w+c:])
			}
		} else {
			for r := range d {
				y := ys + r
				if y < 0 || y >= h {
					continue
				}
				for k := range d[r] {
					if x := c + k; x >= 0 && x < w {
						d[r][k] = plane[y*w+x]
					}
				}
			}
		}
		var e [tileIn][tileIn]float32
		for r := range d {
			e[r] = bt(&d[r])
		}
		for k := 0; k < tileIn; k++ {
			col := [tileIn]float32{e[0][k], e[1][k], e[2][k], e[3][k], e[4][k], e[5][k]}
			f := bt(&col)
			for r := range f {
				v[(r*tileIn+k)*ldv+i] = f[r]
			}
		}
	}
}

// outputTransformGo inverse-transforms n consecutive tiles of one tile row
// of one channel: tile i is read from m[ξ·ldm+i], and its 4×4 result plus
// bias, v, goes to dst[r·ldd + 4i + c] for the rows r < nrows and the
// columns 4i+c < ncols, through the epilogue ep (epAccumulate and epReLU
// bits): v, or dst + v with epAccumulate, then clamped at zero with epReLU
// (negative values become 0; NaN and −0 are kept, as the assembly's
// max(0, v) does).
func outputTransformGo(dst []float32, ldd int, m []float32, ldm, nrows, ncols, n int, bias float32, ep int) {
	acc, relu := ep&epAccumulate != 0, ep&epReLU != 0
	for i := 0; i < n; i++ {
		var q [tileIn][tileOut]float32
		for r := range q {
			var row [tileIn]float32
			for k := range row {
				row[k] = m[(r*tileIn+k)*ldm+i]
			}
			q[r] = at(&row)
		}
		for c := 0; c < tileOut; c++ {
			x := tileOut*i + c
			if x >= ncols {
				break
			}
			col := [tileIn]float32{q[0][c], q[1][c], q[2][c], q[3][c], q[4][c], q[5][c]}
			y := at(&col)
			for r := 0; r < nrows; r++ {
				v := y[r] + bias
				if acc {
					v = dst[r*ldd+x] + v
				}
				if relu && v < 0 {
					v = 0
				}
				dst[r*ldd+x] = v
			}
		}
	}
}

package kernels

// gemv handles products where C is a single row (m = 1) or a single column
// (n = 1): they are bound by memory, so packing would only add traffic.
func gemv(g *gemmArgs) {
	if g.m == 1 {
		// c[j] = alpha·Σ_p a(p)·op(B)[p][j] + beta·c[j], a(p) = A[0][p].
		c := g.c[:g.n]
		if g.transB {
			// op(B)[p][j] = b[j·ldb + p]: one dot product per column.
			for j := range c {
				s := alpha1Dot(g, g.b[j*g.ldb:j*g.ldb+g.k])
				if g.beta == 0 {
					c[j] = g.alpha * s
				} else {
					c[j] = g.alpha*s + g.beta*c[j]
				}
			}
			return
		}
		scaleMatrix(1, g.n, g.beta, c, g.n)
		for p := 0; p < g.k; p++ {
			av := g.alpha * aElem(g, 0, p)
			if av != 0 {
				Saxpy(av, g.b[p*g.ldb:p*g.ldb+g.n], c)
			}
		}
		return
	}
	// n == 1: c[i] = alpha·Σ_p op(A)[i][p]·b(p) + beta·c[i], b(p) = op(B)[p][0].
	if !g.transA {
		for i := 0; i < g.m; i++ {
			s := alpha1DotB(g, g.a[i*g.lda:i*g.lda+g.k])
			ci := &g.c[i*g.ldc]
			if g.beta == 0 {
				*ci = g.alpha * s
			} else {
				*ci = g.alpha*s + g.beta**ci
			}
		}
		return
	}
	// op(A)[i][p] = a[p·lda + i]: scale C, then add one row of A per p.
	for i := 0; i < g.m; i++ {
		ci := &g.c[i*g.ldc]
		if g.beta == 0 {
			*ci = 0
		} else {
			*ci *= g.beta
		}
	}
	for p := 0; p < g.k; p++ {
		bv := g.alpha * bElem(g, p, 0)
		if bv == 0 {
			continue
		}
		row := g.a[p*g.lda : p*g.lda+g.m]
		if g.ldc == 1 {
			Saxpy(bv, row, g.c[:g.m])
			continue
		}
		for i, v := range row {
			g.c[i*g.ldc] += bv * v
		}
	}
}

// aElem returns op(A)[i][p].
func aElem(g *gemmArgs, i, p int) float32 {
	if g.transA {
		return g.a[p*g.lda+i]
	}
	return g.a[i*g.lda+p]
}

// bElem returns op(B)[p][j].
func bElem(g *gemmArgs, p, j int) float32 {
	if g.transB {
		return g.b[j*g.ldb+p]
	}
	return g.b[p*g.ldb+j]
}

// alpha1Dot returns Σ_p op(A)[0][p]·x[p].
func alpha1Dot(g *gemmArgs, x []float32) float32 {
	if !g.transA {
		return Sdot(g.a[:g.k], x)
	}
	var s float32
	for p, v := range x {
		s += g.a[p*g.lda] * v
	}
	return s
}

// alpha1DotB returns Σ_p x[p]·op(B)[p][0].
func alpha1DotB(g *gemmArgs, x []float32) float32 {
	if g.transB {
		return Sdot(x, g.b[:g.k])
	}
	var s float32
	for p, v := range x {
		s += v * g.b[p*g.ldb]
	}
	return s
}

package kernels

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"
)

// This file holds the bfloat16 products: weights held in memory as bf16 (half the bytes of
// float32), activations rounded to bf16 as they are packed, and float32 accumulation, as
// PyTorch's torch.bfloat16 matmuls do. The micro-kernel computes a 12×32 tile of C from A as
// rows of bf16 pairs (two consecutive k, one dword) broadcast one at a time, and B as panels of
// 32 columns holding for each pair of k the 32 dwords (B[2q][j], B[2q+1][j]): the layout of
// VDPBF16PS, which adds a[2q+1]·b[2q+1] and then a[2q]·b[2q] to each float32 lane (bf16
// products are exact in float32, so only the two additions round). Its plain-Go twin does the
// same operations in the same order with the same rounding, and flushes subnormal results to
// zero as the instruction does.

// Tile and blocking of the bf16 products.
const (
	bfMR = 12  // rows of a tile
	bfNR = 32  // columns of a tile (one B panel)
	bfKC = 256 // pairs of k per block (a 32 KiB B panel block)
	bfMC = 96  // rows per block of A
)

// ToBF16 rounds f to bfloat16 (round to nearest, ties to even, as PyTorch does; NaN stays a
// quiet NaN). Subnormal results become zero of the same sign, as the products read them.
func ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 0x40
	}
	u += 0x7fff + (u>>16)&1
	h := uint16(u >> 16)
	if h&0x7f80 == 0 {
		h &= 0x8000
	}
	return h
}

// FromBF16 returns the float32 value of the bfloat16 h.
func FromBF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// pairOf packs two values (k and k+1) as the bf16 dword the kernel reads.
func pairOf(lo, hi float32) uint32 { return uint32(ToBF16(lo)) | uint32(ToBF16(hi))<<16 }

// BF16Matrix is a float32 matrix converted once to bfloat16 and laid out for GemmBF16: either
// as the left operand (rows of bf16 pairs, for C = W·X) or as the right operand of a product
// by its transpose (panels of 32 rows, for C = X·Wᵀ). It is read-only and safe for concurrent
// use.
type BF16Matrix struct {
	rows, cols int
	kq         int // pairs of k: (cols+1)/2
	left       bool
	data       []uint32
}

// Rows and Cols return the shape of the matrix.
func (w *BF16Matrix) Rows() int { return w.rows }

// Cols returns the number of columns (the k of its products).
func (w *BF16Matrix) Cols() int { return w.cols }

// Bytes returns the memory the bf16 values take.
func (w *BF16Matrix) Bytes() int64 { return int64(len(w.data)) * 4 }

// NewBF16Left converts w [rows×cols, row-major] for C = W·X (GemmBF16Left): rows of pairs,
// padded with zero rows to a multiple of 12.
func NewBF16Left(w []float32, rows, cols int) *BF16Matrix {
	checkBF16("W", w, rows, cols)
	kq := (cols + 1) / 2
	rp := (rows + bfMR - 1) / bfMR * bfMR
	m := &BF16Matrix{rows: rows, cols: cols, kq: kq, left: true, data: make([]uint32, rp*kq)}
	packPairs(m.data, kq, w, rows, cols, cols)
	return m
}

// NewBF16Right converts w [rows×cols, row-major] for C = X·Wᵀ (GemmBF16Right): panels of 32
// rows of W (columns of C), padded with zeros.
func NewBF16Right(w []float32, rows, cols int) *BF16Matrix {
	checkBF16("W", w, rows, cols)
	kq := (cols + 1) / 2
	np := (rows + bfNR - 1) / bfNR
	m := &BF16Matrix{rows: rows, cols: cols, kq: kq, data: make([]uint32, np*kq*bfNR)}
	for p := 0; p < np; p++ {
		panel := m.data[p*kq*bfNR : (p+1)*kq*bfNR]
		for j := 0; j < bfNR && p*bfNR+j < rows; j++ {
			row := w[(p*bfNR+j)*cols : (p*bfNR+j+1)*cols]
			for q := 0; q < kq; q++ {
				var hi float32
				if 2*q+1 < cols {
					hi = row[2*q+1]
				}
				panel[q*bfNR+j] = pairOf(row[2*q], hi)
			}
		}
	}
	return m
}

func checkBF16(name string, s []float32, rows, cols int) {
	if rows < 0 || cols < 0 || len(s) < rows*cols {
		panic(fmt.Sprintf("kernels: bf16: %s has %d elements, need %d×%d", name, len(s), rows, cols))
	}
}

// packPanel writes columns [j0, j0+cols) (cols ≤ 32) of x [k rows, stride ldx] as one B panel:
// for each pair q of rows, 32 dwords (x[2q][j], x[2q+1][j]) rounded to bf16, zero past cols
// and past row k.
func packPanel(panel []uint32, x []float32, ldx, j0, cols, k int) {
	kq := (k + 1) / 2
	q0 := 0
	if useBF16Pack && cols == bfNR && k >= 2 {
		q0 = k / 2
		bf16PackPanelAVX512(&panel[0], &x[j0], ldx, q0)
	}
	for q := q0; q < kq; q++ {
		d := panel[q*bfNR : (q+1)*bfNR]
		lo := x[2*q*ldx+j0 : 2*q*ldx+j0+cols]
		if 2*q+1 < k {
			hi := x[(2*q+1)*ldx+j0 : (2*q+1)*ldx+j0+cols]
			for j := range lo {
				d[j] = pairOf(lo[j], hi[j])
			}
		} else {
			for j := range lo {
				d[j] = pairOf(lo[j], 0)
			}
		}
		clear(d[cols:])
	}
}

// packPairs writes rows [0, rows) of x (stride ldx, cols columns) as bf16 pairs into dst
// (stride kq dwords); rows past rows in dst are left as they are.
func packPairs(dst []uint32, kq int, x []float32, rows, cols, ldx int) {
	for i := 0; i < rows; i++ {
		row := x[i*ldx : i*ldx+cols]
		d := dst[i*kq : (i+1)*kq]
		q0 := 0
		if nb := cols / 32; useBF16Pack && nb > 0 {
			bf16PackRowAVX512(&d[0], &row[0], nb)
			q0 = nb * 16
		}
		for q := q0; q < cols/2; q++ {
			d[q] = pairOf(row[2*q], row[2*q+1])
		}
		if cols%2 == 1 {
			d[kq-1] = pairOf(row[cols-1], 0)
		}
	}
}

// bf16Buffers holds packing buffers between calls.
var bf16Buffers = sync.Pool{New: func() any { return new([]uint32) }}

func getBF16Buffer(n int) *[]uint32 {
	b := bf16Buffers.Get().(*[]uint32)
	if cap(*b) < n {
		*b = make([]uint32, n)
	}
	*b = (*b)[:n]
	return b
}

// GemmBF16Left computes C = W·X (accumulate false) or C += W·X (accumulate true), where W
// [m×k] is bf16, X [k×n] is float32 with row stride ldx (rounded to bf16 as it is packed) and
// C [m×n] has row stride ldc. Products accumulate in float32.
func GemmBF16Left(w *BF16Matrix, x []float32, n, ldx int, c []float32, ldc int, accumulate bool) {
	if !w.left {
		panic("kernels: GemmBF16Left: the matrix is laid out for GemmBF16Right")
	}
	m, k := w.rows, w.cols
	if n < 0 || ldx < n || ldc < n || (k > 0 && n > 0 && len(x) < (k-1)*ldx+n) || (m > 0 && n > 0 && len(c) < (m-1)*ldc+n) {
		panic(fmt.Sprintf("kernels: GemmBF16Left: X (%d values, stride %d) or C (%d values, stride %d) too small for %d×%d·%d×%d", len(x), ldx, len(c), ldc, m, k, k, n))
	}
	if m == 0 || n == 0 {
		return
	}
	kq := w.kq
	np := (n + bfNR - 1) / bfNR
	buf := getBF16Buffer(np * kq * bfNR)
	b := *buf
	// Pack X into panels of 32 columns, pairs of rows interleaved.
	parallelRange(np, func(p0, p1 int) {
		for p := p0; p < p1; p++ {
			packPanel(b[p*kq*bfNR:(p+1)*kq*bfNR], x, ldx, p*bfNR, min(bfNR, n-p*bfNR), k)
		}
	})
	gemmBF16(m, n, kq, w.data, kq, b, c, ldc, accumulate)
	bf16Buffers.Put(buf)
}

// GemmBF16Right computes C = X·Wᵀ (accumulate false) or C += X·Wᵀ (accumulate true), where X
// [m×k] is float32 with row stride ldx (rounded to bf16 as it is packed), W [n×k] is bf16 and
// C [m×n] has row stride ldc. Products accumulate in float32.
func GemmBF16Right(x []float32, m, ldx int, w *BF16Matrix, c []float32, ldc int, accumulate bool) {
	if w.left {
		panic("kernels: GemmBF16Right: the matrix is laid out for GemmBF16Left")
	}
	n, k := w.rows, w.cols
	if m < 0 || ldx < k || ldc < n || (m > 0 && k > 0 && len(x) < (m-1)*ldx+k) || (m > 0 && n > 0 && len(c) < (m-1)*ldc+n) {
		panic(fmt.Sprintf("kernels: GemmBF16Right: X (%d values, stride %d) or C (%d values, stride %d) too small for %d×%d·(%d×%d)ᵀ", len(x), ldx, len(c), ldc, m, k, n, k))
	}
	if m == 0 || n == 0 {
		return
	}
	kq := w.kq
	mp := (m + bfMR - 1) / bfMR * bfMR
	buf := getBF16Buffer(mp * kq)
	a := *buf
	parallelRange(m, func(i0, i1 int) {
		packPairs(a[i0*kq:], kq, x[i0*ldx:], i1-i0, k, ldx)
	})
	clear(a[m*kq:])
	gemmBF16(m, n, kq, a, kq, w.data, c, ldc, accumulate)
	bf16Buffers.Put(buf)
}

// parallelRange splits [0, n) among up to GOMAXPROCS goroutines.
func parallelRange(n int, fn func(lo, hi int)) {
	parallelRangeN(n, runtime.GOMAXPROCS(0), fn)
}

// parallelRangeN splits [0, n) among up to t goroutines.
func parallelRangeN(n, t int, fn func(lo, hi int)) {
	t = min(t, maxThreads, n)
	if t <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	for g := 0; g < t; g++ {
		lo, hi := g*n/t, (g+1)*n/t
		if lo == hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// gemmBF16 computes C (=, or += when accumulate) A·B for A as rows of pairs (stride lda
// dwords, rows readable up to a multiple of 12) and B as panels of 32 columns (kq·32 dwords
// each). The work is split by panels of B, or by rows of A when there are few panels.
func gemmBF16(m, n, kq int, a []uint32, lda int, b []uint32, c []float32, ldc int, accumulate bool) {
	if kq == 0 {
		if !accumulate {
			for i := 0; i < m; i++ {
				clear(c[i*ldc : i*ldc+n])
			}
		}
		return
	}
	if !useBF16Asm && bf16Widen {
		gemmBF16Widened(m, n, kq, a, lda, b, c, ldc, accumulate)
		return
	}
	np := (n + bfNR - 1) / bfNR
	mt := (m + bfMR - 1) / bfMR
	threads := min(runtime.GOMAXPROCS(0), maxThreads)
	if float64(m)*float64(n)*float64(kq) < 1<<19 {
		threads = 1
	}
	if np >= 2*threads || np >= mt {
		parallelRangeN(np, threads, func(p0, p1 int) {
			bf16Block(0, mt, p0, p1, m, n, kq, a, lda, b, c, ldc, accumulate)
		})
		return
	}
	parallelRangeN(mt, threads, func(t0, t1 int) {
		bf16Block(t0, t1, 0, np, m, n, kq, a, lda, b, c, ldc, accumulate)
	})
}

// bf16Block computes the tiles of row tiles [t0, t1) and panels [p0, p1).
func bf16Block(t0, t1, p0, p1, m, n, kq int, a []uint32, lda int, b []uint32, c []float32, ldc int, accumulate bool) {
	var tmp [bfMR * bfNR]float32
	for q0 := 0; q0 < kq; q0 += bfKC {
		kb := min(bfKC, kq-q0)
		acc := accumulate || q0 > 0
		for tb := t0; tb < t1; tb += bfMC / bfMR {
			te := min(t1, tb+bfMC/bfMR)
			for p := p0; p < p1; p++ {
				bp := b[p*kq*bfNR+q0*bfNR:]
				j0 := p * bfNR
				cols := min(bfNR, n-j0)
				for t := tb; t < te; t++ {
					i0 := t * bfMR
					rows := min(bfMR, m-i0)
					ap := a[i0*lda+q0:]
					if rows == bfMR && cols == bfNR {
						bf16Tile(kb, ap, lda, bp, c[i0*ldc+j0:], ldc, acc)
						continue
					}
					bf16Tile(kb, ap, lda, bp, tmp[:], bfNR, false)
					for i := 0; i < rows; i++ {
						dst := c[(i0+i)*ldc+j0 : (i0+i)*ldc+j0+cols]
						src := tmp[i*bfNR : i*bfNR+cols]
						if acc {
							for j, v := range src {
								dst[j] += v
							}
						} else {
							copy(dst, src)
						}
					}
				}
			}
		}
	}
}

// bf16Widen selects, on CPUs without AVX512_BF16 that have the float32 assembly kernels, the
// fallback that widens the bf16 operands to float32 block by block and multiplies them with
// Sgemm: the same products of bf16 values, summed in float32 in another order.
var bf16Widen = activeKernel.name != goKernel.name

// bf16WidenK is the depth (in pairs of k) of the blocks gemmBF16Widened widens at once.
const bf16WidenK = 256

// gemmBF16Widened is gemmBF16 on the float32 kernels: each block of k is widened to float32 (A
// row-major, B row-major) and multiplied by Sgemm.
func gemmBF16Widened(m, n, kq int, a []uint32, lda int, b []uint32, c []float32, ldc int, accumulate bool) {
	np := (n + bfNR - 1) / bfNR
	ka := 2 * min(kq, bf16WidenK)
	buf := getWidenBuffer((m + n) * ka)
	defer widenBuffers.Put(buf)
	wa, wb := (*buf)[:m*ka], (*buf)[m*ka:]
	for q0 := 0; q0 < kq; q0 += bf16WidenK {
		kb := min(bf16WidenK, kq-q0)
		k := 2 * kb
		parallelRange(m, func(i0, i1 int) {
			for i := i0; i < i1; i++ {
				row := a[i*lda+q0 : i*lda+q0+kb]
				dst := wa[i*k : (i+1)*k]
				for q, v := range row {
					dst[2*q] = math.Float32frombits(v << 16)
					dst[2*q+1] = math.Float32frombits(v & 0xffff0000)
				}
			}
		})
		parallelRange(np, func(p0, p1 int) {
			for p := p0; p < p1; p++ {
				j0 := p * bfNR
				cols := min(bfNR, n-j0)
				panel := b[p*kq*bfNR+q0*bfNR:]
				for q := 0; q < kb; q++ {
					src := panel[q*bfNR : q*bfNR+cols]
					lo := wb[2*q*n+j0 : 2*q*n+j0+cols]
					hi := wb[(2*q+1)*n+j0 : (2*q+1)*n+j0+cols]
					for j, v := range src {
						lo[j] = math.Float32frombits(v << 16)
						hi[j] = math.Float32frombits(v & 0xffff0000)
					}
				}
			}
		})
		var beta float32
		if accumulate || q0 > 0 {
			beta = 1
		}
		Sgemm(false, false, m, n, k, 1, wa, k, wb, n, beta, c, ldc)
	}
}

// widenBuffers holds the float32 blocks of gemmBF16Widened between calls.
var widenBuffers = sync.Pool{New: func() any { return new([]float32) }}

func getWidenBuffer(n int) *[]float32 {
	b := widenBuffers.Get().(*[]float32)
	if cap(*b) < n {
		*b = make([]float32, n)
	}
	*b = (*b)[:n]
	return b
}

// bf16Tile runs the micro-kernel on one full 12×32 tile.
func bf16Tile(kq int, a []uint32, lda int, b []uint32, c []float32, ldc int, accumulate bool) {
	mode := 0
	if accumulate {
		mode = 1
	}
	if useBF16Asm {
		bf16Kernel12x32AVX512(kq, unsafe.SliceData(a), lda, unsafe.SliceData(b), unsafe.SliceData(c), ldc, mode)
		return
	}
	bf16KernelGo(kq, a, lda, b, c, ldc, mode)
}

// bf16KernelGo is the plain-Go twin of bf16Kernel12x32AVX512: the same products, additions and
// rounding in the same order.
func bf16KernelGo(kq int, a []uint32, lda int, b []uint32, c []float32, ldc int, mode int) {
	for i := 0; i < bfMR; i++ {
		row := a[i*lda:]
		var acc [bfNR]float32
		for q := 0; q < kq; q++ {
			av := row[q]
			alo, ahi := math.Float32frombits(av<<16), math.Float32frombits(av&0xffff0000)
			bq := b[q*bfNR : (q+1)*bfNR]
			for j, bv := range bq {
				blo, bhi := math.Float32frombits(bv<<16), math.Float32frombits(bv&0xffff0000)
				s := ftz(acc[j] + ahi*bhi)
				acc[j] = ftz(s + alo*blo)
			}
		}
		dst := c[i*ldc : i*ldc+bfNR]
		if mode == 1 {
			for j := range dst {
				dst[j] += acc[j]
			}
		} else {
			copy(dst, acc[:])
		}
	}
}

// ftz flushes a subnormal float32 to zero of the same sign.
func ftz(x float32) float32 {
	u := math.Float32bits(x)
	if u&0x7f800000 == 0 {
		return math.Float32frombits(u & 0x80000000)
	}
	return x
}

// BF16Kernel names what runs the bf16 products: "avx512_bf16" (VDPBF16PS), "widen" (bf16
// widened to float32 for the float32 assembly kernels, on CPUs without AVX512_BF16) or "go"
// (the plain-Go twin of the AVX512_BF16 kernel, without assembly).
func BF16Kernel() string {
	switch {
	case useBF16Asm:
		return "avx512_bf16"
	case bf16Widen:
		return "widen"
	}
	return "go"
}

// PackRight packs w [rows×cols, row stride ldw] into m for GemmBF16Right (C = X·wᵀ), as
// NewBF16Right does, reusing m's storage: for products of two activations, such as attention's
// queries by keys. m must not be in use by a product meanwhile.
func (m *BF16Matrix) PackRight(w []float32, rows, cols, ldw int) {
	if rows < 0 || cols < 0 || ldw < cols || (rows > 0 && len(w) < (rows-1)*ldw+cols) {
		panic(fmt.Sprintf("kernels: PackRight: %d values (stride %d) for %d×%d", len(w), ldw, rows, cols))
	}
	kq := (cols + 1) / 2
	np := (rows + bfNR - 1) / bfNR
	m.resize(rows, cols, np*kq*bfNR)
	// Each panel: its rows as pairs (vectorised), then the 32 rows' dwords interleaved.
	parallelRange(np, func(p0, p1 int) {
		buf := getBF16Buffer(bfNR * kq)
		tmp := *buf
		for p := p0; p < p1; p++ {
			n := min(bfNR, rows-p*bfNR)
			packPairs(tmp, kq, w[p*bfNR*ldw:], n, cols, ldw)
			panel := m.data[p*kq*bfNR : (p+1)*kq*bfNR]
			for q := 0; q < kq; q++ {
				d := panel[q*bfNR : (q+1)*bfNR]
				for j := 0; j < n; j++ {
					d[j] = tmp[j*kq+q]
				}
				clear(d[n:])
			}
		}
		bf16Buffers.Put(buf)
	})
}

// PackRightTransposed packs the transpose of x [k×n, row stride ldx] into m for GemmBF16Right,
// reusing m's storage: m then stands for W = xᵀ [n×k], so that GemmBF16Right gives C = X·x,
// as attention's probabilities by values. m must not be in use by a product meanwhile.
func (m *BF16Matrix) PackRightTransposed(x []float32, k, n, ldx int) {
	if k < 0 || n < 0 || ldx < n || (k > 0 && len(x) < (k-1)*ldx+n) {
		panic(fmt.Sprintf("kernels: PackRightTransposed: %d values (stride %d) for %d×%d", len(x), ldx, k, n))
	}
	kq := (k + 1) / 2
	np := (n + bfNR - 1) / bfNR
	m.resize(n, k, np*kq*bfNR)
	parallelRange(np, func(p0, p1 int) {
		for p := p0; p < p1; p++ {
			packPanel(m.data[p*kq*bfNR:(p+1)*kq*bfNR], x, ldx, p*bfNR, min(bfNR, n-p*bfNR), k)
		}
	})
}

// resize makes m a right operand of rows×cols in n dwords, keeping its storage when it is
// large enough.
func (m *BF16Matrix) resize(rows, cols, n int) {
	m.rows, m.cols, m.kq, m.left = rows, cols, (cols+1)/2, false
	if cap(m.data) < n {
		m.data = make([]uint32, n)
	}
	m.data = m.data[:n]
}

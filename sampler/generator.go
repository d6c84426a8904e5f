package sampler

import (
	"math"
)

// Mersenne Twister (MT19937) parameters, as in Matsumoto & Nishimura's reference.
const (
	mtN         = 624
	mtM         = 397
	mtMatrixA   = 0x9908b0df
	mtUpperMask = 0x80000000
	mtLowerMask = 0x7fffffff
)

// Generator reproduces the random streams of PyTorch's CPU generator (PyTorch 1.13):
// NewGenerator(seed) corresponds to torch.Generator("cpu").manual_seed(seed), and Randn to
// torch.randn(shape, generator=g) with dtype float32. Consecutive calls continue the same stream,
// including the second Box–Muller value PyTorch caches between small (fewer than 16 values)
// draws.
//
// Draws of 16 or more values emulate PyTorch's AVX2 kernel (normal_fill with its float32
// Cephes-style log, sin and cos, see cephes.go) and match it bit for bit on the reference
// fixtures; smaller draws use float64 Box–Muller as PyTorch does and match as well.
//
// A Generator is not safe for concurrent use; it is cheap to create (a few microseconds), so make
// one per request.
type Generator struct {
	seed  uint64
	state [mtN]uint32
	next  int // index of the next state word to temper; mtN means "regenerate first"

	// PyTorch's CPUGeneratorImpl keeps the second value of the double-precision Box–Muller
	// pair used by the scalar normal path.
	cachedNormal    float64
	hasCachedNormal bool
}

// NewGenerator returns a generator seeded as torch.Generator("cpu").manual_seed(seed). As in
// PyTorch, the Mersenne Twister is initialised from the low 32 bits of the seed; Seed still
// reports the full value.
func NewGenerator(seed uint64) *Generator {
	g := &Generator{}
	g.ManualSeed(seed)
	return g
}

// ManualSeed re-seeds the generator (and drops any cached normal value), as
// Generator.manual_seed does in PyTorch.
func (g *Generator) ManualSeed(seed uint64) {
	g.seed = seed
	g.state[0] = uint32(seed) // PyTorch keeps only the low 32 bits for the twister
	for i := 1; i < mtN; i++ {
		prev := g.state[i-1]
		g.state[i] = 1812433253*(prev^(prev>>30)) + uint32(i)
	}
	g.next = mtN
	g.cachedNormal, g.hasCachedNormal = 0, false
}

// Seed returns the seed the generator was last seeded with (torch's initial_seed()).
func (g *Generator) Seed() uint64 { return g.seed }

// twist regenerates the whole state block.
func (g *Generator) twist() {
	s := &g.state
	mix := func(i, j, k int) {
		y := (s[i] & mtUpperMask) | (s[j] & mtLowerMask)
		v := s[k] ^ (y >> 1)
		if y&1 != 0 {
			v ^= mtMatrixA
		}
		s[i] = v
	}
	i := 0
	for ; i < mtN-mtM; i++ {
		mix(i, i+1, i+mtM)
	}
	for ; i < mtN-1; i++ {
		mix(i, i+1, i+mtM-mtN)
	}
	mix(mtN-1, 0, mtM-1)
	g.next = 0
}

// Uint32 returns the next 32-bit output of the Mersenne Twister (PyTorch's random()).
func (g *Generator) Uint32() uint32 {
	if g.next >= mtN {
		g.twist()
	}
	y := g.state[g.next]
	g.next++
	y ^= y >> 11
	y ^= (y << 7) & 0x9d2c5680
	y ^= (y << 15) & 0xefc60000
	y ^= y >> 18
	return y
}

// Uint64 returns two consecutive 32-bit outputs joined, the first as the high half (PyTorch's
// random64()).
func (g *Generator) Uint64() uint64 {
	hi := g.Uint32()
	lo := g.Uint32()
	return uint64(hi)<<32 | uint64(lo)
}

// uniformFloat32 is at::uniform_real_distribution<float>(0, 1): the low 24 bits of one 32-bit
// output, scaled to [0, 1).
func (g *Generator) uniformFloat32() float32 {
	return float32(g.Uint32()&(1<<24-1)) * (1.0 / (1 << 24))
}

// uniformFloat64 is at::uniform_real_distribution<double>(0, 1): the low 53 bits of one 64-bit
// output, scaled to [0, 1).
func (g *Generator) uniformFloat64() float64 {
	return float64(g.Uint64()&(1<<53-1)) * (1.0 / (1 << 53))
}

// normalFloat64 is at::normal_distribution<double>(0, 1): Box–Muller on two double uniforms,
// returning the cosine value and caching the sine value for the next call.
func (g *Generator) normalFloat64() float64 {
	if g.hasCachedNormal {
		g.hasCachedNormal = false
		return g.cachedNormal
	}
	a := g.uniformFloat64() // angle
	b := g.uniformFloat64() // radius
	r := math.Sqrt(-2 * math.Log1p(-b))
	theta := 2 * math.Pi * a
	g.cachedNormal, g.hasCachedNormal = r*math.Sin(theta), true
	return r * math.Cos(theta)
}

// Randn draws a float32 tensor of the given shape from the standard normal distribution, as
// torch.randn(shape, generator=g) does (row-major, contiguous). An empty shape means a scalar
// (one value). A shape with a negative dimension, or too large to allocate, draws nothing and
// returns nil (a valid shape always gives a non-nil slice).
func (g *Generator) Randn(shape ...int) []float32 {
	n := 1
	for _, d := range shape {
		if d < 0 || (d != 0 && n > math.MaxInt/4/d) {
			return nil
		}
		n *= d
	}
	dst := make([]float32, n)
	g.RandnInto(dst)
	return dst
}

// RandnInto fills dst with standard normal values exactly as Randn(len(dst)) would, without
// allocating. The stream consumed depends only on len(dst), not on the tensor's shape.
func (g *Generator) RandnInto(dst []float32) {
	n := len(dst)
	if n == 0 {
		return
	}
	if n < 16 {
		// PyTorch's serial path: one double normal per element, narrowed to float32.
		for i := range dst {
			dst[i] = float32(g.normalFloat64())
		}
		return
	}
	// PyTorch's normal_fill: every element first receives a float uniform, then blocks of 16
	// are transformed in place (Box–Muller, first half radius, second half angle). When the size
	// is not a multiple of 16, the last 16 values are drawn again and transformed again.
	for i := range dst {
		dst[i] = g.uniformFloat32()
	}
	for i := 0; i+16 <= n; i += 16 {
		boxMuller16(dst[i : i+16 : i+16])
	}
	if n%16 != 0 {
		tail := dst[n-16:]
		for i := range tail {
			tail[i] = g.uniformFloat32()
		}
		boxMuller16(tail)
	}
}

// boxMuller16 turns 16 uniforms in [0, 1) into 16 normals as PyTorch's AVX2 normal_fill_16 does,
// in float32 arithmetic: u[j] gives the radius and u[j+8] the angle of the pair (j, j+8).
func boxMuller16(d []float32) {
	_ = d[15]
	for j := 0; j < 8; j++ {
		u1 := 1 - d[j] // (0, 1], exact
		u2 := d[j+8]
		radius := float32(math.Sqrt(float64(mul32(-2, logCephes32(u1)))))
		theta := mul32(cTwoPi32, u2)
		s, c := sincosCephes32(theta)
		d[j] = mul32(radius, c)
		d[j+8] = mul32(radius, s)
	}
}

package nn

import "github.com/sdxs-go/sdxs/internal/conv"

// The Winograd policy.
//
// A 3×3, stride-1 convolution with padding 0 or 1 runs as Winograd F(4×4, 3×3) (conv package)
// instead of im2col + SGEMM when
//
//   - it has at least winogradMinTiles 4×4 output tiles (the 64×64 latent level of a 512²
//     picture) and cin·cout ≤ winogradMaxWeights: always, as these layers gain the most per byte;
//   - or it has at least winogradBudgetMinTiles tiles (the 32×32 level at 512²) and the extra
//     memory of its transformed weights still fits the parameters' Winograd budget
//     (SetWinogradBudget). A layer's grant is charged once, by its full name, in the order
//     the layers are first built, and kept for every later build over the same parameters;
//   - or, where the CPU runs conv's lazy mode on its kernels (conv.LazyFast), it has at least
//     winogradBudgetMinTiles tiles and the budget refused it, or it is an always-Winograd layer
//     above, or it has at least lazyMinTiles tiles (the 16×16 level): then
//     it keeps its weight as 9 taps a pair (float32, or bf16 in bf16 mode) and transforms them
//     on every run, at no memory cost and 0–20 % slower than with transformed weights held in
//     memory (BenchmarkLazy in internal/conv).
//
// Why a budget: the transformed weights are 36 floats per (cout, cin) pair against the 9 of
// the weight they replace, so Winograd's 3.5–4.7× per layer at 32×32 is paid with 4× the
// layer's weight memory (+490 MB for the whole 32×32 level of the DreamShaper UNet in fp32).
// The time saved per byte is the same for every layer of one level (time and memory both
// grow as cin·cout), and larger at larger levels, so a budget spent level by level from the
// top buys the most time. Without the lazy mode, the 16×16 level (16 tiles) is left to im2col.
const (
	winogradMinTiles       = 256
	winogradMaxWeights     = 1024 * 1024
	winogradBudgetMinTiles = 64
	lazyMinTiles           = 16
)

// Default Winograd budgets, in bytes of memory beyond what the layer's weights would take
// as im2col weights. A layer that can run as lazy Winograd (conv.LazyFast, and a plan that goes
// lazy) does so at the same speed (BENCHMARKS.md: DreamShaper's fp32 UNet 0.61–0.62 s with 0
// or 128 MiB), so the default budget does not grant it transformed weights. Elsewhere, in fp32
// mode, 128 MiB: DreamShaper stays within 2.2 GiB of peak RSS. In bf16 mode 0: the transformed
// weights stay float32 (36·4 bytes a pair against bf16's 9·2), and bf16 mode's memory target is
// tighter.
const (
	DefaultWinogradBudgetFP32 int64 = 128 << 20
	DefaultWinogradBudgetBF16 int64 = 0
)

// SetWinogradBudget sets how many bytes of extra memory the graphs built over p may spend on
// Winograd-transformed weights beyond the 64×64 latent level (see the Winograd policy in
// winograd_policy.go); a negative budget restores the precision's default. Set it before
// the first build: layers already granted keep their grant. An overlay shares its parent's.
func (p *Params) SetWinogradBudget(bytes int64) {
	if p.over != nil {
		return
	}
	p.mu.Lock()
	p.winoBudget, p.winoBudgetSet = bytes, bytes >= 0
	p.mu.Unlock()
}

// WinogradBytes returns the extra bytes granted so far under the Winograd budget.
func (p *Params) WinogradBytes() int64 {
	if p.over != nil {
		return p.over.parent.WinogradBytes()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.winoSpent
}

// winogradGrant reports whether the layer name may run as Winograd under the budget, charging
// extra bytes the first time it is granted; lazy says whether it could run lazily instead.
func (p *Params) winogradGrant(name string, extra int64, lazy bool) bool {
	if p.over != nil {
		return p.over.parent.winogradGrant(name, extra, lazy)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if g, ok := p.winoGrants[name]; ok {
		return g
	}
	budget := p.winoBudget
	if !p.winoBudgetSet {
		budget = DefaultWinogradBudgetFP32
		if p.precision == BF16 || lazy {
			budget = DefaultWinogradBudgetBF16
		}
	}
	g := p.winoSpent+extra <= budget
	if g {
		p.winoSpent += extra
	}
	if p.winoGrants == nil {
		p.winoGrants = make(map[string]bool)
	}
	p.winoGrants[name] = g
	return g
}

// winograd returns the Winograd plan of the convolution name (full path) of a [cin, h, w] input
// by the policy above, or nil for im2col. Where the CPU runs the lazy mode of internal/conv on
// its kernels (conv.LazyFast), a layer that would be Winograd only if granted memory runs lazily
// instead when the grant is refused (its weights then stay 9 taps a pair, float32 or bf16), and
// the layers always granted run lazily too, since they cost no memory that way.
func (b *Builder) winograd(name string, cin, cout, h, w, k, stride, pad, ho, wo int) *conv.Winograd {
	if k != 3 || stride != 1 || pad > 1 {
		return nil
	}
	bf16 := b.st.params.Precision() == BF16
	var lazy *conv.Winograd
	if conv.LazyFast() && !b.st.params.lazyDisabled() {
		if p := conv.NewWinogradLazy(cin, cout, h, w, pad, bf16); p.Lazy() {
			lazy = p
		}
	}
	tiles := ((ho + 3) / 4) * ((wo + 3) / 4)
	if tiles >= winogradMinTiles && cin*cout <= winogradMaxWeights {
		if lazy != nil {
			return lazy
		}
		return conv.NewWinogradPad(cin, cout, h, w, pad)
	}
	if tiles < winogradBudgetMinTiles {
		// The 16×16 level: lazy Winograd beats im2col there, float32 (1.3× a layer) and bf16
		// (7–10 % of the bf16 UNet; BENCHMARKS.md).
		if lazy != nil && tiles >= lazyMinTiles {
			return lazy
		}
		return nil
	}
	// Extra bytes: 36 float32 per pair, less what the weight would take otherwise.
	per := int64(36*4 - 9*4)
	if bf16 {
		per = 36*4 - 9*2
	}
	if b.st.params.winogradGrant(name, per*int64(cin)*int64(cout), lazy != nil) {
		return conv.NewWinogradPad(cin, cout, h, w, pad)
	}
	return lazy
}

// lazyDisabled reports whether the lazy Winograd mode is turned off for these parameters.
func (p *Params) lazyDisabled() bool {
	if p.over != nil {
		return p.over.parent.lazyDisabled()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lazyOff
}

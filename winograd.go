package sdxs

// WithWinogradBudget sets how many bytes of extra memory the UNet may spend on
// Winograd-transformed weights held in memory for its 3×3 convolutions below the 64×64 latent
// level. A transformed weight takes 4× the memory of a float32 weight (8× a bf16 one); layers
// are granted in the order they are built until the budget is spent. On CPUs with AVX-512 the
// layers not granted (and the 64×64 level's, and the 16×16 level's) run as Winograd too, but
// lazily: they keep their 3×3 weights and transform them on every run, at no memory cost and
// 0–20 % slower per layer (as fast over the whole UNet); elsewhere they run as im2col. A
// negative budget means the default: 0 in bf16 mode and where the lazy mode runs, else 128 MiB
// (see BENCHMARKS.md). With New, it applies to the given UNet before its first build.
func WithWinogradBudget(bytes int64) Option {
	return func(o *loadOptions) { o.winoBudget, o.winoBudgetSet = bytes, true }
}

// setWinogradBudget applies WithWinogradBudget, if given, to the UNet's parameters.
func (p *Pipeline) setWinogradBudget(o *loadOptions) {
	if o.winoBudgetSet {
		p.unet.Params().SetWinogradBudget(o.winoBudget)
	}
}

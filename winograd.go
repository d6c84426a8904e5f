package sdxs

// WithWinogradBudget sets how many bytes of extra memory the UNet may spend on
// Winograd-transformed weights for its 3×3 convolutions below the 64×64 latent level (those
// at 64×64 always run as Winograd). A transformed weight takes 4× the memory of a float32
// weight (8× a bf16 one) and runs the layer 3.5–4.7× faster; layers are granted in the order
// they are built until the budget is spent. A negative budget means the default: 128 MiB in
// fp32 mode (keeping the DreamShaper txt2img process near 2.2 GiB of peak RSS), 0 in bf16
// mode (see BENCHMARKS.md). With New, it applies to the given UNet before its first build.
func WithWinogradBudget(bytes int64) Option {
	return func(o *loadOptions) { o.winoBudget, o.winoBudgetSet = bytes, true }
}

// setWinogradBudget applies WithWinogradBudget, if given, to the UNet's parameters.
func (p *Pipeline) setWinogradBudget(o *loadOptions) {
	if o.winoBudgetSet {
		p.unet.Params().SetWinogradBudget(o.winoBudget)
	}
}

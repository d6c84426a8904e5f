package sdxs

// WithVAE chooses the decoder: "tiny" (TAESD, vae/, the default) or "large" (the KL decoder,
// vae_large/). For now it only decides whether Load fetches vae_large/ from the hub; decoding
// with it belongs to the KL decoder.
func WithVAE(vae string) Option {
	return func(o *loadOptions) { o.vae = vae }
}

// Package sampler holds the two numerical pieces of the diffusion loop that sit outside the
// networks: the initial noise and the scheduler.
//
// Generator reproduces PyTorch's CPU random number generator (torch.Generator("cpu")
// .manual_seed(seed) followed by torch.randn(shape) in float32, PyTorch 1.13 semantics): the same
// seed gives the same noise tensor, so a prompt and seed produce the picture diffusers produces.
//
// Euler is diffusers' EulerDiscreteScheduler (s_churn = 0): its sigma table, timestep spacings
// ("linspace", "leading", "trailing"), input scaling and the Euler step for "epsilon",
// "v_prediction" and "sample" prediction types. It follows diffusers' float32 / float64 casts so
// that, for example, InitNoiseSigma of the SDXS configuration is exactly 14.614645.
//
// A one-step SDXS generation is:
//
//	g := sampler.NewGenerator(seed)
//	noise := g.Randn(1, 4, h/8, w/8)
//	s, _ := sampler.New(cfg)
//	_ = s.SetTimesteps(1)
//	latents := s.InitLatents(noise)                           // noise × InitNoiseSigma, in place
//	input, err := s.ScaleModelInput(slices.Clone(latents), 0) // latents / sqrt(σ²+1)
//	eps := unet(input, s.Timesteps()[0])
//	latents, _, err = s.Step(eps, latents, 0)                 // what diffusers' pipeline decodes
//
// With the SDXS scheduler configuration these reproduce the reference fixtures bit for bit
// (noise, UNet input and the stepped latents).
package sampler

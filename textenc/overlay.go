package textenc

import "github.com/sdxs-go/sdxs/internal/nn"

// WithWeights returns an encoder that shares m's config and weights except the named weights
// ("text_model.encoder.layers.0.self_attn.q_proj.weight"), which take the values fn computes
// from m's on first use (such as a LoRA update merged in). The new encoder builds its own graph,
// kept in m's program cache (Drop removes it), and holds only the replaced weights. m is
// unaffected.
func (m *Model) WithWeights(names []string, fn func(name string, shape []int, base []float32) ([]float32, error)) *Model {
	return m.derive(m.params.Overlay(names, nn.Override(fn)))
}

// WithLowRank returns an encoder that shares m's config and weights and whose graph adds to
// each layer named in branches ("text_model.encoder.layers.0.self_attn.q_proj") its low-rank
// updates as unfused branches, kept in m's program cache (Drop removes it). m is unaffected.
func (m *Model) WithLowRank(branches map[string][]nn.LowRank) *Model {
	return m.derive(m.params.WithLowRank(branches))
}

// derive returns an encoder like m over other parameters, sharing m's program cache.
func (m *Model) derive(params *nn.Params) *Model {
	d := &Model{cfg: m.cfg, params: params}
	d.runner = nn.NewRunner("textenc", params, d.build)
	d.runner.SetCache(m.runner.Cache())
	return d
}

// Drop removes the encoder's compiled graphs from its program cache, for an encoder from
// WithWeights or WithLowRank that will not be used again. Runs in progress finish normally.
func (m *Model) Drop() { m.runner.Drop() }

// WeightShape returns the shape of the weight name and whether the model's weights have it.
func (m *Model) WeightShape(name string) ([]int, bool) { return m.params.Shape(name) }

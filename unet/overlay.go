package unet

import "github.com/sdxs-go/sdxs/internal/nn"

// WithWeights returns a model that shares m's config and weights except the named weights
// (full names, "down_blocks.1.resnets.0.conv1.weight"), which take the values fn computes from
// m's on first use (such as a LoRA update merged in). The new model builds its own graphs, kept
// in m's program cache (Drop removes them); it holds only the replaced weights and what derives
// from them. m is unaffected.
func (m *Model) WithWeights(names []string, fn func(name string, shape []int, base []float32) ([]float32, error)) *Model {
	return m.derive(m.runner.Params().Overlay(names, nn.Override(fn)))
}

// WithLowRank returns a model that shares m's config and weights and whose graphs add to each
// layer named in branches ("down_blocks.1.resnets.0.conv1") its low-rank updates as unfused
// branches (such as a LoRA applied without merging). Its graphs are kept in m's program cache
// (Drop removes them). m is unaffected.
func (m *Model) WithLowRank(branches map[string][]nn.LowRank) *Model {
	return m.derive(m.runner.Params().WithLowRank(branches))
}

// derive returns a model like m over other parameters, sharing m's program cache.
func (m *Model) derive(params *nn.Params) *Model {
	d := &Model{cfg: m.cfg}
	d.runner = nn.NewRunner("unet", params, d.build)
	d.runner.SetCache(m.runner.Cache())
	return d
}

// Drop removes the model's compiled graphs from its program cache, for a model from WithWeights
// or WithLowRank that will not be used again. Runs in progress finish normally.
func (m *Model) Drop() { m.runner.Drop() }

// WeightShape returns the shape of the weight name and whether the model's weights have it.
func (m *Model) WeightShape(name string) ([]int, bool) { return m.runner.Params().Shape(name) }

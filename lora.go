package sdxs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/textenc"
	"github.com/sdxs-go/sdxs/unet"
	"github.com/sdxs-go/sdxs/weights/lora"
)

// LoRA applies a LoRA adapter to one request.
type LoRA struct {
	// Adapter is the adapter, from Pipeline.LoadLoRA (or lora.Load; it is then checked
	// against the pipeline on first use).
	Adapter *lora.Adapter
	// Scale multiplies the adapter's update: W + Scale·(alpha/r)·B·A. Zero means 1, the
	// adapter as trained (leave an adapter out to turn it off).
	Scale float64
}

// LoRAOption adjusts Pipeline.LoadLoRA.
type LoRAOption func(*loraOptions)

type loraOptions struct {
	lenient bool
}

// LenientLoRA makes LoadLoRA skip the layers of an adapter that the pipeline's models do not
// have, instead of failing: each skipped layer is logged with slog.Warn and listed in the
// returned adapter's Skipped. (An SD 1.5 LoRA on the pruned SDXS UNet targets layers SDXS
// removed.) Layers that exist with another shape are still an error.
func LenientLoRA() LoRAOption { return func(o *loraOptions) { o.lenient = true } }

// WithLoRACache sets how many sets of adapters (with their scales) keep their merged weights
// and compiled graphs between requests (default 2; sets ≤ 0 means the default). A request with
// a set not kept merges its adapters again; the base weights are never reloaded nor changed.
func WithLoRACache(sets int) Option {
	return func(o *loadOptions) { o.loraSets = sets }
}

// WithLoRAUnfused makes the pipeline apply adapters as unfused low-rank branches (each targeted
// layer's output gains scale·(alpha/r)·B·(A·x)) instead of merging them into a copy of the
// targeted weights. It needs no copy of the weights and no merge per adapter set, and costs
// some time on every request; BENCHMARKS.md measures both.
func WithLoRAUnfused() Option {
	return func(o *loadOptions) { o.loraUnfused = true }
}

// defaultLoRASets is the number of adapter sets a pipeline keeps merged.
const defaultLoRASets = 2

// LoadLoRA reads a LoRA adapter (a PEFT folder with adapter_model.safetensors or
// adapter_model.bin, or a kohya or diffusers .safetensors file) and checks it against this
// pipeline's UNet and text encoder: every targeted layer must exist with the adapter's shape.
// All the missing layers are listed in one error (a *lora.MissingError), unless LenientLoRA
// is given. Loading changes nothing in the pipeline: pass the adapter in Request.LoRAs.
func (p *Pipeline) LoadLoRA(path string, opts ...LoRAOption) (*lora.Adapter, error) {
	_, exit, err := p.enter(context.Background())
	if err != nil {
		return nil, err
	}
	defer exit()
	var o loraOptions
	for _, fn := range opts {
		if fn != nil {
			fn(&o)
		}
	}
	a, err := lora.Load(path)
	if err != nil {
		if _, serr := os.Stat(path); serr != nil && strings.Count(path, "/") == 1 && !strings.HasPrefix(path, ".") {
			return nil, fmt.Errorf("%w (if %s is a Hugging Face repository, download it first: huggingface-cli download %s --local-dir DIR)", err, path, path)
		}
		return nil, err
	}
	checked, err := a.Check(p.loraShapes(), o.lenient)
	if err != nil {
		return nil, err
	}
	for _, s := range checked.Skipped {
		slog.Warn("sdxs: LoRA layer not in the model, skipped", "adapter", path, "layer", s)
	}
	return checked, nil
}

func (p *Pipeline) loraShapes() map[lora.Component]lora.Shapes {
	return map[lora.Component]lora.Shapes{
		lora.UNet:        p.unet.WeightShape,
		lora.TextEncoder: p.text.WeightShape,
	}
}

// loraSet is the UNet and text encoder of one set of adapters: the base models with the
// targeted weights replaced by merged ones.
type loraSet struct {
	key  string
	unet *unet.Model
	text *textenc.Model
	// evicted is set (under the cache's lock) when the set leaves the cache.
	evicted bool
}

// drop removes the set's graphs from the program cache it shares with the base models.
func (s *loraSet) drop(p *Pipeline) {
	if s.unet != p.unet {
		s.unet.Drop()
	}
	if s.text != p.text {
		s.text.Drop()
	}
}

// loraCache keeps the most recently used adapter sets.
type loraCache struct {
	mu   sync.Mutex
	max  int
	sets []*loraSet // most recent last
}

// loraKey identifies a set of adapters with their scales, whatever their order.
func loraKey(loras []LoRA) string {
	parts := make([]string, len(loras))
	for i, l := range loras {
		parts[i] = fmt.Sprintf("%p×%v", l.Adapter, loraScale(l))
	}
	sort.Strings(parts)
	return strings.Join(parts, "+")
}

func loraScale(l LoRA) float64 {
	if l.Scale == 0 {
		return 1
	}
	return l.Scale
}

// models returns the text encoder and UNet for a request's adapters, and the set they belong
// to (nil without adapters), which the request hands back to release when it is done.
func (p *Pipeline) models(loras []LoRA) (*textenc.Model, *unet.Model, *loraSet, error) {
	if len(loras) == 0 {
		return p.text, p.unet, nil, nil
	}
	key := loraKey(loras)
	c := &p.loras
	c.mu.Lock()
	for i, s := range c.sets {
		if s.key == key {
			c.sets = append(slices.Delete(c.sets, i, i+1), s)
			c.mu.Unlock()
			return s.text, s.unet, s, nil
		}
	}
	c.mu.Unlock()

	s, err := p.newLoRASet(key, loras)
	if err != nil {
		return nil, nil, nil, err
	}
	c.mu.Lock()
	for _, o := range c.sets {
		if o.key == key { // another request made it meanwhile: share one
			c.mu.Unlock()
			return o.text, o.unet, o, nil
		}
	}
	c.sets = append(c.sets, s)
	limit := c.max
	if limit <= 0 {
		limit = defaultLoRASets
	}
	var evicted []*loraSet
	if len(c.sets) > limit {
		evicted = slices.Clone(c.sets[:len(c.sets)-limit])
		c.sets = slices.Delete(c.sets, 0, len(c.sets)-limit)
		for _, e := range evicted {
			e.evicted = true
		}
	}
	c.mu.Unlock()
	for _, e := range evicted {
		e.drop(p)
	}
	return s.text, s.unet, s, nil
}

// clearLoRA forgets every adapter set and its merged weights (Close).
func (p *Pipeline) clearLoRA() {
	p.loras.mu.Lock()
	defer p.loras.mu.Unlock()
	for _, s := range p.loras.sets {
		s.evicted = true
	}
	p.loras.sets = nil
}

// releaseLoRA ends a request's use of a set: if the set left the cache meanwhile, graphs the
// request built after the eviction are dropped too.
func (p *Pipeline) releaseLoRA(s *loraSet) {
	if s == nil {
		return
	}
	p.loras.mu.Lock()
	evicted := s.evicted
	p.loras.mu.Unlock()
	if evicted {
		s.drop(p)
	}
}

// scaledTarget is one adapter's update of a weight, with the request's scale.
type scaledTarget struct {
	t     *lora.Target
	scale float64
}

// newLoRASet checks the adapters against the pipeline and makes the overlay models. The merge
// itself (W + Σ scale·(alpha/r)·B·A, then any Winograd transform) happens once per weight when
// a graph of the set is first built.
func (p *Pipeline) newLoRASet(key string, loras []LoRA) (*loraSet, error) {
	shapes := p.loraShapes()
	updates := map[lora.Component]map[string][]scaledTarget{}
	for i, l := range loras {
		if l.Adapter == nil {
			return nil, fmt.Errorf("sdxs: Request.LoRAs[%d] has no adapter", i)
		}
		a, err := l.Adapter.Check(shapes, false)
		if err != nil {
			return nil, fmt.Errorf("sdxs: Request.LoRAs[%d]: %w", i, err)
		}
		for _, t := range a.Targets {
			m := updates[t.Component]
			if m == nil {
				m = map[string][]scaledTarget{}
				updates[t.Component] = m
			}
			name := t.Module + ".weight"
			m[name] = append(m[name], scaledTarget{t, loraScale(l)})
		}
	}
	merge := func(m map[string][]scaledTarget) ([]string, func(string, []int, []float32) ([]float32, error)) {
		names := make([]string, 0, len(m))
		for n := range m {
			names = append(names, n)
		}
		sort.Strings(names)
		return names, func(name string, shape []int, base []float32) ([]float32, error) {
			out := slices.Clone(base)
			for _, st := range m[name] {
				if !slices.Equal(st.t.WeightShape(), shape) {
					return nil, fmt.Errorf("LoRA %s: the update is %v, the weight %v", st.t.Key, st.t.WeightShape(), shape)
				}
				if err := st.t.AddTo(out, st.scale); err != nil {
					return nil, err
				}
			}
			return out, nil
		}
	}
	s := &loraSet{key: key, unet: p.unet, text: p.text}
	if p.loraUnfused {
		branches := func(m map[string][]scaledTarget) map[string][]nn.LowRank {
			out := make(map[string][]nn.LowRank, len(m))
			for name, sts := range m {
				for _, st := range sts {
					out[strings.TrimSuffix(name, ".weight")] = append(out[strings.TrimSuffix(name, ".weight")],
						nn.LowRank{Rank: st.t.Rank, A: st.t.A, B: st.t.B, Scale: float32(st.scale * st.t.Scale)})
				}
			}
			return out
		}
		if m := updates[lora.UNet]; len(m) > 0 {
			s.unet = p.unet.WithLowRank(branches(m))
		}
		if m := updates[lora.TextEncoder]; len(m) > 0 {
			s.text = p.text.WithLowRank(branches(m))
		}
		return s, nil
	}
	if m := updates[lora.UNet]; len(m) > 0 {
		s.unet = p.unet.WithWeights(merge(m))
	}
	if m := updates[lora.TextEncoder]; len(m) > 0 {
		s.text = p.text.WithWeights(merge(m))
	}
	return s, nil
}

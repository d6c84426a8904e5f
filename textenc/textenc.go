// Package textenc is the CLIP text transformer (transformers' CLIPTextModel) as a Gorgonia
// graph, built from its config.json: token and position embeddings, causal pre-norm transformer
// layers and the final layer norm. Its output, the last hidden state, conditions the UNet.
//
// In bf16 (Params().SetPrecision(nn.BF16) before the first graph is built) the encoder holds the
// weights of its linear layers (the attention's q/k/v/out projections and the MLP's fc1/fc2) in
// bfloat16 and multiplies them by activations rounded to bfloat16 with float32 accumulation;
// the embeddings, layer norms, softmax, attention products, residual sums and the final layer
// norm stay float32.
package textenc

import (
	"context"
	"fmt"
	"strings"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/weights"
)

// Model is a CLIP text encoder with its weights. Its graph is built once and kept in the
// runner's program cache (its own unless SetCache shares one). It is safe for concurrent use.
type Model struct {
	cfg    *weights.CLIPTextConfig
	params *nn.Params
	runner *nn.Runner[progKey]
}

// progKey names a graph of the encoder: the plain one, or the trace that keeps every layer's
// output.
type progKey struct{ trace bool }

func (k progKey) String() string {
	if k.trace {
		return "the trace"
	}
	return "the encoder"
}

// New returns a text encoder with the given config whose weights come from src.
func New(cfg *weights.CLIPTextConfig, src weights.TensorSource) (*Model, error) {
	if cfg == nil {
		return nil, fmt.Errorf("textenc: nil config")
	}
	if src == nil {
		return nil, fmt.Errorf("textenc: nil weight source")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("textenc: %w", err)
	}
	m := &Model{cfg: cfg, params: nn.NewParams(src)}
	m.runner = nn.NewRunner("textenc", m.params, m.build)
	return m, nil
}

// SetCache makes the encoder keep its compiled graph in c, shared with the other models of a
// pipeline under one byte budget.
func (m *Model) SetCache(c *nn.ProgramCache) { m.runner.SetCache(c) }

// Params returns the parameters the encoder's graphs are built over (to set their precision
// before the first build, or to account for their memory).
func (m *Model) Params() *nn.Params { return m.params }

// Config returns the model's configuration.
func (m *Model) Config() *weights.CLIPTextConfig { return m.cfg }

// Unused lists the tensors of the weights that the model does not use (position_ids, which
// some files carry, is a buffer and not listed).
func (m *Model) Unused() []string {
	return m.params.Unused("", func(n string) bool { return strings.HasSuffix(n, "position_ids") })
}

// SeqLen is the number of tokens the encoder takes: its max_position_embeddings.
func (m *Model) SeqLen() int { return m.cfg.MaxPositionEmbeddings }

// Prepare builds the graph once and checks every weight it needs.
func (m *Model) Prepare(ctx context.Context) error {
	_, err := m.runner.Program(ctx, progKey{})
	return err
}

// MACs returns the multiply-adds of one encoding: in linear layers, and in attention.
func (m *Model) MACs(ctx context.Context) (linear, attention int64, err error) {
	return m.runner.MACs(ctx, progKey{})
}

// Encode returns the last hidden state [SeqLen, hidden_size] for the token ids.
func (m *Model) Encode(ctx context.Context, ids []int64) ([]float32, error) {
	outs, err := m.run(ctx, ids, false)
	if err != nil {
		return nil, err
	}
	return outs["out"], nil
}

// Trace runs the encoder and also returns "embeddings" and each layer's output "layers.{i}"
// (before the final layer norm), for tests and debugging.
func (m *Model) Trace(ctx context.Context, ids []int64) (map[string][]float32, error) {
	return m.run(ctx, ids, true)
}

func (m *Model) run(ctx context.Context, ids []int64, trace bool) (map[string][]float32, error) {
	in, err := m.inputs(ids)
	if err != nil {
		return nil, err
	}
	if trace {
		return m.runner.RunOnce(ctx, progKey{trace: true}, in)
	}
	return m.runner.Run(ctx, progKey{}, in)
}

// inputs checks the token ids and returns the graph's inputs: the ids, or their rows of the
// token embedding table when the weights can be read row by row.
func (m *Model) inputs(ids []int64) (map[string][]float32, error) {
	n := m.SeqLen()
	if len(ids) != n {
		return nil, fmt.Errorf("textenc: %d token ids, want %d", len(ids), n)
	}
	fids := make([]float32, n)
	for i, id := range ids {
		if id < 0 || id >= int64(m.cfg.VocabSize) {
			return nil, fmt.Errorf("textenc: token id %d at position %d is outside the vocabulary of %d", id, i, m.cfg.VocabSize)
		}
		fids[i] = float32(id)
	}
	in := map[string][]float32{"input_ids": fids}
	if rs := m.rows(); rs != nil {
		rows := make([]int, n)
		for i, id := range ids {
			rows[i] = int(id)
		}
		emb := make([]float32, n*m.cfg.HiddenSize)
		if err := rs.Float32Rows(tokenEmbedding, []int{m.cfg.VocabSize, m.cfg.HiddenSize}, rows, emb); err != nil {
			return nil, fmt.Errorf("textenc: %w", err)
		}
		in = map[string][]float32{"token_embeds": emb}
	}
	return in, nil
}

// build describes the encoder's graph: its output "out" and, for the trace, "embeddings" and
// every layer's output "layers.{i}".
func (m *Model) build(b *nn.Builder, key progKey) (map[string]*nn.Node, error) {
	cfg := m.cfg
	trace := key.trace
	outs := map[string]*nn.Node{}
	n, d := cfg.MaxPositionEmbeddings, cfg.HiddenSize
	tm := b.Sub("text_model")
	emb := tm.Sub("embeddings")
	var tok *nn.Node
	if rs := m.rows(); rs != nil {
		// The table stays in the weights file; each run reads the rows of its tokens.
		if err := rs.Float32Rows(tokenEmbedding, []int{cfg.VocabSize, d}, []int{0}, make([]float32, d)); err != nil {
			return nil, err
		}
		m.params.MarkUsed(tokenEmbedding)
		tok = b.Input("token_embeds", n, d)
	} else {
		tok = b.Embedding(emb.Param("token_embedding.weight", cfg.VocabSize, d), b.Input("input_ids", n))
	}
	pos := emb.Param("position_embedding.weight", cfg.MaxPositionEmbeddings, d)
	x := b.Add(tok, pos)
	outs["embeddings"] = x
	for i := 0; i < cfg.NumHiddenLayers; i++ {
		x = layer(tm.Subf("encoder.layers.%d", i), x, cfg)
		outs[fmt.Sprintf("layers.%d", i)] = x
	}
	x = tm.LayerNorm("final_layer_norm", x, cfg.LayerNormEps)
	if !trace {
		return map[string]*nn.Node{"out": x}, nil
	}
	outs["out"] = x
	return outs, nil
}

// tokenEmbedding is the name of the token embedding table.
const tokenEmbedding = "text_model.embeddings.token_embedding.weight"

// rows returns the weights as a RowSource when they can be read row by row, or nil.
func (m *Model) rows() nn.RowSource {
	rs, _ := m.params.Source().(nn.RowSource)
	return rs
}

// layer is CLIPEncoderLayer: x + self_attn(layer_norm1(x)) (causal), then x + mlp(layer_norm2(x)).
func layer(b *nn.Builder, x *nn.Node, cfg *weights.CLIPTextConfig) *nn.Node {
	d := cfg.HiddenSize
	h := b.LayerNorm("layer_norm1", x, cfg.LayerNormEps)
	q := b.LinearLayer("self_attn.q_proj", h, d, true)
	k := b.LinearLayer("self_attn.k_proj", h, d, true)
	v := b.LinearLayer("self_attn.v_proj", h, d, true)
	a := b.Attention(q, k, v, cfg.NumAttentionHeads, true)
	x = b.LinearResidual("self_attn.out_proj", a, d, true, x)
	h = b.LayerNorm("layer_norm2", x, cfg.LayerNormEps)
	h = b.LinearLayer("mlp.fc1", h, cfg.IntermediateSize, true)
	h = b.Act(activation(cfg.HiddenAct), h)
	return b.LinearResidual("mlp.fc2", h, d, true, x)
}

func activation(name string) string {
	if name == "quick_gelu" {
		return nn.ActQuickGELU
	}
	return nn.ActGELU
}

package sdxs

import (
	"fmt"

	"github.com/sdxs-go/sdxs/internal/nn"
)

// Precision is the arithmetic of the UNet's convolutions and linear layers.
type Precision int

const (
	// PrecisionFP32 computes everything in float32 (the default).
	PrecisionFP32 Precision = iota
	// PrecisionBF16 holds the UNet's convolution and linear weights and the text encoder's
	// linear weights (attention projections, MLP) in bfloat16 (half the bytes; converted once
	// at load from F32, F16 or BF16 files) and multiplies them by activations rounded to
	// bfloat16 with float32 accumulation (VDPBF16PS where the CPU has AVX512_BF16, a
	// bit-identical plain-Go twin elsewhere), and so are attention's products where the score
	// matrix is large (the 32×32 level's self-attention). Norms, softmax, residual sums, the
	// other attention products, the text encoder's embeddings and final layer norm, the
	// products of the UNet's Winograd convolutions (whose weights are held as bf16 where the
	// CPU runs them lazily), the VAE, ControlNet and the scheduler step stay float32.
	PrecisionBF16
)

// String returns "fp32" or "bf16".
func (p Precision) String() string {
	switch p {
	case PrecisionFP32:
		return "fp32"
	case PrecisionBF16:
		return "bf16"
	}
	return fmt.Sprintf("Precision(%d)", int(p))
}

// ParsePrecision parses "fp32" or "bf16" (as the examples' -precision flag takes them).
func ParsePrecision(s string) (Precision, error) {
	switch s {
	case "fp32", "":
		return PrecisionFP32, nil
	case "bf16":
		return PrecisionBF16, nil
	}
	return PrecisionFP32, fmt.Errorf("sdxs: unknown precision %q (want fp32 or bf16)", s)
}

// WithPrecision sets the precision of the pipeline's UNet and text encoder (PrecisionFP32 by
// default). Pipelines of either precision over the same folder can live in one process side by
// side (each Load has its own models). With New, the option sets the precision of the given UNet
// and text encoder (before their first graphs are built, so parts must not be shared by
// pipelines of different precisions); without it, New keeps the models' own.
func WithPrecision(p Precision) Option {
	return func(o *loadOptions) { o.precision, o.precisionSet = p, true }
}

// nnPrecision maps a Precision to the graph library's.
func (p Precision) nn() (nn.Precision, error) {
	switch p {
	case PrecisionFP32:
		return nn.FP32, nil
	case PrecisionBF16:
		return nn.BF16, nil
	}
	return nn.FP32, fmt.Errorf("sdxs: unknown precision %d", int(p))
}

// Precision returns the precision the pipeline was loaded with (with New and no WithPrecision,
// the UNet's).
func (p *Pipeline) Precision() Precision { return p.precision }

// ParamBytes returns the memory held by the UNet's weights loaded so far (float32, bf16 and
// derived values such as Winograd transforms), for memory accounting.
func (p *Pipeline) ParamBytes() int64 { return p.unet.Params().Bytes() }

// setPrecision sets the precision of the UNet and the text encoder, before any graph is built.
func (p *Pipeline) setPrecision(pr Precision) error {
	np, err := pr.nn()
	if err != nil {
		return err
	}
	p.precision = pr
	p.unet.Params().SetPrecision(np)
	p.text.Params().SetPrecision(np)
	return nil
}

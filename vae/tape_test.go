package vae

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/oracle"
)

// TestTapeMachineMatchesDiffusers runs each oracle TAESD decoder's production graph (fused
// activations and residuals, Winograd convolutions) under Gorgonia's own TapeMachine instead of
// the Program and holds its output to diffusers' decoded with the oracle's bound.
func TestTapeMachineMatchesDiffusers(t *testing.T) {
	ctx := context.Background()
	for _, model := range oracleModels {
		t.Run(model, func(t *testing.T) {
			d, _ := loadTiny(t, model)
			z, h, w := case0Latents(t, model, d)
			outs, err := d.runner.RunTapeMachine(ctx, tinyKey{h: h, w: w}, map[string][]float32{"latents": z})
			require.NoError(t, err)
			ref := oracle.Tensors(t, model, "reference.safetensors")
			want, _ := oracle.Float32(t, ref, "case0.decoded")
			require.Len(t, outs["out"], len(want))
			oracle.AssertMaxAbs(t, "decoded (TapeMachine)", outs["out"], want, decodedMaxAbs)
			got, err := d.Decode(ctx, z, h, w)
			require.NoError(t, err)
			require.Less(t, oracle.MaxAbs(got, outs["out"]), 1e-4, "TapeMachine and Program disagree")
		})
	}
}

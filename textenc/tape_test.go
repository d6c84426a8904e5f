package textenc

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/oracle"
)

// TestTapeMachineMatchesReference runs each oracle text encoder's production graph under
// Gorgonia's own TapeMachine instead of the Program and holds its output to the reference
// text_embeddings with the oracle's bound.
func TestTapeMachineMatchesReference(t *testing.T) {
	ctx := context.Background()
	for _, model := range oracleModels {
		t.Run(model, func(t *testing.T) {
			m, _ := loadEncoder(t, model)
			ids := case0IDs(t, model)
			in, err := m.inputs(ids)
			require.NoError(t, err)
			outs, err := m.runner.RunTapeMachine(ctx, progKey{}, in)
			require.NoError(t, err)
			ref := oracle.Tensors(t, model, "reference.safetensors")
			want, _ := oracle.Float32(t, ref, "case0.text_embeddings")
			require.Len(t, outs["out"], len(want))
			oracle.AssertMaxAbs(t, "text_embeddings (TapeMachine)", outs["out"], want, outputMaxAbs)
			got, err := m.Encode(ctx, ids)
			require.NoError(t, err)
			require.Less(t, oracle.MaxAbs(got, outs["out"]), 1e-5, "TapeMachine and Program disagree")
		})
	}
}

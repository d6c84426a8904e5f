package unet

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/oracle"
)

// TestTapeMachineMatchesDiffusers runs the production graph of each oracle UNet (the one
// Forward runs, fused ops and Winograd convolutions included) under Gorgonia's own TapeMachine
// instead of the Program, and holds its output to diffusers' unet_output with the oracle's
// bound; it also checks that the Program gives the same numbers.
func TestTapeMachineMatchesDiffusers(t *testing.T) {
	ctx := context.Background()
	for _, model := range oracleModels {
		t.Run(model, func(t *testing.T) {
			m, _ := loadUNet(t, model)
			cfg := m.Config()
			h, w := case0(t, model)
			sample, text, want := caseInputs(t, model, cfg, h, w)
			key, in, err := m.inputs(sample, h, w, oracleTimest, text, nil)
			require.NoError(t, err)
			outs, err := m.runner.RunTapeMachine(ctx, key, in)
			require.NoError(t, err)
			got := outs["out"]
			require.Len(t, got, len(want))
			oracle.AssertRelL2(t, "unet_output (TapeMachine)", got, want, outputRelL2)

			fwd, err := m.Forward(ctx, sample, h, w, oracleTimest, text, nil)
			require.NoError(t, err)
			require.Less(t, oracle.MaxAbs(got, fwd), 1e-4, "TapeMachine and Program disagree")
		})
	}
}

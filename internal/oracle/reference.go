package oracle

import (
	"fmt"
	"strings"
	"testing"

	"github.com/sdxs-go/sdxs/weights"
)

// Bounds of the oracle README ("How close is close enough"), per tensor name of a case.
const (
	BoundTextEmbeddings = 1e-4 // max abs
	BoundNoise          = 1e-5 // max abs
	BoundUNetInput      = 1e-5 // relative L2 (the noise's bound, scaled)
	BoundUNetOutput     = 1e-4 // relative L2, also every control_* residual
	BoundLatents        = 2e-3 // max abs, also decoded
	BoundControlCond    = 1e-6 // max abs: the control image /255, computed the same way
	BoundImagePixel     = 1    // every pixel within ±1
	BoundImageMean      = 0.05 // mean absolute difference of the pixels
)

// AssertCase compares tensors named as the reference names them (input_ids, text_embeddings,
// noise, unet_input, unet_output, latents, decoded, image, control_cond, control_down.{j},
// control_mid: what Result.Tensors and examples/txt2img -dump give) with case{i}.<name> of ref,
// each by its bound. Every tensor must be in the reference with the same shape and dtype, and
// every tensor of the case in the reference must be among got. It returns whether all passed.
func AssertCase(tb testing.TB, ref *weights.File, caseIndex int, got []weights.Tensor) bool {
	tb.Helper()
	prefix := fmt.Sprintf("case%d.", caseIndex)
	ok := true
	fail := func(format string, args ...any) {
		tb.Helper()
		tb.Errorf(format, args...)
		ok = false
	}
	seen := map[string]bool{}
	for _, g := range got {
		name := prefix + g.Name
		seen[g.Name] = true
		info, found := ref.Info(name)
		if !found {
			fail("%s: not in the reference", name)
			continue
		}
		if fmt.Sprint(info.Shape) != fmt.Sprint(g.Shape) || info.DType != g.DType {
			fail("%s: %s%v, the reference has %s%v", name, g.DType, g.Shape, info.DType, info.Shape)
			continue
		}
		switch {
		case g.Name == "input_ids":
			want, _ := Int64(tb, ref, name)
			if fmt.Sprint(want) != fmt.Sprint(g.I64) {
				fail("%s: %v, want %v", name, g.I64, want)
			}
		case g.Name == "image":
			want, _ := Uint8(tb, ref, name)
			worstD, sum := 0, 0.0
			for i := range want {
				d := int(g.U8[i]) - int(want[i])
				d = max(d, -d)
				worstD = max(worstD, d)
				sum += float64(d)
			}
			mean := sum / float64(len(want))
			tb.Logf("%s: worst pixel difference %d (bound %d), mean %.4g (bound %g)", name, worstD, BoundImagePixel, mean, BoundImageMean)
			if worstD > BoundImagePixel || mean > BoundImageMean {
				fail("%s: worst pixel difference %d (bound %d), mean absolute difference %.4g (bound %g)", name, worstD, BoundImagePixel, mean, BoundImageMean)
			}
		default:
			want, _ := Float32(tb, ref, name)
			var passed bool
			switch {
			case g.Name == "text_embeddings":
				passed = AssertMaxAbs(tb, name, g.F32, want, BoundTextEmbeddings)
			case g.Name == "noise":
				passed = AssertMaxAbs(tb, name, g.F32, want, BoundNoise)
			case g.Name == "unet_input":
				passed = AssertRelL2(tb, name, g.F32, want, BoundUNetInput)
			case g.Name == "unet_output", g.Name == "control_mid", strings.HasPrefix(g.Name, "control_down."):
				passed = AssertRelL2(tb, name, g.F32, want, BoundUNetOutput)
			case g.Name == "latents", g.Name == "decoded":
				passed = AssertMaxAbs(tb, name, g.F32, want, BoundLatents)
			case g.Name == "control_cond":
				passed = AssertMaxAbs(tb, name, g.F32, want, BoundControlCond)
			default:
				fail("%s: no bound for this tensor", name)
				continue
			}
			ok = ok && passed
		}
	}
	for _, n := range ref.Names() {
		if rest, isCase := strings.CutPrefix(n, prefix); isCase && !seen[rest] {
			fail("%s: in the reference but not compared", n)
		}
	}
	return ok
}

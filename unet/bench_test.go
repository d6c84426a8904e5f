package unet

import (
	"context"
	"testing"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/weights"
)

// dreamshaperUNet is the configuration of the SDXS-512-DreamShaper UNet.
const dreamshaperUNet = `{"_class_name":"UNet2DConditionModel","act_fn":"silu","attention_head_dim":8,
"block_out_channels":[320,640,1280],"cross_attention_dim":768,"down_block_types":["DownBlock2D",
"CrossAttnDownBlock2D","CrossAttnDownBlock2D"],"up_block_types":["CrossAttnUpBlock2D",
"CrossAttnUpBlock2D","UpBlock2D"],"layers_per_block":1,"mid_block_type":null,"norm_num_groups":32,
"sample_size":64,"use_linear_projection":false,"only_cross_attention":false}`

func benchUNet(b *testing.B, h, w int) {
	cfg, err := weights.ParseUNetConfig([]byte(dreamshaperUNet))
	if err != nil {
		b.Fatal(err)
	}
	m, err := New(cfg, &nn.RandomSource{Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	sample := make([]float32, 4*h*w)
	text := make([]float32, 77*768)
	for i := range sample {
		sample[i] = float32(i%13)/13 - 0.5
	}
	for i := range text {
		text[i] = float32(i%7)/7 - 0.5
	}
	if _, err := m.Forward(context.Background(), sample, h, w, 999, text, nil); err != nil {
		b.Fatal(err)
	}
	macs, _, _ := m.MACs(h, w)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := m.Forward(context.Background(), sample, h, w, 999, text, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(2*float64(macs)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// BenchmarkUNet512 runs the full-size SDXS-512-DreamShaper UNet on a 64×64 latent (random
// weights; time does not depend on their values).
func BenchmarkUNet512(b *testing.B) { benchUNet(b, 64, 64) }

package unet

import (
	"context"
	"testing"

	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

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
	macs, _, _ := m.MACs(context.Background(), h, w)
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

// BenchmarkUNet512TapeMachine runs the same graph as BenchmarkUNet512 under Gorgonia's
// TapeMachine instead of the planned Program: the same ops, but every intermediate value (and
// every op's scratch) is allocated afresh on each run. The difference is the cost of
// Gorgonia's machine.
func BenchmarkUNet512TapeMachine(b *testing.B) {
	cfg, err := weights.ParseUNetConfig([]byte(dreamshaperUNet))
	if err != nil {
		b.Fatal(err)
	}
	m, err := New(cfg, &nn.RandomSource{Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	prog, err := m.runner.Program(context.Background(), progKey{h: 64, w: 64})
	if err != nil {
		b.Fatal(err)
	}
	g := prog.Graph()
	set := func(name string, v []float32, shape ...int) {
		n := g.ByName("input:" + name)
		if len(n) != 1 {
			b.Fatalf("input %s not found", name)
		}
		if err := gorgonia.Let(n[0], tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))); err != nil {
			b.Fatal(err)
		}
	}
	set("sample", make([]float32, 4*64*64), 4, 64, 64)
	set("text", make([]float32, 77*768), 77, 768)
	set("time_proj", timestepEmbedding(999, 320, true, 0), 1, 320)
	vm := gorgonia.NewTapeMachine(g)
	defer vm.Close()
	macs, _ := prog.MACs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := vm.RunAll(); err != nil {
			b.Fatal(err)
		}
		vm.Reset()
	}
	b.ReportMetric(2*float64(macs)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

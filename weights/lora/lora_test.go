package lora

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/x448/float16"

	"github.com/sdxs-go/sdxs/internal/oracle"
	"github.com/sdxs-go/sdxs/weights"
)

func oracleLoRA(t *testing.T, elem ...string) string {
	return oracle.Path(t, append([]string{"sdxs-dreamshaper-tiny", "lora"}, elem...)...)
}

// TestLayoutsAgree: the oracle's adapter in its three layouts reads as the same targets, with
// r = 4, alpha = 8.
func TestLayoutsAgree(t *testing.T) {
	var loaded []*Adapter
	for _, l := range []struct{ path, format string }{
		{"peft", FormatPEFT}, {"peft-bin", FormatPEFT}, {"kohya_lora.safetensors", FormatKohya},
	} {
		a, err := Load(oracleLoRA(t, l.path))
		require.NoError(t, err, l.path)
		require.Equal(t, l.format, a.Format)
		require.Len(t, a.Targets, 78)
		loaded = append(loaded, a)
	}
	convs, linears := 0, 0
	for i, t0 := range loaded[0].Targets {
		require.Equal(t, UNet, t0.Component)
		require.Equal(t, 4, t0.Rank)
		require.Equal(t, 8.0, t0.Alpha)
		require.Equal(t, 2.0, t0.Scale)
		if t0.Conv {
			convs++
		} else {
			linears++
		}
		for _, other := range loaded[1:] {
			o := other.Targets[i]
			require.Equal(t, t0.Module, o.Module)
			require.Equal(t, t0.WeightShape(), o.WeightShape(), t0.Module)
			require.Equal(t, t0.Scale, o.Scale, t0.Module)
			require.Equal(t, t0.A, o.A, t0.Module)
			require.Equal(t, t0.B, o.B, t0.Module)
		}
	}
	require.Positive(t, convs)
	require.Positive(t, linears)
	a := loaded[2]
	var found bool
	for _, tg := range a.Targets {
		if tg.Module == "down_blocks.0.resnets.0.conv1" {
			found = true
			require.Equal(t, []int{32, 32, 3, 3}, tg.WeightShape())
			require.Equal(t, "lora_unet_down_blocks_0_resnets_0_conv1", tg.Key)
		}
	}
	require.True(t, found)
}

func TestKohyaModule(t *testing.T) {
	for in, want := range map[string]string{
		"down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q":    "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
		"up_blocks_2_attentions_1_transformer_blocks_0_attn2_to_out_0":  "up_blocks.2.attentions.1.transformer_blocks.0.attn2.to_out.0",
		"down_blocks_1_attentions_0_transformer_blocks_0_ff_net_0_proj": "down_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj",
		"down_blocks_1_attentions_0_transformer_blocks_0_ff_net_2":      "down_blocks.1.attentions.0.transformer_blocks.0.ff.net.2",
		"mid_block_attentions_0_proj_in":                                "mid_block.attentions.0.proj_in",
		"up_blocks_0_resnets_2_conv_shortcut":                           "up_blocks.0.resnets.2.conv_shortcut",
		"down_blocks_0_resnets_0_time_emb_proj":                         "down_blocks.0.resnets.0.time_emb_proj",
		"down_blocks_0_downsamplers_0_conv":                             "down_blocks.0.downsamplers.0.conv",
		"text_model_encoder_layers_11_self_attn_out_proj":               "text_model.encoder.layers.11.self_attn.out_proj",
		"text_model_encoder_layers_0_mlp_fc1":                           "text_model.encoder.layers.0.mlp.fc1",
		"conv_in":                                                       "conv_in",
		"conv_norm_out":                                                 "conv_norm_out",
	} {
		require.Equal(t, want, kohyaModule(in), in)
	}
}

// pickleWriter writes pickle opcodes (protocol 2) by hand.
type pickleWriter struct{ bytes.Buffer }

func (w *pickleWriter) op(b ...byte) *pickleWriter { w.Write(b); return w }
func (w *pickleWriter) global(module, name string) *pickleWriter {
	w.WriteString("c" + module + "\n" + name + "\n")
	return w
}
func (w *pickleWriter) str(s string) *pickleWriter {
	w.WriteByte('X')
	binary.Write(&w.Buffer, binary.LittleEndian, uint32(len(s)))
	w.WriteString(s)
	return w
}
func (w *pickleWriter) int1(v byte) *pickleWriter { return w.op('K', v) }

const (
	opMark      = '('
	opTuple     = 't'
	opReduce    = 'R'
	opStop      = '.'
	opEmptyDict = '}'
	opSetItems  = 'u'
	opBinPersID = 'Q'
	opFalse     = 0x89
	opEmptyTup  = ')'
)

// writeZip writes a torch.save-like zip archive with the given records under "archive/".
func writeZip(t *testing.T, records map[string][]byte) string {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, data := range records {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: "archive/" + name, Method: zip.Store})
		require.NoError(t, err)
		_, err = w.Write(data)
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	path := filepath.Join(t.TempDir(), "adapter_model.bin")
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
	return path
}

// TestForeignPickleRefused: a pickle that asks for os.system (or builtins.eval) is refused
// with an error naming the global, and nothing is called.
func TestForeignPickleRefused(t *testing.T) {
	for _, g := range [][2]string{{"os", "system"}, {"builtins", "eval"}, {"torch", "load"}} {
		var p pickleWriter
		p.op(0x80, 2).global(g[0], g[1]).op(opMark).str("echo pwned").op(opTuple, opReduce, opStop)
		path := writeZip(t, map[string][]byte{"data.pkl": p.Bytes()})
		_, err := readTorchZip(path)
		var fe *ForeignGlobalError
		require.ErrorAs(t, err, &fe)
		require.Equal(t, g[0]+"."+g[1], fe.Global)
		require.ErrorContains(t, err, g[0]+"."+g[1])
		// Through Load as well (a lone .bin file).
		_, err = Load(path)
		require.ErrorAs(t, err, &fe)
	}
}

// halfBytes encodes values as float16.
func halfBytes(v ...float32) []byte {
	out := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(out[2*i:], float16.Fromfloat32(x).Bits())
	}
	return out
}

// tensorPickle is a state dict {name: Parameter(tensor)} whose tensor is a strided view of a
// HalfStorage "0" of numel elements.
func tensorPickle(name string, numel byte, shape, stride [2]byte) []byte {
	var p pickleWriter
	p.op(0x80, 2, opEmptyDict, opMark).str(name)
	p.global("torch._utils", "_rebuild_parameter").op(opMark)
	p.global("torch._utils", "_rebuild_tensor_v2").op(opMark)
	p.op(opMark).str("storage").global("torch", "HalfStorage").str("0").str("cpu").int1(numel).op(opTuple, opBinPersID)
	p.int1(0)
	p.op(opMark).int1(shape[0]).int1(shape[1]).op(opTuple)
	p.op(opMark).int1(stride[0]).int1(stride[1]).op(opTuple)
	p.op(opFalse).global("collections", "OrderedDict").op(opEmptyTup, opReduce)
	p.op(opTuple, opReduce)
	p.op(opFalse).global("collections", "OrderedDict").op(opEmptyTup, opReduce)
	p.op(opTuple, opReduce)
	p.op(opSetItems, opStop)
	return p.Bytes()
}

// TestTorchZipTensor reads a hand-made checkpoint: float16 storage, a transposed view (strides
// (1, 2)), wrapped in a Parameter.
func TestTorchZipTensor(t *testing.T) {
	path := writeZip(t, map[string][]byte{
		"data.pkl": tensorPickle("w", 6, [2]byte{3, 2}, [2]byte{1, 3}),
		"data/0":   halfBytes(1, 2, 3, 4, 5, 6),
	})
	got, err := readTorchZip(path)
	require.NoError(t, err)
	require.Equal(t, []int{3, 2}, got["w"].shape)
	// Storage [[1 2 3] [4 5 6]] read as its transpose.
	require.Equal(t, []float32{1, 4, 2, 5, 3, 6}, got["w"].data)
}

// TestBadTorchZips: truncated, foreign and malformed files are clear errors, never panics.
func TestBadTorchZips(t *testing.T) {
	bin, err := os.ReadFile(oracleLoRA(t, "peft-bin", "adapter_model.bin"))
	require.NoError(t, err)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, data, 0o644))
		return p
	}
	for _, c := range []struct {
		name, path, want string
	}{
		{"truncated", write("truncated.bin", bin[:len(bin)/2]), "not a PyTorch zip archive"},
		{"truncated end", write("end.bin", bin[:len(bin)-10]), "not a PyTorch zip archive"},
		{"text", write("text.bin", []byte("hello, this is not a checkpoint")), "not a PyTorch zip archive"},
		{"no data.pkl", writeZip(t, map[string][]byte{"other": {1}}), "without <name>/data.pkl"},
		{"short storage", writeZip(t, map[string][]byte{
			"data.pkl": tensorPickle("w", 6, [2]byte{3, 2}, [2]byte{1, 3}),
			"data/0":   halfBytes(1, 2, 3),
		}), "holds 6 bytes, the pickle says 6 HalfStorage elements"},
		{"missing storage", writeZip(t, map[string][]byte{
			"data.pkl": tensorPickle("w", 6, [2]byte{3, 2}, [2]byte{1, 3}),
		}), "storage record archive/data/0 is missing"},
		{"view overruns", writeZip(t, map[string][]byte{
			"data.pkl": tensorPickle("w", 6, [2]byte{2, 3}, [2]byte{4, 1}),
			"data/0":   halfBytes(1, 2, 3, 4, 5, 6),
		}), "overruns its storage"},
		{"broadcast view", writeZip(t, map[string][]byte{
			"data.pkl": tensorPickle("w", 6, [2]byte{200, 200}, [2]byte{0, 0}),
			"data/0":   halfBytes(1, 2, 3, 4, 5, 6),
		}), "do not fit a storage of 6 elements"},
		{"cut pickle", writeZip(t, map[string][]byte{"data.pkl": {0x80, 2, 'c', 'o', 's'}}), "ends inside its argument"},
		{"no stop", writeZip(t, map[string][]byte{"data.pkl": {0x80, 2, 'N'}}), "ends before its STOP opcode"},
		{"empty pickle", writeZip(t, map[string][]byte{"data.pkl": {}}), "ends before its STOP opcode"},
		{"bad opcode", writeZip(t, map[string][]byte{"data.pkl": {0x80, 2, 0xff}}), "unknown opcode 0xff at byte 2"},
		{"huge length", writeZip(t, map[string][]byte{"data.pkl": {0x80, 2, 'X', 0xff, 0xff, 0xff, 0xff, 'a', '.'}}), "gives a length of 4294967295 bytes, 2 remain"},
		{"stack underflow", writeZip(t, map[string][]byte{"data.pkl": {0x80, 2, 'R', '.'}}), "pickle"},
		{"not a dict", writeZip(t, map[string][]byte{"data.pkl": {0x80, 2, 'K', 7, '.'}}), "not a dict of tensors"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := readTorchZip(c.path)
			require.Error(t, err)
			require.ErrorContains(t, err, c.want)
		})
	}
	// A PEFT folder whose .bin is truncated.
	peft := t.TempDir()
	cfg, err := os.ReadFile(oracleLoRA(t, "peft-bin", "adapter_config.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(peft, "adapter_config.json"), cfg, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(peft, "adapter_model.bin"), bin[:1000], 0o644))
	_, err = Load(peft)
	require.ErrorContains(t, err, "adapter_model.bin is not a PyTorch zip archive")
}

// peftFolder writes a PEFT folder with the given config and two linear layers of rank 2.
func peftFolder(t *testing.T, config string) string {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(config), 0o644))
	var ts []weights.Tensor
	for _, m := range []string{"down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", "down_blocks.1.attentions.0.transformer_blocks.0.ff.net.2"} {
		ts = append(ts,
			weights.Tensor{Name: "base_model.model." + m + ".lora_A.weight", DType: weights.F32, Shape: []int{2, 3}, F32: []float32{1, 2, 3, 4, 5, 6}},
			weights.Tensor{Name: "base_model.model." + m + ".lora_B.weight", DType: weights.F32, Shape: []int{2, 2}, F32: []float32{1, 0, 0, 1}})
	}
	require.NoError(t, weights.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), ts, nil))
	return dir
}

// TestPEFTConfig: alpha_pattern and rank_pattern apply to the modules they match (the end of
// the module path), use_rslora scales by alpha/√r, and a rank the weights contradict is an
// error.
func TestPEFTConfig(t *testing.T) {
	a, err := Load(peftFolder(t, `{"peft_type":"LORA","r":2,"lora_alpha":4,"alpha_pattern":{"ff.net.2":1}}`))
	require.NoError(t, err)
	scales := map[string]float64{}
	for _, tg := range a.Targets {
		scales[tg.Module] = tg.Scale
	}
	require.Equal(t, map[string]float64{
		"down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q": 2,
		"down_blocks.1.attentions.0.transformer_blocks.0.ff.net.2":   0.5,
	}, scales)

	a, err = Load(peftFolder(t, `{"r":2,"lora_alpha":4,"use_rslora":true}`))
	require.NoError(t, err)
	require.InDelta(t, 4/math.Sqrt2, a.Targets[0].Scale, 1e-12)

	// PEFT's defaults: r = 8 (which these rank-2 weights contradict), lora_alpha = 8.
	a, err = Load(peftFolder(t, `{"r":2}`))
	require.NoError(t, err)
	require.Equal(t, 4.0, a.Targets[0].Scale)
	_, err = Load(peftFolder(t, `{"lora_alpha":2}`))
	require.ErrorContains(t, err, "adapter_config.json gives rank 8, the weights have rank 2")

	_, err = Load(peftFolder(t, `{"r":2,"lora_alpha":4,"rank_pattern":{"to_q":8}}`))
	require.ErrorContains(t, err, "adapter_config.json gives rank 8, the weights have rank 2")
	_, err = Load(peftFolder(t, `{"peft_type":"LOHA","r":2}`))
	require.ErrorContains(t, err, "only LORA")
	_, err = Load(peftFolder(t, `{"r":2,"lora_alpha":4,"use_dora":true}`))
	require.ErrorContains(t, err, "DoRA")
	_, err = Load(t.TempDir())
	require.ErrorContains(t, err, "not a PEFT adapter")
}

// TestBadAdapterFiles: unknown tensors, a missing half and inconsistent shapes are errors
// naming the tensor.
func TestBadAdapterFiles(t *testing.T) {
	write := func(ts ...weights.Tensor) string {
		p := filepath.Join(t.TempDir(), "a.safetensors")
		require.NoError(t, weights.WriteFile(p, ts, nil))
		return p
	}
	f32 := func(name string, shape ...int) weights.Tensor {
		n := 1
		for _, d := range shape {
			n *= d
		}
		return weights.Tensor{Name: name, DType: weights.F32, Shape: shape, F32: make([]float32, n)}
	}
	_, err := Load(write(f32("lora_unet_x.hada_w1_a", 2, 2)))
	require.ErrorContains(t, err, "lora_unet_x.hada_w1_a")
	_, err = Load(write(f32("lora_unet_conv_in.lora_down.weight", 2, 4)))
	require.ErrorContains(t, err, "layer lora_unet_conv_in has no up (B) weight")
	_, err = Load(write(f32("lora_unet_conv_in.lora_down.weight", 2, 4), f32("lora_unet_conv_in.lora_up.weight", 8, 3)))
	require.ErrorContains(t, err, "disagree on the rank")
	_, err = Load(write(f32("lora_unet_conv_in.lora_down.weight", 2, 4, 3, 3), f32("lora_unet_conv_in.lora_up.weight", 8, 2, 3, 3)))
	require.ErrorContains(t, err, "must be [out, 2, 1, 1]")
	_, err = Load(write(f32("lora_unet_conv_in.lora_down.weight", 2, 4), f32("unet.conv_in.lora_B.weight", 8, 2)))
	require.ErrorContains(t, err, "mixes the")
	_, err = Load(filepath.Join(t.TempDir(), "nope.safetensors"))
	require.Error(t, err)
}

// TestAddTo compares the merged update with the textbook product, and kohya's alpha with the
// default alpha = r.
func TestAddTo(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.safetensors")
	a := []float32{1, 2, 3, 4, 5, 6, 7, 8} // [2, 4]
	b := []float32{1, -1, 0.5, 2, 3, 0}    // [3, 2]
	require.NoError(t, weights.WriteFile(p, []weights.Tensor{
		{Name: "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", DType: weights.F32, Shape: []int{2, 4}, F32: a},
		{Name: "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight", DType: weights.F32, Shape: []int{3, 2}, F32: b},
		{Name: "lora_te_text_model_encoder_layers_0_mlp_fc1.alpha", DType: weights.F32, Shape: []int{}, F32: []float32{1}},
		{Name: "lora_unet_conv_in.lora_down.weight", DType: weights.F32, Shape: []int{2, 4}, F32: a},
		{Name: "lora_unet_conv_in.lora_up.weight", DType: weights.F32, Shape: []int{3, 2}, F32: b},
	}, nil))
	ad, err := Load(p)
	require.NoError(t, err)
	require.Len(t, ad.Targets, 2)
	require.Equal(t, UNet, ad.Targets[0].Component)
	require.Equal(t, 1.0, ad.Targets[0].Scale) // no alpha: alpha = r
	te := ad.Targets[1]
	require.Equal(t, TextEncoder, te.Component)
	require.Equal(t, "text_model.encoder.layers.0.mlp.fc1", te.Module)
	require.Equal(t, 0.5, te.Scale)
	w := make([]float32, 12)
	for i := range w {
		w[i] = float32(i)
	}
	require.NoError(t, te.AddTo(w, 3))
	for o := 0; o < 3; o++ {
		for i := 0; i < 4; i++ {
			var d float64
			for r := 0; r < 2; r++ {
				d += float64(b[o*2+r]) * float64(a[r*4+i])
			}
			require.InDelta(t, float64(o*4+i)+3*0.5*d, float64(w[o*4+i]), 1e-5)
		}
	}
	require.Error(t, te.AddTo(make([]float32, 5), 1))
	// A Target whose factors do not fit its sizes (not made by Load) is an error, not a panic.
	var zero Target
	require.ErrorContains(t, zero.AddTo(nil, 1), "do not fit")
	bad := *te
	bad.A = bad.A[:3]
	require.ErrorContains(t, bad.AddTo(make([]float32, 12), 1), "A has 3 values")
}

// TestCheck: missing layers are listed together, or skipped leniently; a shape mismatch is an
// error either way.
func TestCheck(t *testing.T) {
	a, err := Load(oracleLoRA(t, "kohya_lora.safetensors"))
	require.NoError(t, err)
	none := map[Component]Shapes{UNet: func(string) ([]int, bool) { return nil, false }}
	_, err = a.Check(none, false)
	var me *MissingError
	require.ErrorAs(t, err, &me)
	require.Len(t, me.Missing, 78)
	_, err = a.Check(none, true)
	require.ErrorContains(t, err, "none of its 78 layers")

	onlyConv := map[Component]Shapes{UNet: func(name string) ([]int, bool) {
		for _, tg := range a.Targets {
			if tg.Module+".weight" == name && tg.Conv {
				return tg.WeightShape(), true
			}
		}
		return nil, false
	}}
	c, err := a.Check(onlyConv, true)
	require.NoError(t, err)
	require.NotEmpty(t, c.Targets)
	require.Len(t, c.Skipped, 78-len(c.Targets))
	require.Len(t, a.Targets, 78, "Check leaves the adapter alone")

	wrong := map[Component]Shapes{UNet: func(string) ([]int, bool) { return []int{1, 1}, true }}
	_, err = a.Check(wrong, true)
	require.ErrorContains(t, err, "differ in shape")
	require.False(t, errors.As(err, &me))
}

// TestDiffusersLayout reads diffusers' single-file layout (unet. / text_encoder. prefixes, PEFT
// or old lora.down / lora.up names, optional alpha) and a PEFT folder of a text encoder.
func TestDiffusersLayout(t *testing.T) {
	f32 := func(name string, v []float32, shape ...int) weights.Tensor {
		return weights.Tensor{Name: name, DType: weights.F32, Shape: shape, F32: v}
	}
	p := filepath.Join(t.TempDir(), "pytorch_lora_weights.safetensors")
	require.NoError(t, weights.WriteFile(p, []weights.Tensor{
		f32("unet.down_blocks.1.attentions.0.proj_in.lora_A.weight", make([]float32, 2*64), 2, 64, 1, 1),
		f32("unet.down_blocks.1.attentions.0.proj_in.lora_B.weight", make([]float32, 64*2), 64, 2, 1, 1),
		f32("unet.down_blocks.1.attentions.0.proj_in.alpha", []float32{4}),
		f32("text_encoder.text_model.encoder.layers.0.self_attn.k_proj.lora.down.weight", make([]float32, 2*32), 2, 32),
		f32("text_encoder.text_model.encoder.layers.0.self_attn.k_proj.lora.up.weight", make([]float32, 32*2), 32, 2),
	}, nil))
	a, err := Load(p)
	require.NoError(t, err)
	require.Equal(t, FormatDiffusers, a.Format)
	require.Len(t, a.Targets, 2)
	require.Equal(t, UNet, a.Targets[0].Component)
	require.Equal(t, "down_blocks.1.attentions.0.proj_in", a.Targets[0].Module)
	require.Equal(t, []int{64, 64, 1, 1}, a.Targets[0].WeightShape())
	require.Equal(t, 2.0, a.Targets[0].Scale)
	require.Equal(t, TextEncoder, a.Targets[1].Component)
	require.Equal(t, "text_model.encoder.layers.0.self_attn.k_proj", a.Targets[1].Module)
	require.Equal(t, 1.0, a.Targets[1].Scale)

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(`{"r":2,"lora_alpha":2}`), 0o644))
	require.NoError(t, weights.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), []weights.Tensor{
		f32("base_model.model.text_model.encoder.layers.1.mlp.fc1.lora_A.weight", make([]float32, 2*32), 2, 32),
		f32("base_model.model.text_model.encoder.layers.1.mlp.fc1.lora_B.weight", make([]float32, 128*2), 128, 2),
	}, nil))
	a, err = Load(dir)
	require.NoError(t, err)
	require.Equal(t, dir, a.Path)
	require.Equal(t, TextEncoder, a.Targets[0].Component)
	require.Equal(t, []int{128, 32}, a.Targets[0].WeightShape())
}

package vae

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/weights"
)

// A plain float64 AutoencoderKL, written from diffusers' Python (vae.py Encoder/Decoder,
// resnet.py ResnetBlock2D, unet_2d_blocks.py UNetMidBlock2D, attention_processor.py
// AttnProcessor, Upsample2D, Downsample2D, DiagonalGaussianDistribution) with direct loops and no
// code shared with kl.go. Its decoder is checked against the oracle's decoded tensor; its
// encoder, for which the oracle has no reference, is then the reference of ours.

type refT struct {
	c, h, w int
	d       []float64
}

func newRefT(c, h, w int) *refT { return &refT{c, h, w, make([]float64, c*h*w)} }

func (x *refT) at(c, y, i int) float64 { return x.d[(c*x.h+y)*x.w+i] }

type refKL struct {
	t   *testing.T
	cfg *weights.KLVAEConfig
	src weights.TensorSource
}

func (r *refKL) param(name string, shape ...int) []float64 {
	r.t.Helper()
	var d []float32
	if ss, ok := r.src.(nn.ShapedSource); ok { // random weights made on request
		var err error
		d, err = ss.Float32Shaped(name, shape)
		require.NoError(r.t, err, name)
	} else {
		var s []int
		var err error
		d, s, err = r.src.Float32(name)
		require.NoError(r.t, err, name)
		require.Equal(r.t, shape, s, name)
	}
	out := make([]float64, len(d))
	for i, v := range d {
		out[i] = float64(v)
	}
	return out
}

// conv is nn.Conv2d (k×k, bias) on x zero-padded by (top, bottom, left, right).
func (r *refKL) conv(name string, x *refT, cout, k, stride, top, bottom, left, right int) *refT {
	w := r.param(name+".weight", cout, x.c, k, k)
	b := r.param(name+".bias", cout)
	ho := (x.h+top+bottom-k)/stride + 1
	wo := (x.w+left+right-k)/stride + 1
	out := newRefT(cout, ho, wo)
	for co := 0; co < cout; co++ {
		for oy := 0; oy < ho; oy++ {
			for ox := 0; ox < wo; ox++ {
				s := b[co]
				for ci := 0; ci < x.c; ci++ {
					for ky := 0; ky < k; ky++ {
						iy := oy*stride + ky - top
						if iy < 0 || iy >= x.h {
							continue
						}
						for kx := 0; kx < k; kx++ {
							ix := ox*stride + kx - left
							if ix < 0 || ix >= x.w {
								continue
							}
							s += x.at(ci, iy, ix) * w[((co*x.c+ci)*k+ky)*k+kx]
						}
					}
				}
				out.d[(co*ho+oy)*wo+ox] = s
			}
		}
	}
	return out
}

// groupNorm is nn.GroupNorm(groups, C, eps=1e-6), then SiLU when silu is set.
func (r *refKL) groupNorm(name string, x *refT, silu bool) *refT {
	g := r.cfg.NormNumGroups
	gamma := r.param(name+".weight", x.c)
	beta := r.param(name+".bias", x.c)
	out := newRefT(x.c, x.h, x.w)
	per := x.c / g * x.h * x.w
	for gi := 0; gi < g; gi++ {
		seg := x.d[gi*per : (gi+1)*per]
		var m, v float64
		for _, e := range seg {
			m += e
		}
		m /= float64(per)
		for _, e := range seg {
			v += (e - m) * (e - m)
		}
		v /= float64(per)
		for i := range seg {
			c := (gi*per + i) / (x.h * x.w)
			y := (seg[i]-m)/math.Sqrt(v+1e-6)*gamma[c] + beta[c]
			if silu {
				y = y / (1 + math.Exp(-y))
			}
			out.d[gi*per+i] = y
		}
	}
	return out
}

func (r *refKL) resnet(p string, x *refT, out int) *refT {
	h := r.groupNorm(p+".norm1", x, true)
	h = r.conv(p+".conv1", h, out, 3, 1, 1, 1, 1, 1)
	h = r.groupNorm(p+".norm2", h, true)
	h = r.conv(p+".conv2", h, out, 3, 1, 1, 1, 1, 1)
	skip := x
	if x.c != out {
		skip = r.conv(p+".conv_shortcut", x, out, 1, 1, 0, 0, 0, 0)
	}
	for i := range h.d {
		h.d[i] += skip.d[i]
	}
	return h
}

// attention is the mid block's Attention: one head over the H·W positions, residual added.
func (r *refKL) attention(p string, x *refT) *refT {
	c, n := x.c, x.h*x.w
	hn := r.groupNorm(p+".group_norm", x, false)
	lin := func(name string, in [][]float64) [][]float64 {
		w := r.param(name+".weight", c, c)
		b := r.param(name+".bias", c)
		out := make([][]float64, len(in))
		for i, row := range in {
			out[i] = make([]float64, c)
			for o := 0; o < c; o++ {
				s := b[o]
				for j := 0; j < c; j++ {
					s += w[o*c+j] * row[j]
				}
				out[i][o] = s
			}
		}
		return out
	}
	tokens := make([][]float64, n)
	for i := range tokens {
		tokens[i] = make([]float64, c)
		for ch := 0; ch < c; ch++ {
			tokens[i][ch] = hn.d[ch*n+i]
		}
	}
	q, k, v := lin(p+".to_q", tokens), lin(p+".to_k", tokens), lin(p+".to_v", tokens)
	scale := 1 / math.Sqrt(float64(c))
	att := make([][]float64, n)
	for i := 0; i < n; i++ {
		s := make([]float64, n)
		mx := math.Inf(-1)
		for j := 0; j < n; j++ {
			for ch := 0; ch < c; ch++ {
				s[j] += q[i][ch] * k[j][ch]
			}
			s[j] *= scale
			mx = math.Max(mx, s[j])
		}
		var sum float64
		for j := range s {
			s[j] = math.Exp(s[j] - mx)
			sum += s[j]
		}
		att[i] = make([]float64, c)
		for j := range s {
			for ch := 0; ch < c; ch++ {
				att[i][ch] += s[j] / sum * v[j][ch]
			}
		}
	}
	o := lin(p+".to_out.0", att)
	out := newRefT(c, x.h, x.w)
	for i := 0; i < n; i++ {
		for ch := 0; ch < c; ch++ {
			out.d[ch*n+i] = o[i][ch] + x.d[ch*n+i]
		}
	}
	return out
}

func (r *refKL) mid(p string, x *refT) *refT {
	x = r.resnet(p+".resnets.0", x, x.c)
	if r.cfg.MidBlockAddAttention {
		x = r.attention(p+".attentions.0", x)
	}
	return r.resnet(p+".resnets.1", x, x.c)
}

// decode is AutoencoderKL._decode: post_quant_conv, then Decoder.forward.
func (r *refKL) decode(z *refT) *refT {
	ch := r.cfg.BlockOutChannels
	n := len(ch)
	x := r.conv("post_quant_conv", z, z.c, 1, 1, 0, 0, 0, 0)
	x = r.conv("decoder.conv_in", x, ch[n-1], 3, 1, 1, 1, 1, 1)
	x = r.mid("decoder.mid_block", x)
	for i := 0; i < n; i++ {
		out := ch[n-1-i]
		for j := 0; j <= r.cfg.LayersPerBlock; j++ {
			x = r.resnet(fmt.Sprintf("decoder.up_blocks.%d.resnets.%d", i, j), x, out)
		}
		if i < n-1 {
			up := newRefT(x.c, 2*x.h, 2*x.w)
			for c := 0; c < x.c; c++ {
				for y := 0; y < up.h; y++ {
					for xx := 0; xx < up.w; xx++ {
						up.d[(c*up.h+y)*up.w+xx] = x.at(c, y/2, xx/2)
					}
				}
			}
			x = r.conv(fmt.Sprintf("decoder.up_blocks.%d.upsamplers.0.conv", i), up, out, 3, 1, 1, 1, 1, 1)
		}
	}
	x = r.groupNorm("decoder.conv_norm_out", x, true)
	return r.conv("decoder.conv_out", x, r.cfg.OutChannels, 3, 1, 1, 1, 1, 1)
}

// encode is AutoencoderKL.encode up to the moments: Encoder.forward, then quant_conv.
func (r *refKL) encode(img *refT) *refT {
	ch := r.cfg.BlockOutChannels
	n := len(ch)
	x := r.conv("encoder.conv_in", img, ch[0], 3, 1, 1, 1, 1, 1)
	for i := 0; i < n; i++ {
		for j := 0; j < r.cfg.LayersPerBlock; j++ {
			x = r.resnet(fmt.Sprintf("encoder.down_blocks.%d.resnets.%d", i, j), x, ch[i])
		}
		if i < n-1 {
			// Downsample2D(padding=0): F.pad(x, (0, 1, 0, 1)), conv stride 2, padding 0.
			x = r.conv(fmt.Sprintf("encoder.down_blocks.%d.downsamplers.0.conv", i), x, ch[i], 3, 2, 0, 1, 0, 1)
		}
	}
	x = r.mid("encoder.mid_block", x)
	x = r.groupNorm("encoder.conv_norm_out", x, true)
	x = r.conv("encoder.conv_out", x, 2*r.cfg.LatentChannels, 3, 1, 1, 1, 1, 1)
	return r.conv("quant_conv", x, 2*r.cfg.LatentChannels, 1, 1, 0, 0, 0, 0)
}

func toRef(x []float32, c, h, w int) *refT {
	t := newRefT(c, h, w)
	for i, v := range x {
		t.d[i] = float64(v)
	}
	return t
}

func (x *refT) float32s() []float32 {
	out := make([]float32, len(x.d))
	for i, v := range x.d {
		out[i] = float32(v)
	}
	return out
}

package sdxs

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"

	"github.com/sdxs-go/sdxs/imageproc"
	"github.com/sdxs-go/sdxs/unet"
	"github.com/sdxs-go/sdxs/weights"
)

// StageControlNet is the ControlNet's pass, between the noise and the UNet: the control image
// becomes a tensor and the ControlNet turns it into the residuals the UNet adds to its own.
const StageControlNet Stage = "controlnet"

// DefaultControlScale is the conditioning scale of a Request whose ControlScale is 0.
const DefaultControlScale = 0.8

// WithControlNet loads a diffusers ControlNetModel folder (config.json and its weights), or a
// Hugging Face repository id fetched as Resolve does with KindControlNet, with the pipeline, as
// LoadControlNet does.
func WithControlNet(dirOrRepo string) Option {
	return func(o *loadOptions) { o.controlNet = dirOrRepo }
}

// controlNet is a loaded ControlNet and the weights it maps. It is immutable once installed;
// refs counts its users (the pipeline while installed, plus each generation running with it),
// and the weights are closed when the last one lets go.
type controlNet struct {
	model  *unet.ControlNet
	closer io.Closer
	name   string
	refs   int // guarded by controlSlot.mu
}

// controlSlot holds the pipeline's ControlNet, swapped under a mutex held only for the swap.
type controlSlot struct {
	mu  sync.Mutex
	cur *controlNet
}

// LoadControlNet loads a diffusers ControlNetModel folder (config.json and
// diffusion_pytorch_model.safetensors, as saved by diffusers, at the folder's root or in its
// controlnet/ subfolder) and uses it for every later
// Request with a Control image, in place of any ControlNet loaded before. It checks that the
// ControlNet fits the pipeline's UNet (in_channels, block_out_channels, layers_per_block,
// cross_attention_dim), that it takes RGB control images downsampled as the VAE does, and that
// its weights have every tensor with the right shape. It is safe while generations run: those
// that started with the previous ControlNet finish with it.
func (p *Pipeline) LoadControlNet(dir string) error {
	_, exit, err := p.enter(context.Background())
	if err != nil {
		return err
	}
	defer exit()
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		if _, err2 := os.Stat(filepath.Join(dir, "controlnet", "config.json")); err2 == nil {
			dir = filepath.Join(dir, "controlnet")
		}
	}
	cfg, err := weights.LoadControlNetConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return fmt.Errorf("sdxs: controlnet folder %s: %w", dir, err)
	}
	w, err := weights.OpenComponent(dir)
	if err != nil {
		return fmt.Errorf("sdxs: controlnet folder %s: %w", dir, err)
	}
	m, err := unet.NewControlNet(cfg, w)
	if err == nil {
		err = p.install(m, w, dir)
	}
	if err != nil {
		w.Close()
		return fmt.Errorf("sdxs: controlnet folder %s: %w", dir, err)
	}
	return nil
}

// SetControlNet uses a ControlNet built in code (such as one with random weights for a
// benchmark) like LoadControlNet does with a folder; nil unloads the current one.
func (p *Pipeline) SetControlNet(m *unet.ControlNet) error {
	if m == nil {
		p.UnloadControlNet()
		return nil
	}
	_, exit, err := p.enter(context.Background())
	if err != nil {
		return err
	}
	defer exit()
	if err := p.install(m, nil, "a ControlNet built in code"); err != nil {
		return fmt.Errorf("sdxs: %w", err)
	}
	return nil
}

// install checks that m fits the pipeline and makes it the current ControlNet, keeping its
// graphs in the pipeline's cache. The caller has entered the pipeline (p.enter), so that Close
// cannot run meanwhile.
func (p *Pipeline) install(m *unet.ControlNet, closer io.Closer, name string) error {
	if err := m.Fits(p.unet.Config()); err != nil {
		return err
	}
	cfg := m.Config()
	if cfg.ConditioningChannels != 3 {
		return fmt.Errorf("controlnet: conditioning_channels is %d, but control images are RGB (3 channels)", cfg.ConditioningChannels)
	}
	if f := p.vae.UpscaleFactor(); m.DownFactor() != f {
		return fmt.Errorf("controlnet: conditioning_embedding_out_channels %v downsamples the control image by %d, but the VAE upsamples latents by %d",
			cfg.ConditioningEmbeddingOutChannels, m.DownFactor(), f)
	}
	// Building the graph for the smallest latent checks every weight's name and shape now
	// rather than at the first generation (in a cache of its own, dropped just after).
	m.SetCache(nil)
	if err := m.Prepare(context.Background(), 1, 1); err != nil {
		return err
	}
	m.SetCache(p.cache)
	c := &controlNet{model: m, closer: closer, name: name, refs: 1}
	s := &p.control
	s.mu.Lock()
	old := s.cur
	s.cur = c
	s.mu.Unlock()
	p.release(old)
	return nil
}

// UnloadControlNet stops using the ControlNet and releases its weights once the generations
// running with it have finished. It does nothing when none is loaded (or after Close, which
// unloads it).
func (p *Pipeline) UnloadControlNet() {
	if p == nil {
		return
	}
	s := &p.control
	s.mu.Lock()
	old := s.cur
	s.cur = nil
	s.mu.Unlock()
	p.release(old)
}

// HasControlNet reports whether a ControlNet is loaded.
func (p *Pipeline) HasControlNet() bool {
	if p == nil {
		return false
	}
	s := &p.control
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur != nil
}

// acquire returns the current ControlNet (nil for none), held until release.
func (p *Pipeline) acquire() *controlNet {
	s := &p.control
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		s.cur.refs++
	}
	return s.cur
}

// release lets go of c (nil is ignored), closing its weights after the last user.
func (p *Pipeline) release(c *controlNet) error {
	if c == nil {
		return nil
	}
	s := &p.control
	s.mu.Lock()
	c.refs--
	last := c.refs == 0
	s.mu.Unlock()
	if !last {
		return nil
	}
	c.model.Drop()
	if c.closer != nil {
		return c.closer.Close()
	}
	return nil
}

// closeControl unloads the ControlNet when the pipeline closes.
func (p *Pipeline) closeControl() error {
	s := &p.control
	s.mu.Lock()
	old := s.cur
	s.cur = nil
	s.mu.Unlock()
	return p.release(old)
}

// controlRun is the ControlNet part of one generation.
type controlRun struct {
	cn     *controlNet
	img    image.Image
	scale  float64
	invert bool
	canny  *imageproc.CannyOptions
	cond   []float32 // the control tensor, made at the first step
}

// startControl checks a request's control fields and takes hold of the ControlNet it will use
// (nil when the request has no control image). The caller releases it with p.release(run.cn).
func (p *Pipeline) startControl(req *Request) (*controlRun, error) {
	if req.Control == nil {
		return nil, nil
	}
	if b := req.Control.Bounds(); b.Empty() {
		return nil, fmt.Errorf("sdxs: the control image is empty (%v)", b)
	}
	scale := req.ControlScale
	if scale == 0 {
		scale = DefaultControlScale
	}
	if math.IsNaN(scale) || math.IsInf(scale, 0) {
		return nil, fmt.Errorf("sdxs: ControlScale %v is not a finite number", req.ControlScale)
	}
	cn := p.acquire()
	if cn == nil {
		return nil, errors.New("sdxs: the request has a control image but no ControlNet is loaded (use WithControlNet or LoadControlNet)")
	}
	var canny *imageproc.CannyOptions
	if req.ControlCanny != nil {
		o := *req.ControlCanny
		canny = &o
	}
	return &controlRun{cn: cn, img: req.Control, scale: scale, invert: req.ControlInvert, canny: canny}, nil
}

// residuals returns the ControlNet's residuals for the latent sample at timestep t. The first
// call makes the control tensor of the picture (the Canny edges of the control image first,
// when asked), which later steps reuse; the tensor and the first step's residuals are recorded
// in res.
func (r *controlRun) residuals(ctx context.Context, res *Result, u *weights.UNetConfig, sample []float32, lh, lw int, t float64) (*unet.Residuals, error) {
	if r.cond == nil {
		img := r.img
		if r.canny != nil {
			edges, err := imageproc.Canny(img, *r.canny)
			if err != nil {
				return nil, fmt.Errorf("sdxs: the control image's edges: %w", err)
			}
			img = edges
		}
		r.cond = imageproc.ControlTensor(img, res.Width, res.Height, r.invert)
		if r.cond == nil {
			return nil, fmt.Errorf("sdxs: the control image %v cannot be resized to %d×%d", img.Bounds(), res.Width, res.Height)
		}
		res.ControlCond = r.cond
	}
	out, err := r.cn.model.Forward(ctx, sample, lh, lw, t, res.TextEmbeddings, r.cond, r.scale)
	if err != nil {
		return nil, err
	}
	if res.ControlDown == nil {
		res.ControlDown, res.ControlMid = out.Down, out.Mid
		res.controlShapes = append(unet.DownResidualShapes(u, lh, lw), unet.MidResidualShape(u, lh, lw))
	}
	return out, nil
}

// warmControl builds the ControlNet's graph for an lh×lw latent when one is loaded.
func (p *Pipeline) warmControl(ctx context.Context, lh, lw int) error {
	c := p.acquire()
	defer p.release(c)
	if c == nil {
		return nil
	}
	return c.model.Prepare(ctx, lh, lw)
}

// controlMACs adds the ControlNet's multiply-adds to a MACs table when one is loaded.
func (p *Pipeline) controlMACs(ctx context.Context, out map[Stage]int64, lh, lw int) error {
	c := p.acquire()
	defer p.release(c)
	if c == nil {
		return nil
	}
	m, _, err := c.model.MACs(ctx, lh, lw)
	if err != nil {
		return err
	}
	out[StageControlNet] = m
	return nil
}

// controlTensors returns the ControlNet's tensors of a result (none when it had no control
// image) under the reference's names: control_cond [1,3,H,W], control_down.{j} and control_mid
// [1,C,h,w]. It returns an error if they do not fit together (a Result not made by Generate).
func (r *Result) controlTensors() ([]weights.Tensor, error) {
	if r.ControlCond == nil {
		return nil, nil
	}
	if len(r.ControlCond) != 3*r.Width*r.Height {
		return nil, fmt.Errorf("sdxs: Result.Tensors: control_cond has %d values, want %d", len(r.ControlCond), 3*r.Width*r.Height)
	}
	if len(r.controlShapes) == 0 || len(r.controlShapes) != len(r.ControlDown)+1 {
		return nil, fmt.Errorf("sdxs: Result.Tensors: %d ControlNet down residuals do not fit the result", len(r.ControlDown))
	}
	ts := []weights.Tensor{{Name: "control_cond", DType: weights.F32, Shape: []int{1, 3, r.Height, r.Width}, F32: r.ControlCond}}
	add := func(name string, s [3]int, v []float32) error {
		if len(v) != s[0]*s[1]*s[2] {
			return fmt.Errorf("sdxs: Result.Tensors: %s has %d values, want %v", name, len(v), s)
		}
		ts = append(ts, weights.Tensor{Name: name, DType: weights.F32, Shape: []int{1, s[0], s[1], s[2]}, F32: v})
		return nil
	}
	for j, d := range r.ControlDown {
		if err := add(fmt.Sprintf("control_down.%d", j), r.controlShapes[j], d); err != nil {
			return nil, err
		}
	}
	if err := add("control_mid", r.controlShapes[len(r.controlShapes)-1], r.ControlMid); err != nil {
		return nil, err
	}
	return ts, nil
}

// Package sdxs turns a prompt into a picture in one UNet pass with SDXS-512, a one-step latent
// diffusion model, in pure Go: no Python, no cgo, no server.
//
// Load a diffusers model folder once, then call Generate as often as needed, from as many
// goroutines as needed:
//
//	p, err := sdxs.Load("sdxs-512-dreamshaper")
//	if err != nil { ... }
//	defer p.Close()
//	res, err := p.Generate(ctx, sdxs.Request{Prompt: "a lighthouse at dusk", Seed: 42, Width: 512, Height: 512})
//	png.Encode(f, res.Image)
//
// The path of one picture: the CLIP tokenizer and text encoder turn the prompt into embeddings;
// PyTorch-compatible noise from the seed is scaled for the Euler scheduler's single step at
// t = 999; the UNet predicts the noise; the step gives the clean latents x₀; the TAESD decoder
// (or the full KL VAE, WithVAE("large")) turns them into pixels. The same seed gives the same
// picture as diffusers with a CPU generator.
// Request.Steps runs more Euler steps (SD-Turbo-class models take 1–4), and Request.Init starts
// from a picture instead of pure noise (image to image, as diffusers'
// StableDiffusionImg2ImgPipeline).
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
	"slices"
	"time"

	"github.com/sdxs-go/sdxs/imageproc"
	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/sampler"
	"github.com/sdxs-go/sdxs/textenc"
	"github.com/sdxs-go/sdxs/tokenizer"
	"github.com/sdxs-go/sdxs/unet"
	"github.com/sdxs-go/sdxs/weights"
)

// Size limits of a picture, in pixels. Width and height must be multiples of 8.
const (
	MinSize = 64
	MaxSize = 2048
)

// Stage names a part of the pipeline, for progress reports and timings.
type Stage string

// The stages of one generation, in order.
const (
	StageTokenize    Stage = "tokenize"
	StageTextEncoder Stage = "text_encoder"
	StageVAEEncoder  Stage = "vae_encoder" // image to image only: the init picture to latents
	StageNoise       Stage = "noise"
	StageUNet        Stage = "unet"
	StageVAEDecoder  Stage = "vae_decoder"
)

// Request describes one picture.
type Request struct {
	// Prompt is the text to draw.
	Prompt string
	// Seed seeds PyTorch's CPU generator for the initial noise.
	Seed uint64
	// Width and Height of the picture in pixels: multiples of 8 between MinSize and MaxSize.
	// Zero means the init picture's size rounded down to multiples of 8 when Init is set (as
	// diffusers does), else the model's default (its UNet sample_size × 8, 512 for SDXS-512).
	Width, Height int
	// Steps is the number of inference steps the Euler schedule is built for (diffusers'
	// num_inference_steps). Zero means 1, the SDXS setting; SD-Turbo-class models take 1–4.
	Steps int
	// Init, if set, makes this image to image: the picture (resized to Width×Height if they
	// differ from its size, as diffusers' image processor does) is encoded by the VAE, noised to
	// the first timestep Strength keeps, and denoised from there.
	Init image.Image
	// Strength is how much of the schedule image to image runs, in (0, 1]: the last
	// int(Steps·Strength) steps (diffusers' get_timesteps). 1 starts from pure noise plus the
	// picture at t = 999; 0.5 with 2 steps runs t = 499 once. Required with Init; must be zero
	// without it.
	Strength float64
	// Progress, if set, is called after each stage with the time it took, and after each
	// denoising step for StageUNet (and StageControlNet).
	Progress func(stage Stage, took time.Duration)

	// Control, if set, is the control image of the loaded ControlNet (a sketch for the
	// DreamShaper-Sketch ControlNet: black lines on white). It may have any size: it is
	// converted to RGB, resized to the picture's size and scaled to [0, 1] as diffusers does.
	Control image.Image
	// ControlScale multiplies the ControlNet's residuals; 0 means DefaultControlScale (0.8).
	ControlScale float64
	// ControlInvert inverts the control image (for white lines on black).
	ControlInvert bool
	// ControlCanny, if set, replaces the control image by its Canny edges (white on black)
	// before it is resized, so that a photograph can drive a canny ControlNet.
	ControlCanny *imageproc.CannyOptions
	// LoRAs are adapters applied to this request only, each with its own scale (see LoRA).
	LoRAs []LoRA
}

// Result is a generated picture and the tensors that made it.
type Result struct {
	// Image is the picture.
	Image *image.RGBA
	// Seed is the seed used.
	Seed uint64
	// Width and Height of the picture.
	Width, Height int

	// InputIDs are the prompt's token ids [77].
	InputIDs []int64
	// TextEmbeddings are the text encoder's last hidden state [77, D].
	TextEmbeddings []float32
	// InitImage is the init picture as the VAE encoder sees it [3, H, W] in [−1, 1] (image to
	// image only).
	InitImage []float32
	// InitLatents are the encoded init picture × the VAE's scaling factor [4, H/8, W/8] (image
	// to image only).
	InitLatents []float32
	// Noise is the initial noise [4, H/8, W/8].
	Noise []float32
	// NoisyLatents are InitLatents noised to the first timestep run (image to image only).
	NoisyLatents []float32
	// Timesteps are the timesteps the UNet ran at, in order.
	Timesteps []float64
	// UNetInput is the scaled latent the UNet sees at the first step.
	UNetInput []float32
	// UNetOutput is the predicted noise at the first step.
	UNetOutput []float32
	// Latents is x₀, the denoised latent after the last step, before division by the VAE's
	// scaling factor.
	Latents []float32
	// Decoded is the decoder's output [3, H, W], nominally in [-1, 1].
	Decoded []float32
	// Timings holds the time each stage took.
	Timings map[Stage]time.Duration

	// ControlCond is the control image as the ControlNet saw it [3, H, W] in [0, 1] (nil
	// without a control image); ControlDown and ControlMid are its residuals, already
	// multiplied by the control scale.
	ControlCond, ControlMid []float32
	ControlDown             [][]float32
	controlShapes           [][3]int
}

// Pipeline is a loaded SDXS model. It is safe for concurrent use: generations of the same size
// share one compiled graph per model and run one after another, each using every core. The
// compiled graphs of every model and size share one cache with a byte budget (WithCacheBudget).
type Pipeline struct {
	tok      *tokenizer.Tokenizer
	text     *textenc.Model
	unet     *unet.Model
	vae      Decoder
	schedCfg sampler.Config
	closers  []io.Closer
	cache    *nn.ProgramCache
	life     lifecycle
	control  controlSlot
	loras    loraCache
	// loraUnfused applies adapters as unfused low-rank branches rather than merged weights.
	loraUnfused bool
	// precision is the arithmetic of the UNet and the text encoder (WithPrecision).
	precision Precision
}

// newPipeline returns an empty pipeline with its graph cache.
func newPipeline(o *loadOptions) *Pipeline {
	p := &Pipeline{cache: newCache(o), loras: loraCache{max: o.loraSets}, loraUnfused: o.loraUnfused}
	p.life.init()
	return p
}

// shareCache makes every model keep its graphs in the pipeline's cache and builds the text
// encoder's graph, which every size uses.
func (p *Pipeline) shareCache() error {
	p.text.SetCache(p.cache)
	p.unet.SetCache(p.cache)
	p.vae.SetCache(p.cache)
	if err := p.text.Prepare(context.Background()); err != nil {
		return fmt.Errorf("sdxs: %w", err)
	}
	return nil
}

// Load opens a diffusers model folder (model_index.json with tokenizer/, text_encoder/, unet/,
// vae/ (or vae_large/ with WithVAE("large")) and scheduler/), or a Hugging Face repository id
// ("IDKiro/sdxs-512-dreamshaper", optionally "@revision") whose files it fetches into
// huggingface_hub's cache first (see Resolve); a path that exists is always a path. Weights are
// memory-mapped; the graphs are built on first use of each image size. Options adjust what is
// loaded and how.
func Load(nameOrDir string, opts ...Option) (*Pipeline, error) {
	o := applyOptions(opts)
	dir, err := resolve(o, nameOrDir, KindPipeline)
	if err != nil {
		return nil, err
	}
	folder, err := weights.OpenFolder(dir)
	if err != nil {
		return nil, fmt.Errorf("sdxs: %w", err)
	}
	p := newPipeline(o)
	ok := false
	defer func() {
		if !ok {
			p.Close()
		}
	}()
	comp := func(name string) (string, error) {
		d, found := folder.Path(name)
		if !found {
			return "", fmt.Errorf("sdxs: model folder %s has no %s component", dir, name)
		}
		return d, nil
	}

	d, err := comp("tokenizer")
	if err != nil {
		return nil, err
	}
	if p.tok, err = tokenizer.Load(d); err != nil {
		return nil, fmt.Errorf("sdxs: %w", err)
	}

	if p.text, err = component(p, comp, "text_encoder", weights.LoadCLIPTextConfig, textenc.New); err != nil {
		return nil, err
	}
	if p.unet, err = component(p, comp, "unet", weights.LoadUNetConfig, unet.New); err != nil {
		return nil, err
	}
	if err := p.setPrecision(o.precision); err != nil {
		return nil, err
	}
	p.setWinogradBudget(o)
	if p.vae, err = loadDecoder(p, folder, dir, comp, o); err != nil {
		return nil, err
	}

	if d, err = comp("scheduler"); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(d, "scheduler_config.json"))
	if err != nil {
		return nil, fmt.Errorf("sdxs: %w", err)
	}
	if p.schedCfg, err = sampler.ParseConfig(data); err != nil {
		return nil, fmt.Errorf("sdxs: %s: %w", filepath.Join(d, "scheduler_config.json"), err)
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	if err := p.checkScheduler(); err != nil {
		return nil, err
	}
	p.fitCache(o)
	if err := p.shareCache(); err != nil {
		return nil, err
	}
	if o.controlNet != "" {
		cn, err := resolve(o, o.controlNet, KindControlNet)
		if err != nil {
			return nil, err
		}
		if err := p.LoadControlNet(cn); err != nil {
			return nil, err
		}
	}
	ok = true
	return p, nil
}

// Parts are the components of a pipeline, for building one from models made in code (such as
// full-size models with random weights for benchmarks) rather than from a folder.
type Parts struct {
	Tokenizer   *tokenizer.Tokenizer
	TextEncoder *textenc.Model
	UNet        *unet.Model
	VAE         Decoder // *vae.Tiny or *vae.KL
	Scheduler   sampler.Config
}

// New assembles a pipeline from its parts, checking that they fit together. The models then
// keep their compiled graphs in the pipeline's cache (WithCacheBudget is the option that
// applies here). Close does not close the parts' weight sources: their owner does.
func New(parts Parts, opts ...Option) (*Pipeline, error) {
	if parts.Tokenizer == nil || parts.TextEncoder == nil || parts.UNet == nil || nilDecoder(parts.VAE) {
		return nil, errors.New("sdxs: New needs a tokenizer, a text encoder, a UNet and a VAE")
	}
	o := applyOptions(opts)
	p := newPipeline(o)
	p.tok, p.text, p.unet, p.vae, p.schedCfg = parts.Tokenizer, parts.TextEncoder, parts.UNet, parts.VAE, parts.Scheduler
	if err := p.check(); err != nil {
		return nil, err
	}
	if o.precisionSet {
		if err := p.setPrecision(o.precision); err != nil {
			return nil, err
		}
	} else if p.unet.Params().Precision() == nn.BF16 {
		p.precision = PrecisionBF16
	}
	p.setWinogradBudget(o)
	if err := p.checkScheduler(); err != nil {
		return nil, err
	}
	p.fitCache(o)
	if err := p.shareCache(); err != nil {
		return nil, err
	}
	return p, nil
}

// check verifies that the components fit together.
func (p *Pipeline) check() error {
	ucfg, tcfg := p.unet.Config(), p.text.Config()
	if ucfg.CrossAttentionDim != tcfg.HiddenSize {
		return fmt.Errorf("sdxs: unet cross_attention_dim %d does not match the text encoder's hidden_size %d", ucfg.CrossAttentionDim, tcfg.HiddenSize)
	}
	if lc := p.vae.LatentChannels(); lc != ucfg.OutChannels || ucfg.InChannels != ucfg.OutChannels {
		return fmt.Errorf("sdxs: vae latent_channels %d does not match the unet's in_channels %d and out_channels %d", lc, ucfg.InChannels, ucfg.OutChannels)
	}
	if p.tok.MaxLength() != p.text.SeqLen() {
		return fmt.Errorf("sdxs: the tokenizer's model_max_length %d does not match the text encoder's max_position_embeddings %d", p.tok.MaxLength(), p.text.SeqLen())
	}
	if p.text.SeqLen() != 77 {
		return fmt.Errorf("sdxs: text encoder max_position_embeddings %d: only 77 is supported", p.text.SeqLen())
	}
	if f := p.vae.UpscaleFactor(); f != 8 {
		return fmt.Errorf("sdxs: the VAE upscales by %d, want 8", f)
	}
	return nil
}

// checkScheduler checks that the scheduler config makes a one-step schedule.
func (p *Pipeline) checkScheduler() error {
	s, err := p.scheduler(1)
	if err != nil {
		return err
	}
	if s.NumSteps() != 1 {
		return fmt.Errorf("sdxs: scheduler: one step gives %d timesteps", s.NumSteps())
	}
	return nil
}

// component loads a model component: its config.json, its memory-mapped weights, and the model.
func component[C, M any](p *Pipeline, dir func(string) (string, error), name string,
	loadConfig func(path string) (*C, error), newModel func(*C, weights.TensorSource) (*M, error)) (*M, error) {
	d, err := dir(name)
	if err != nil {
		return nil, err
	}
	cfg, err := loadConfig(filepath.Join(d, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("sdxs: %w", err)
	}
	w, err := p.open(d)
	if err != nil {
		return nil, err
	}
	m, err := newModel(cfg, w)
	if err != nil {
		return nil, fmt.Errorf("sdxs: %s: %w", name, err)
	}
	return m, nil
}

func (p *Pipeline) open(dir string) (*weights.Set, error) {
	s, err := weights.OpenComponent(dir)
	if err != nil {
		return nil, fmt.Errorf("sdxs: %w", err)
	}
	p.closers = append(p.closers, s)
	return s, nil
}

// DefaultSize returns the picture size the model was trained for (UNet sample_size × 8).
func (p *Pipeline) DefaultSize() int {
	if p == nil || p.unet == nil || p.vae == nil {
		return 512
	}
	if s := p.unet.Config().SampleSize; s > 0 {
		return s * p.vae.UpscaleFactor()
	}
	return 512
}

// Warm builds the graphs for a picture of width×height and checks every weight they need, so
// that the first Generate of that size does not pay for it. If ctx ends first, Warm returns its
// error (the builds complete in the background).
func (p *Pipeline) Warm(ctx context.Context, width, height int) error {
	if err := checkSize(width, height); err != nil {
		return err
	}
	cctx, exit, err := p.enter(ctx)
	if err != nil {
		return err
	}
	defer exit()
	f := p.vae.UpscaleFactor()
	if err := p.text.Prepare(cctx); err != nil { // built by Load, but the cache may have dropped it
		return p.closedErr(ctx, fmt.Errorf("sdxs: %w", err))
	}
	if err := p.unet.Prepare(cctx, height/f, width/f, false); err != nil {
		return p.closedErr(ctx, fmt.Errorf("sdxs: %w", err))
	}
	if err := p.vae.Prepare(cctx, height/f, width/f); err != nil {
		return p.closedErr(ctx, fmt.Errorf("sdxs: %w", err))
	}
	if err := p.warmControl(cctx, height/f, width/f); err != nil {
		return p.closedErr(ctx, fmt.Errorf("sdxs: %w", err))
	}
	return nil
}

// MACs returns the multiply-adds of convolutions and linear layers in each stage of a
// width×height generation (attention products are not counted). It builds the graphs for that
// size if needed.
func (p *Pipeline) MACs(ctx context.Context, width, height int) (map[Stage]int64, error) {
	if err := checkSize(width, height); err != nil {
		return nil, err
	}
	cctx, exit, err := p.enter(ctx)
	if err != nil {
		return nil, err
	}
	defer exit()
	f := p.vae.UpscaleFactor()
	out := map[Stage]int64{}
	if out[StageTextEncoder], _, err = p.text.MACs(cctx); err != nil {
		return nil, p.closedErr(ctx, fmt.Errorf("sdxs: %w", err))
	}
	if out[StageUNet], _, err = p.unet.MACs(cctx, height/f, width/f); err != nil {
		return nil, p.closedErr(ctx, fmt.Errorf("sdxs: %w", err))
	}
	if out[StageVAEDecoder], err = p.vae.MACs(cctx, height/f, width/f); err != nil {
		return nil, p.closedErr(ctx, fmt.Errorf("sdxs: %w", err))
	}
	if err := p.controlMACs(cctx, out, height/f, width/f); err != nil {
		return nil, p.closedErr(ctx, fmt.Errorf("sdxs: %w", err))
	}
	return out, nil
}

func checkSize(width, height int) error {
	for _, d := range []struct {
		name string
		v    int
	}{{"width", width}, {"height", height}} {
		if d.v%8 != 0 || d.v < MinSize || d.v > MaxSize {
			return fmt.Errorf("sdxs: %s %d: must be a multiple of 8 between %d and %d", d.name, d.v, MinSize, MaxSize)
		}
	}
	return nil
}

// Generate makes one picture. It checks ctx between stages (and between the layers of each
// model) and returns ctx's error if it is cancelled; after Close it returns ErrClosed.
func (p *Pipeline) Generate(ctx context.Context, req Request) (*Result, error) {
	return p.generateEntered(ctx, req, nil)
}

// generateEntered is Generate, taking the prompt's token ids and text embeddings from prev
// when it is not nil (a picture of the same request and adapters).
func (p *Pipeline) generateEntered(ctx context.Context, req Request, prev *Result) (*Result, error) {
	cctx, exit, err := p.enter(ctx)
	if err != nil {
		return nil, err
	}
	defer exit()
	res, err := p.generate(cctx, req, prev)
	if err != nil {
		return nil, p.closedErr(ctx, err)
	}
	return res, nil
}

func (p *Pipeline) generate(ctx context.Context, req Request, prev *Result) (*Result, error) {
	// An interface holding a nil picture (a nil *image.RGBA) would panic on its first use.
	if req.Control != nil && imageproc.IsNil(req.Control) {
		return nil, errors.New("sdxs: Request.Control is a nil picture")
	}
	if req.Init != nil && imageproc.IsNil(req.Init) {
		return nil, errors.New("sdxs: Request.Init is a nil picture")
	}
	w, h, err := p.requestSize(req)
	if err != nil {
		return nil, err
	}
	steps, start, err := requestSteps(req)
	if err != nil {
		return nil, err
	}
	sched, err := p.scheduler(steps)
	if err != nil {
		return nil, err
	}
	var initImage []float32
	if req.Init != nil {
		if initImage, err = initTensor(req.Init, w, h); err != nil {
			return nil, err
		}
	}
	ctl, err := p.startControl(&req)
	if err != nil {
		return nil, err
	}
	if ctl != nil {
		defer p.release(ctl.cn)
	}
	f := p.vae.UpscaleFactor()
	lh, lw := h/f, w/f
	text, un, set, err := p.models(req.LoRAs)
	if err != nil {
		return nil, err
	}
	defer p.releaseLoRA(set)
	res := &Result{Seed: req.Seed, Width: w, Height: h, InitImage: initImage, Timings: make(map[Stage]time.Duration)}
	stage := func(s Stage, fn func() error) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		start := time.Now()
		if err := fn(); err != nil {
			return err
		}
		d := time.Since(start)
		res.Timings[s] += d
		if req.Progress != nil {
			req.Progress(s, d)
		}
		return nil
	}

	if prev != nil {
		// The same prompt and adapters: the embeddings of the picture before (copies, as a
		// Result's slices are the caller's).
		res.InputIDs, res.TextEmbeddings = slices.Clone(prev.InputIDs), slices.Clone(prev.TextEmbeddings)
	} else {
		err = stage(StageTokenize, func() error {
			res.InputIDs = p.tok.InputIDs(req.Prompt)
			return nil
		})
		if err == nil {
			err = stage(StageTextEncoder, func() (err error) {
				res.TextEmbeddings, err = text.Encode(ctx, res.InputIDs)
				return err
			})
		}
	}
	var latents []float32
	if err == nil && req.Init != nil {
		latents, err = p.initLatents(ctx, req, res, sched, start, stage)
	} else if err == nil {
		err = stage(StageNoise, func() error {
			c := un.Config().InChannels
			res.Noise = sampler.NewGenerator(req.Seed).Randn(1, c, lh, lw)
			latents = sched.InitLatents(slices.Clone(res.Noise))
			return nil
		})
	}
	// The denoising loop: each step scales the latents for the UNet (and the ControlNet),
	// predicts the noise and takes an Euler step to the next σ (0 after the last, which lands
	// on x₀).
	timesteps := sched.Timesteps()
	for i := start; err == nil && i < len(timesteps); i++ {
		var in []float32
		if in, err = sched.ScaleModelInput(slices.Clone(latents), i); err != nil {
			break
		}
		var resid *unet.Residuals
		if ctl != nil {
			err = stage(StageControlNet, func() (err error) {
				resid, err = ctl.residuals(ctx, res, un.Config(), in, lh, lw, timesteps[i])
				return err
			})
			if err != nil {
				break
			}
		}
		err = stage(StageUNet, func() error {
			out, err := un.Forward(ctx, in, lh, lw, timesteps[i], res.TextEmbeddings, resid)
			if err != nil {
				return err
			}
			if i == start {
				res.UNetInput, res.UNetOutput = in, out
			}
			res.Timesteps = append(res.Timesteps, timesteps[i])
			latents, _, err = sched.Step(out, latents, i)
			return err
		})
	}
	res.Latents = latents
	if err == nil {
		err = stage(StageVAEDecoder, func() (err error) {
			sf := float32(p.vae.ScalingFactor())
			z := make([]float32, len(res.Latents))
			for i, v := range res.Latents {
				z[i] = v / sf
			}
			res.Decoded, err = p.vae.Decode(ctx, z, lh, lw)
			if err != nil {
				return err
			}
			res.Image, err = ToImage(res.Decoded, w, h)
			return err
		})
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// requestSize returns the picture size of a request: Width and Height if given, else the init
// picture's size rounded down to multiples of 8 (imageproc.DefaultSize, as diffusers does),
// else the model's default; checked.
func (p *Pipeline) requestSize(req Request) (w, h int, err error) {
	w, h = req.Width, req.Height
	if req.Init != nil {
		b := req.Init.Bounds()
		if b.Empty() {
			return 0, 0, fmt.Errorf("sdxs: init picture is empty (%d×%d)", b.Dx(), b.Dy())
		}
		dw, dh := imageproc.DefaultSize(req.Init, p.vae.UpscaleFactor())
		if w == 0 {
			w = dw
		}
		if h == 0 {
			h = dh
		}
		if w < MinSize || h < MinSize {
			return 0, 0, fmt.Errorf("sdxs: init picture %d×%d gives a %d×%d picture: the minimum is %d×%d", b.Dx(), b.Dy(), w, h, MinSize, MinSize)
		}
	}
	if w == 0 {
		w = p.DefaultSize()
	}
	if h == 0 {
		h = p.DefaultSize()
	}
	if err := checkSize(w, h); err != nil {
		return 0, 0, err
	}
	return w, h, nil
}

// maxSteps bounds Request.Steps (the training schedule's length bounds it too).
const maxSteps = 1000

// requestSteps returns the number of steps the schedule is built for and the index of the first
// step run (0 for text to image; get_timesteps' t_start for image to image).
func requestSteps(req Request) (steps, start int, err error) {
	steps = req.Steps
	if steps == 0 {
		steps = 1
	}
	if steps < 1 || steps > maxSteps {
		return 0, 0, fmt.Errorf("sdxs: steps %d: must be between 1 and %d", req.Steps, maxSteps)
	}
	if req.Init == nil {
		if req.Strength != 0 {
			return 0, 0, fmt.Errorf("sdxs: strength %v without an init picture: strength is for image to image", req.Strength)
		}
		return steps, 0, nil
	}
	if !(req.Strength > 0 && req.Strength <= 1) {
		return 0, 0, fmt.Errorf("sdxs: strength %v: must be in (0, 1] for image to image", req.Strength)
	}
	start, err = sampler.StrengthStart(steps, req.Strength)
	if err != nil {
		return 0, 0, fmt.Errorf("sdxs: %w", err)
	}
	return steps, start, nil
}

// scheduler returns an Euler scheduler with the schedule for steps inference steps (cheap: a
// table of 1000 values).
func (p *Pipeline) scheduler(steps int) (*sampler.Euler, error) {
	s, err := sampler.New(p.schedCfg)
	if err != nil {
		return nil, fmt.Errorf("sdxs: scheduler: %w", err)
	}
	if err := s.SetTimesteps(steps); err != nil {
		return nil, fmt.Errorf("sdxs: scheduler: %w", err)
	}
	return s, nil
}

// ToImage turns a decoded picture [3, h, w] in [-1, 1] into RGBA pixels the way diffusers does:
// round(clamp(x/2 + 0.5, 0, 1)·255). It returns an error if w or h is not positive or decoded
// does not hold 3·w·h values.
func ToImage(decoded []float32, w, h int) (*image.RGBA, error) {
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("sdxs: ToImage: size %d×%d is not positive", w, h)
	}
	if w > math.MaxInt/4/h || len(decoded)/3 != w*h || len(decoded)%3 != 0 {
		return nil, fmt.Errorf("sdxs: ToImage: %d values for a 3×%d×%d picture, want %d", len(decoded), h, w, 3*w*h)
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	plane := w * h
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			o := img.PixOffset(x, y)
			for c := 0; c < 3; c++ {
				img.Pix[o+c] = toByte(decoded[c*plane+y*w+x])
			}
			img.Pix[o+3] = 255
		}
	}
	return img, nil
}

func toByte(v float32) uint8 {
	f := v/2 + 0.5
	if !(f > 0) { // also NaN
		f = 0
	}
	if f > 1 {
		f = 1
	}
	return uint8(math.RoundToEven(float64(f * 255)))
}

// Tensors returns the result's tensors under the names the diffusers reference uses, with a
// batch dimension of 1: input_ids (int64 [1,77]), text_embeddings [1,77,D], noise, unet_input,
// unet_output and latents (x₀) [1,4,H/8,W/8], decoded [1,3,H,W] and image (uint8 [H,W,3]);
// for image to image also init_image [1,3,H,W], init_latents and noisy_latents [1,4,H/8,W/8]
// and timesteps (float32 [n]), as the image-to-image reference names them; with a control image
// also control_cond [1,3,H,W], control_down.{j} and control_mid. unet_input and unet_output (and
// the control residuals) are those of the first step. weights.WriteFile writes them as a
// safetensors file. It returns an error, naming the field, if the result is not whole (a field
// missing or of the wrong length for Width×Height).
func (r *Result) Tensors() ([]weights.Tensor, error) {
	if r == nil {
		return nil, errors.New("sdxs: Result.Tensors: nil result")
	}
	if r.Width <= 0 || r.Height <= 0 || r.Width%8 != 0 || r.Height%8 != 0 || r.Width > MaxSize || r.Height > MaxSize {
		return nil, fmt.Errorf("sdxs: Result.Tensors: size %d×%d is not a picture size", r.Width, r.Height)
	}
	lh, lw := r.Height/8, r.Width/8
	if len(r.Noise) == 0 || len(r.Noise)%(lh*lw) != 0 {
		return nil, fmt.Errorf("sdxs: Result.Tensors: noise has %d values, not a multiple of %d×%d", len(r.Noise), lh, lw)
	}
	lc := len(r.Noise) / (lh * lw)
	lat := []int{1, lc, lh, lw}
	if len(r.InputIDs) == 0 || len(r.TextEmbeddings) == 0 || len(r.TextEmbeddings)%len(r.InputIDs) != 0 {
		return nil, fmt.Errorf("sdxs: Result.Tensors: %d text embedding values for %d tokens", len(r.TextEmbeddings), len(r.InputIDs))
	}
	d := len(r.TextEmbeddings) / len(r.InputIDs)
	for _, f := range []struct {
		name string
		v    []float32
		n    int
	}{
		{"unet_input", r.UNetInput, len(r.Noise)},
		{"unet_output", r.UNetOutput, len(r.Noise)},
		{"latents", r.Latents, len(r.Noise)},
		{"decoded", r.Decoded, 3 * r.Width * r.Height},
		// image to image: all or none.
		{"init_latents", r.InitLatents, ifInit(r, len(r.Noise))},
		{"noisy_latents", r.NoisyLatents, ifInit(r, len(r.Noise))},
	} {
		if len(f.v) != f.n {
			return nil, fmt.Errorf("sdxs: Result.Tensors: %s has %d values, want %d", f.name, len(f.v), f.n)
		}
	}
	if r.Image == nil || r.Image.Rect.Dx() != r.Width || r.Image.Rect.Dy() != r.Height || len(r.Image.Pix) < 4*r.Width*r.Height {
		return nil, fmt.Errorf("sdxs: Result.Tensors: the image is missing or not %d×%d", r.Width, r.Height)
	}
	img := make([]uint8, 0, r.Width*r.Height*3)
	for y := 0; y < r.Height; y++ {
		for x := 0; x < r.Width; x++ {
			o := r.Image.PixOffset(r.Image.Rect.Min.X+x, r.Image.Rect.Min.Y+y)
			img = append(img, r.Image.Pix[o:o+3]...)
		}
	}
	if r.InitImage != nil && len(r.InitImage) != 3*r.Width*r.Height {
		return nil, fmt.Errorf("sdxs: Result.Tensors: init_image has %d values, want %d", len(r.InitImage), 3*r.Width*r.Height)
	}
	if r.InitImage != nil && len(r.Timesteps) == 0 {
		return nil, errors.New("sdxs: Result.Tensors: an image-to-image result without timesteps")
	}
	ts := []weights.Tensor{
		{Name: "input_ids", DType: weights.I64, Shape: []int{1, len(r.InputIDs)}, I64: r.InputIDs},
		{Name: "text_embeddings", DType: weights.F32, Shape: []int{1, len(r.InputIDs), d}, F32: r.TextEmbeddings},
	}
	if r.InitImage != nil {
		steps := make([]float32, len(r.Timesteps))
		for i, t := range r.Timesteps {
			steps[i] = float32(t)
		}
		ts = append(ts,
			weights.Tensor{Name: "init_image", DType: weights.F32, Shape: []int{1, 3, r.Height, r.Width}, F32: r.InitImage},
			weights.Tensor{Name: "init_latents", DType: weights.F32, Shape: lat, F32: r.InitLatents},
			weights.Tensor{Name: "noisy_latents", DType: weights.F32, Shape: lat, F32: r.NoisyLatents},
			weights.Tensor{Name: "timesteps", DType: weights.F32, Shape: []int{len(steps)}, F32: steps})
	}
	ts = append(ts, []weights.Tensor{
		{Name: "noise", DType: weights.F32, Shape: lat, F32: r.Noise},
		{Name: "unet_input", DType: weights.F32, Shape: lat, F32: r.UNetInput},
		{Name: "unet_output", DType: weights.F32, Shape: lat, F32: r.UNetOutput},
		{Name: "latents", DType: weights.F32, Shape: lat, F32: r.Latents},
		{Name: "decoded", DType: weights.F32, Shape: []int{1, 3, r.Height, r.Width}, F32: r.Decoded},
		{Name: "image", DType: weights.U8, Shape: []int{r.Height, r.Width, 3}, U8: img},
	}...)
	ct, err := r.controlTensors()
	if err != nil {
		return nil, err
	}
	return append(ts, ct...), nil
}

// ifInit returns n for an image-to-image result (one with InitImage) and 0 otherwise.
func ifInit(r *Result, n int) int {
	if r.InitImage == nil {
		return 0
	}
	return n
}

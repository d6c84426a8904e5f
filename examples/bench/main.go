// Command bench times the whole text-to-image pipeline on full-size SDXS-512 models.
//
// With -preset it builds the released architectures (sdxs-512-dreamshaper, sdxs-512-0.9, and
// sdxs-512-dreamshaper-sketch: DreamShaper with its sketch ControlNet, driven by a synthetic
// sketch) from built-in configurations and deterministic random weights, so no download is
// needed: run time does not depend on the weights' values. With -model it loads a real model
// instead: a folder, or a Hugging Face repository id fetched into huggingface_hub's cache first.
// After one warm-up run it generates -runs pictures and prints, per stage, the median time, the
// arithmetic rate (counting the multiply-adds of convolutions and linear layers as two flops)
// and its share of this machine class's floor of 230 GFLOP/s. With -json the last line is one
// JSON object with the medians and the peak resident memory of the process. -vae large decodes
// (and, with -init, encodes) with the full KL VAE (AutoencoderKL: the preset's vae_large.json,
// or the folder's vae_large/) instead of TAESD; its stages are still vae_decoder and vae_encoder.
//
// With -init it times image to image instead, adding the VAE encoder's stage: -init synthetic
// makes a -width×-height picture, otherwise -init names a PNG or JPEG of that size. -steps and
// -strength set the schedule (the default, 1 step at strength 1, runs the UNet once as text to
// image does).
//
//	go run ./examples/bench -preset sdxs-512-dreamshaper -runs 5
//	go run ./examples/bench -preset sdxs-512-dreamshaper -runs 5 -init synthetic -json
//	go run ./examples/bench -preset sdxs-512-dreamshaper -vae large -runs 3 -json
package main

import (
	"bufio"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sdxs-go/sdxs"
	"github.com/sdxs-go/sdxs/imageproc"
	"github.com/sdxs-go/sdxs/internal/cliprogress"
	"github.com/sdxs-go/sdxs/internal/nn"
	"github.com/sdxs-go/sdxs/internal/testmodel"
	"github.com/sdxs-go/sdxs/sampler"
	"github.com/sdxs-go/sdxs/textenc"
	"github.com/sdxs-go/sdxs/tokenizer"
	"github.com/sdxs-go/sdxs/unet"
	"github.com/sdxs-go/sdxs/vae"
	"github.com/sdxs-go/sdxs/weights"
)

//go:embed presets
var presets embed.FS

// floorGFLOPS is the float32 rate this machine class cannot exceed (../shared/DESIGN.md).
const floorGFLOPS = 230.0

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type report struct {
	Preset       string  `json:"preset"`
	VAE          string  `json:"vae"`
	Width        int     `json:"width"`
	Height       int     `json:"height"`
	Threads      int     `json:"threads"`
	TextEncoderS float64 `json:"text_encoder_s"`
	UNetS        float64 `json:"unet_s"`
	VAEDecoderS  float64 `json:"vae_decoder_s"`
	ControlNetS  float64 `json:"controlnet_s,omitempty"`
	VAEEncoderS  float64 `json:"vae_encoder_s,omitempty"`
	Steps        int     `json:"steps"`
	TotalS       float64 `json:"total_s"`
	UNetGFLOPS   float64 `json:"unet_gflops"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
	Precision    string  `json:"precision"`
}

func run() error {
	var (
		preset  = flag.String("preset", "sdxs-512-dreamshaper", "built-in architecture with random weights: sdxs-512-dreamshaper, sdxs-512-0.9 or sdxs-512-dreamshaper-sketch (with its ControlNet)")
		model   = flag.String("model", "", "real model: a folder or a Hugging Face repository id such as IDKiro/sdxs-512-dreamshaper (overrides -preset)")
		cnDir   = flag.String("controlnet", "", "real ControlNet (folder or hub repository id), with -model")
		variant = flag.String("variant", "", "with a hub -model or -controlnet, fetch this weights variant where there is one (fp16)")
		runs    = flag.Int("runs", 5, "timed runs after one warm-up")
		width   = flag.Int("width", 512, "width in pixels")
		height  = flag.Int("height", 512, "height in pixels")
		threads = flag.Int("threads", runtime.GOMAXPROCS(0), "threads (GOMAXPROCS)")
		asJSON  = flag.Bool("json", false, "print a JSON summary as the last line")
		prompt  = flag.String("prompt", "a photo of an astronaut riding a horse on the moon", "prompt")
		save    = flag.String("save", "", "write the preset with its random weights as a diffusers folder (fp32 safetensors) to this directory, then exit")
		initPic = flag.String("init", "", "time image to image from this PNG or JPEG (of -width×-height), or from a made-up picture with \"synthetic\"")
		steps   = flag.Int("steps", 1, "inference steps of the schedule")
		strngth = flag.Float64("strength", 1, "image-to-image strength, in (0, 1]")
		vaeKind = flag.String("vae", sdxs.VAETiny, `decoder (and encoder): "tiny" (TAESD) or "large" (the full KL VAE)`)
		precStr = flag.String("precision", "fp32", `UNet and text encoder arithmetic: "fp32" or "bf16" (bfloat16 weights and products, float32 accumulation)`)
		cpuProf = flag.String("cpuprofile", "", "write a CPU profile of the timed runs to this file (go tool pprof)")
		cacheMB = flag.Int64("cache-budget", -1, "MiB of compiled graphs the pipeline keeps (negative: sdxs.DefaultCacheBudget; at 1024² the UNet's and the decoder's graphs take more than the default, and a decoder rebuilt every run is timed with its build)")
		winoMiB = flag.Int64("winograd-budget", -1, "MiB of extra memory the UNet may spend on Winograd weights below the 64×64 level (negative: the default)")
	)
	flag.Parse()
	if *runs < 1 {
		return errors.New("-runs must be at least 1")
	}
	runtime.GOMAXPROCS(*threads)
	prec, err := sdxs.ParsePrecision(*precStr)
	if err != nil {
		return err
	}

	loadStart := time.Now()
	var p *sdxs.Pipeline
	name := *preset
	var srcs map[string]*nn.RandomSource
	var parts sdxs.Parts
	if *model != "" {
		name = path.Base(*model)
		hubOpts := []sdxs.Option{sdxs.WithProgress(cliprogress.Stderr()), sdxs.WithVariant(*variant), sdxs.WithVAE(*vaeKind)}
		var dir string
		dir, err = sdxs.Resolve(context.Background(), *model, sdxs.KindPipeline, hubOpts...)
		if err != nil {
			return err
		}
		opts := []sdxs.Option{sdxs.WithVAE(*vaeKind), sdxs.WithPrecision(prec), winoOpt(*winoMiB), cacheOpt(*cacheMB)}
		if *cnDir != "" {
			cn, err := sdxs.Resolve(context.Background(), *cnDir, sdxs.KindControlNet, hubOpts...)
			if err != nil {
				return err
			}
			opts = append(opts, sdxs.WithControlNet(cn))
		}
		loadStart = time.Now() // the download is not part of the load time
		p, err = sdxs.Load(dir, opts...)
	} else {
		p, parts, srcs, err = fromPreset(*preset, *vaeKind, sdxs.WithPrecision(prec), winoOpt(*winoMiB), cacheOpt(*cacheMB))
		if err == nil && *save != "" {
			if err := p.Warm(context.Background(), *width, *height); err != nil {
				return err
			}
			// The encoder's weights too, so that the folder holds a whole autoencoder.
			if err := p.WarmEncoder(context.Background(), *width, *height); err != nil {
				return err
			}
			return saveFolder(*save, *preset, *vaeKind, srcs)
		}
	}
	if err != nil {
		return err
	}
	defer p.Close()
	if err := p.Warm(context.Background(), *width, *height); err != nil {
		return err
	}
	fmt.Printf("%s (vae %s, %s): loaded and built graphs in %.2f s, %d threads, %d×%d\n", name, *vaeKind, p.Precision(), time.Since(loadStart).Seconds(), *threads, *width, *height)

	ctx := context.Background()
	req := sdxs.Request{Prompt: *prompt, Seed: 42, Width: *width, Height: *height, Steps: *steps}
	if p.HasControlNet() {
		req.Control = sketch(*width, *height)
	}
	if *initPic != "" {
		if req.Init, err = loadInit(*initPic, *width, *height); err != nil {
			return err
		}
		req.Strength = *strngth
		if err := p.WarmEncoder(ctx, *width, *height); err != nil {
			return err
		}
	}
	if _, err := p.Generate(ctx, req); err != nil { // warm-up
		return err
	}
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	times := map[sdxs.Stage][]float64{}
	var totals, lastTimesteps []float64
	for i := 0; i < *runs; i++ {
		req.Seed = uint64(i)
		start := time.Now()
		res, err := p.Generate(ctx, req)
		if err != nil {
			return err
		}
		totals = append(totals, time.Since(start).Seconds())
		lastTimesteps = res.Timesteps
		for s, d := range res.Timings {
			times[s] = append(times[s], d.Seconds())
		}
	}

	macs, err := p.MACs(ctx, *width, *height)
	if err != nil {
		return err
	}
	if req.Init != nil {
		if macs[sdxs.StageVAEEncoder], err = p.EncoderMACs(ctx, *width, *height); err != nil {
			return err
		}
	}
	// The UNet's and the ControlNet's times are those of all their steps.
	macs[sdxs.StageUNet] *= int64(max(len(lastTimesteps), 1))
	macs[sdxs.StageControlNet] *= int64(max(len(lastTimesteps), 1))
	fmt.Printf("\n%-14s %10s %12s %10s %8s\n", "stage", "median s", "GMAC", "GFLOP/s", "floor")
	for _, s := range []sdxs.Stage{sdxs.StageTokenize, sdxs.StageTextEncoder, sdxs.StageVAEEncoder, sdxs.StageNoise, sdxs.StageControlNet, sdxs.StageUNet, sdxs.StageVAEDecoder} {
		if _, ok := times[s]; !ok {
			continue
		}
		med := median(times[s])
		m := macs[s]
		if m == 0 {
			fmt.Printf("%-14s %10.4f\n", s, med)
			continue
		}
		g := 2 * float64(m) / 1e9 / med
		fmt.Printf("%-14s %10.4f %12.1f %10.1f %7.0f%%\n", s, med, float64(m)/1e9, g, 100*g/floorGFLOPS)
	}
	fmt.Printf("%-14s %10.4f\n", "total", median(totals))
	if *comparePrecision && *model == "" {
		if err := benchPrecision(ctx, p, *preset, *vaeKind, req, *runs); err != nil {
			return err
		}
	}
	if *loraRank > 0 && *model == "" {
		if err := benchLoRA(ctx, parts, srcs["unet"], req, *runs); err != nil {
			return err
		}
	}
	rss := peakRSS()
	fmt.Printf("peak RSS %.2f GiB (UNet weights %s: %.2f GiB)\n", float64(rss)/(1<<30), p.Precision(), float64(p.ParamBytes())/(1<<30))
	if *asJSON {
		r := report{
			Preset: name, VAE: *vaeKind, Width: *width, Height: *height, Threads: *threads,
			TextEncoderS: median(times[sdxs.StageTextEncoder]),
			UNetS:        median(times[sdxs.StageUNet]),
			VAEDecoderS:  median(times[sdxs.StageVAEDecoder]),
			ControlNetS:  median(times[sdxs.StageControlNet]),
			VAEEncoderS:  median(times[sdxs.StageVAEEncoder]),
			Steps:        len(lastTimesteps),
			TotalS:       median(totals),
			PeakRSSBytes: rss,
			Precision:    p.Precision().String(),
		}
		r.UNetGFLOPS = 2 * float64(macs[sdxs.StageUNet]) / 1e9 / r.UNetS
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		fmt.Println(string(b))
	}
	return nil
}

// loadInit returns the init picture for -init: a made-up w×h picture (smooth colour gradients)
// for "synthetic", else the PNG or JPEG file, which must be w×h.
func loadInit(name string, w, h int) (image.Image, error) {
	if name == "synthetic" {
		img := image.NewNRGBA(image.Rect(0, 0, w, h))
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				img.SetNRGBA(x, y, color.NRGBA{uint8(x * 255 / w), uint8(y * 255 / h), uint8((x + y) % 256), 255})
			}
		}
		return img, nil
	}
	img, err := imageproc.DecodeFile(name)
	if err != nil {
		return nil, fmt.Errorf("-init: %w", err)
	}
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		return nil, fmt.Errorf("-init %s is %d×%d, the benchmark %d×%d (set -width and -height)", name, b.Dx(), b.Dy(), w, h)
	}
	return img, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// peakRSS returns the process's peak resident set size (VmHWM), or 0 where /proc is missing.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}

// fromPreset builds a full-size pipeline of a released architecture with random weights.
func fromPreset(name, vaeKind string, opts ...sdxs.Option) (*sdxs.Pipeline, sdxs.Parts, map[string]*nn.RandomSource, error) {
	srcs := map[string]*nn.RandomSource{"text_encoder": {Seed: 1}, "unet": {Seed: 2}, "vae": {Seed: 3}, "controlnet": {Seed: 4}, "vae_large": {Seed: 5}}
	parts, err := presetParts(name, vaeKind, srcs)
	if err != nil {
		return nil, parts, nil, err
	}
	p, err := buildPreset(name, parts, srcs, opts...)
	return p, parts, srcs, err
}

// presetParts makes the models of a preset over the given random sources, with TAESD or the
// KL VAE (vaeKind).
func presetParts(name, vaeKind string, srcs map[string]*nn.RandomSource) (sdxs.Parts, error) {
	read := func(file string) ([]byte, error) {
		b, err := presets.ReadFile("presets/" + name + "/" + file)
		if err != nil {
			return nil, fmt.Errorf("unknown preset %q (have sdxs-512-dreamshaper, sdxs-512-0.9, sdxs-512-dreamshaper-sketch)", name)
		}
		return b, nil
	}
	data, err := read("unet.json")
	if err != nil {
		return sdxs.Parts{}, err
	}
	ucfg, err := weights.ParseUNetConfig(data)
	if err != nil {
		return sdxs.Parts{}, err
	}
	if data, err = read("text_encoder.json"); err != nil {
		return sdxs.Parts{}, err
	}
	tcfg, err := weights.ParseCLIPTextConfig(data)
	if err != nil {
		return sdxs.Parts{}, err
	}
	if data, err = read("scheduler.json"); err != nil {
		return sdxs.Parts{}, err
	}
	scfg, err := sampler.ParseConfig(data)
	if err != nil {
		return sdxs.Parts{}, err
	}
	tok, err := byteTokenizer()
	if err != nil {
		return sdxs.Parts{}, err
	}
	te, err := textenc.New(tcfg, srcs["text_encoder"])
	if err != nil {
		return sdxs.Parts{}, err
	}
	u, err := unet.New(ucfg, srcs["unet"])
	if err != nil {
		return sdxs.Parts{}, err
	}
	var v sdxs.Decoder
	switch vaeKind {
	case sdxs.VAETiny:
		if data, err = read("vae.json"); err != nil {
			return sdxs.Parts{}, err
		}
		vcfg, err := weights.ParseTinyVAEConfig(data)
		if err != nil {
			return sdxs.Parts{}, err
		}
		if v, err = vae.NewTiny(vcfg, srcs["vae"]); err != nil {
			return sdxs.Parts{}, err
		}
	case sdxs.VAELarge:
		if data, err = read("vae_large.json"); err != nil {
			return sdxs.Parts{}, err
		}
		kcfg, err := weights.ParseKLVAEConfig(data)
		if err != nil {
			return sdxs.Parts{}, err
		}
		if v, err = vae.NewKL(kcfg, srcs["vae_large"]); err != nil {
			return sdxs.Parts{}, err
		}
	default:
		return sdxs.Parts{}, fmt.Errorf("-vae %q: want %q or %q", vaeKind, sdxs.VAETiny, sdxs.VAELarge)
	}
	return sdxs.Parts{Tokenizer: tok, TextEncoder: te, UNet: u, VAE: v, Scheduler: scfg}, nil
}

// buildPreset assembles a preset's pipeline from its parts, with its ControlNet if it has one.
func buildPreset(name string, parts sdxs.Parts, srcs map[string]*nn.RandomSource, opts ...sdxs.Option) (*sdxs.Pipeline, error) {
	p, err := sdxs.New(parts, opts...)
	if err != nil {
		return nil, err
	}
	if data, err := presets.ReadFile("presets/" + name + "/controlnet.json"); err == nil {
		ccfg, err := weights.ParseControlNetConfig(data)
		if err != nil {
			return nil, err
		}
		cn, err := unet.NewControlNet(ccfg, srcs["controlnet"])
		if err != nil {
			return nil, err
		}
		if err := p.SetControlNet(cn); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// sketch draws a synthetic sketch of w×h: black lines on white (a frame, a roof, a horizon),
// what the sketch ControlNet expects; its content does not change the run time.
func sketch(w, h int) image.Image {
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 255
	}
	for x := 0; x < w; x++ {
		img.SetGray(x, 2*h/3, color.Gray{})
		if x > w/4 && x < 3*w/4 {
			img.SetGray(x, h/3+abs(x-w/2)/2, color.Gray{})
			img.SetGray(x, 5*h/6, color.Gray{})
		}
	}
	for y := h / 2; y < 5*h/6; y++ {
		img.SetGray(w/4+w/16, y, color.Gray{})
		img.SetGray(3*w/4-w/16, y, color.Gray{})
	}
	return img
}

func abs(x int) int { return max(x, -x) }

// byteTokenizer is a CLIP tokenizer with the byte alphabet: the real vocabulary is not needed
// to time the models, only 77 token ids.
func byteTokenizer() (*tokenizer.Tokenizer, error) {
	return tokenizer.New(testmodel.ByteVocab(), [][2]string{{"a", "b"}}, tokenizer.Options{})
}

// saveFolder writes a preset with the random weights its graphs used as a diffusers folder. With
// the KL VAE (vaeKind "large") it writes vae_large/ beside TAESD's vae/, as the releases ship
// them.
func saveFolder(dir, preset, vaeKind string, srcs map[string]*nn.RandomSource) error {
	files := map[string]string{
		"unet/config.json":                "unet.json",
		"text_encoder/config.json":        "text_encoder.json",
		"vae/config.json":                 "vae.json",
		"scheduler/scheduler_config.json": "scheduler.json",
	}
	comps := map[string]string{"unet": "diffusion_pytorch_model.safetensors", "vae": "diffusion_pytorch_model.safetensors", "text_encoder": "model.safetensors"}
	if vaeKind == sdxs.VAELarge {
		files["vae_large/config.json"] = "vae_large.json"
		comps["vae_large"] = "diffusion_pytorch_model.safetensors"
		// The pipeline's graphs did not use TAESD: make its random weights (decoder and
		// encoder) by building it once (a RandomSource's values depend only on its seed and the
		// tensor's name).
		data, err := presets.ReadFile("presets/" + preset + "/vae.json")
		if err != nil {
			return err
		}
		cfg, err := weights.ParseTinyVAEConfig(data)
		if err != nil {
			return err
		}
		tiny, err := vae.NewTiny(cfg, srcs["vae"])
		if err != nil {
			return err
		}
		if err := tiny.Prepare(context.Background(), 8, 8); err != nil {
			return err
		}
		if err := tiny.PrepareEncoder(context.Background(), 64, 64); err != nil {
			return err
		}
	}
	for dst, src := range files {
		b, err := presets.ReadFile("presets/" + preset + "/" + src)
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, dst), b); err != nil {
			return err
		}
	}
	index := `{"_class_name": "StableDiffusionPipeline", "scheduler": ["diffusers", "EulerDiscreteScheduler"],
 "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
 "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderTiny"]}`
	if err := writeFile(filepath.Join(dir, "model_index.json"), []byte(index)); err != nil {
		return err
	}
	vocab, err := json.Marshal(testmodel.ByteVocab())
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "tokenizer", "vocab.json"), vocab); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "tokenizer", "merges.txt"), []byte(testmodel.Merges)); err != nil {
		return err
	}
	if b, err := presets.ReadFile("presets/" + preset + "/controlnet.json"); err == nil {
		// The ControlNet is a folder of its own, beside the pipeline's components (load it
		// with -controlnet DIR/controlnet).
		if err := writeFile(filepath.Join(dir, "controlnet", "config.json"), b); err != nil {
			return err
		}
		comps["controlnet"] = "diffusion_pytorch_model.safetensors"
	}
	for comp, file := range comps {
		path := filepath.Join(dir, comp, file)
		if err := testmodel.WriteSource(path, srcs[comp], weights.F32); err != nil {
			return err
		}
		fmt.Println("wrote", path)
	}
	return nil
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// winoOpt is the Winograd budget option of -winograd-budget (MiB), nil for the default.
// cacheOpt is the graph cache option of -cache-budget (MiB), nil for the default.
func cacheOpt(mib int64) sdxs.Option {
	if mib < 0 {
		return nil
	}
	return sdxs.WithCacheBudget(mib << 20)
}

func winoOpt(mib int64) sdxs.Option {
	if mib < 0 {
		return nil
	}
	return sdxs.WithWinogradBudget(mib << 20)
}

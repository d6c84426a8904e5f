// Package lora reads LoRA adapters, low-rank updates of a model's weights, in the three layouts
// they ship in, and turns them into one description in the words of diffusers' module paths:
//
//   - PEFT folders: adapter_config.json (r, lora_alpha, rank_pattern, alpha_pattern,
//     use_rslora) with adapter_model.safetensors or adapter_model.bin (a torch.save zip,
//     read without running any of its pickle beyond tensor storage), keys
//     base_model.model.<module>.lora_A.weight / lora_B.weight;
//   - kohya single files (sd-scripts for SD 1.x): lora_unet_<module_with_underscores> and
//     lora_te_<module> with .lora_down.weight, .lora_up.weight and .alpha;
//   - diffusers single files (pytorch_lora_weights.safetensors): unet.<module> and
//     text_encoder.<module> with .lora_A.weight / .lora_B.weight (or .lora.down / .lora.up)
//     and an optional .alpha.
//
// Each Target holds A [r, in·kh·kw] and B [out, r] and its scale alpha/r, so that the updated
// weight is W + s·(alpha/r)·B·A (for a convolution B·A with the kernel flattened), which is what
// PEFT's forward computes. Applying an adapter is the model's business (the sdxs package
// merges the updates into a copy of the targeted weights per set of adapters).
package lora

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/sdxs-go/sdxs/internal/kernels"
	"github.com/sdxs-go/sdxs/weights"
)

// Component names the model a target belongs to.
type Component string

// The components an adapter may target.
const (
	UNet        Component = "unet"
	TextEncoder Component = "text_encoder"
)

// Layouts of adapter files, as Adapter.Format reports them.
const (
	FormatPEFT      = "peft"
	FormatKohya     = "kohya"
	FormatDiffusers = "diffusers"
)

// Target is the low-rank update of one layer: ΔW = Scale·B·A.
type Target struct {
	// Component is the model the layer belongs to.
	Component Component
	// Module is the layer's diffusers module path within its component
	// ("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
	// "text_model.encoder.layers.0.self_attn.q_proj"); the weight is Module + ".weight".
	Module string
	// Key is the name the file gives the layer, for messages.
	Key string
	// Rank is r, the inner dimension of the update.
	Rank int
	// Alpha is the adapter's alpha for this layer.
	Alpha float64
	// Scale is alpha/r (alpha/√r for rank-stabilised LoRA).
	Scale float64
	// Conv reports a convolution target; KH and KW are its kernel size (1 for linear layers).
	Conv   bool
	KH, KW int
	// In is the layer's input width times KH·KW, Out its output width.
	In, Out int
	// A is the down projection [Rank, In], B the up projection [Out, Rank].
	A, B []float32
}

// WeightShape returns the shape the targeted weight must have: [Out, In] for a linear layer,
// [Out, In/(KH·KW), KH, KW] for a convolution.
func (t *Target) WeightShape() []int {
	if t.Conv {
		return []int{t.Out, t.In / (t.KH * t.KW), t.KH, t.KW}
	}
	return []int{t.Out, t.In}
}

// AddTo adds scale·Scale·B·A to w, the layer's weight in row-major order (len Out·In).
func (t *Target) AddTo(w []float32, scale float64) error {
	if len(w) != t.Out*t.In {
		return fmt.Errorf("lora: %s: weight has %d values, the update %d×%d", t.Module, len(w), t.Out, t.In)
	}
	if t.Out <= 0 || t.In <= 0 || t.Rank <= 0 || len(t.A) != t.Rank*t.In || len(t.B) != t.Out*t.Rank {
		return fmt.Errorf("lora: %s: the update's factors do not fit: A has %d values, B %d, for rank %d and %d×%d",
			t.Module, len(t.A), len(t.B), t.Rank, t.Out, t.In)
	}
	kernels.Sgemm(false, false, t.Out, t.In, t.Rank, float32(scale*t.Scale), t.B, t.Rank, t.A, t.In, 1, w, t.In)
	return nil
}

// Adapter is a loaded LoRA adapter. Treat it as read-only: it is then safe for concurrent use
// by any number of requests and pipelines.
type Adapter struct {
	// Path is where the adapter was read from.
	Path string
	// Format is the layout it was read in (FormatPEFT, FormatKohya, FormatDiffusers).
	Format string
	// Targets are the updated layers, sorted by component and module.
	Targets []*Target
	// Skipped lists the targets left out because the model lacks them (see Check).
	Skipped []string
}

// String describes the adapter.
func (a *Adapter) String() string {
	return fmt.Sprintf("LoRA %s (%s, %d layers)", a.Path, a.Format, len(a.Targets))
}

// Load reads an adapter: a PEFT folder (adapter_config.json with adapter_model.safetensors or
// adapter_model.bin), or a single .safetensors file in kohya's or diffusers' layout.
func Load(path string) (*Adapter, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	if st.IsDir() {
		return loadPEFT(path)
	}
	tensors, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return fromTensors(path, tensors, nil)
}

// readFile reads every tensor of a safetensors file or a torch.save zip.
func readFile(path string) (map[string]rawTensor, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	var magic [4]byte
	n, _ := f.Read(magic[:])
	f.Close()
	if n == 4 && bytes.Equal(magic[:], []byte("PK\x03\x04")) || strings.HasSuffix(path, ".bin") || strings.HasSuffix(path, ".pt") || strings.HasSuffix(path, ".pth") {
		return readTorchZip(path)
	}
	sf, err := weights.Open(path)
	if err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	defer sf.Close()
	out := make(map[string]rawTensor)
	for _, name := range sf.Names() {
		data, shape, err := sf.Float32(name)
		if err != nil {
			return nil, fmt.Errorf("lora: %w", err)
		}
		out[name] = rawTensor{shape: shape, data: data}
	}
	return out, nil
}

// peftConfig is the part of adapter_config.json that changes the weights.
type peftConfig struct {
	PeftType     string          `json:"peft_type"`
	R            int             `json:"r"`
	LoraAlpha    float64         `json:"lora_alpha"`
	RankPattern  json.RawMessage `json:"rank_pattern"`
	AlphaPattern json.RawMessage `json:"alpha_pattern"`
	UseRSLoRA    bool            `json:"use_rslora"`
	UseDoRA      bool            `json:"use_dora"`
	FanInFanOut  bool            `json:"fan_in_fan_out"`
}

// pattern is one entry of rank_pattern or alpha_pattern.
type pattern struct {
	key   string
	re    *regexp.Regexp
	rank  int
	alpha float64
	isR   bool
}

func loadPEFT(dir string) (*Adapter, error) {
	cfgPath := filepath.Join(dir, "adapter_config.json")
	data, err := os.ReadFile(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("lora: %s is a folder but not a PEFT adapter: %w", dir, err)
	}
	// PEFT's LoraConfig defaults: r = 8, lora_alpha = 8.
	cfg := peftConfig{R: 8, LoraAlpha: 8}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("lora: %s: %w", cfgPath, err)
	}
	switch {
	case cfg.PeftType != "" && cfg.PeftType != "LORA":
		return nil, fmt.Errorf("lora: %s: peft_type %q: only LORA adapters are supported", cfgPath, cfg.PeftType)
	case cfg.R <= 0:
		return nil, fmt.Errorf("lora: %s: r = %d, want a positive rank", cfgPath, cfg.R)
	case cfg.UseDoRA:
		return nil, fmt.Errorf("lora: %s: use_dora: DoRA adapters are not supported", cfgPath)
	case cfg.FanInFanOut:
		return nil, fmt.Errorf("lora: %s: fan_in_fan_out: adapters for transposed (Conv1D) weights are not supported", cfgPath)
	}
	var pats []pattern
	for _, pp := range []struct {
		raw  json.RawMessage
		name string
		isR  bool
	}{{cfg.RankPattern, "rank_pattern", true}, {cfg.AlphaPattern, "alpha_pattern", false}} {
		keys, vals, err := orderedObject(pp.raw)
		if err != nil {
			return nil, fmt.Errorf("lora: %s: %s: %w", cfgPath, pp.name, err)
		}
		for i, k := range keys {
			// PEFT matches a pattern key against the end of the module path: (.*\.)?(key)$.
			re, err := regexp.Compile(`^(.*\.)?(` + k + `)$`)
			if err != nil {
				return nil, fmt.Errorf("lora: %s: %s key %q: %w", cfgPath, pp.name, k, err)
			}
			p := pattern{key: k, re: re, isR: pp.isR}
			if pp.isR {
				if vals[i] != math.Trunc(vals[i]) || vals[i] <= 0 {
					return nil, fmt.Errorf("lora: %s: rank_pattern[%q] = %v, want a positive integer", cfgPath, k, vals[i])
				}
				p.rank = int(vals[i])
			} else {
				p.alpha = vals[i]
			}
			pats = append(pats, p)
		}
	}
	var file string
	for _, name := range []string{"adapter_model.safetensors", "adapter_model.bin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			file = filepath.Join(dir, name)
			break
		}
	}
	if file == "" {
		return nil, fmt.Errorf("lora: %s: neither adapter_model.safetensors nor adapter_model.bin is there", dir)
	}
	tensors, err := readFile(file)
	if err != nil {
		return nil, err
	}
	rankAlpha := func(module string) (int, float64) {
		// Like PEFT: the first pattern key (rank_pattern's, then alpha_pattern's) that matches
		// names the entry; each table gives its value for that key, or the default.
		r, alpha := cfg.R, cfg.LoraAlpha
		for _, p := range pats {
			if !p.re.MatchString(module) {
				continue
			}
			for _, q := range pats {
				if q.key != p.key {
					continue
				}
				if q.isR {
					r = q.rank
				} else {
					alpha = q.alpha
				}
			}
			break
		}
		return r, alpha
	}
	a, err := fromTensors(file, tensors, &peftScaling{rankAlpha: rankAlpha, rslora: cfg.UseRSLoRA})
	if err != nil {
		return nil, err
	}
	a.Path = dir
	return a, nil
}

// peftScaling gives the rank and alpha of each module from adapter_config.json.
type peftScaling struct {
	rankAlpha func(module string) (int, float64)
	rslora    bool
}

// orderedObject decodes a JSON object of numbers keeping its key order (PEFT's first match
// depends on it). A null or absent object is empty.
func orderedObject(raw json.RawMessage) ([]string, []float64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, errors.New("not an object")
	}
	var keys []string
	var vals []float64
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		k := tok.(string)
		var v float64
		if err := dec.Decode(&v); err != nil {
			return nil, nil, fmt.Errorf("key %q: %w", k, err)
		}
		keys = append(keys, k)
		vals = append(vals, v)
	}
	return keys, vals, nil
}

// part is what a tensor of an adapter file is.
type part int

const (
	partA part = iota
	partB
	partAlpha
)

// parsed is one tensor name of an adapter file, understood.
type parsed struct {
	format string
	comp   Component
	module string
	key    string // the layer's name in the file
	part   part
}

// parseKey understands a tensor name in any of the three layouts.
func parseKey(name string) (parsed, bool) {
	suffixes := []struct {
		s string
		p part
	}{
		{".lora_A.weight", partA}, {".lora_B.weight", partB},
		{".lora_down.weight", partA}, {".lora_up.weight", partB},
		{".lora.down.weight", partA}, {".lora.up.weight", partB},
		{".alpha", partAlpha},
	}
	for _, s := range suffixes {
		stem, ok := strings.CutSuffix(name, s.s)
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(stem, "base_model.model."):
			module := strings.TrimPrefix(stem, "base_model.model.")
			comp := UNet
			if strings.HasPrefix(module, "text_model.") {
				comp = TextEncoder
			}
			return parsed{FormatPEFT, comp, module, stem, s.p}, true
		case strings.HasPrefix(stem, "lora_unet_"):
			return parsed{FormatKohya, UNet, kohyaModule(strings.TrimPrefix(stem, "lora_unet_")), stem, s.p}, true
		case strings.HasPrefix(stem, "lora_te_"):
			return parsed{FormatKohya, TextEncoder, kohyaModule(strings.TrimPrefix(stem, "lora_te_")), stem, s.p}, true
		case strings.HasPrefix(stem, "unet."):
			return parsed{FormatDiffusers, UNet, strings.TrimPrefix(stem, "unet."), stem, s.p}, true
		case strings.HasPrefix(stem, "text_encoder."):
			return parsed{FormatDiffusers, TextEncoder, strings.TrimPrefix(stem, "text_encoder."), stem, s.p}, true
		}
	}
	return parsed{}, false
}

// compounds are the names with underscores in diffusers' UNet and transformers' CLIP module
// paths, which kohya's underscored keys run together with the separators.
var compounds = [][]string{
	{"down", "blocks"}, {"up", "blocks"}, {"mid", "block"}, {"transformer", "blocks"},
	{"to", "q"}, {"to", "k"}, {"to", "v"}, {"to", "out"}, {"proj", "in"}, {"proj", "out"},
	{"conv", "shortcut"}, {"time", "emb", "proj"}, {"time", "embedding"}, {"linear", "1"}, {"linear", "2"},
	{"conv", "in"}, {"conv", "out"}, {"conv", "norm", "out"},
	{"text", "model"}, {"self", "attn"}, {"q", "proj"}, {"k", "proj"}, {"v", "proj"}, {"out", "proj"},
	{"final", "layer", "norm"}, {"layer", "norm1"}, {"layer", "norm2"},
	{"token", "embedding"}, {"position", "embedding"},
}

// kohyaModule turns kohya's underscored module name (down_blocks_1_attentions_0_proj_in) into
// the diffusers path (down_blocks.1.attentions.0.proj_in), joining the words of the compounds
// that contain underscores, longest first.
func kohyaModule(s string) string {
	words := strings.Split(s, "_")
	var out []string
	for i := 0; i < len(words); {
		best := 1
		for _, c := range compounds {
			if len(c) > best && i+len(c) <= len(words) && equalWords(words[i:i+len(c)], c) {
				best = len(c)
			}
		}
		out = append(out, strings.Join(words[i:i+best], "_"))
		i += best
	}
	return strings.Join(out, ".")
}

func equalWords(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// fromTensors builds an adapter from a file's tensors. scaling is nil for single files (alpha
// from the .alpha tensors, else alpha = r).
func fromTensors(path string, tensors map[string]rawTensor, scaling *peftScaling) (*Adapter, error) {
	type layer struct {
		p        parsed
		a, b     *rawTensor
		alpha    *rawTensor
		alphaKey string
	}
	layers := make(map[string]*layer)
	var unknown []string
	format := ""
	for name := range tensors {
		t := tensors[name]
		p, ok := parseKey(name)
		if !ok {
			unknown = append(unknown, name)
			continue
		}
		if format == "" {
			format = p.format
		} else if format != p.format {
			return nil, fmt.Errorf("lora: %s mixes the %s and %s layouts (%q)", path, format, p.format, name)
		}
		id := string(p.comp) + "/" + p.module
		l := layers[id]
		if l == nil {
			l = &layer{p: p}
			layers[id] = l
		}
		switch p.part {
		case partA:
			l.a = &t
		case partB:
			l.b = &t
		case partAlpha:
			l.alpha, l.alphaKey = &t, name
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("lora: %s: %d tensors are not LoRA A/B/alpha weights of a known layout (LyCORIS, DoRA and biases are not supported): %s", path, len(unknown), listSome(unknown))
	}
	if len(layers) == 0 {
		return nil, fmt.Errorf("lora: %s holds no LoRA weights", path)
	}
	if scaling != nil && format != FormatPEFT {
		return nil, fmt.Errorf("lora: %s: a PEFT folder's weights must be named base_model.model.<module>.lora_A.weight, found the %s layout", path, format)
	}
	a := &Adapter{Path: path, Format: format}
	for _, l := range layers {
		t, err := makeTarget(l.p, l.a, l.b, l.alpha, l.alphaKey, scaling)
		if err != nil {
			return nil, fmt.Errorf("lora: %s: %w", path, err)
		}
		a.Targets = append(a.Targets, t)
	}
	sort.Slice(a.Targets, func(i, j int) bool {
		ti, tj := a.Targets[i], a.Targets[j]
		if ti.Component != tj.Component {
			return ti.Component > tj.Component // unet before text_encoder
		}
		return ti.Module < tj.Module
	})
	return a, nil
}

func makeTarget(p parsed, a, b, alpha *rawTensor, alphaKey string, scaling *peftScaling) (*Target, error) {
	if a == nil || b == nil {
		which := "down (A)"
		if a != nil {
			which = "up (B)"
		}
		return nil, fmt.Errorf("layer %s has no %s weight", p.key, which)
	}
	t := &Target{Component: p.comp, Module: p.module, Key: p.key, KH: 1, KW: 1}
	as, bs := a.shape, b.shape
	switch {
	case len(as) == 2 && len(bs) == 2:
		t.Rank, t.In, t.Out = as[0], as[1], bs[0]
		if bs[1] != t.Rank {
			return nil, fmt.Errorf("layer %s: A %v and B %v disagree on the rank", p.key, as, bs)
		}
	case len(as) == 4 && len(bs) == 4:
		t.Conv = true
		t.Rank, t.KH, t.KW, t.Out = as[0], as[2], as[3], bs[0]
		t.In = as[1] * as[2] * as[3]
		if bs[1] != t.Rank || bs[2] != 1 || bs[3] != 1 {
			return nil, fmt.Errorf("layer %s: B %v must be [out, %d, 1, 1] for A %v", p.key, bs, t.Rank, as)
		}
	default:
		return nil, fmt.Errorf("layer %s: A %v and B %v are neither both 2-D (linear) nor both 4-D (convolution)", p.key, as, bs)
	}
	if t.Rank <= 0 || t.In <= 0 || t.Out <= 0 {
		return nil, fmt.Errorf("layer %s: empty update (A %v, B %v)", p.key, as, bs)
	}
	t.A, t.B = a.data, b.data
	t.Alpha = float64(t.Rank)
	if scaling != nil {
		r, al := scaling.rankAlpha(p.module)
		if r != t.Rank {
			return nil, fmt.Errorf("layer %s: adapter_config.json gives rank %d, the weights have rank %d (A %v)", p.key, r, t.Rank, as)
		}
		t.Alpha = al
	} else if alpha != nil {
		if len(alpha.data) != 1 {
			return nil, fmt.Errorf("%s has shape %v, want a scalar", alphaKey, alpha.shape)
		}
		t.Alpha = float64(alpha.data[0])
	}
	t.Scale = t.Alpha / float64(t.Rank)
	if scaling != nil && scaling.rslora {
		t.Scale = t.Alpha / math.Sqrt(float64(t.Rank))
	}
	return t, nil
}

func listSome(names []string) string {
	const most = 8
	if len(names) <= most {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:most], ", ") + fmt.Sprintf(", … (%d more)", len(names)-most)
}

// Shapes tells Check the shape of a model's weight, and whether the model has it.
type Shapes func(weight string) (shape []int, ok bool)

// MissingError lists the targets of an adapter that the model does not have.
type MissingError struct {
	Path    string
	Missing []string // "<component>: <module>"
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("lora: %s targets %d layers the model does not have (an adapter for another model?): %s", e.Path, len(e.Missing), strings.Join(e.Missing, ", "))
}

// Check matches the adapter against a model: shapes gives the weights of each component. A
// target whose layer has another shape is an error; targets whose layer the model lacks are a
// *MissingError listing all of them, unless lenient, when the returned adapter leaves them out
// and lists them in Skipped. The adapter itself is not changed.
func (a *Adapter) Check(shapes map[Component]Shapes, lenient bool) (*Adapter, error) {
	var missing, mismatched []string
	out := &Adapter{Path: a.Path, Format: a.Format}
	for _, t := range a.Targets {
		fn := shapes[t.Component]
		var got []int
		ok := false
		if fn != nil {
			got, ok = fn(t.Module + ".weight")
		}
		if !ok {
			missing = append(missing, fmt.Sprintf("%s: %s (%s)", t.Component, t.Module, t.Key))
			continue
		}
		if want := t.WeightShape(); !equalShape(got, want) {
			mismatched = append(mismatched, fmt.Sprintf("%s: %s.weight is %v, the update is %v", t.Component, t.Module, got, want))
			continue
		}
		out.Targets = append(out.Targets, t)
	}
	if len(mismatched) > 0 {
		return nil, fmt.Errorf("lora: %s does not fit the model (an adapter for another model?): %d layers differ in shape: %s", a.Path, len(mismatched), listSome(mismatched))
	}
	if len(missing) > 0 {
		if !lenient {
			return nil, &MissingError{Path: a.Path, Missing: missing}
		}
		out.Skipped = missing
	}
	if len(out.Targets) == 0 {
		return nil, fmt.Errorf("lora: %s: none of its %d layers is in the model", a.Path, len(a.Targets))
	}
	return out, nil
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

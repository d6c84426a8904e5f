package hub

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
)

// PipelineOptions says which optional files of a diffusers pipeline repository to fetch.
type PipelineOptions struct {
	// Variant, such as "fp16", prefers weight files of that variant
	// (diffusion_pytorch_model.fp16.safetensors) in every component that has them. Without
	// it, variant files are never fetched.
	Variant string
	// VAE "large" also fetches vae_large/ (the KL decoder); "" or "tiny" does not.
	VAE string
}

// PipelineComponents are the component folders of a diffusers pipeline that sdxs reads, and
// whether each needs weights.
var PipelineComponents = []struct {
	Name    string
	Weights bool
	Needs   []string // files the folder must hold
}{
	{"scheduler", false, []string{"scheduler_config.json"}},
	{"tokenizer", false, []string{"vocab.json", "merges.txt"}},
	{"text_encoder", true, []string{"config.json"}},
	{"unet", true, []string{"config.json"}},
	{"vae", true, []string{"config.json"}},
}

// PipelineSelector selects what an SDXS pipeline reads from a diffusers pipeline repository:
// model_index.json; scheduler/ and tokenizer/ configuration; text_encoder/, unet/ and vae/
// configuration and weights; vae_large/ only when asked; controlnet/ when the repository has
// one. Of the weights it takes safetensors over .bin, and .fp16 (or other) variants only when
// asked. It never takes safety_checker/, feature_extractor/, README files, or weights in other
// formats (Flax, TensorFlow, ONNX, OpenVINO, single-file checkpoints at the root).
func PipelineSelector(o PipelineOptions) Selector {
	return func(files []string) ([]string, error) {
		dirs := byFolder(files)
		if !contains(dirs[""], "model_index.json") {
			return nil, fmt.Errorf("not a diffusers pipeline: no model_index.json (files: %s)", preview(files))
		}
		out := []string{"model_index.json"}
		type comp struct {
			name    string
			weights bool
			needs   []string
		}
		var comps []comp
		for _, c := range PipelineComponents {
			comps = append(comps, comp{c.Name, c.Weights, c.Needs})
		}
		switch o.VAE {
		case "", "tiny":
		case "large":
			comps = append(comps, comp{"vae_large", true, []string{"config.json"}})
		default:
			return nil, fmt.Errorf("unknown VAE %q (want tiny or large)", o.VAE)
		}
		if _, ok := dirs["controlnet"]; ok {
			comps = append(comps, comp{"controlnet", true, []string{"config.json"}})
		}
		var problems []string
		for _, c := range comps {
			names, ok := dirs[c.name]
			if !ok {
				problems = append(problems, fmt.Sprintf("no %s/ folder", c.name))
				continue
			}
			sel, err := selectFolder(names, c.weights, o.Variant)
			if err == nil {
				for _, n := range c.needs {
					if !contains(names, n) {
						err = fmt.Errorf("no %s", n)
						break
					}
				}
			}
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s/: %v", c.name, err))
				continue
			}
			for _, n := range sel {
				out = append(out, c.name+"/"+n)
			}
		}
		if len(problems) > 0 {
			return nil, fmt.Errorf("diffusers pipeline incomplete: %s", strings.Join(problems, "; "))
		}
		return out, nil
	}
}

// ControlNetSelector selects a diffusers ControlNetModel: config.json and its weights at the
// root of the repository, or in a controlnet/ folder when the root has no config.json.
func ControlNetSelector(variant string) Selector {
	return func(files []string) ([]string, error) {
		dirs := byFolder(files)
		for _, dir := range []string{"", "controlnet"} {
			names := dirs[dir]
			if !contains(names, "config.json") {
				continue
			}
			sel, err := selectFolder(names, true, variant)
			if err != nil {
				return nil, fmt.Errorf("ControlNet %s: %w", strings.TrimSuffix(dir+"/", "/")+"config.json", err)
			}
			prefix := ""
			if dir != "" {
				prefix = dir + "/"
			}
			out := make([]string, len(sel))
			for i, n := range sel {
				out[i] = prefix + n
			}
			return out, nil
		}
		return nil, fmt.Errorf("not a ControlNet: no config.json at the root or in controlnet/ (files: %s)", preview(files))
	}
}

// LoRASelector selects a LoRA adapter: a PEFT adapter (adapter_config.json with
// adapter_model.safetensors, else adapter_model.bin) or, without adapter_config.json, the single
// .safetensors file at the root of the repository (kohya format).
func LoRASelector() Selector {
	return func(files []string) ([]string, error) {
		root := byFolder(files)[""]
		if contains(root, "adapter_config.json") {
			for _, w := range []string{"adapter_model.safetensors", "adapter_model.bin"} {
				if contains(root, w) {
					return []string{"adapter_config.json", w}, nil
				}
			}
			return nil, fmt.Errorf("PEFT adapter without adapter_model.safetensors or adapter_model.bin (files: %s)", preview(files))
		}
		var st []string
		for _, n := range root {
			if strings.HasSuffix(n, ".safetensors") {
				st = append(st, n)
			}
		}
		switch len(st) {
		case 1:
			return st, nil
		case 0:
			return nil, fmt.Errorf("not a LoRA: no adapter_config.json and no .safetensors file at the root (files: %s)", preview(files))
		}
		return nil, fmt.Errorf("several .safetensors files at the root (%s): cannot tell which is the LoRA", strings.Join(st, ", "))
	}
}

// byFolder groups paths by their folder ("" for the root), keeping base names.
func byFolder(files []string) map[string][]string {
	m := make(map[string][]string)
	for _, f := range files {
		dir, name := path.Split(f)
		m[strings.TrimSuffix(dir, "/")] = append(m[strings.TrimSuffix(dir, "/")], name)
	}
	for _, v := range m {
		sort.Strings(v)
	}
	return m
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func preview(files []string) string {
	if len(files) == 0 {
		return "none"
	}
	if len(files) > 8 {
		return strings.Join(files[:8], ", ") + fmt.Sprintf(", … (%d in all)", len(files))
	}
	return strings.Join(files, ", ")
}

// weightFile describes a weights file name: its format, variant and whether it is a shard
// index.
type weightFile struct {
	format  string // "safetensors" or "bin"
	variant string // "" or "fp16", ...
}

var (
	// name.safetensors.index.fp16.json, the older way of naming a variant index.
	oldVariantIndex = regexp.MustCompile(`^(.+)\.(safetensors|bin)\.index\.([^.]+)\.json$`)
	shardSuffix     = regexp.MustCompile(`-\d{5}-of-\d{5}$`)
)

// parseWeight classifies a file name; ok is false for anything but safetensors or PyTorch
// weights and their shard indexes.
func parseWeight(name string) (w weightFile, ok bool) {
	var stem string
	if m := oldVariantIndex.FindStringSubmatch(name); m != nil {
		return weightFile{format: m[2], variant: m[3]}, true
	}
	for _, s := range []struct{ suffix, format string }{
		{".safetensors.index.json", "safetensors"},
		{".bin.index.json", "bin"},
		{".safetensors", "safetensors"},
		{".bin", "bin"},
	} {
		if strings.HasSuffix(name, s.suffix) {
			stem, w.format = strings.TrimSuffix(name, s.suffix), s.format
			break
		}
	}
	if w.format == "" {
		return w, false
	}
	stem = shardSuffix.ReplaceAllString(stem, "")
	if i := strings.LastIndexByte(stem, '.'); i >= 0 {
		w.variant = stem[i+1:]
	}
	return w, true
}

// selectFolder picks from the files directly in one component folder its small configuration
// files (.json, .txt) and, when weights is set, one set of weights: safetensors over .bin, and
// of those the asked variant if the folder has it, else the plain files.
func selectFolder(names []string, weights bool, variant string) ([]string, error) {
	var out []string
	byVariant := make(map[string][]string)
	for _, n := range names {
		if w, ok := parseWeight(n); ok {
			byVariant[w.variant] = append(byVariant[w.variant], n)
			continue
		}
		if strings.HasSuffix(n, ".json") || strings.HasSuffix(n, ".txt") {
			out = append(out, n)
		}
	}
	if !weights {
		return out, nil
	}
	var candidates []string
	if variant != "" {
		candidates = append(candidates, byVariant[variant]...)
	}
	candidates = append(candidates, byVariant[""]...)
	if len(candidates) == 0 {
		var have []string
		for v := range byVariant {
			have = append(have, v)
		}
		sort.Strings(have)
		if len(have) > 0 {
			return nil, fmt.Errorf("no plain weights, only the variants %s: ask for one (variant %q)", strings.Join(have, ", "), have[0])
		}
		return nil, fmt.Errorf("no weights (.safetensors or .bin)")
	}
	// safetensors over .bin, then the asked variant over the plain files.
	format := "bin"
	for _, n := range candidates {
		if w, _ := parseWeight(n); w.format == "safetensors" {
			format = "safetensors"
		}
	}
	var plain, variants []string
	for _, n := range candidates {
		w, _ := parseWeight(n)
		switch {
		case w.format != format:
		case w.variant == "":
			plain = append(plain, n)
		default:
			variants = append(variants, n)
		}
	}
	if len(variants) > 0 {
		out = append(out, variants...)
	} else {
		out = append(out, plain...)
	}
	sort.Strings(out)
	return out, nil
}

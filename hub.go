package sdxs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/sdxs-go/sdxs/weights/hub"
)

// Kind says what a model name or folder given to Resolve holds, and so which of a hub
// repository's files are fetched.
type Kind int

// The kinds of model Resolve fetches.
const (
	// KindPipeline is a diffusers pipeline (model_index.json, tokenizer/, text_encoder/,
	// unet/, vae/, scheduler/), as Load reads it.
	KindPipeline Kind = iota
	// KindControlNet is a diffusers ControlNetModel (config.json and its weights at the root,
	// or in controlnet/).
	KindControlNet
	// KindLoRA is a LoRA adapter: a PEFT folder (adapter_config.json and
	// adapter_model.safetensors or .bin) or a single kohya .safetensors file.
	KindLoRA
)

// String names the kind, for messages.
func (k Kind) String() string {
	switch k {
	case KindPipeline:
		return "pipeline"
	case KindControlNet:
		return "ControlNet"
	case KindLoRA:
		return "LoRA"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// WithProgress reports the progress of downloads from the hub (nothing is reported for a
// folder, or for files already in the cache).
func WithProgress(fn func(hub.Progress)) Option {
	return func(o *loadOptions) { o.progress = fn }
}

// WithVariant fetches weight files of the given variant ("fp16":
// diffusion_pytorch_model.fp16.safetensors) from the hub where a component has them, the plain
// files elsewhere. Without it, variant files are never fetched. It does not change which files
// are read from a folder that has both.
func WithVariant(variant string) Option {
	return func(o *loadOptions) { o.variant = variant }
}

// WithHubClient sets the client that fetches models named by a hub repository id, for a custom
// endpoint, token, cache folder or HTTP client. Without it, Load and Resolve use
// hub.NewClientFromEnv, which reads huggingface_hub's environment variables (HF_ENDPOINT,
// HF_TOKEN, HF_HUB_CACHE, HF_HOME, HF_HUB_OFFLINE).
func WithHubClient(c *hub.Client) Option {
	return func(o *loadOptions) { o.hub = c }
}

// WithContext bounds the download of a model named by a hub repository id; cancelling ctx stops
// it (a later Load resumes it).
func WithContext(ctx context.Context) Option {
	return func(o *loadOptions) { o.ctx = ctx }
}

var variantPattern = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// Resolve turns a model name into a local path. A path that exists is returned as it is.
// Otherwise nameOrPath must be a Hugging Face repository id, "org/name" or "org/name@revision"
// (a branch, tag or commit): the files a model of the given kind reads are fetched into
// huggingface_hub's cache (shared with Python) unless they are there already, and the
// snapshot folder is returned; for a kohya LoRA, the path of its .safetensors file. Options
// WithHubClient, WithProgress, WithVariant, WithVAE and WithContext apply; the others are
// ignored.
func Resolve(ctx context.Context, nameOrPath string, kind Kind, opts ...Option) (string, error) {
	o := applyOptions(opts)
	if ctx != nil {
		o.ctx = ctx
	}
	return resolve(o, nameOrPath, kind)
}

func resolve(o *loadOptions, nameOrPath string, kind Kind) (string, error) {
	if nameOrPath == "" {
		return "", errors.New("sdxs: empty model name")
	}
	if _, err := os.Stat(nameOrPath); err == nil || !looksLikeRepoID(nameOrPath) {
		return nameOrPath, nil // a path: its loader reports what is wrong with it
	}
	repo, rev, err := hub.ParseRepoID(nameOrPath)
	if err != nil {
		return "", fmt.Errorf("sdxs: %s: no such file or folder, and not a hub repository id: %w", nameOrPath, err)
	}
	if o.variant != "" && !variantPattern.MatchString(o.variant) {
		return "", fmt.Errorf("sdxs: variant %q: want letters, digits or '_' (such as fp16)", o.variant)
	}
	var sel hub.Selector
	switch kind {
	case KindPipeline:
		sel = hub.PipelineSelector(hub.PipelineOptions{Variant: o.variant, VAE: o.vae})
	case KindControlNet:
		sel = hub.ControlNetSelector(o.variant)
	case KindLoRA:
		sel = hub.LoRASelector()
	default:
		return "", fmt.Errorf("sdxs: Resolve: unknown kind %v", kind)
	}
	var client hub.Client
	if o.hub != nil {
		client = *o.hub
	} else {
		c, err := hub.NewClientFromEnv()
		if err != nil {
			return "", fmt.Errorf("sdxs: %s: %w", nameOrPath, err)
		}
		client = *c
	}
	if o.progress != nil {
		client.Progress = o.progress
	}
	ctx := o.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	var picked []string
	dir, err := client.Snapshot(ctx, repo, rev, func(files []string) ([]string, error) {
		sel, err := sel(files)
		picked = sel
		return sel, err
	})
	if err != nil {
		return "", fmt.Errorf("sdxs: %s is not a local path; fetching the %v from the hub: %w", nameOrPath, kind, err)
	}
	if kind == KindLoRA && len(picked) == 1 && strings.HasSuffix(picked[0], ".safetensors") {
		return filepath.Join(dir, filepath.FromSlash(picked[0])), nil
	}
	return dir, nil
}

// looksLikeRepoID tells a hub id ("org/name", "org/name@rev") from a path: exactly one slash
// before any '@', no leading '.', '/' or '~', no backslash. Single names ("sdxs-dreamshaper")
// are taken as paths, so that a mistyped folder is not looked up on the hub.
func looksLikeRepoID(s string) bool {
	id, _, _ := strings.Cut(s, "@")
	if strings.Count(id, "/") != 1 || strings.ContainsAny(s, `\`) || strings.HasPrefix(s, ".") || strings.HasPrefix(s, "~") {
		return false
	}
	return hub.ValidRepoID(id)
}

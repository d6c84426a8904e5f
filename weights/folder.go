package weights

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Component names one part of a pipeline in model_index.json: the library that implements it
// and its class.
type Component struct {
	Library string // "diffusers", "transformers", ...
	Class   string // "UNet2DConditionModel", "CLIPTextModel", ...
}

// ModelIndex is the content of a diffusers model_index.json.
type ModelIndex struct {
	ClassName        string // _class_name, e.g. "StableDiffusionPipeline"
	DiffusersVersion string // _diffusers_version
	// Components maps each present component (unet, vae, text_encoder, ...) to its class.
	// Components given as [null, null] are absent and not listed.
	Components map[string]Component
	// Absent lists the components declared as [null, null], sorted.
	Absent []string
}

// ParseModelIndex parses the content of a model_index.json. Keys starting with "_" are
// metadata; other keys whose value is a two-element list are components; other values (such
// as "requires_safety_checker": false) are ignored.
func ParseModelIndex(data []byte) (*ModelIndex, error) {
	c, err := newJSONConfig("model_index", data)
	if err != nil {
		return nil, configErr(err)
	}
	idx := &ModelIndex{Components: make(map[string]Component)}
	idx.ClassName = c.string("_class_name", "")
	idx.DiffusersVersion = c.string("_diffusers_version", "")
	for key, raw := range c.m {
		if strings.HasPrefix(key, "_") || len(raw) == 0 || raw[0] != '[' {
			continue
		}
		var pair []*string
		if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 {
			c.fail(key, "want a [library, class] pair, got %s", show(raw))
			continue
		}
		switch {
		case pair[0] == nil && pair[1] == nil:
			idx.Absent = append(idx.Absent, key)
		case pair[0] == nil || pair[1] == nil || *pair[1] == "":
			c.fail(key, "want a [library, class] pair, got %s", show(raw))
		default:
			idx.Components[key] = Component{Library: *pair[0], Class: *pair[1]}
		}
	}
	if c.err != nil {
		return nil, configErr(c.err)
	}
	sort.Strings(idx.Absent)
	return idx, nil
}

// ReadModelIndex reads dir/model_index.json.
func ReadModelIndex(dir string) (*ModelIndex, error) {
	return loadConfig(filepath.Join(dir, "model_index.json"), ParseModelIndex)
}

// Names returns the present components' names, sorted.
func (m *ModelIndex) Names() []string {
	names := make([]string, 0, len(m.Components))
	for n := range m.Components {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Folder is a diffusers pipeline folder: a model_index.json (optional) and one subfolder per
// component.
type Folder struct {
	// Dir is the folder's path.
	Dir string
	// Index is the parsed model_index.json, nil when the folder has none.
	Index *ModelIndex
	comps map[string]Component
}

// unreadComponents are pipeline components sdxs never reads, and that a download from the hub
// leaves out: model_index.json may list them without their folder being there.
var unreadComponents = map[string]bool{"safety_checker": true, "feature_extractor": true, "image_encoder": true}

// OpenFolder inspects a diffusers pipeline folder. With a model_index.json every component it
// lists must have its subfolder, except those sdxs never reads (safety_checker,
// feature_extractor, image_encoder); subfolders it does not list (such as an extra vae_large/) are
// discovered too. Without one, every subfolder holding a config.json, a
// scheduler_config.json or tokenizer files is a component, its class read from _class_name
// (or architectures) when present.
func OpenFolder(dir string) (*Folder, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("weights: model folder: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("weights: %s: not a folder", dir)
	}
	f := &Folder{Dir: dir, comps: make(map[string]Component)}
	if _, err := os.Stat(filepath.Join(dir, "model_index.json")); err == nil {
		idx, err := ReadModelIndex(dir)
		if err != nil {
			return nil, err
		}
		f.Index = idx
		var missing []string
		for _, name := range idx.Names() {
			if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || !fi.IsDir() {
				if unreadComponents[name] {
					continue // not read: a download may well have left it out
				}
				missing = append(missing, name)
				continue
			}
			f.comps[name] = idx.Components[name]
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("weights: %s: model_index.json lists components with no folder: %s", dir, strings.Join(missing, ", "))
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	for _, e := range entries {
		if _, known := f.comps[e.Name()]; known || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		// Follow symbolic links: a component folder may be a link to a shared copy.
		if st, err := os.Stat(filepath.Join(dir, e.Name())); err != nil || !st.IsDir() {
			continue
		}
		if comp, ok := probeComponent(filepath.Join(dir, e.Name())); ok {
			f.comps[e.Name()] = comp
		}
	}
	if len(f.comps) == 0 {
		return nil, fmt.Errorf("weights: %s: no model_index.json and no component folders (unet/, vae/, text_encoder/, ...)", dir)
	}
	return f, nil
}

// probeComponent guesses a component folder's library and class from the files it holds.
func probeComponent(dir string) (Component, bool) {
	classOf := func(file string) (string, bool) {
		data, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return "", false
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(bytes.TrimSpace(data), &m) != nil {
			return "", true
		}
		var s string
		if json.Unmarshal(m["_class_name"], &s) == nil && s != "" {
			return s, true
		}
		var archs []string
		if json.Unmarshal(m["architectures"], &archs) == nil && len(archs) > 0 {
			return archs[0], true
		}
		if json.Unmarshal(m["tokenizer_class"], &s) == nil && s != "" {
			return s, true
		}
		return "", true
	}
	if cls, ok := classOf("scheduler_config.json"); ok {
		return Component{Library: "diffusers", Class: cls}, true
	}
	if cls, ok := classOf("config.json"); ok {
		lib := "diffusers"
		if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err == nil || strings.HasPrefix(cls, "CLIP") {
			lib = "transformers"
		}
		return Component{Library: lib, Class: cls}, true
	}
	if _, err := os.Stat(filepath.Join(dir, "vocab.json")); err == nil {
		cls, _ := classOf("tokenizer_config.json")
		if cls == "" {
			cls = "CLIPTokenizer"
		}
		return Component{Library: "transformers", Class: cls}, true
	}
	return Component{}, false
}

// Components returns the names of the folder's components, sorted.
func (f *Folder) Components() []string {
	names := make([]string, 0, len(f.comps))
	for n := range f.comps {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Has reports whether the folder has the named component.
func (f *Folder) Has(component string) bool {
	_, ok := f.comps[component]
	return ok
}

// Path returns the folder of the named component.
func (f *Folder) Path(component string) (string, bool) {
	if _, ok := f.comps[component]; !ok {
		return "", false
	}
	return filepath.Join(f.Dir, component), true
}

// Class returns the class of the named component ("" when it could not be determined).
func (f *Folder) Class(component string) (string, bool) {
	c, ok := f.comps[component]
	return c.Class, ok
}

// Component returns the library and class of the named component.
func (f *Folder) Component(component string) (Component, bool) {
	c, ok := f.comps[component]
	return c, ok
}

// Require returns an error naming every one of the given components the folder lacks.
func (f *Folder) Require(components ...string) error {
	var missing []string
	for _, c := range components {
		if !f.Has(c) {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("weights: %s: missing components: %s (found: %s)", f.Dir, strings.Join(missing, ", "), strings.Join(f.Components(), ", "))
}

// ConfigPath returns the path of the named component's configuration file (config.json, or
// scheduler_config.json for a scheduler).
func (f *Folder) ConfigPath(component string) (string, error) {
	p, ok := f.Path(component)
	if !ok {
		return "", f.Require(component)
	}
	for _, name := range []string{"config.json", "scheduler_config.json"} {
		c := filepath.Join(p, name)
		if _, err := os.Stat(c); err == nil {
			return c, nil
		}
	}
	return "", fmt.Errorf("weights: %s: no config.json or scheduler_config.json", p)
}

// OpenWeights opens the named component's weights (see OpenComponent).
func (f *Folder) OpenWeights(component string) (*Set, error) {
	p, ok := f.Path(component)
	if !ok {
		return nil, f.Require(component)
	}
	return OpenComponent(p)
}

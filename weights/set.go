package weights

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Set is a group of safetensors files read as one checkpoint (the shards of a sharded
// checkpoint, or any files given to OpenFiles). Tensor names are unique across the set.
type Set struct {
	files  []*File
	owner  map[string]*File
	names  []string
	origin string // the index file, when the set came from one
}

// OpenFiles opens the given safetensors files as one Set. A tensor name present in two files
// is an error.
func OpenFiles(paths ...string) (*Set, error) {
	if len(paths) == 0 {
		return nil, errors.New("weights: OpenFiles: no files given")
	}
	s := &Set{owner: make(map[string]*File)}
	for _, p := range paths {
		f, err := Open(p)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.files = append(s.files, f)
		for _, n := range f.names {
			if prev, dup := s.owner[n]; dup {
				s.Close()
				return nil, fmt.Errorf("weights: tensor %q is in both %s and %s", n, prev.path, f.path)
			}
			s.owner[n] = f
		}
	}
	s.names = make([]string, 0, len(s.owner))
	for n := range s.owner {
		s.names = append(s.names, n)
	}
	sort.Strings(s.names)
	return s, nil
}

// shardIndex is the JSON layout of a *.safetensors.index.json file.
type shardIndex struct {
	Metadata  map[string]any    `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

// OpenIndex opens a sharded checkpoint from its index file ({"weight_map": {name: file}});
// shard paths are relative to the index's folder. Every tensor the index lists must be in the
// shard it names.
func OpenIndex(indexPath string) (*Set, error) {
	data, err := os.ReadFile(indexPath)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	var idx shardIndex
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("weights: %s: invalid index: %w", indexPath, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("weights: %s: index has no weight_map entries", indexPath)
	}
	dir := filepath.Dir(indexPath)
	var shards []string
	seen := make(map[string]bool)
	for _, file := range idx.WeightMap {
		if file == "" {
			return nil, fmt.Errorf("weights: %s: empty shard file name in weight_map", indexPath)
		}
		if !seen[file] {
			seen[file] = true
			shards = append(shards, file)
		}
	}
	sort.Strings(shards)
	paths := make([]string, len(shards))
	for i, sh := range shards {
		paths[i] = filepath.Join(dir, filepath.FromSlash(sh))
	}
	s, err := OpenFiles(paths...)
	if err != nil {
		return nil, fmt.Errorf("%w (a shard of %s)", err, indexPath)
	}
	s.origin = indexPath
	for name, file := range idx.WeightMap {
		f, ok := s.owner[name]
		if !ok || f.path != filepath.Join(dir, filepath.FromSlash(file)) {
			s.Close()
			return nil, fmt.Errorf("weights: %s: weight_map places %q in %s, which does not hold it", indexPath, name, file)
		}
	}
	return s, nil
}

// ComponentWeightFiles lists, in the order OpenComponent tries them, the file names a
// diffusers component folder may keep its weights in.
var ComponentWeightFiles = []string{
	"diffusion_pytorch_model.safetensors",
	"model.safetensors",
	"diffusion_pytorch_model.fp16.safetensors",
	"model.fp16.safetensors",
	"diffusion_pytorch_model.safetensors.index.json",
	"model.safetensors.index.json",
	"diffusion_pytorch_model.safetensors.index.fp16.json",
	"model.safetensors.index.fp16.json",
	"diffusion_pytorch_model.fp16.safetensors.index.json",
	"model.fp16.safetensors.index.json",
}

// OpenComponent opens the weights of one component folder of a diffusers pipeline (unet/,
// vae/, text_encoder/, ...): the first of ComponentWeightFiles present in dir, a single file or
// a sharded index.
func OpenComponent(dir string) (*Set, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("weights: component folder: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("weights: %s: not a folder", dir)
	}
	for _, name := range ComponentWeightFiles {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			continue
		}
		if strings.HasSuffix(name, ".json") {
			return OpenIndex(p)
		}
		return OpenFiles(p)
	}
	return nil, fmt.Errorf("weights: %s: no safetensors weights found (looked for %s)", dir, strings.Join(ComponentWeightFiles, ", "))
}

// Close closes every file of the set, returning the first error.
func (s *Set) Close() error {
	var first error
	for _, f := range s.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Files returns the files of the set, in the order they were opened.
func (s *Set) Files() []*File { return slices.Clone(s.files) }

// Names returns every tensor name of the set, sorted.
func (s *Set) Names() []string { return slices.Clone(s.names) }

// Has reports whether some file of the set holds a tensor called name.
func (s *Set) Has(name string) bool {
	_, ok := s.owner[name]
	return ok
}

// File returns the file holding the tensor called name.
func (s *Set) File(name string) (*File, bool) {
	f, ok := s.owner[name]
	return f, ok
}

// Info returns the description of the tensor called name (offsets relative to its file).
func (s *Set) Info(name string) (TensorInfo, bool) {
	f, ok := s.owner[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Info(name)
}

func (s *Set) lookup(name string) (*File, error) {
	if f, ok := s.owner[name]; ok {
		return f, nil
	}
	return nil, fmt.Errorf("weights: %s: %w: %q", s.describe(), ErrNotFound, name)
}

// describe names the set in errors.
func (s *Set) describe() string {
	switch {
	case s.origin != "":
		return s.origin
	case len(s.files) == 1:
		return s.files[0].path
	default:
		return fmt.Sprintf("%s and %d more files", s.files[0].path, len(s.files)-1)
	}
}

// Float32 decodes the float tensor called name into a new slice; see File.Float32.
func (s *Set) Float32(name string) ([]float32, []int, error) {
	f, err := s.lookup(name)
	if err != nil {
		return nil, nil, err
	}
	return f.Float32(name)
}

// Float32Into decodes the float tensor called name into dst; see File.Float32Into.
func (s *Set) Float32Into(name string, dst []float32) error {
	f, err := s.lookup(name)
	if err != nil {
		return err
	}
	return f.Float32Into(name, dst)
}

// Int64 returns a copy of the I64 tensor called name; see File.Int64.
func (s *Set) Int64(name string) ([]int64, []int, error) {
	f, err := s.lookup(name)
	if err != nil {
		return nil, nil, err
	}
	return f.Int64(name)
}

// Uint8 returns a copy of the U8 tensor called name; see File.Uint8.
func (s *Set) Uint8(name string) ([]uint8, []int, error) {
	f, err := s.lookup(name)
	if err != nil {
		return nil, nil, err
	}
	return f.Uint8(name)
}

// Float32Rows decodes rows of the tensor called name; see File.Float32Rows.
func (s *Set) Float32Rows(name string, want []int, rows []int, dst []float32) error {
	f, err := s.lookup(name)
	if err != nil {
		return err
	}
	return f.Float32Rows(name, want, rows, dst)
}

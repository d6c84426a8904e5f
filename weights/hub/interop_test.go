package hub_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/fakehub"
	"github.com/sdxs-go/sdxs/weights/hub"
)

// pipelineRepo is a small diffusers pipeline repository with the extras real ones carry.
func pipelineRepo() map[string][]byte {
	return map[string][]byte{
		"README.md":                                []byte("# test"),
		"model_index.json":                         []byte(`{"_class_name": "StableDiffusionPipeline"}`),
		"scheduler/scheduler_config.json":          []byte(`{"_class_name": "EulerDiscreteScheduler"}`),
		"tokenizer/vocab.json":                     []byte(`{"a": 0}`),
		"tokenizer/merges.txt":                     []byte("#version: 0.2\n"),
		"text_encoder/config.json":                 []byte(`{"architectures": ["CLIPTextModel"]}`),
		"text_encoder/model.safetensors":           randomBytes(11, 70_000),
		"unet/config.json":                         []byte(`{"_class_name": "UNet2DConditionModel"}`),
		"unet/diffusion_pytorch_model.safetensors": randomBytes(12, 400_000),
		"unet/diffusion_pytorch_model.bin":         randomBytes(13, 1000),
		"vae/config.json":                          []byte(`{"_class_name": "AutoencoderTiny"}`),
		"vae/diffusion_pytorch_model.safetensors":  randomBytes(14, 30_000),
		"safety_checker/config.json":               []byte("{}"),
		"safety_checker/model.safetensors":         randomBytes(15, 1000),
	}
}

type pyResult struct {
	Version      string   `json:"version"`
	Path         string   `json:"path"`
	ScanWarnings []string `json:"scan_warnings"`
	Repos        []struct {
		RepoID    string `json:"repo_id"`
		RepoType  string `json:"repo_type"`
		NbFiles   int    `json:"nb_files"`
		Revisions []struct {
			CommitHash string   `json:"commit_hash"`
			Refs       []string `json:"refs"`
			NbFiles    int      `json:"nb_files"`
		} `json:"revisions"`
	} `json:"repos"`
	Files map[string]struct {
		Path   string `json:"path"`
		SHA256 string `json:"sha256"`
	} `json:"files"`
}

// TestInteropHuggingfaceHub checks this package's cache against the real huggingface_hub,
// both ways, over the fake hub: a cache written by huggingface_hub's snapshot_download and
// hf_hub_download loads here offline; a cache written here passes scan_cache_dir without
// warnings and serves hf_hub_download(local_files_only=True); a download this package left
// .incomplete is resumed by huggingface_hub.
//
// It runs only when SDXS_HFHUB_SRC names an unpacked huggingface_hub source tree (the folder
// holding the huggingface_hub package, i.e. its src/), with SDXS_PYTHON (default python3) an
// interpreter that has its dependencies; testdata/interop.sh prepares both from a git clone.
// Otherwise it is skipped: CI cannot fetch huggingface_hub (this is the package's one skip).
func TestInteropHuggingfaceHub(t *testing.T) {
	src := os.Getenv("SDXS_HFHUB_SRC")
	if src == "" {
		t.Skip("SDXS_HFHUB_SRC is not set: run weights/hub/testdata/interop.sh with a huggingface_hub clone")
	}
	_, err := os.Stat(filepath.Join(src, "huggingface_hub", "file_download.py"))
	require.NoError(t, err, "SDXS_HFHUB_SRC must hold huggingface_hub/")
	python := os.Getenv("SDXS_PYTHON")
	if python == "" {
		python = "python3"
	}
	h := startHub(t)
	files := pipelineRepo()
	commit := fakehub.Commit("org/tiny", files)
	old := map[string][]byte{"model_index.json": files["model_index.json"], "unet/config.json": []byte(`{"old": true}`)}
	oldCommit := fakehub.Commit("org/tiny", old)
	h.Add("org/tiny", &fakehub.Repo{
		Refs:    map[string]string{"main": commit, "v1": oldCommit},
		Commits: map[string]map[string][]byte{commit: files, oldCommit: old},
	})
	py := func(args ...string) pyResult {
		t.Helper()
		cmd := exec.Command(python, append([]string{filepath.Join("testdata", "interop.py")}, args...)...)
		cmd.Env = append(os.Environ(), "PYTHONPATH="+src, "HF_ENDPOINT="+h.URL(), "HF_HUB_DISABLE_TELEMETRY=1",
			"HF_HUB_DISABLE_IMPLICIT_TOKEN=1", "HF_TOKEN=", "HF_HUB_OFFLINE=", "HF_HOME="+t.TempDir())
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		require.NoError(t, err, "python %v: %s", args, stderr.String())
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		var res pyResult
		require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &res), string(out))
		return res
	}
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	sel := hub.PipelineSelector(hub.PipelineOptions{})
	wanted, err := sel(slices.Sorted(func(yield func(string) bool) {
		for k := range files {
			if !yield(k) {
				return
			}
		}
	}))
	require.NoError(t, err)

	t.Run("python writes, Go reads offline", func(t *testing.T) {
		cache := t.TempDir()
		res := py("download", cache, "org/tiny")
		require.Equal(t, "0.26.5", res.Version)
		py("download", cache, "org/tiny", "v1", "unet/config.json")
		c := &hub.Client{CacheDir: cache, Offline: true}
		dir, err := c.Snapshot(context.Background(), "org/tiny", "main", sel)
		require.NoError(t, err)
		require.Equal(t, res.Path, dir)
		for _, f := range wanted {
			got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f)))
			require.NoError(t, err, f)
			require.Equal(t, files[f], got, f)
		}
		dir, err = c.Snapshot(context.Background(), "org/tiny", "v1", nil)
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(dir, "unet", "config.json"))
		require.NoError(t, err)
		require.Equal(t, old["unet/config.json"], got)
		// Unreachable hub, cache written by Python: served from the cache.
		c = &hub.Client{CacheDir: cache, Endpoint: "http://127.0.0.1:1"}
		_, err = c.Snapshot(context.Background(), "org/tiny", "main", sel)
		require.NoError(t, err)
	})

	t.Run("Go writes, python reads", func(t *testing.T) {
		cache := t.TempDir()
		c := &hub.Client{Endpoint: h.URL(), CacheDir: cache}
		_, err := c.Snapshot(context.Background(), "org/tiny", "main", sel)
		require.NoError(t, err)
		_, err = c.Snapshot(context.Background(), "org/tiny", "v1", nil)
		require.NoError(t, err)
		h.Log()
		res := py(append([]string{"check", cache, "org/tiny", "main"}, wanted...)...)
		require.Empty(t, res.ScanWarnings)
		require.Len(t, res.Repos, 1)
		r := res.Repos[0]
		require.Equal(t, "org/tiny", r.RepoID)
		require.Equal(t, "model", r.RepoType)
		require.Len(t, r.Revisions, 2)
		for _, rev := range r.Revisions {
			switch rev.CommitHash {
			case commit:
				require.Equal(t, []string{"main"}, rev.Refs)
				require.Equal(t, len(wanted), rev.NbFiles)
			case oldCommit:
				require.Equal(t, []string{"v1"}, rev.Refs)
			default:
				t.Errorf("unexpected revision %s", rev.CommitHash)
			}
		}
		for _, f := range wanted {
			require.Equal(t, sum(files[f]), res.Files[f].SHA256, f)
			require.Equal(t, filepath.Join(cache, "models--org--tiny", "snapshots", commit, filepath.FromSlash(f)), res.Files[f].Path)
		}
		require.Empty(t, h.Log(), "local_files_only touches no network")

		// Online, huggingface_hub finds the blobs this package wrote and downloads nothing.
		py("download", cache, "org/tiny", "main", "unet/diffusion_pytorch_model.safetensors")
		for _, e := range h.Log() {
			require.False(t, strings.HasPrefix(e, "GET "), "python downloaded %s again", e)
		}
	})

	t.Run("python resumes what Go left incomplete", func(t *testing.T) {
		cache := t.TempDir()
		const f = "unet/diffusion_pytorch_model.safetensors"
		h.SetFaults(fakehub.Faults{StallAfter: map[string]int64{f: 150_000}, StallFor: 10 * time.Second})
		c := &hub.Client{Endpoint: h.URL(), CacheDir: cache}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.Snapshot(ctx, "org/tiny", "main", func([]string) ([]string, error) { return []string{f}, nil })
		require.ErrorIs(t, err, context.DeadlineExceeded)
		h.SetFaults(fakehub.Faults{})
		h.Log()
		res := py("download", cache, "org/tiny", "main", f)
		got, err := os.ReadFile(res.Path)
		require.NoError(t, err)
		require.Equal(t, files[f], got)
		require.True(t, slices.ContainsFunc(h.Log(), func(e string) bool { return strings.HasSuffix(e, " bytes=150000-") }),
			"huggingface_hub resumes from the .incomplete blob this package left")
		c.Offline = true
		dir, err := c.Snapshot(context.Background(), "org/tiny", "main", nil)
		require.NoError(t, err)
		got, err = os.ReadFile(filepath.Join(dir, filepath.FromSlash(f)))
		require.NoError(t, err)
		require.Equal(t, files[f], got)
	})
}

package hub_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sdxs-go/sdxs/internal/fakehub"
	"github.com/sdxs-go/sdxs/weights/hub"
)

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// smallRepo has an LFS file in a folder, a big LFS file and a regular (git) file.
func smallRepo() map[string][]byte {
	return map[string][]byte{
		"config.json": []byte(`{"a": 1}`),
		"unet/diffusion_pytorch_model.safetensors": randomBytes(1, 300_000),
		"notes/big.txt": randomBytes(2, 50_000),
	}
}

func newClient(t *testing.T, h *fakehub.Hub) *hub.Client {
	return &hub.Client{
		Endpoint:  h.URL(),
		CacheDir:  t.TempDir(),
		Timeout:   2 * time.Second,
		RetryWait: time.Millisecond,
	}
}

func startHub(t *testing.T) *fakehub.Hub {
	h := fakehub.New()
	t.Cleanup(h.Close)
	return h
}

// checkLayout checks the snapshot against huggingface_hub's layout: each file a relative
// symbolic link into blobs/, named by the file's ETag, with the right content.
func checkLayout(t *testing.T, cache, repo, commit string, files map[string][]byte) {
	t.Helper()
	storage := filepath.Join(cache, "models--"+strings.ReplaceAll(repo, "/", "--"))
	for name, data := range files {
		p := filepath.Join(storage, "snapshots", commit, filepath.FromSlash(name))
		target, err := os.Readlink(p)
		require.NoError(t, err, "%s must be a symbolic link", name)
		require.False(t, filepath.IsAbs(target), "%s links to an absolute path %s", name, target)
		etag := fakehub.ETag(name, data)
		want, err := filepath.Rel(filepath.Dir(p), filepath.Join(storage, "blobs", etag))
		require.NoError(t, err)
		require.Equal(t, want, target, name)
		got, err := os.ReadFile(p)
		require.NoError(t, err)
		require.True(t, bytes.Equal(data, got), "%s: content differs", name)
	}
	blobs, err := os.ReadDir(filepath.Join(storage, "blobs"))
	require.NoError(t, err)
	for _, b := range blobs {
		require.False(t, strings.HasSuffix(b.Name(), ".incomplete"), "left %s", b.Name())
	}
}

func TestSnapshotCacheLayout(t *testing.T) {
	h := startHub(t)
	files := smallRepo()
	commit := h.AddFiles("org/name", files)
	c := newClient(t, h)
	c.Token = "secret"

	dir, err := c.Snapshot(context.Background(), "org/name", "", nil)
	require.NoError(t, err)
	storage := filepath.Join(c.CacheDir, "models--org--name")
	require.Equal(t, filepath.Join(storage, "snapshots", commit), dir)
	checkLayout(t, c.CacheDir, "org/name", commit, files)

	ref, err := os.ReadFile(filepath.Join(storage, "refs", "main"))
	require.NoError(t, err)
	require.Equal(t, commit, string(ref), "refs/main holds the bare commit, no newline")
	_, err = os.Stat(filepath.Join(c.CacheDir, ".locks", "models--org--name"))
	require.NoError(t, err, "lock files go to .locks/models--org--name")
	require.Zero(t, h.AuthToStorage(), "the token must not be sent to the storage host")

	log := h.Log()
	require.Contains(t, log, "GET /api/models/org/name/revision/main")
	require.Contains(t, log, "HEAD /org/name/resolve/"+commit+"/unet/diffusion_pytorch_model.safetensors")
	lfs := fakehub.ETag("unet/diffusion_pytorch_model.safetensors", files["unet/diffusion_pytorch_model.safetensors"])
	require.Contains(t, log, "GET /blobs/"+lfs, "LFS bytes come from the storage the 302 names")

	// A second call lists the revision and downloads nothing.
	dir2, err := c.Snapshot(context.Background(), "org/name", "main", nil)
	require.NoError(t, err)
	require.Equal(t, dir, dir2)
	require.Equal(t, []string{"GET /api/models/org/name/revision/main"}, h.Log())
}

func TestSnapshotRevisionsAndSharedBlobs(t *testing.T) {
	h := startHub(t)
	v1 := smallRepo()
	v2 := smallRepo()
	v2["config.json"] = []byte(`{"a": 2}`)
	c1, c2 := fakehub.Commit("org/name", v1), fakehub.Commit("org/name", v2)
	h.Add("org/name", &fakehub.Repo{
		Refs:    map[string]string{"main": c2, "v1.0": c1, "refs/pr/1": c1},
		Commits: map[string]map[string][]byte{c1: v1, c2: v2},
	})
	c := newClient(t, h)
	ctx := context.Background()
	dir, err := c.Snapshot(ctx, "org/name", "v1.0", nil)
	require.NoError(t, err)
	require.Equal(t, c1, filepath.Base(dir))
	h.Log()
	dir, err = c.Snapshot(ctx, "org/name", "refs/pr/1", nil)
	require.NoError(t, err)
	require.Equal(t, c1, filepath.Base(dir))
	dir, err = c.Snapshot(ctx, "org/name", "main", nil)
	require.NoError(t, err)
	require.Equal(t, c2, filepath.Base(dir))
	checkLayout(t, c.CacheDir, "org/name", c1, v1)
	checkLayout(t, c.CacheDir, "org/name", c2, v2)
	for _, e := range h.Log() {
		require.NotContains(t, e, "/blobs/", "the unchanged LFS file is shared, not downloaded again")
	}
	for ref, want := range map[string]string{"main": c2, "v1.0": c1, "refs/pr/1": c1} {
		got, err := os.ReadFile(filepath.Join(c.CacheDir, "models--org--name", "refs", filepath.FromSlash(ref)))
		require.NoError(t, err)
		require.Equal(t, want, string(got), ref)
	}
	// A commit hash works as a revision too.
	dir, err = c.Snapshot(ctx, "org/name", c1, nil)
	require.NoError(t, err)
	require.Equal(t, c1, filepath.Base(dir))
}

func TestSnapshotSelector(t *testing.T) {
	h := startHub(t)
	files := smallRepo()
	commit := h.AddFiles("org/name", files)
	c := newClient(t, h)
	sel := func(all []string) ([]string, error) {
		require.ElementsMatch(t, []string{"config.json", "notes/big.txt", "unet/diffusion_pytorch_model.safetensors"}, all)
		return []string{"config.json"}, nil
	}
	_, err := c.Snapshot(context.Background(), "org/name", "", sel)
	require.NoError(t, err)
	for _, e := range h.Log() {
		require.NotContains(t, e, "unet/")
		require.NotContains(t, e, "notes/")
	}
	_, err = os.Lstat(filepath.Join(c.CacheDir, "models--org--name", "snapshots", commit, "unet"))
	require.True(t, os.IsNotExist(err))

	h.Log()
	dir, err := c.Snapshot(context.Background(), "org/name", "", hub.Filter(func(p string) bool { return strings.HasPrefix(p, "notes/") }))
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(dir, "notes", "big.txt"))
	require.NoError(t, err)
	for _, e := range h.Log() {
		require.NotContains(t, e, "unet/")
	}

	_, err = c.Snapshot(context.Background(), "org/name", "", func([]string) ([]string, error) {
		return nil, errors.New("no unet")
	})
	require.ErrorContains(t, err, "org/name")
	require.ErrorContains(t, err, "no unet")
}

func TestProgress(t *testing.T) {
	h := startHub(t)
	files := smallRepo()
	h.AddFiles("org/name", files)
	c := newClient(t, h)
	var reports []hub.Progress
	c.Progress = func(p hub.Progress) { reports = append(reports, p) }
	_, err := c.Snapshot(context.Background(), "org/name", "", nil)
	require.NoError(t, err)
	done := map[string]bool{}
	last := map[string]int64{}
	for _, p := range reports {
		require.Equal(t, "org/name", p.Repo)
		require.Equal(t, 3, p.Files)
		require.Equal(t, int64(len(files[p.File])), p.Size, p.File)
		require.GreaterOrEqual(t, p.Downloaded, last[p.File], "progress goes forward")
		require.False(t, done[p.File], "no report after Done")
		last[p.File] = p.Downloaded
		if p.Done {
			require.Equal(t, p.Size, p.Downloaded)
			done[p.File] = true
		}
	}
	require.Len(t, done, 3)
}

func lfsPath() string { return "unet/diffusion_pytorch_model.safetensors" }

func TestResumeAfterCut(t *testing.T) {
	h := startHub(t)
	files := smallRepo()
	commit := h.AddFiles("org/name", files)
	h.SetFaults(fakehub.Faults{CutAfter: map[string]int64{lfsPath(): 100_000}})
	c := newClient(t, h)
	_, err := c.Snapshot(context.Background(), "org/name", "", nil)
	require.NoError(t, err)
	checkLayout(t, c.CacheDir, "org/name", commit, files)
	require.True(t, slices.ContainsFunc(h.Log(), func(s string) bool {
		return strings.HasPrefix(s, "GET /blobs/") && strings.HasSuffix(s, " bytes=100000-")
	}), "the second request resumes where the cut left off")
}

func TestResumeAcrossRuns(t *testing.T) {
	h := startHub(t)
	files := smallRepo()
	commit := h.AddFiles("org/name", files)
	// The first run is stopped (as by Ctrl-C) in the middle of the file.
	h.SetFaults(fakehub.Faults{StallAfter: map[string]int64{lfsPath(): 123_456}, StallFor: 10 * time.Second})
	c := newClient(t, h)
	c.Timeout = 10 * time.Second // the caller's cancellation, not the stall timeout, ends the run
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := c.Snapshot(ctx, "org/name", "", nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	etag := fakehub.ETag(lfsPath(), files[lfsPath()])
	blob := filepath.Join(c.CacheDir, "models--org--name", "blobs", etag)
	_, err = os.Stat(blob)
	require.True(t, os.IsNotExist(err), "no blob from an interrupted download")
	st, err := os.Stat(blob + ".incomplete")
	require.NoError(t, err, "the partial download is kept, under huggingface_hub's name")
	require.Equal(t, int64(123_456), st.Size())
	_, err = os.Lstat(filepath.Join(c.CacheDir, "models--org--name", "snapshots", commit, filepath.FromSlash(lfsPath())))
	require.True(t, os.IsNotExist(err), "no snapshot entry for an incomplete file")

	// Offline, the cache does not pretend to hold it.
	off := *c
	off.Offline = true
	_, err = off.Snapshot(context.Background(), "org/name", "", func(f []string) ([]string, error) {
		if !slices.Contains(f, lfsPath()) {
			return nil, fmt.Errorf("no %s", lfsPath())
		}
		return f, nil
	})
	require.ErrorIs(t, err, hub.ErrNotCached)

	h.Log()
	_, err = c.Snapshot(context.Background(), "org/name", "", nil)
	require.NoError(t, err)
	checkLayout(t, c.CacheDir, "org/name", commit, files)
	require.Contains(t, h.Log(), "GET /blobs/"+etag+" bytes=123456-")
}

func TestServerIgnoringRange(t *testing.T) {
	h := startHub(t)
	files := smallRepo()
	commit := h.AddFiles("org/name", files)
	h.SetFaults(fakehub.Faults{CutAfter: map[string]int64{lfsPath(): 100_000}, IgnoreRange: true})
	c := newClient(t, h)
	_, err := c.Snapshot(context.Background(), "org/name", "", nil)
	require.NoError(t, err)
	checkLayout(t, c.CacheDir, "org/name", commit, files)
}

func TestChecksumMismatchLeavesNoBlob(t *testing.T) {
	h := startHub(t)
	files := smallRepo()
	commit := h.AddFiles("org/name", files)
	h.SetFaults(fakehub.Faults{Corrupt: map[string]bool{lfsPath(): true}})
	c := newClient(t, h)
	_, err := c.Snapshot(context.Background(), "org/name", "", nil)
	require.ErrorIs(t, err, hub.ErrCorrupt)
	require.ErrorContains(t, err, "org/name")
	require.ErrorContains(t, err, lfsPath())
	blobs := filepath.Join(c.CacheDir, "models--org--name", "blobs")
	etag := fakehub.ETag(lfsPath(), files[lfsPath()])
	for _, p := range []string{filepath.Join(blobs, etag), filepath.Join(blobs, etag+".incomplete"),
		filepath.Join(c.CacheDir, "models--org--name", "snapshots", commit, filepath.FromSlash(lfsPath()))} {
		_, err := os.Lstat(p)
		require.True(t, os.IsNotExist(err), "%s must not exist", p)
	}
	// The next run, from a healthy hub, gets the right bytes.
	h.SetFaults(fakehub.Faults{})
	_, err = c.Snapshot(context.Background(), "org/name", "", nil)
	require.NoError(t, err)
	checkLayout(t, c.CacheDir, "org/name", commit, files)
}

func TestResumedPrefixFromAnotherFileIsCaught(t *testing.T) {
	// A stale .incomplete whose bytes are not the file's: the checksum over the whole file
	// (prefix included) catches it, and nothing is kept.
	h := startHub(t)
	files := smallRepo()
	h.AddFiles("org/name", files)
	c := newClient(t, h)
	etag := fakehub.ETag(lfsPath(), files[lfsPath()])
	blobs := filepath.Join(c.CacheDir, "models--org--name", "blobs")
	require.NoError(t, os.MkdirAll(blobs, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(blobs, etag+".incomplete"), randomBytes(9, 1000), 0o644))
	_, err := c.Snapshot(context.Background(), "org/name", "", nil)
	require.ErrorIs(t, err, hub.ErrCorrupt)
	_, err = os.Stat(filepath.Join(blobs, etag+".incomplete"))
	require.True(t, os.IsNotExist(err))
	_, err = c.Snapshot(context.Background(), "org/name", "", nil)
	require.NoError(t, err)
}

func TestRetry5xx(t *testing.T) {
	h := startHub(t)
	files := smallRepo()
	commit := h.AddFiles("org/name", files)
	h.SetFaults(fakehub.Faults{Status5xx: map[string]int{lfsPath(): 2, "notes/big.txt": 1}})
	c := newClient(t, h)
	_, err := c.Snapshot(context.Background(), "org/name", "", nil)
	require.NoError(t, err)
	checkLayout(t, c.CacheDir, "org/name", commit, files)

	// A storage that keeps failing: a clear error after the retries.
	h2 := startHub(t)
	h2.AddFiles("org/name", files)
	h2.SetFaults(fakehub.Faults{Status5xx: map[string]int{lfsPath(): 100}})
	c2 := newClient(t, h2)
	c2.Retries = 2
	_, err = c2.Snapshot(context.Background(), "org/name", "", nil)
	require.ErrorIs(t, err, hub.ErrUnreachable)
	require.ErrorContains(t, err, lfsPath())
	require.ErrorContains(t, err, "503")
}

func TestStallAgainstTimeout(t *testing.T) {
	h := startHub(t)
	files := smallRepo()
	commit := h.AddFiles("org/name", files)
	h.SetFaults(fakehub.Faults{StallAfter: map[string]int64{lfsPath(): 50_000}, StallFor: 6 * time.Second})
	c := newClient(t, h)
	c.Timeout = 300 * time.Millisecond
	start := time.Now()
	_, err := c.Snapshot(context.Background(), "org/name", "", nil)
	require.NoError(t, err)
	require.Less(t, time.Since(start), 5*time.Second, "the stall is cut short by the timeout")
	checkLayout(t, c.CacheDir, "org/name", commit, files)
	require.True(t, slices.ContainsFunc(h.Log(), func(s string) bool { return strings.HasSuffix(s, " bytes=50000-") }))
}

func TestSlowListing(t *testing.T) {
	h := startHub(t)
	files := smallRepo()
	h.AddFiles("org/name", files)
	c := newClient(t, h)
	c.Timeout = 500 * time.Millisecond
	h.SetFaults(fakehub.Faults{ListDelay: 5 * time.Second})
	_, err := c.Snapshot(context.Background(), "org/name", "", nil)
	require.ErrorIs(t, err, hub.ErrUnreachable)
	require.ErrorContains(t, err, "org/name")
	require.ErrorContains(t, err, "not in the cache")

	// Once cached, a slow hub falls back on the cache.
	h.SetFaults(fakehub.Faults{})
	dir, err := c.Snapshot(context.Background(), "org/name", "", nil)
	require.NoError(t, err)
	h.SetFaults(fakehub.Faults{ListDelay: 5 * time.Second})
	dir2, err := c.Snapshot(context.Background(), "org/name", "", nil)
	require.NoError(t, err)
	require.Equal(t, dir, dir2)
}

func TestOffline(t *testing.T) {
	h := startHub(t)
	files := smallRepo()
	commit := h.AddFiles("org/name", files)
	c := newClient(t, h)
	ctx := context.Background()

	off := *c
	off.Offline = true
	_, err := off.Snapshot(ctx, "org/name", "", nil)
	require.ErrorIs(t, err, hub.ErrNotCached)
	require.ErrorContains(t, err, "org/name")

	dir, err := c.Snapshot(ctx, "org/name", "", nil)
	require.NoError(t, err)
	h.Close() // no hub at all from here on
	h.Log()

	got, err := off.Snapshot(ctx, "org/name", "", nil)
	require.NoError(t, err)
	require.Equal(t, dir, got)
	got, err = off.Snapshot(ctx, "org/name", commit, nil)
	require.NoError(t, err)
	require.Equal(t, dir, got)
	_, err = off.Snapshot(ctx, "org/name", "v2", nil)
	require.ErrorIs(t, err, hub.ErrNotCached)
	require.ErrorContains(t, err, "v2")

	// Online but unreachable: the cached revision is served; an uncached one is an error.
	got, err = c.Snapshot(ctx, "org/name", "", nil)
	require.NoError(t, err)
	require.Equal(t, dir, got)
	_, err = c.Snapshot(ctx, "other/repo", "", nil)
	require.ErrorIs(t, err, hub.ErrUnreachable)
	require.ErrorContains(t, err, "other/repo")
	require.Empty(t, h.Log())

	// A 5xx listing with the revision cached: the cache.
	h2 := startHub(t)
	h2.AddFiles("org/name", files)
	c.Endpoint = h2.URL()
	h2.SetFaults(fakehub.Faults{ListStatus: 503})
	got, err = c.Snapshot(ctx, "org/name", "", nil)
	require.NoError(t, err)
	require.Equal(t, dir, got)
}

func TestErrors(t *testing.T) {
	h := startHub(t)
	files := smallRepo()
	h.AddFiles("org/name", files)
	gated := map[string][]byte{"config.json": []byte("{}"), "model.safetensors": randomBytes(3, 1000)}
	gc := fakehub.Commit("org/gated", gated)
	h.Add("org/gated", &fakehub.Repo{Refs: map[string]string{"main": gc}, Commits: map[string]map[string][]byte{gc: gated}, Gated: true, Token: "good"})
	h.Add("org/private", &fakehub.Repo{Refs: map[string]string{"main": gc}, Commits: map[string]map[string][]byte{gc: gated}, Private: true, Token: "good"})
	ctx := context.Background()
	c := newClient(t, h)

	_, err := c.Snapshot(ctx, "org/nope", "", nil)
	require.ErrorIs(t, err, hub.ErrRepoNotFound)
	require.ErrorContains(t, err, "org/nope")
	require.ErrorContains(t, err, "HF_TOKEN", "without a token, say how to send one")

	_, err = c.Snapshot(ctx, "org/name", "v9", nil)
	require.ErrorIs(t, err, hub.ErrRevisionNotFound)
	require.ErrorContains(t, err, "org/name@v9")

	_, err = c.Snapshot(ctx, "org/name", "", func([]string) ([]string, error) { return []string{"unet/missing.json"}, nil })
	require.ErrorIs(t, err, hub.ErrEntryNotFound)
	require.ErrorContains(t, err, "org/name: unet/missing.json")

	_, err = c.Snapshot(ctx, "org/gated", "", nil)
	require.ErrorIs(t, err, hub.ErrGated)
	require.ErrorContains(t, err, "org/gated")
	require.ErrorContains(t, err, "401")
	require.ErrorContains(t, err, "HF_TOKEN")

	c.Token = "bad"
	_, err = c.Snapshot(ctx, "org/gated", "", nil)
	require.ErrorIs(t, err, hub.ErrGated)
	require.ErrorContains(t, err, "403")
	require.ErrorContains(t, err, "accept the repository's conditions")
	_, err = c.Snapshot(ctx, "org/private", "", nil)
	require.ErrorIs(t, err, hub.ErrRepoNotFound)

	c.Token = "good"
	_, err = c.Snapshot(ctx, "org/gated", "", nil)
	require.NoError(t, err)
	_, err = c.Snapshot(ctx, "org/private", "", nil)
	require.NoError(t, err)
	require.Zero(t, h.AuthToStorage())

	_, err = c.Snapshot(ctx, "not a repo", "", nil)
	require.ErrorContains(t, err, "not a repo")

	// No network: nothing listens at the endpoint.
	h.Close()
	_, err = c.Snapshot(ctx, "org/fresh", "", nil)
	require.ErrorIs(t, err, hub.ErrUnreachable)
	require.ErrorContains(t, err, "org/fresh")
}

func TestConcurrentSnapshots(t *testing.T) {
	h := startHub(t)
	files := smallRepo()
	commit := h.AddFiles("org/name", files)
	cache := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &hub.Client{Endpoint: h.URL(), CacheDir: cache, RetryWait: time.Millisecond}
			_, errs[i] = c.Snapshot(context.Background(), "org/name", "", nil)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	checkLayout(t, cache, "org/name", commit, files)
	gets := map[string]int{}
	log := h.Log()
	for _, e := range log {
		if strings.HasPrefix(e, "GET /blobs/") || strings.HasPrefix(e, "GET /org/name/resolve/") {
			gets[e]++
		}
	}
	require.Len(t, gets, 3, "%v", log)
	for e, n := range gets {
		require.Equal(t, 1, n, "%s: the lock lets one download through; the others find the blob", e)
	}
}

func TestCancel(t *testing.T) {
	h := startHub(t)
	files := smallRepo()
	h.AddFiles("org/name", files)
	h.SetFaults(fakehub.Faults{StallAfter: map[string]int64{lfsPath(): 10_000}, StallFor: 5 * time.Second})
	c := newClient(t, h)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Snapshot(ctx, "org/name", "", nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestLoadsCacheWrittenByHand(t *testing.T) {
	// A cache in huggingface_hub's layout (as its hf_hub_download writes it) loads offline.
	cache := t.TempDir()
	commit := strings.Repeat("ab", 20)
	storage := filepath.Join(cache, "models--org--name")
	data := []byte(`{"x": 1}`)
	sum := sha256.Sum256(data)
	etag := hex.EncodeToString(sum[:])
	require.NoError(t, os.MkdirAll(filepath.Join(storage, "blobs"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(storage, "snapshots", commit, "sub"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(storage, "refs"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(storage, "blobs", etag), data, 0o644))
	require.NoError(t, os.Symlink("../../../blobs/"+etag, filepath.Join(storage, "snapshots", commit, "sub", "c.json")))
	require.NoError(t, os.WriteFile(filepath.Join(storage, "refs", "main"), []byte(commit), 0o644))
	c := &hub.Client{CacheDir: cache, Offline: true}
	var seen []string
	dir, err := c.Snapshot(context.Background(), "org/name", "main", func(f []string) ([]string, error) { seen = f; return f, nil })
	require.NoError(t, err)
	require.Equal(t, []string{"sub/c.json"}, seen)
	got, err := os.ReadFile(filepath.Join(dir, "sub", "c.json"))
	require.NoError(t, err)
	require.Equal(t, data, got)
}

func TestRenamedRepository(t *testing.T) {
	// The hub answers requests for a renamed repository with relative redirects: the listing and
	// the HEAD requests follow them; the files land under the name asked for.
	h := startHub(t)
	files := smallRepo()
	commit := h.AddFiles("org/new", files)
	h.Rename("org/old", "org/new")
	c := newClient(t, h)
	dir, err := c.Snapshot(context.Background(), "org/old", "", nil)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(c.CacheDir, "models--org--old", "snapshots", commit), dir)
	checkLayout(t, c.CacheDir, "org/old", commit, files)
	log := h.Log()
	require.Contains(t, log, "HEAD /org/old/resolve/"+commit+"/config.json")
	require.Contains(t, log, "HEAD /org/new/resolve/"+commit+"/config.json")
}

func TestStaleIncompleteOfGitFileIsDiscarded(t *testing.T) {
	// A regular (non-LFS) file's ETag is no checksum of its bytes, so a partial file an earlier
	// run left is not trusted: the download starts again from byte 0.
	h := startHub(t)
	files := smallRepo()
	commit := h.AddFiles("org/name", files)
	c := newClient(t, h)
	etag := fakehub.ETag("config.json", files["config.json"])
	require.Len(t, etag, 40)
	blobs := filepath.Join(c.CacheDir, "models--org--name", "blobs")
	require.NoError(t, os.MkdirAll(blobs, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(blobs, etag+".incomplete"), []byte("{\"b"), 0o644))
	_, err := c.Snapshot(context.Background(), "org/name", "", nil)
	require.NoError(t, err)
	checkLayout(t, c.CacheDir, "org/name", commit, files)
	require.Contains(t, h.Log(), "GET /org/name/resolve/"+commit+"/config.json")
}

func TestWrongRangeRestarts(t *testing.T) {
	// A 206 for another range than asked: the download starts again from byte 0.
	h := startHub(t)
	files := smallRepo()
	commit := h.AddFiles("org/name", files)
	h.SetFaults(fakehub.Faults{CutAfter: map[string]int64{lfsPath(): 100_000}, WrongRangeStart: true})
	c := newClient(t, h)
	_, err := c.Snapshot(context.Background(), "org/name", "", nil)
	require.NoError(t, err)
	checkLayout(t, c.CacheDir, "org/name", commit, files)
	etag := fakehub.ETag(lfsPath(), files[lfsPath()])
	var gets []string
	for _, e := range h.Log() {
		if strings.HasPrefix(e, "GET /blobs/"+etag) {
			gets = append(gets, strings.TrimPrefix(e, "GET /blobs/"+etag))
		}
	}
	require.Equal(t, []string{"", " bytes=100000-", ""}, gets, "cut, resume answered wrongly, restart")
}

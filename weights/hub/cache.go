package hub

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// cached returns the snapshot folder of a revision in the cache, checking with sel that what it
// needs is there; kind says why the cache is used (ErrNotCached offline, ErrUnreachable when the
// hub could not be reached).
func (c *Client) cached(repo, revision string, sel Selector, kind error) (string, error) {
	cache, err := c.cacheDir()
	if err != nil {
		return "", err
	}
	storage := filepath.Join(cache, RepoFolderName(repo))
	fail := func(err error) error {
		return &Error{Repo: repo, Revision: revision, Kind: kind, Err: err}
	}
	commit := revision
	if !IsCommit(revision) {
		data, err := os.ReadFile(filepath.Join(storage, "refs", filepath.FromSlash(revision)))
		if err != nil {
			return "", fail(fmt.Errorf("no refs/%s in %s", revision, storage))
		}
		commit = strings.TrimSpace(string(data))
		if !IsCommit(commit) {
			return "", fail(fmt.Errorf("refs/%s in %s holds %q, not a commit hash", revision, storage, commit))
		}
	}
	snap := filepath.Join(storage, "snapshots", commit)
	files, err := snapshotFiles(snap)
	if err != nil {
		return "", fail(err)
	}
	if sel != nil {
		if _, err := sel(files); err != nil {
			return "", fail(fmt.Errorf("cached snapshot %s: %w", snap, err))
		}
	}
	return snap, nil
}

// snapshotFiles lists the files of a snapshot folder (slash-separated paths), leaving out
// links whose blob is missing.
func snapshotFiles(snap string) ([]string, error) {
	st, err := os.Stat(snap)
	if err != nil {
		return nil, fmt.Errorf("no snapshot folder %s", snap)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a folder", snap)
	}
	var files []string
	err = filepath.WalkDir(snap, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			return nil // a broken link, or a link to a folder
		}
		rel, err := filepath.Rel(snap, p)
		if err != nil {
			return err
		}
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	return files, nil
}

// writeRef records in refs/{revision} the commit a branch or tag points to, as
// huggingface_hub does: the bare hash, no newline, rewritten only when it changed.
func writeRef(storage, revision, commit string) error {
	ref := filepath.Join(storage, "refs", filepath.FromSlash(revision))
	if data, err := os.ReadFile(ref); err == nil && string(data) == commit {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(ref), 0o755); err != nil {
		return err
	}
	// The temporary file sits in the repository folder, where scan_cache_dir does not look.
	tmp, err := os.CreateTemp(storage, "tmp_ref_")
	if err != nil {
		return err
	}
	_, werr := tmp.WriteString(commit)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), ref); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// link points a snapshot entry at its blob with a relative symbolic link, replacing a broken
// one. Where links cannot be made, the blob is copied.
func link(blob, pointer string) error {
	if err := os.MkdirAll(filepath.Dir(pointer), 0o755); err != nil {
		return err
	}
	if _, err := os.Lstat(pointer); err == nil {
		if _, err := os.Stat(pointer); err == nil {
			return nil // already there (another process made it)
		}
		if err := os.Remove(pointer); err != nil {
			return err
		}
	}
	rel, err := filepath.Rel(filepath.Dir(pointer), blob)
	if err != nil {
		return err
	}
	err = os.Symlink(rel, pointer)
	if err == nil {
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		if _, serr := os.Stat(pointer); serr == nil {
			return nil
		}
		return err
	}
	return copyFile(blob, pointer)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.CreateTemp(filepath.Dir(dst), ".tmp_copy_")
	if err != nil {
		return err
	}
	_, cerr := io.Copy(out, in)
	if err := errors.Join(cerr, out.Close()); err != nil {
		os.Remove(out.Name())
		return err
	}
	return os.Rename(out.Name(), dst)
}

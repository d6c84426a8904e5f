// Package fakehub is an HTTP server that answers like the Hugging Face Hub, for tests: the
// revision listing (/api/models/{id}/revision/{rev}), file resolution (/{id}/resolve/{rev}/{path})
// with X-Repo-Commit and ETag, LFS files answered with a 302 to a second server (the hub's
// storage) carrying X-Linked-Etag and X-Linked-Size, byte ranges, the hub's X-Error-Code
// answers (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo), and injectable faults: a
// connection cut in the middle of a file, 5xx answers, stalls, ignored ranges and corrupted
// bytes.
package fakehub

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// LFSThreshold: files at least this large, and every .safetensors, .bin and .ckpt file, are
// stored as LFS files (answered by a redirect to the storage server).
const LFSThreshold = 10 << 10

// Repo is a model repository of the fake hub.
type Repo struct {
	// Refs maps branches and tags to commits; "main" must be there.
	Refs map[string]string
	// Commits maps each commit to its files (path → content).
	Commits map[string]map[string][]byte
	// Gated repositories answer 401 (no token) or 403 (another token) with GatedRepo to
	// file requests from anyone but Token.
	Gated bool
	// Private repositories answer 401 RepoNotFound to anyone but Token.
	Private bool
	// Token is the one token given access to a gated or private repository.
	Token string
}

// Faults are failures to inject, each keyed by a file's path in the repository.
type Faults struct {
	// CutAfter cuts the connection after this many bytes of the next download of the file
	// (once per entry: the entry is removed when used).
	CutAfter map[string]int64
	// Status5xx answers the next N downloads of the file with 503.
	Status5xx map[string]int
	// StallAfter stalls, for StallFor, after this many bytes of the next download (once).
	StallAfter map[string]int64
	StallFor   time.Duration
	// IgnoreRange answers every download with the whole file (200), ignoring Range.
	IgnoreRange bool
	// WrongRangeStart answers a range request with the bytes from 0 (206, "bytes 0-…"), once.
	WrongRangeStart bool
	// Corrupt serves the file with one byte changed (its ETag stays the true one).
	Corrupt map[string]bool
	// ListStatus, if set, answers the revision listing with this status.
	ListStatus int
	// ListDelay delays the revision listing.
	ListDelay time.Duration
}

// Hub is a running fake hub.
type Hub struct {
	// Hub is the endpoint (HF_ENDPOINT); Storage the host LFS files redirect to.
	Hub, Storage *httptest.Server

	mu      sync.Mutex
	repos   map[string]*Repo
	renamed map[string]string
	faults  Faults
	log     []string
	// AuthToStorage counts requests that reached the storage with an Authorization header
	// (the real storage refuses them).
	authToStorage int
}

// New starts a fake hub; Close stops it.
func New() *Hub {
	h := &Hub{repos: make(map[string]*Repo), renamed: make(map[string]string)}
	h.Storage = httptest.NewServer(http.HandlerFunc(h.serveStorage))
	api := http.NewServeMux()
	api.HandleFunc("GET /api/models/{org}/{name}/revision/{rev}", h.serveRevision)
	files := http.NewServeMux()
	files.HandleFunc("GET /{org}/{name}/resolve/{rev}/{path...}", h.serveResolve)
	h.Hub = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			api.ServeHTTP(w, r)
		} else {
			files.ServeHTTP(w, r)
		}
	}))
	return h
}

// Close stops both servers.
func (h *Hub) Close() {
	h.Hub.Close()
	h.Storage.Close()
}

// URL is the hub's endpoint.
func (h *Hub) URL() string { return h.Hub.URL }

// Add adds (or replaces) a repository.
func (h *Hub) Add(id string, r *Repo) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.repos[id] = r
}

// Rename makes requests for repository old answer with a relative redirect (307) to the same
// path under repository new, as the hub does for a renamed repository.
func (h *Hub) Rename(old, new string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.renamed[old] = new
}

// redirectRenamed answers a request for a renamed repository; it reports whether it did.
func (h *Hub) redirectRenamed(w http.ResponseWriter, r *http.Request) bool {
	id := r.PathValue("org") + "/" + r.PathValue("name")
	h.mu.Lock()
	to, ok := h.renamed[id]
	h.mu.Unlock()
	if !ok {
		return false
	}
	w.Header().Set("Location", strings.Replace(r.URL.EscapedPath(), "/"+id+"/", "/"+to+"/", 1))
	w.WriteHeader(http.StatusTemporaryRedirect)
	return true
}

// AddFiles adds a repository with one commit holding files, on branch main; it returns the
// commit hash.
func (h *Hub) AddFiles(id string, files map[string][]byte) string {
	commit := Commit(id, files)
	h.Add(id, &Repo{Refs: map[string]string{"main": commit}, Commits: map[string]map[string][]byte{commit: files}})
	return commit
}

// AddFolder adds a repository holding every file under dir (symbolic links followed), on
// branch main; it returns the commit hash.
func (h *Hub) AddFolder(id, dir string) (string, error) {
	files, err := ReadFolder(dir)
	if err != nil {
		return "", err
	}
	return h.AddFiles(id, files), nil
}

// ReadFolder reads every file under dir, keyed by slash-separated relative path.
func ReadFolder(dir string) (map[string][]byte, error) {
	files := make(map[string][]byte)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = data
		return nil
	})
	return files, err
}

// Commit is a made-up commit hash for a set of files.
func Commit(id string, files map[string][]byte) string {
	s := sha1.New()
	fmt.Fprintln(s, id)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sum := sha256.Sum256(files[n])
		fmt.Fprintln(s, n, hex.EncodeToString(sum[:]))
	}
	return hex.EncodeToString(s.Sum(nil))
}

// SetFaults replaces the faults to inject.
func (h *Hub) SetFaults(f Faults) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults = f
}

// Log returns the requests served so far ("METHOD path [Range]"), and forgets them.
func (h *Hub) Log() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.log
	h.log = nil
	return l
}

// AuthToStorage counts the requests that reached the storage with an Authorization header.
func (h *Hub) AuthToStorage() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.authToStorage
}

func (h *Hub) record(r *http.Request) {
	entry := r.Method + " " + r.URL.Path
	if rg := r.Header.Get("Range"); rg != "" {
		entry += " " + rg
	}
	h.mu.Lock()
	h.log = append(h.log, entry)
	h.mu.Unlock()
}

// IsLFS says whether the fake hub stores a file with LFS.
func IsLFS(path string, data []byte) bool {
	return len(data) >= LFSThreshold || strings.HasSuffix(path, ".safetensors") || strings.HasSuffix(path, ".bin") || strings.HasSuffix(path, ".ckpt")
}

// ETag is the fake hub's ETag of a file: its SHA-256 for an LFS file, else its git blob hash.
func ETag(path string, data []byte) string {
	if IsLFS(path, data) {
		s := sha256.Sum256(data)
		return hex.EncodeToString(s[:])
	}
	s := sha1.New()
	fmt.Fprintf(s, "blob %d\x00", len(data))
	s.Write(data)
	return hex.EncodeToString(s.Sum(nil))
}

func hubError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("X-Error-Code", code)
	w.Header().Set("X-Error-Message", msg)
	http.Error(w, msg, status)
}

// access checks a request's token against a repository; it writes the error answer and
// returns false when refused.
func (h *Hub) access(w http.ResponseWriter, r *http.Request, repo *Repo, file bool) bool {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if repo.Private && tok != repo.Token {
		hubError(w, http.StatusUnauthorized, "RepoNotFound", "Repository not found")
		return false
	}
	if repo.Gated && file && tok != repo.Token {
		status := http.StatusUnauthorized
		if tok != "" {
			status = http.StatusForbidden
		}
		hubError(w, status, "GatedRepo", "Access to this gated repository is restricted")
		return false
	}
	return true
}

func (h *Hub) lookup(w http.ResponseWriter, r *http.Request, file bool) (*Repo, string, map[string][]byte, bool) {
	if h.redirectRenamed(w, r) {
		return nil, "", nil, false
	}
	id := r.PathValue("org") + "/" + r.PathValue("name")
	rev := r.PathValue("rev")
	h.mu.Lock()
	repo := h.repos[id]
	h.mu.Unlock()
	if repo == nil {
		// The hub answers 401 for a repository it does not show, whether absent or private.
		hubError(w, http.StatusUnauthorized, "RepoNotFound", "Repository not found")
		return nil, "", nil, false
	}
	if !h.access(w, r, repo, file) {
		return nil, "", nil, false
	}
	commit := rev
	if c, ok := repo.Refs[rev]; ok {
		commit = c
	}
	files, ok := repo.Commits[commit]
	if !ok {
		hubError(w, http.StatusNotFound, "RevisionNotFound", "Invalid rev id: "+rev)
		return nil, "", nil, false
	}
	return repo, commit, files, true
}

func (h *Hub) serveRevision(w http.ResponseWriter, r *http.Request) {
	h.record(r)
	h.mu.Lock()
	status, delay := h.faults.ListStatus, h.faults.ListDelay
	h.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	_, commit, files, ok := h.lookup(w, r, false)
	if !ok {
		return
	}
	type sibling struct {
		RFilename string `json:"rfilename"`
	}
	body := struct {
		ID       string    `json:"id"`
		SHA      string    `json:"sha"`
		Siblings []sibling `json:"siblings"`
	}{ID: r.PathValue("org") + "/" + r.PathValue("name"), SHA: commit}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		body.Siblings = append(body.Siblings, sibling{n})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(body)
}

func (h *Hub) serveResolve(w http.ResponseWriter, r *http.Request) {
	h.record(r)
	_, commit, files, ok := h.lookup(w, r, true)
	if !ok {
		return
	}
	path := r.PathValue("path")
	data, ok := files[path]
	w.Header().Set("X-Repo-Commit", commit)
	if !ok {
		hubError(w, http.StatusNotFound, "EntryNotFound", path+" does not exist on \"main\"")
		return
	}
	etag := ETag(path, data)
	if IsLFS(path, data) {
		// The hub's own ETag of the redirect differs from the file's; the file's is in
		// X-Linked-Etag, its size in X-Linked-Size. The redirect's Content-Length is its own.
		w.Header().Set("ETag", `"`+ETag(path+".pointer", []byte(etag))+`"`)
		w.Header().Set("X-Linked-Etag", `"`+etag+`"`)
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(data)))
		w.Header().Set("Location", h.Storage.URL+"/blobs/"+etag+"?X-Signature=fake")
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusFound)
		return
	}
	w.Header().Set("ETag", `"`+etag+`"`)
	h.serveBytes(w, r, path, data)
}

func (h *Hub) serveStorage(w http.ResponseWriter, r *http.Request) {
	h.record(r)
	if r.Header.Get("Authorization") != "" {
		h.mu.Lock()
		h.authToStorage++
		h.mu.Unlock()
		http.Error(w, "Only one auth mechanism allowed", http.StatusBadRequest)
		return
	}
	sha, ok := strings.CutPrefix(r.URL.Path, "/blobs/")
	if !ok || r.URL.Query().Get("X-Signature") == "" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	h.mu.Lock()
	var path string
	var data []byte
	for _, repo := range h.repos {
		for _, files := range repo.Commits {
			for p, d := range files {
				if IsLFS(p, d) && ETag(p, d) == sha {
					path, data = p, d
				}
			}
		}
	}
	h.mu.Unlock()
	if data == nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	h.serveBytes(w, r, path, data)
}

// serveBytes answers a download, honouring "Range: bytes=N-" and the faults.
func (h *Hub) serveBytes(w http.ResponseWriter, r *http.Request, path string, data []byte) {
	h.mu.Lock()
	f := &h.faults
	if f.Status5xx[path] > 0 {
		f.Status5xx[path]--
		h.mu.Unlock()
		http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
		return
	}
	cut, hasCut := f.CutAfter[path]
	if hasCut {
		delete(f.CutAfter, path)
	}
	stall, hasStall := f.StallAfter[path]
	if hasStall {
		delete(f.StallAfter, path)
	}
	stallFor, ignoreRange, corrupt := f.StallFor, f.IgnoreRange, f.Corrupt[path]
	h.mu.Unlock()

	if corrupt {
		data = append([]byte(nil), data...)
		data[len(data)/2] ^= 0xff
	}
	start := int64(0)
	if rg := r.Header.Get("Range"); rg != "" && !ignoreRange {
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(rg, "bytes="), "-"), 10, 64)
		if err != nil || !strings.HasPrefix(rg, "bytes=") || !strings.HasSuffix(rg, "-") {
			http.Error(w, "bad range", http.StatusBadRequest)
			return
		}
		if n >= int64(len(data)) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(data)))
			http.Error(w, "range not satisfiable", http.StatusRequestedRangeNotSatisfiable)
			return
		}
		start = n
		h.mu.Lock()
		if h.faults.WrongRangeStart {
			h.faults.WrongRangeStart = false
			start = 0
		}
		h.mu.Unlock()
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(data)-1, len(data)))
	}
	w.Header().Set("Accept-Ranges", "bytes")
	w.Header().Set("Content-Length", strconv.FormatInt(int64(len(data))-start, 10))
	w.Header().Set("Content-Type", "application/octet-stream")
	if w.Header().Get("Content-Range") != "" {
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	if r.Method == http.MethodHead {
		return
	}
	body := data[start:]
	fl := http.NewResponseController(w)
	if hasStall && stall < int64(len(body)) {
		w.Write(body[:stall])
		fl.Flush()
		select {
		case <-time.After(stallFor):
		case <-r.Context().Done():
			return
		}
		body = body[stall:]
		if hasCut {
			cut -= stall
		}
	}
	if hasCut && cut < int64(len(body)) {
		w.Write(body[:cut])
		fl.Flush()
		panic(http.ErrAbortHandler) // the server closes the connection mid-body
	}
	w.Write(body)
}

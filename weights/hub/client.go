package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultEndpoint is the public Hugging Face Hub.
const DefaultEndpoint = "https://huggingface.co"

// Defaults of the Client fields left zero.
const (
	DefaultTimeout   = 10 * time.Second
	DefaultRetries   = 5
	DefaultRetryWait = time.Second
)

// Client downloads repositories from a Hugging Face hub into a huggingface_hub cache. The zero
// value uses the public hub, no token and ~/.cache/huggingface/hub; NewClientFromEnv reads the
// same environment variables as huggingface_hub. A Client is safe for concurrent use, and several
// processes (Go or Python) may share one cache: each blob is downloaded under a lock file in
// {cache}/.locks, as huggingface_hub does.
type Client struct {
	// Endpoint is the hub's base URL; empty means DefaultEndpoint.
	Endpoint string
	// Token, if set, is sent as "Authorization: Bearer …" to the hub (never to the storage
	// host a download is redirected to).
	Token string
	// CacheDir is the huggingface_hub cache folder; empty means DefaultCacheDir().
	CacheDir string
	// HTTPClient makes the requests; nil means http.DefaultClient. Its Timeout, if set, bounds
	// whole downloads: prefer Timeout below.
	HTTPClient *http.Client
	// Offline serves everything from the cache and never touches the network.
	Offline bool
	// Timeout bounds the wait for each answer's headers and every pause in a download's body;
	// zero means DefaultTimeout. A download that stalls longer is resumed.
	Timeout time.Duration
	// Retries is how many times in a row a download may fail without receiving any new byte
	// (cut connection, stall, 5xx) before giving up; zero means DefaultRetries, negative none.
	Retries int
	// RetryWait is the pause before a retry; zero means DefaultRetryWait.
	RetryWait time.Duration
	// Progress, if set, is called as files are downloaded (not for files already cached), from
	// the goroutine that called Snapshot.
	Progress func(Progress)
	// UserAgent is sent with every request; empty means "sdxs-go/hub".
	UserAgent string
}

// Progress reports the download of one file.
type Progress struct {
	Repo string // repository id
	File string // path of the file in the repository
	// Downloaded bytes of File so far (including those a resumed download already had), and
	// File's size.
	Downloaded, Size int64
	// Index of File among the Files files this Snapshot call downloads, from 1.
	Index, Files int
	// Done is set on the last report of a file, once it is complete and verified.
	Done bool
}

// Selector chooses, from the paths of every file in a revision of a repository, the ones to
// download. It returns an error when the repository lacks something required.
type Selector func(files []string) ([]string, error)

// All selects every file of a repository.
func All(files []string) ([]string, error) { return files, nil }

// Filter selects the files for which want returns true.
func Filter(want func(path string) bool) Selector {
	return func(files []string) ([]string, error) {
		var out []string
		for _, f := range files {
			if want(f) {
				out = append(out, f)
			}
		}
		return out, nil
	}
}

// DefaultCacheDir returns huggingface_hub's cache folder: $HF_HUB_CACHE, else
// $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
// ~/.cache/huggingface/hub.
func DefaultCacheDir() (string, error) {
	for _, v := range []string{"HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"} {
		if d := os.Getenv(v); d != "" {
			return expandHome(d)
		}
	}
	home, err := hfHome()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, "hub"), nil
}

func hfHome() (string, error) {
	if d := os.Getenv("HF_HOME"); d != "" {
		return expandHome(d)
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "huggingface"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("hub: no cache folder: set HF_HUB_CACHE or HF_HOME (%w)", err)
	}
	return filepath.Join(home, ".cache", "huggingface"), nil
}

func expandHome(p string) (string, error) {
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("hub: expanding %s: %w", p, err)
		}
		return filepath.Join(home, p[1:]), nil
	}
	return p, nil
}

// NewClientFromEnv returns a Client configured as huggingface_hub configures itself:
// HF_ENDPOINT (default the public hub), HF_TOKEN (else HUGGING_FACE_HUB_TOKEN, else the token
// file HF_TOKEN_PATH or $HF_HOME/token that `huggingface-cli login` writes), the cache folder of
// DefaultCacheDir, HF_HUB_OFFLINE (1, ON, YES or TRUE), and HF_HUB_DOWNLOAD_TIMEOUT (seconds).
func NewClientFromEnv() (*Client, error) {
	c := &Client{Endpoint: strings.TrimRight(os.Getenv("HF_ENDPOINT"), "/")}
	var err error
	if c.CacheDir, err = DefaultCacheDir(); err != nil {
		return nil, err
	}
	c.Offline = isTrue(os.Getenv("HF_HUB_OFFLINE")) || isTrue(os.Getenv("TRANSFORMERS_OFFLINE"))
	if v := os.Getenv("HF_HUB_DOWNLOAD_TIMEOUT"); v != "" {
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || s <= 0 {
			return nil, fmt.Errorf("hub: HF_HUB_DOWNLOAD_TIMEOUT=%q: want a positive number of seconds", v)
		}
		c.Timeout = time.Duration(s * float64(time.Second))
	}
	c.Token = os.Getenv("HF_TOKEN")
	if c.Token == "" {
		c.Token = os.Getenv("HUGGING_FACE_HUB_TOKEN")
	}
	if c.Token == "" && !isTrue(os.Getenv("HF_HUB_DISABLE_IMPLICIT_TOKEN")) {
		p := os.Getenv("HF_TOKEN_PATH")
		if p == "" {
			if home, err := hfHome(); err == nil {
				p = filepath.Join(home, "token")
			}
		}
		if p != "" {
			if data, err := os.ReadFile(p); err == nil {
				c.Token = strings.TrimSpace(string(data))
			}
		}
	}
	return c, nil
}

func isTrue(v string) bool {
	switch strings.ToUpper(v) {
	case "1", "ON", "YES", "TRUE":
		return true
	}
	return false
}

func (c *Client) endpoint() string {
	if c.Endpoint == "" {
		return DefaultEndpoint
	}
	return strings.TrimRight(c.Endpoint, "/")
}

func (c *Client) cacheDir() (string, error) {
	if c.CacheDir != "" {
		return c.CacheDir, nil
	}
	return DefaultCacheDir()
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

func (c *Client) retries() int {
	switch {
	case c.Retries < 0:
		return 0
	case c.Retries == 0:
		return DefaultRetries
	}
	return c.Retries
}

func (c *Client) retryWait() time.Duration {
	if c.RetryWait > 0 {
		return c.RetryWait
	}
	return DefaultRetryWait
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return http.DefaultClient
}

// noRedirect is the HTTP client for metadata requests, which read the hub's own answer rather
// than the storage's it may redirect to.
func (c *Client) noRedirect() *http.Client {
	hc := *c.httpClient()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &hc
}

// CachedSnapshot returns the snapshot folder of a revision already in the cache, without using
// the network, after checking with sel that the files it needs are there.
func (c *Client) CachedSnapshot(repo, revision string, sel Selector) (string, error) {
	if revision == "" {
		revision = DefaultRevision
	}
	if !ValidRepoID(repo) {
		return "", &Error{Repo: repo, Revision: revision, Err: errors.New("not a repository id")}
	}
	return c.cached(repo, revision, sel, ErrNotCached)
}

// Snapshot makes sure the files sel selects from a revision of repo are in the cache, and
// returns the revision's snapshot folder ({cache}/models--org--name/snapshots/{commit}), in
// which they sit under their paths in the repository. revision may be a branch, a tag or a
// commit ("" means main); sel nil means every file.
//
// Online, it lists the revision, downloads what is missing, and records the branch or tag's
// commit in refs/. Offline, or when the hub cannot be reached, it serves the revision from the
// cache if it is there.
func (c *Client) Snapshot(ctx context.Context, repo, revision string, sel Selector) (string, error) {
	if revision == "" {
		revision = DefaultRevision
	}
	if sel == nil {
		sel = All
	}
	if !ValidRepoID(repo) {
		return "", &Error{Repo: repo, Revision: revision, Err: errors.New("not a repository id")}
	}
	if c.Offline {
		return c.cached(repo, revision, sel, ErrNotCached)
	}
	cache, err := c.cacheDir()
	if err != nil {
		return "", err
	}
	storage := filepath.Join(cache, RepoFolderName(repo))

	info, err := c.revisionInfo(ctx, repo, revision)
	if err != nil {
		if errors.Is(err, ErrUnreachable) {
			if dir, cerr := c.cached(repo, revision, sel, ErrUnreachable); cerr == nil {
				return dir, nil
			}
			err.(*Error).hint = "and the revision is not in the cache " + cache
		}
		return "", err
	}
	files, err := sel(info.Files)
	if err != nil {
		return "", &Error{Repo: repo, Revision: revision, Err: err}
	}
	if revision != info.Commit {
		if err := writeRef(storage, revision, info.Commit); err != nil {
			return "", &Error{Repo: repo, Revision: revision, Err: err}
		}
	}
	snap := filepath.Join(storage, "snapshots", info.Commit)
	if err := os.MkdirAll(snap, 0o755); err != nil {
		return "", &Error{Repo: repo, Revision: revision, Err: err}
	}
	var missing []string
	for _, f := range files {
		p, err := pointerPath(snap, f)
		if err != nil {
			return "", &Error{Repo: repo, Revision: revision, File: f, Err: err}
		}
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, f)
		}
	}
	for i, f := range missing {
		if err := c.fetchFile(ctx, repo, revision, info.Commit, storage, f, i+1, len(missing)); err != nil {
			return "", err
		}
	}
	return snap, nil
}

// revision is what the hub says of a revision: its commit and its files.
type revision struct {
	Commit string
	Files  []string
}

// revisionInfo asks GET {endpoint}/api/models/{repo}/revision/{revision}.
func (c *Client) revisionInfo(ctx context.Context, repo, rev string) (*revision, error) {
	u := c.endpoint() + "/api/models/" + repo + "/revision/" + url.PathEscape(rev)
	fail := func(kind error, status int, err error) *Error {
		return c.hinted(&Error{Repo: repo, Revision: rev, Kind: kind, Status: status, Err: err})
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fail(nil, 0, err)
	}
	c.setHeaders(req, true)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, fail(c.netKind(ctx, err), 0, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		kind, msg := classify(resp, ErrRepoNotFound)
		return nil, fail(kind, resp.StatusCode, msg)
	}
	var body struct {
		SHA      string `json:"sha"`
		Siblings []struct {
			RFilename string `json:"rfilename"`
		} `json:"siblings"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&body); err != nil {
		return nil, fail(c.netKind(ctx, err), 0, fmt.Errorf("reading the file list: %w", err))
	}
	if !IsCommit(body.SHA) {
		return nil, fail(nil, 0, fmt.Errorf("the hub's answer has no commit hash (sha %q)", body.SHA))
	}
	info := &revision{Commit: body.SHA}
	for _, s := range body.Siblings {
		info.Files = append(info.Files, s.RFilename)
	}
	return info, nil
}

// netKind classifies a failure with no HTTP answer: cancellation by the caller is returned as
// is (nil kind), anything else means the hub cannot be reached.
func (c *Client) netKind(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	return ErrUnreachable
}

// classify maps an error answer of the hub to a kind, from its X-Error-Code header first, then
// its status; notFound is the kind of a bare 404. The second result carries X-Error-Message.
func classify(resp *http.Response, notFound error) (error, error) {
	var msg error
	if m := resp.Header.Get("X-Error-Message"); m != "" {
		msg = errors.New(m)
	}
	switch resp.Header.Get("X-Error-Code") {
	case "RepoNotFound":
		return ErrRepoNotFound, msg
	case "RevisionNotFound":
		return ErrRevisionNotFound, msg
	case "EntryNotFound":
		return ErrEntryNotFound, msg
	case "GatedRepo":
		return ErrGated, msg
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return ErrUnauthorized, msg
	case resp.StatusCode == http.StatusNotFound:
		return notFound, msg
	case resp.StatusCode >= 500:
		return ErrUnreachable, msg
	}
	if msg == nil {
		msg = fmt.Errorf("unexpected answer %s", resp.Status)
	}
	return nil, msg
}

// hinted adds advice on access errors.
func (c *Client) hinted(e *Error) *Error {
	access := e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden ||
		errors.Is(e.Kind, ErrGated) || errors.Is(e.Kind, ErrRepoNotFound)
	switch {
	case access && c.Token == "":
		e.hint = "no token was sent: for a private or gated repository set HF_TOKEN to a token that can read it"
	case errors.Is(e.Kind, ErrGated):
		e.hint = "accept the repository's conditions on its page, with the account the token belongs to"
	}
	return e
}

func (c *Client) setHeaders(req *http.Request, auth bool) {
	ua := c.UserAgent
	if ua == "" {
		ua = "sdxs-go/hub"
	}
	req.Header.Set("User-Agent", ua)
	// The size must be the file's, not that of a compressed answer.
	req.Header.Set("Accept-Encoding", "identity")
	if auth && c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
}

// resolveURL is {endpoint}/{repo}/resolve/{revision}/{path}, each part escaped.
func (c *Client) resolveURL(repo, rev, file string) string {
	parts := strings.Split(file, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return c.endpoint() + "/" + repo + "/resolve/" + url.PathEscape(rev) + "/" + strings.Join(parts, "/")
}

// pointerPath is the snapshot entry of a file, refusing paths that would leave the snapshot.
func pointerPath(snap, file string) (string, error) {
	clean := path.Clean(file)
	if file == "" || clean != file || path.IsAbs(file) || clean == ".." || strings.HasPrefix(clean, "../") || strings.Contains(file, "\\") {
		return "", fmt.Errorf("unsafe file path %q", file)
	}
	return filepath.Join(snap, filepath.FromSlash(file)), nil
}

package hub

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// fileMeta is what the hub's HEAD answer says of a file.
type fileMeta struct {
	Commit   string
	ETag     string // normalised: no W/ prefix, no quotes
	Size     int64
	Location string // where to GET the bytes (the storage host for LFS files)
}

var sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// safeETag allows ETags that are safe as a file name.
var safeETag = regexp.MustCompile(`^[0-9A-Za-z_.\-]{1,200}$`)

// normalizeETag strips a weak prefix and the quotes, as huggingface_hub's _normalize_etag.
func normalizeETag(etag string) string {
	etag = strings.TrimPrefix(etag, "W/")
	return strings.Trim(etag, `"`)
}

// fetchFile puts one file of a commit into the cache and links it into the snapshot.
func (c *Client) fetchFile(ctx context.Context, repo, revision, commit, storage, file string, index, count int) error {
	fail := func(kind error, status int, err error) error {
		return c.hinted(&Error{Repo: repo, Revision: revision, File: file, Kind: kind, Status: status, Err: err})
	}
	meta, err := c.head(ctx, repo, commit, file)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Repo, e.Revision, e.File = repo, revision, file
			return c.hinted(e)
		}
		return fail(nil, 0, err)
	}
	if !safeETag.MatchString(meta.ETag) || meta.ETag == "." || meta.ETag == ".." {
		return fail(nil, 0, fmt.Errorf("the hub gave an unusable ETag %q", meta.ETag))
	}
	blob := filepath.Join(storage, "blobs", meta.ETag)
	pointer, err := pointerPath(filepath.Join(storage, "snapshots", commit), file)
	if err != nil {
		return fail(nil, 0, err)
	}
	if _, err := os.Stat(blob); err != nil {
		if err := os.MkdirAll(filepath.Dir(blob), 0o755); err != nil {
			return fail(nil, 0, err)
		}
		cache := filepath.Dir(storage)
		unlock, err := lockFile(ctx, filepath.Join(cache, ".locks", filepath.Base(storage), meta.ETag+".lock"))
		if err != nil {
			return fail(nil, 0, err)
		}
		// Another process may have finished the blob while this one waited for the lock.
		if _, serr := os.Stat(blob); serr != nil {
			err = c.download(ctx, meta, blob, progressFunc(c.Progress, repo, file, index, count))
		}
		unlock()
		if err != nil {
			var e *Error
			if errors.As(err, &e) {
				e.Repo, e.Revision, e.File = repo, revision, file
				return c.hinted(e)
			}
			return fail(nil, 0, err)
		}
	} else if c.Progress != nil {
		c.Progress(Progress{Repo: repo, File: file, Downloaded: meta.Size, Size: meta.Size, Index: index, Files: count, Done: true})
	}
	if err := link(blob, pointer); err != nil {
		return fail(nil, 0, err)
	}
	return nil
}

func progressFunc(fn func(Progress), repo, file string, index, count int) func(done, size int64, finished bool) {
	if fn == nil {
		return func(int64, int64, bool) {}
	}
	return func(done, size int64, finished bool) {
		fn(Progress{Repo: repo, File: file, Downloaded: done, Size: size, Index: index, Files: count, Done: finished})
	}
}

// head asks the hub for a file's metadata with HEAD, following only relative redirects (a
// renamed repository), and reading the ETag, size and commit from the hub's own answer even
// when it redirects to the storage host, as huggingface_hub's get_hf_file_metadata.
func (c *Client) head(ctx context.Context, repo, commit, file string) (*fileMeta, error) {
	u := c.resolveURL(repo, commit, file)
	hc := c.noRedirect()
	for redirects := 0; ; redirects++ {
		resp, err := c.headOnce(ctx, hc, u)
		if err != nil {
			return nil, err
		}
		loc := resp.Header.Get("Location")
		if resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
			target, err := url.Parse(loc)
			if err != nil {
				return nil, &Error{Status: resp.StatusCode, Err: fmt.Errorf("bad Location %q: %w", loc, err)}
			}
			base, _ := url.Parse(u)
			abs := base.ResolveReference(target).String()
			if target.Host == "" {
				if redirects >= 10 {
					return nil, &Error{Status: resp.StatusCode, Err: errors.New("too many redirects")}
				}
				u = abs
				continue
			}
			loc = abs
		} else if resp.StatusCode != http.StatusOK {
			kind, msg := classify(resp, ErrEntryNotFound)
			return nil, &Error{Kind: kind, Status: resp.StatusCode, Err: msg}
		} else {
			loc = u
		}
		meta := &fileMeta{Commit: resp.Header.Get("X-Repo-Commit"), Location: loc}
		meta.ETag = normalizeETag(firstOf(resp.Header.Get("X-Linked-Etag"), resp.Header.Get("ETag")))
		size := firstOf(resp.Header.Get("X-Linked-Size"), resp.Header.Get("Content-Length"))
		if size == "" && resp.StatusCode == http.StatusOK && resp.ContentLength >= 0 {
			size = strconv.FormatInt(resp.ContentLength, 10)
		}
		switch {
		case meta.Commit == "":
			return nil, &Error{Status: resp.StatusCode, Err: fmt.Errorf("%s answered without X-Repo-Commit: not a Hugging Face hub, or a proxy in the way", c.endpoint())}
		case meta.ETag == "":
			return nil, &Error{Status: resp.StatusCode, Err: errors.New("the hub's answer has no ETag")}
		case size == "":
			return nil, &Error{Status: resp.StatusCode, Err: errors.New("the hub's answer has no size")}
		}
		if meta.Size, err = strconv.ParseInt(size, 10, 64); err != nil || meta.Size < 0 {
			return nil, &Error{Status: resp.StatusCode, Err: fmt.Errorf("bad size %q", size)}
		}
		return meta, nil
	}
}

func (c *Client) headOnce(ctx context.Context, hc *http.Client, u string) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return nil, err
	}
	c.setHeaders(req, c.sameHost(u))
	resp, err := hc.Do(req)
	if err != nil {
		if kind := c.netKind(ctx, err); kind != nil {
			return nil, &Error{Kind: kind, Err: err}
		}
		return nil, err
	}
	resp.Body.Close()
	return resp, nil
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// sameHost reports whether u is on the hub's host, the only one the token is sent to.
func (c *Client) sameHost(u string) bool {
	a, err1 := url.Parse(u)
	b, err2 := url.Parse(c.endpoint())
	return err1 == nil && err2 == nil && a.Host == b.Host
}

// errRetry marks a failure worth another attempt: a cut, a stall, a 5xx, a short body.
type errRetry struct{ err error }

func (e errRetry) Error() string { return e.err.Error() }
func (e errRetry) Unwrap() error { return e.err }

var errStalled = errors.New("no data within the timeout")

// download fetches meta.Location into blob+".incomplete", resuming what an earlier attempt left
// there (for LFS files; others restart), verifies the size and (for an LFS file, whose ETag is
// its SHA-256) the checksum, and renames it to blob. A failed check removes the partial file; an interrupted download keeps it
// for the next attempt.
func (c *Client) download(ctx context.Context, meta *fileMeta, blob string, progress func(done, size int64, finished bool)) error {
	incomplete := blob + ".incomplete"
	f, err := os.OpenFile(incomplete, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if !closed {
			f.Close()
		}
	}()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	have := st.Size()
	lfs := sha256Pattern.MatchString(meta.ETag)
	// Only an LFS file's checksum can vouch for bytes an earlier run left: anything else
	// starts again.
	if have > meta.Size || (have > 0 && !lfs) {
		if err := f.Truncate(0); err != nil {
			return err
		}
		have = 0
	}
	h := sha256.New()
	if lfs && have > 0 {
		// Resume the checksum over what an earlier attempt wrote.
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, have)); err != nil {
			return err
		}
	}
	progress(have, meta.Size, false)

	failures := 0
	for have < meta.Size {
		before := have
		err := c.getRange(ctx, meta, f, h, &have, progress)
		if err == nil && have < meta.Size {
			err = errRetry{io.ErrUnexpectedEOF}
		}
		if err == nil {
			break
		}
		var r errRetry
		if !errors.As(err, &r) {
			return err
		}
		if have > before {
			failures = 0
		} else {
			failures++
		}
		if failures > c.retries() {
			return &Error{Kind: ErrUnreachable, Err: fmt.Errorf("download failed after %d attempts without progress (%d of %d bytes kept for resuming): %w", failures, have, meta.Size, r.err)}
		}
		t := time.NewTimer(c.retryWait())
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	if have != meta.Size {
		f.Close()
		closed = true
		os.Remove(incomplete)
		return &Error{Kind: ErrCorrupt, Err: fmt.Errorf("got %d bytes, the hub announced %d; partial file removed", have, meta.Size)}
	}
	if lfs {
		if sum := hex.EncodeToString(h.Sum(nil)); sum != meta.ETag {
			f.Close()
			closed = true
			os.Remove(incomplete)
			return &Error{Kind: ErrCorrupt, Err: fmt.Errorf("SHA-256 %s, the hub's ETag says %s; partial file removed", sum, meta.ETag)}
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	closed = true
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(incomplete, blob); err != nil {
		return err
	}
	progress(have, meta.Size, true)
	return nil
}

// getRange makes one GET for the bytes from *have on, appending them to f and h.
func (c *Client) getRange(ctx context.Context, meta *fileMeta, f *os.File, h hash.Hash, have *int64, progress func(done, size int64, finished bool)) error {
	reqCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timeout := c.timeout()
	watchdog := time.AfterFunc(timeout, func() { cancel(errStalled) })
	defer watchdog.Stop()

	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, meta.Location, nil)
	if err != nil {
		return err
	}
	c.setHeaders(req, c.sameHost(meta.Location))
	if *have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", *have))
	}
	transient := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err() // the caller cancelled: no retry
		}
		if context.Cause(reqCtx) == errStalled {
			return errRetry{fmt.Errorf("%w (%v)", errStalled, timeout)}
		}
		return errRetry{err}
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return transient(err)
	}
	defer resp.Body.Close()

	restart := func() error {
		if err := f.Truncate(0); err != nil {
			return err
		}
		*have = 0
		h.Reset()
		return nil
	}
	switch {
	case resp.StatusCode == http.StatusPartialContent:
		start, ok := contentRangeStart(resp.Header.Get("Content-Range"))
		if !ok || start != *have {
			// Not the part asked for: start again from the beginning.
			if err := restart(); err != nil {
				return err
			}
			return errRetry{fmt.Errorf("the server sent range %q for bytes=%d-", resp.Header.Get("Content-Range"), *have)}
		}
	case resp.StatusCode == http.StatusOK:
		if *have > 0 { // the server ignored the range: take the whole file again
			if err := restart(); err != nil {
				return err
			}
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		if err := restart(); err != nil {
			return err
		}
		return errRetry{fmt.Errorf("range bytes=%d- refused (%s)", *have, resp.Status)}
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout:
		return errRetry{fmt.Errorf("server answered %s", resp.Status)}
	default:
		kind, msg := classify(resp, ErrEntryNotFound)
		return &Error{Kind: kind, Status: resp.StatusCode, Err: msg}
	}
	watchdog.Reset(timeout)

	if _, err := f.Seek(*have, io.SeekStart); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			watchdog.Reset(timeout)
			if *have+int64(n) > meta.Size {
				return &Error{Kind: ErrCorrupt, Err: fmt.Errorf("the server sent more than the %d bytes announced", meta.Size)}
			}
			if _, err := f.Write(buf[:n]); err != nil {
				return err
			}
			h.Write(buf[:n])
			*have += int64(n)
			progress(*have, meta.Size, false)
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return transient(rerr)
		}
	}
}

// contentRangeStart reads the first byte position of "bytes START-END/TOTAL".
func contentRangeStart(v string) (int64, bool) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, false
	}
	start, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(start), 10, 64)
	return n, err == nil
}

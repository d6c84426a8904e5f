package hub

import (
	"errors"
	"fmt"
	"strings"
)

// Kinds of failure, for errors.Is on an *Error.
var (
	// ErrRepoNotFound: the hub has no such repository, or it is private and the token (if
	// any) does not give access to it.
	ErrRepoNotFound = errors.New("repository not found")
	// ErrRevisionNotFound: the repository has no such branch, tag or commit.
	ErrRevisionNotFound = errors.New("revision not found")
	// ErrEntryNotFound: the revision has no such file.
	ErrEntryNotFound = errors.New("file not found")
	// ErrGated: the repository is gated and the token has not been granted access.
	ErrGated = errors.New("gated repository: access not granted")
	// ErrUnauthorized: the hub refused the request (401 or 403).
	ErrUnauthorized = errors.New("access refused")
	// ErrUnreachable: the hub could not be reached (no network, a timeout, a 5xx answer) and
	// the cache does not hold the revision.
	ErrUnreachable = errors.New("hub unreachable")
	// ErrNotCached: offline mode is on and the cache does not hold the revision or file.
	ErrNotCached = errors.New("not in the cache (offline mode)")
	// ErrCorrupt: a download did not match its expected size or SHA-256; nothing was kept.
	ErrCorrupt = errors.New("download does not match the hub's checksum")
)

// Error is a failure to get a repository or one of its files. It names the repository, the
// revision and the file (when there is one); Kind is one of the Err… values above, and Err the
// underlying cause, if any.
type Error struct {
	Repo     string
	Revision string
	File     string // path in the repository, "" for the repository as a whole
	Status   int    // HTTP status, 0 when there was no answer
	Kind     error
	Err      error
	hint     string
}

// Error says what failed: "hub: org/name[@revision][: file]: kind (HTTP status): cause; hint".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("hub: ")
	b.WriteString(e.Repo)
	if e.Revision != "" && e.Revision != DefaultRevision {
		b.WriteString("@" + e.Revision)
	}
	if e.File != "" {
		b.WriteString(": " + e.File)
	}
	b.WriteString(": ")
	if e.Kind != nil {
		b.WriteString(e.Kind.Error())
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if e.Err != nil {
		if e.Kind != nil {
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
	}
	if e.hint != "" {
		b.WriteString("; " + e.hint)
	}
	return b.String()
}

// Unwrap returns the kind and the cause, for errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

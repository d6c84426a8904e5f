package hub

import (
	"fmt"
	"regexp"
	"strings"
)

// DefaultRevision is the branch used when a repository id names none.
const DefaultRevision = "main"

// repoIDPattern is huggingface_hub's validate_repo_id: an optional namespace and a name of
// letters, digits, '-', '_' and '.', neither starting nor ending with '-' or '.'.
var repoIDPattern = regexp.MustCompile(`^(\b[\w\-.]+\b/)?\b[\w\-.]{1,96}\b$`)

var commitPattern = regexp.MustCompile(`^[0-9a-f]{40}$`)

// ValidRepoID reports whether id is a repository id the hub accepts ("org/name" or "name").
func ValidRepoID(id string) bool {
	return repoIDPattern.MatchString(id) && !strings.Contains(id, "--") && !strings.Contains(id, "..") &&
		!strings.HasSuffix(id, ".git")
}

// ParseRepoID splits "org/name@revision" into the repository id and the revision, which is
// DefaultRevision when none is given. The revision may be a branch, a tag, a commit hash or a
// ref such as "refs/pr/1".
func ParseRepoID(s string) (repo, revision string, err error) {
	repo, revision = s, DefaultRevision
	if i := strings.IndexByte(s, '@'); i >= 0 {
		repo, revision = s[:i], s[i+1:]
		if revision == "" {
			return "", "", fmt.Errorf("hub: %q: empty revision after '@'", s)
		}
		if strings.Contains(revision, "..") || strings.HasPrefix(revision, "/") || strings.HasSuffix(revision, "/") {
			return "", "", fmt.Errorf("hub: %q: invalid revision %q", s, revision)
		}
	}
	if !ValidRepoID(repo) {
		return "", "", fmt.Errorf("hub: %q is not a repository id (want org/name: letters, digits, '-', '_', '.', at most 96 characters, no '--' or '..')", repo)
	}
	return repo, revision, nil
}

// RepoFolderName is the name of a model repository's folder in the cache:
// "models--org--name", as huggingface_hub's repo_folder_name.
func RepoFolderName(repo string) string {
	return "models--" + strings.ReplaceAll(repo, "/", "--")
}

// IsCommit reports whether revision is a full commit hash (40 lowercase hexadecimal digits).
func IsCommit(revision string) bool { return commitPattern.MatchString(revision) }

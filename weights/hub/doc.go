// Package hub downloads model repositories from the Hugging Face Hub into huggingface_hub's own
// cache, so that Go and Python share one copy of every file.
//
// A Client lists a revision of a repository (GET /api/models/{id}/revision/{rev}), picks the
// files a Selector asks for, and fetches each one it does not have yet: a HEAD request on
// /{id}/resolve/{commit}/{path} gives the file's ETag and size (X-Linked-Etag and X-Linked-Size
// when the hub answers with a redirect to its storage), then a GET on the location it names
// downloads the bytes into blobs/{etag}.incomplete, resuming with an HTTP Range after a cut,
// checking the size and, for LFS files, that the SHA-256 equals the ETag, before renaming the
// file to blobs/{etag}. The cache layout is huggingface_hub's:
//
//	{cache}/models--{org}--{name}/
//	    blobs/{etag}                         the content of each file, named by its ETag
//	    snapshots/{commit}/{path}            relative symbolic links to the blobs
//	    refs/{revision}                      the commit a branch or tag pointed to, no newline
//	{cache}/.locks/models--{org}--{name}/{etag}.lock
//
// The cache folder is HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub, as in
// huggingface_hub; a cache written by Python loads here offline, and huggingface_hub's
// scan_cache_dir and hf_hub_download accept what this package writes.
//
// With Offline set (HF_HUB_OFFLINE=1), or when the hub cannot be reached (no network, a 5xx
// answer, a timeout), a revision already in the cache is served from it; anything else is an
// *Error naming the repository and, where there is one, the file.
package hub

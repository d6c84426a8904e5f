"""Drives the real huggingface_hub for weights/hub's interop test (interop_test.go).

Usage (HF_ENDPOINT points at the fake hub; PYTHONPATH at huggingface_hub's src/):
  interop.py download CACHE REPO [REVISION FILE]   snapshot_download, or hf_hub_download of one file
  interop.py check CACHE REPO REVISION FILE...     scan_cache_dir, then hf_hub_download(local_files_only)

Prints one JSON object on the last line of stdout.
"""
import hashlib
import json
import sys
import warnings

import huggingface_hub
from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main(argv):
    cmd, cache, repo = argv[1], argv[2], argv[3]
    out = {"version": huggingface_hub.__version__}
    if cmd == "download":
        if len(argv) > 4:
            out["path"] = hf_hub_download(repo, argv[5], revision=argv[4], cache_dir=cache)
        else:
            out["path"] = snapshot_download(repo, cache_dir=cache)
    elif cmd == "check":
        revision, files = argv[4], argv[5:]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            info = scan_cache_dir(cache)
        out["scan_warnings"] = [str(w) for w in info.warnings] + [str(w.message) for w in caught]
        out["repos"] = [
            {
                "repo_id": r.repo_id,
                "repo_type": r.repo_type,
                "nb_files": r.nb_files,
                "size_on_disk": r.size_on_disk,
                "revisions": [
                    {"commit_hash": rev.commit_hash, "refs": sorted(rev.refs), "nb_files": rev.nb_files}
                    for rev in sorted(r.revisions, key=lambda x: x.commit_hash)
                ],
            }
            for r in info.repos
        ]
        out["files"] = {}
        for f in files:
            p = hf_hub_download(repo, f, revision=revision, cache_dir=cache, local_files_only=True)
            out["files"][f] = {"path": p, "sha256": sha256(p)}
    else:
        raise SystemExit("unknown command " + cmd)
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)

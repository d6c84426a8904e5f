#!/bin/sh
# Checks weights/hub's cache against the real huggingface_hub, both ways (see
# TestInteropHuggingfaceHub in interop_test.go).
#
# Usage: weights/hub/testdata/interop.sh GIT_DIR [TAG]
#   GIT_DIR  a clone (or bare git dir) of github.com/huggingface/huggingface_hub
#   TAG      the version to test, v0.26.5 by default
#
# Needs Python 3 with huggingface_hub's dependencies; on Debian:
#   apt-get install -y python3-requests python3-filelock python3-tqdm python3-yaml \
#     python3-packaging python3-fsspec python3-typing-extensions
# SDXS_PYTHON picks the interpreter (default /usr/bin/python3, else python3).
set -eu
git_dir=${1:?usage: interop.sh GIT_DIR [TAG]}
tag=${2:-v0.26.5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git --git-dir="$git_dir" archive "$tag" src/huggingface_hub | tar -x -C "$tmp"
python=${SDXS_PYTHON:-}
if [ -z "$python" ]; then
	if [ -x /usr/bin/python3 ]; then python=/usr/bin/python3; else python=python3; fi
fi
if ! "$python" -c 'import requests, filelock, tqdm, yaml, packaging, fsspec, typing_extensions' 2>/dev/null; then
	echo "interop.sh: $python lacks huggingface_hub's dependencies (see the comment at the top)" >&2
	exit 1
fi
cd "$(dirname "$0")/../../.."
SDXS_HFHUB_SRC="$tmp/src" SDXS_PYTHON="$python" go test -count=1 -v -run TestInteropHuggingfaceHub ./weights/hub

#!/usr/bin/env python3
"""Generates testdata/hashes.json: many random Pillow resizes and OpenCV Canny runs, stored as
SHA-256 digests of their outputs, on pictures both sides compute from a formula (CI does not
run this).

Run from this folder with Debian bookworm's python3-pil (9.4), python3-opencv (4.6.0) and
python3-numpy:

    /usr/bin/python3 gen_hashes.py

The picture of (w, h, seed), channel c at (x, y): a 32-bit integer hash of the coordinates,
its low byte, except on a lattice of white bars; see synth() (imageproc's tests compute the same).
resize: sha256 of Image.fromarray(synth).resize((tw, th), Image.LANCZOS), RGB bytes row-major.
canny:  sha256 of cv2.Canny(x, low, high, L2gradient=l2) bytes, x = synth (RGB), or its
        cv2.cvtColor(COLOR_RGB2GRAY) with gray, blurred by cv2.GaussianBlur(x, (0, 0), blur)
        when blur > 0.
"""
import hashlib
import json
import os

import cv2
import numpy as np
from PIL import Image

U = np.uint64
M = U(0xFFFFFFFF)


def synth(w, h, seed):
    y, x, c = np.meshgrid(np.arange(h, dtype=np.uint64), np.arange(w, dtype=np.uint64), np.arange(3, dtype=np.uint64), indexing="ij")
    v = (x * U(0x9E3779B1) + y * U(0x85EBCA77) + c * U(0xC2B2AE3D) + U(seed) * U(0x27D4EB2F)) & M
    v ^= v >> U(15)
    v = (v * U(0x2C1B3C6D)) & M
    v ^= v >> U(12)
    v = v & U(0xFF)
    bars = ((x // U(4) + y // U(3)) % U(5)) == U(0)
    v = np.where(bars, U(255), v)
    return v.astype(np.uint8)


rng = np.random.default_rng(99)
resize = []
for i in range(150):
    w, h = int(rng.integers(1, 71)), int(rng.integers(1, 71))
    tw, th = int(rng.integers(1, 91)), int(rng.integers(1, 91))
    if i % 10 == 0:
        tw = w  # one axis only
    if i % 10 == 1:
        th = h
    seed = int(rng.integers(0, 1 << 31))
    out = Image.fromarray(synth(w, h, seed), "RGB").resize((tw, th), Image.LANCZOS)
    resize.append(dict(w=w, h=h, seed=seed, tw=tw, th=th, sha256=hashlib.sha256(np.asarray(out).tobytes()).hexdigest()))

canny = []
for i in range(150):
    w, h = int(rng.integers(1, 81)), int(rng.integers(1, 81))
    seed = int(rng.integers(0, 1 << 31))
    low, high = float(rng.integers(0, 300)), float(rng.integers(0, 400))
    l2 = bool(rng.integers(0, 2))
    gray = bool(rng.integers(0, 2))
    blur = [0.0, 0.0, 0.7, 1.0, 1.5, 2.2, 3.1][int(rng.integers(0, 7))]
    x = synth(w, h, seed)
    if gray:
        x = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)
    if blur > 0:
        x = cv2.GaussianBlur(x, (0, 0), blur)
    e = cv2.Canny(x, low, high, apertureSize=3, L2gradient=l2)
    canny.append(dict(w=w, h=h, seed=seed, low=low, high=high, l2=l2, gray=gray, blur=blur,
                      edges=int((e > 0).sum()), sha256=hashlib.sha256(e.tobytes()).hexdigest()))

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "hashes.json"), "w") as f:
    probe = hashlib.sha256(synth(37, 23, 12345).tobytes()).hexdigest()  # checks synth itself
    json.dump(dict(synth_37x23_12345=probe, resize=resize, canny=canny), f, separators=(",", ":"))

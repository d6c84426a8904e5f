#!/usr/bin/env python3
"""Generates the OpenCV fixtures of imageproc's Canny and blur tests (CI does not run this).

Run from this folder with Debian bookworm's python3-opencv (OpenCV 4.6.0, the version of the
oracle's Canny references), python3-numpy and python3-pil:

    /usr/bin/python3 gen_canny.py

canny/in{i}.png          random RGB pictures: small and odd sizes, noise over gradients
canny/cases.json         per case: input, low, high, l2, gray, blur, edges (and blurred)
canny/e{j}.png           the edges: cv2.Canny(x, low, high, L2gradient=l2) where x is the RGB
                         array (or cv2.cvtColor(rgb, COLOR_RGB2GRAY) with gray), first blurred
                         with cv2.GaussianBlur(x, (0, 0), blur) when blur > 0
canny/b{j}.png           for blur cases, the blurred x itself
"""
import json
import os

import cv2
import numpy as np
from PIL import Image

rng = np.random.default_rng(7)
here = os.path.dirname(os.path.abspath(__file__))
os.makedirs(os.path.join(here, "canny"), exist_ok=True)


def picture(w, h):
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([np.sin(x / 3.0) * 90 + 128, np.cos(y / 4.0) * 90 + 128, (x * 7 + y * 3) % 256], -1)
    a = a + rng.normal(0, 25, (h, w, 3))
    a[h // 3 : h // 2, w // 4 : w // 2] = rng.integers(0, 256, 3)  # a flat block with hard edges
    return np.clip(a, 0, 255).astype(np.uint8)


sizes = [(1, 1), (1, 9), (7, 1), (2, 3), (17, 13), (64, 48)]
settings = [
    dict(low=100, high=200, l2=False, gray=False, blur=0),
    dict(low=200, high=100, l2=False, gray=True, blur=0),  # swapped thresholds
    dict(low=0, high=50, l2=True, gray=False, blur=0),
    dict(low=30, high=90, l2=True, gray=True, blur=0),
    dict(low=100, high=200, l2=False, gray=False, blur=1.0),
    dict(low=50, high=120, l2=False, gray=True, blur=0.5),
    dict(low=40, high=100, l2=True, gray=False, blur=1.4),
    dict(low=20, high=60, l2=False, gray=True, blur=2.3),
]
cases = []
for i, (w, h) in enumerate(sizes):
    rgb = picture(w, h)
    Image.fromarray(rgb, "RGB").save(os.path.join(here, "canny", f"in{i}.png"))
    for s in settings:
        x = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if s["gray"] else rgb
        case = dict(input=f"in{i}.png", **s)
        if s["blur"] > 0:
            x = cv2.GaussianBlur(x, (0, 0), s["blur"])
            case["blurred"] = f"b{len(cases)}.png"
            Image.fromarray(x).save(os.path.join(here, "canny", case["blurred"]))
        e = cv2.Canny(x, s["low"], s["high"], apertureSize=3, L2gradient=s["l2"])
        case["edges"] = f"e{len(cases)}.png"
        Image.fromarray(e).save(os.path.join(here, "canny", case["edges"]))
        cases.append(case)
with open(os.path.join(here, "canny", "cases.json"), "w") as f:
    json.dump(cases, f, indent=1)

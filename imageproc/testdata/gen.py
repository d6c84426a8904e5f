#!/usr/bin/env python3
"""Generates the Pillow reference fixtures of imageproc's tests (CI does not run this).

Run from this folder with Debian's python3-pil (Pillow 9.4; the 8-bit LANCZOS resampling and
the conversions used here are the same code in Pillow 11) and python3-numpy:

    /usr/bin/python3 gen.py

resize/src{i}.png          random RGB pictures (noise, hard edges, gradients)
resize/src{i}_{w}x{h}.png  Image.open(src).resize((w, h), Image.LANCZOS)
modes/{name}.png           PNGs in the colour types Pillow opens as other modes
modes/{name}_rgb.png       Image.open(name).convert("RGB")
modes/{name}.jpg           JPEGs (baseline 4:4:4, 4:2:0, 4:2:2), with {name}_rgb.png as above
exif/o{k}.png, o{k}.jpg    pictures with EXIF orientation k in an eXIf chunk / APP1 segment, and
exif/o{k}_{ext}_rgb.png    ImageOps.exif_transpose(Image.open(...)).convert("RGB"), as
                           diffusers.utils.load_image opens them
"""
import os
import struct
import zlib

import numpy as np
from PIL import Image, ImageOps

rng = np.random.default_rng(20261127)
here = os.path.dirname(os.path.abspath(__file__))


def out(*p):
    path = os.path.join(here, *p)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def picture(w, h):
    """Noise over gradients with a few hard black/white bars, so resizes ring and clip."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) * 127 / max(w + h - 2, 1)], -1)
    a = base + rng.normal(0, 40, (h, w, 3))
    a[:, ::5] = 255
    a[::4, :] = 0
    return np.clip(a, 0, 255).astype(np.uint8)


# Resize: sources and targets (up, down, mixed, one axis only, 1-pixel sides, big factors).
resize_cases = [
    ((13, 7), [(29, 23), (5, 3), (13, 19), (31, 7), (1, 1), (64, 5)]),
    ((37, 23), [(9, 5), (36, 24), (37, 11), (75, 50), (7, 64), (2, 3)]),
    ((1, 1), [(5, 3), (1, 4)]),
    ((64, 48), [(17, 13), (8, 8), (3, 50), (96, 67)]),
]
for i, ((w, h), targets) in enumerate(resize_cases):
    im = Image.fromarray(picture(w, h), "RGB")
    im.save(out("resize", f"src{i}.png"))
    for tw, th in targets:
        im.resize((tw, th), Image.LANCZOS).save(out("resize", f"src{i}_{tw}x{th}.png"))


def png(path, w, h, depth, ctype, rows, extra=b""):
    """A minimal PNG writer, for colour types and depths Pillow cannot save."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + r for r in rows)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0))
    data += extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def pack(values, bits):
    """Packs small integers MSB first into bytes, a PNG row of bit depth bits."""
    per = 8 // bits
    v = list(map(int, values)) + [0] * (-len(values) % per)
    return bytes(sum(v[i + j] << (8 - bits * (j + 1)) for j in range(per)) for i in range(0, len(v), per))


def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


W, H = 11, 6
rgb = picture(W, H)
alpha = rng.integers(0, 256, (H, W), dtype=np.uint8)
alpha[0, :4] = [0, 1, 128, 255]
gray = rgb[:, :, 0]
g16 = rng.integers(0, 65536, (H, W), dtype=np.uint16)
g16[0, :6] = [0, 1, 255, 256, 300, 65535]
g16[1] = rng.integers(0, 256, W)  # low levels, which Pillow keeps
c16 = rng.integers(0, 65536, (H, W, 4), dtype=np.uint16)

modes = {}
modes["rgba8"] = (8, 6, [np.concatenate([rgb, alpha[..., None]], -1)[r].tobytes() for r in range(H)], b"")
modes["la8"] = (8, 4, [np.stack([gray, alpha], -1)[r].tobytes() for r in range(H)], b"")
modes["gray8"] = (8, 0, [gray[r].tobytes() for r in range(H)], b"")
modes["gray8_trns"] = (8, 0, [gray[r].tobytes() for r in range(H)], chunk(b"tRNS", struct.pack(">H", int(gray[0, 0]))))
modes["gray16"] = (16, 0, [g16[r].astype(">u2").tobytes() for r in range(H)], b"")
modes["gray16_trns"] = (16, 0, [g16[r].astype(">u2").tobytes() for r in range(H)], chunk(b"tRNS", struct.pack(">H", int(g16[0, 1]))))
modes["gray1"] = (1, 0, [np.packbits(gray[r] > 127).tobytes() for r in range(H)], b"")
modes["gray4"] = (4, 0, [pack(gray[r] >> 4, 4) for r in range(H)], b"")
modes["rgb16"] = (16, 2, [c16[r, :, :3].astype(">u2").tobytes() for r in range(H)], b"")
modes["rgba16"] = (16, 6, [c16[r].astype(">u2").tobytes() for r in range(H)], b"")
modes["la16"] = (16, 4, [c16[r, :, 1:3].astype(">u2").tobytes() for r in range(H)], b"")
modes["rgb8_trns"] = (8, 2, [rgb[r].tobytes() for r in range(H)], chunk(b"tRNS", struct.pack(">HHH", *map(int, rgb[0, 0]))))
pal = rng.integers(0, 256, (7, 3), dtype=np.uint8)
idx = rng.integers(0, 7, (H, W), dtype=np.uint8)
modes["palette"] = (8, 3, [idx[r].tobytes() for r in range(H)], chunk(b"PLTE", pal.tobytes()) + chunk(b"tRNS", bytes([0, 128, 255])))
modes["palette2"] = (2, 3, [pack(idx[r] % 4, 2) for r in range(H)], chunk(b"PLTE", pal[:4].tobytes()))


def save_rgb(im, name):
    """Saves im.convert("RGB") as a plain RGB PNG (without the converted transparency key)."""
    print(name, im.mode)
    Image.fromarray(np.asarray(im.convert("RGB")), "RGB").save(out("modes", f"{name}_rgb.png"))


for name, (depth, ctype, rows, extra) in modes.items():
    p = out("modes", f"{name}.png")
    png(p, W, H, depth, ctype, rows, extra)
    save_rgb(Image.open(p), name)

# JPEGs: Go's decoder is not libjpeg; the test bounds the difference.
jp = Image.fromarray(picture(24, 16), "RGB")
for name, sub in (("jpeg444", 0), ("jpeg420", 2), ("jpeg422", 1)):
    p = out("modes", f"{name}.jpg")
    jp.save(p, quality=90, subsampling=sub)
    save_rgb(Image.open(p), name)

# EXIF orientation, applied by load_image through ImageOps.exif_transpose.
ex = Image.fromarray(picture(7, 4), "RGB")
for k in range(1, 9):
    exif = Image.Exif()
    exif[0x0112] = k
    for ext in ("png", "jpg"):
        if ext == "jpg" and k not in (1, 6, 8):
            continue
        p = out("exif", f"o{k}.{ext}")
        ex.save(p, exif=exif.tobytes())
        got = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
        Image.fromarray(np.asarray(got), "RGB").save(out("exif", f"o{k}_{ext}_rgb.png"))

# JPEGs of odd sizes (chroma planes with a half-covered last sample) and a tiny one (chroma at
# most 2 samples wide: libjpeg replicates instead of interpolating).
for name, (w, h), sub in (("jpeg420_odd", (37, 23), 2), ("jpeg422_odd", (37, 23), 1), ("jpeg420_tiny", (3, 5), 2)):
    p = out("modes", f"{name}.jpg")
    Image.fromarray(picture(w, h), "RGB").save(p, quality=85, subsampling=sub)
    Image.fromarray(np.asarray(Image.open(p).convert("RGB")), "RGB").save(out("modes", f"{name}_rgb.png"))

# A CMYK JPEG (Pillow writes it Adobe-inverted; both decoders undo that), converted with
# Pillow's cmyk2rgb.
cm = rng.integers(0, 256, (9, 13, 4), dtype=np.uint8)
cm[..., 3] //= 3
p = out("modes", "jpeg_cmyk.jpg")
Image.fromarray(cm, "CMYK").save(p, quality=95)
Image.fromarray(np.asarray(Image.open(p).convert("RGB")), "RGB").save(out("modes", "jpeg_cmyk_rgb.png"))

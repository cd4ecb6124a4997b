"""Small PNG thumbnails of image samples, for the HTML report and the annotation page.

An image sample is one row of an image SampleTable: float (C, H, W) in [0, 1]. Pixels are
upscaled with NEAREST so an 8x8 digit stays crisp instead of blurring into a smudge.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def is_image_row(features_row: np.ndarray) -> bool:
    """True for one sample of an image table: (C, H, W); a tabular sample is (D,)."""
    return np.ndim(features_row) == 3


def _pixels(row: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3|4) uint8 for a (C, H, W) float row (PIL reads L, RGB, RGBA from the shape)."""
    x = np.nan_to_num(np.asarray(row, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    x = (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    c = x.shape[0]
    if c == 1:
        return x[0]
    if c in (3, 4):
        return np.ascontiguousarray(x.transpose(1, 2, 0))
    # any other channel count has no colour meaning: show the mean as grey
    return (x.astype(np.float32).mean(0) + 0.5).astype(np.uint8)


def thumbnail_png(features_row: np.ndarray, size: int = 48) -> bytes:
    """PNG bytes of one image sample, its longer side `size` pixels (aspect kept)."""
    if not is_image_row(features_row):
        raise ValueError(f"thumbnail: expected one image sample (C, H, W), got shape {np.shape(features_row)}")
    if size < 1:
        raise ValueError(f"thumbnail: size must be at least 1, got {size}")
    pixels = _pixels(features_row)
    h, w = pixels.shape[:2]
    scale = size / max(h, w, 1)
    target = (max(1, round(w * scale)), max(1, round(h * scale)))
    img = Image.fromarray(pixels)
    # NEAREST keeps pixel edges when enlarging; BOX averages fairly when shrinking a large image
    img = img.resize(target, Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.BOX)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


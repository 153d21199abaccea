"""Arrays to pictures for the page: PNG bytes (Pillow) and a JSON-able grid of numbers.

Colours: a feature map or a saliency map uses viridis on ``[lo, hi]`` (its own min and max,
or a shared range); signed arrays such as filters and kernel gradients use a symmetric
red–white–blue scale on ``[−m, m]`` with ``m = max |v|``, so white means 0.
"""
from __future__ import annotations

import base64
import io
import math
from typing import Optional, Tuple

import numpy as np


def _lut(name: str) -> np.ndarray:
    from matplotlib import colormaps
    return (colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


_LUTS = {}


def lut(name: str) -> np.ndarray:
    if name not in _LUTS:
        _LUTS[name] = _lut(name)
    return _LUTS[name]


def colour(values: np.ndarray, lo: float, hi: float, cmap: str = "viridis") -> np.ndarray:
    """(H, W) floats -> (H, W, 3) uint8; NaN becomes white (gaps between tiles)."""
    values = np.asarray(values, dtype=np.float64)
    span = (hi - lo) or 1.0
    index = np.clip((np.nan_to_num(values, nan=lo) - lo) / span * 255.0, 0, 255).astype(np.uint8)
    rgb = lut(cmap)[index]
    rgb[np.isnan(values)] = 255
    return rgb


def png(rgb: np.ndarray) -> bytes:
    """(H, W, 3) or (H, W) uint8 -> PNG bytes."""
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def data_url(png_bytes: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def picture_of_input(x: np.ndarray) -> np.ndarray:
    """One sample ``(C, H, W)`` as the model sees it -> (H, W, 3) uint8, stretched to its own
    min..max (C = 3: RGB; otherwise the first channel in grey)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:  # (C, L): channels as rows
        x = x[None]
    lo, hi = float(x.min()), float(x.max())
    scaled = np.round((x - lo) / ((hi - lo) or 1.0) * 255.0).astype(np.uint8)
    if scaled.shape[0] == 3:
        return np.transpose(scaled, (1, 2, 0))
    return np.repeat(scaled[0][:, :, None], 3, axis=2)


def grid(maps: np.ndarray, limit: int) -> Tuple[np.ndarray, int, int]:
    """(C, H, W) -> mosaic of the first ``limit`` channels with 1-pixel NaN gaps, and its
    (rows, cols)."""
    shown = maps[:limit]
    count, h, w = shown.shape
    cols = max(1, math.ceil(math.sqrt(count * h / max(w, 1) * 1.6)))
    cols = min(cols, count)
    rows = math.ceil(count / cols)
    image = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
    for k in range(count):
        r, c = divmod(k, cols)
        image[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = shown[k]
    return image, rows, cols


def shrink(maps: np.ndarray, factor: int) -> np.ndarray:
    """(C, H, W) -> (C, ⌊H/f⌋, ⌊W/f⌋) block means (f = 1: unchanged); for overviews only."""
    if factor <= 1:
        return maps
    c, h, w = maps.shape
    h2, w2 = max(1, h // factor), max(1, w // factor)
    if h < factor or w < factor:
        return maps
    return maps[:, :h2 * factor, :w2 * factor].reshape(c, h2, factor, w2, factor).mean(axis=(2, 4))


def as_maps(y: np.ndarray) -> Optional[np.ndarray]:
    """One sample's output as (C, H, W) maps: (C, L) -> (C, 1, L); flat vectors -> None."""
    y = np.asarray(y)
    if y.ndim == 3:
        return y
    if y.ndim == 2:
        return y[:, None, :]
    return None


def rounded(values: np.ndarray, digits: int = 7) -> list:
    """Nested lists of floats with ``digits`` significant digits (JSON stays small)."""
    values = np.asarray(values, dtype=np.float64)
    flat = [float(f"{v:.{digits}g}") for v in values.ravel()]
    return np.array(flat).reshape(values.shape).tolist()

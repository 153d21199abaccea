"""``--resize HxW`` and ``--channels 1|3``: make a data set fit a model, recorded in the
preprocessing so ``predict`` and ``evaluate`` treat new images the same way.

Every image ``(C, H, W)`` of every split is resized per channel in the data set's own units
(Pillow on float planes: BOX, an area average, when shrinking; BILINEAR when enlarging, e.g.
digits 8×8 -> 32×32 for lenet5). Channels: 1 -> 3 repeats the gray plane; 3 -> 1 takes the
mean of R, G, B (the gray that ``predict`` computes). The preprocessing gains ``source``
(``{"channels": C, "size": [H, W]}`` of the data set), so an image given to ``predict`` goes
through the same steps: first to the data set's own form, then resized and converted.
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Dict, Optional, Tuple

import numpy as np

from ..errors import ConvscopeError, format_shape
from . import preprocessing as prep_mod
from .data import Data, Dataset


def parse_size(text: Optional[str]) -> Optional[Tuple[int, int]]:
    """'32x32' -> (32, 32); None stays None; anything else is one clear error."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*[x×,]\s*(\d+)\s*", str(text))
    if not match or not all(0 < int(v) <= 4096 for v in match.groups()):
        raise ConvscopeError(f"--resize takes HEIGHTxWIDTH in pixels, e.g. --resize 32x32, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def resize_planes(x: np.ndarray, size) -> np.ndarray:
    """``(..., H, W)`` float planes -> ``(..., h, w)``: area average shrinking, bilinear enlarging."""
    from PIL import Image

    h, w = (int(s) for s in size)
    if tuple(x.shape[-2:]) == (h, w):
        return np.asarray(x, dtype=np.float32)
    method = (Image.Resampling.BOX if h <= x.shape[-2] and w <= x.shape[-1] else Image.Resampling.BILINEAR)
    flat = np.asarray(x, dtype=np.float32).reshape(-1, *x.shape[-2:])
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(p)).resize((w, h), method)) for p in flat])
    return out.reshape(*x.shape[:-2], h, w).astype(np.float32)


def convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """``(N, C, H, W)`` -> ``(N, channels, H, W)``: gray repeated, or the mean of R, G, B."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 1 and channels == 3:
        return np.repeat(x, 3, axis=1)
    if c == 3 and channels == 1:
        return x.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    raise ConvscopeError(f"--channels converts between 1 (gray) and 3 (RGB) channels; the data has {c}")


def _prep(prep: Dict, channels: int, size, source_size) -> Dict:
    out = dict(prep)
    c = int(prep["channels"])
    if channels != c:
        out["mean"] = [float(np.mean(prep["mean"]))] * channels
        out["std"] = [float(np.mean(prep["std"]))] * channels
    out["channels"] = int(channels)
    out["size"] = [int(s) for s in size]
    if "source" not in out:
        out["source"] = {"channels": c, "size": [int(s) for s in source_size]}
    return prep_mod.validate(out)


def apply(data: Data, size=None, channels: Optional[int] = None) -> Data:
    """``data`` with every split resized to ``size`` (H, W) and converted to ``channels``."""
    if size is None and channels is None:
        return data
    shape = data.input_shape
    if len(shape) != 3:
        raise ConvscopeError(f"--resize and --channels work on images (C, H, W); {data.name} has "
                             f"{format_shape(shape)} samples")
    size = tuple(size) if size is not None else tuple(shape[1:])
    channels = int(channels) if channels is not None else int(shape[0])
    if channels not in (1, 3):
        raise ConvscopeError(f"--channels must be 1 (gray) or 3 (RGB), got {channels}")

    def convert(split: Dataset) -> Dataset:
        return Dataset(convert_channels(resize_planes(split.x, size), channels), split.y)

    prep = _prep(data.preprocessing, channels, size, shape[1:]) if data.preprocessing else data.preprocessing
    return replace(data, train=convert(data.train), val=convert(data.val), test=convert(data.test),
                   preprocessing=prep)


def hint(model_shape, data_shape) -> str:
    """'; or pass --resize 32x32' (and --channels) when that makes ``data_shape`` images fit."""
    if len(model_shape) != 3 or len(data_shape) != 3:
        return ""
    flags = []
    if tuple(model_shape[1:]) != tuple(data_shape[1:]):
        flags.append(f"--resize {model_shape[1]}x{model_shape[2]}")
    if model_shape[0] != data_shape[0] and model_shape[0] in (1, 3) and data_shape[0] in (1, 3):
        flags.append(f"--channels {model_shape[0]}")
    return f", or pass {' '.join(flags)}" if flags else ""

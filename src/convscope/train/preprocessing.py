"""How a raw image becomes model input. Stored in every checkpoint, so ``predict`` treats a
user's PNG exactly as the training data was treated.

A preprocessing is a plain JSON-able dict::

    {"channels": 1,            # 1 = grayscale, 3 = RGB
     "size": [8, 8],           # [H, W] the model takes
     "range": [0, 16],         # the data set's pixel range: an 8-bit pixel v maps to lo + (hi-lo)·v/255
     "invert": "auto",         # true | false | "auto" (see below)
     "crop": "none",           # "none" | "ink": crop to the ink's bounding box, padded square
     "mean": [0.0], "std": [16.0]}   # per channel: model input = (pixel - mean) / std

Notation
--------
v an 8-bit pixel in [0, 255]; (lo, hi) the data set's range; m_c, s_c the channel's mean and
standard deviation.

    raw     = lo + (hi - lo) · v / 255              (the data set's own units)
    input_c = (raw_c - m_c) / s_c                   (what the model sees)

Decisions, documented because they change predictions:

* **Inversion ("auto").** Scikit-learn's digits and MNIST store ink as HIGH values on a zero
  background (light on dark), while people draw dark ink on white paper. With ``"auto"`` an
  image whose border is mostly light (median border pixel above mid-grey) is inverted before
  anything else, so both kinds of drawing reach the model as light-on-dark.
* **Resizing** averages areas (Pillow's BOX filter): the digits data set itself was made by
  counting ink pixels in 4×4 blocks of 32×32 bitmaps, which is exactly an area average.
* **Crop ("ink")**, used for digits: the ink's bounding box is cut out and padded to a
  square (aspect ratio kept) before resizing, because every digit in the data set fills its
  8×8 frame from top to bottom. A drawing in the corner of a large canvas then still works.
"""
from __future__ import annotations

from typing import Dict, Iterable, List

import numpy as np

from ..errors import ConvscopeError
from ..files import require_file

_KEYS = {"channels", "size", "range", "invert", "crop", "mean", "std"}


def make(channels: int, size, value_range=(0.0, 255.0), invert="auto", crop="none",
         mean=None, std=None) -> Dict:
    """A checked preprocessing dict; ``mean``/``std`` default to mapping the range onto [0, 1]."""
    lo, hi = (float(v) for v in value_range)
    if mean is None:
        mean = [lo] * int(channels)
    if std is None:
        std = [hi - lo] * int(channels)
    return validate({"channels": int(channels), "size": [int(s) for s in size],
                     "range": [lo, hi], "invert": invert, "crop": crop,
                     "mean": [float(m) for m in mean], "std": [float(s) for s in std]})


def validate(prep) -> Dict:
    """Check a preprocessing dict read from a checkpoint or given by a user: types, ranges,
    finiteness, and a size within ``limits.MAX_IMAGE_SIDE``."""
    from .. import limits

    if not isinstance(prep, dict) or not _KEYS <= set(prep):
        missing = sorted(_KEYS - set(prep)) if isinstance(prep, dict) else sorted(_KEYS)
        raise ConvscopeError(f"preprocessing must be an object with {', '.join(sorted(_KEYS))}; "
                             f"missing {', '.join(missing)}")
    c = prep["channels"]
    if isinstance(c, bool) or c not in (1, 3):
        raise ConvscopeError(f"preprocessing channels must be 1 (grayscale) or 3 (RGB), got {str(c)[:40]}")
    size = prep["size"]
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        raise ConvscopeError(f"preprocessing size must be [height, width] in pixels, got {str(size)[:60]}")
    for side in size:
        limits.check("preprocessing size", side, "MAX_IMAGE_SIDE", "pixels")
    if prep["invert"] not in (True, False, "auto") or prep["invert"] in (0, 1) and not isinstance(prep["invert"], bool):
        raise ConvscopeError(f"preprocessing invert must be true, false or \"auto\", got {str(prep['invert'])[:40]}")
    if prep["crop"] not in ("none", "ink"):
        raise ConvscopeError(f"preprocessing crop must be \"none\" or \"ink\", got {str(prep['crop'])[:40]}")
    span = prep["range"]
    if not isinstance(span, (list, tuple)) or len(span) != 2 or not all(limits.is_finite_number(v, 1e30)
                                                                        for v in span):
        raise ConvscopeError(f"preprocessing range must be two finite numbers [low, high], got {str(span)[:60]}")
    for key in ("mean", "std"):
        values = prep[key]
        if not isinstance(values, (list, tuple)) or len(values) != c:
            raise ConvscopeError(f"preprocessing {key} needs one number per channel ({c}), got {str(values)[:60]}")
        if not all(limits.is_finite_number(v, 1e30) for v in values):
            raise ConvscopeError(f"preprocessing {key} must be finite numbers, got {str(values)[:60]}")
    if any(float(s) <= 0 for s in prep["std"]):
        raise ConvscopeError(f"preprocessing std must be positive, got {prep['std']!r}")
    return dict(prep)


def input_shape(prep: Dict) -> tuple:
    """The per-sample model input this preprocessing produces: (C, H, W)."""
    return (int(prep["channels"]),) + tuple(int(s) for s in prep["size"])


def normalize(x: np.ndarray, prep: Dict, dtype=np.float32) -> np.ndarray:
    """Data-set units -> model input: ``(x - mean_c) / std_c`` on axis 1 of ``(N, C, H, W)``."""
    x = np.asarray(x)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = np.asarray(prep["mean"], dtype=np.float64).reshape(shape)
    std = np.asarray(prep["std"], dtype=np.float64).reshape(shape)
    return ((x - mean) / std).astype(dtype)


def _border_is_light(gray: np.ndarray) -> bool:
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return float(np.median(border)) > 127.5


def _ink_box(gray_ink: np.ndarray):
    """Bounding box (top, bottom, left, right) of pixels brighter than half the brightest."""
    peak = float(gray_ink.max())
    if peak <= 0:
        return None
    rows = np.flatnonzero((gray_ink > peak / 2).any(axis=1))
    cols = np.flatnonzero((gray_ink > peak / 2).any(axis=0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


#: Images above this many pixels are area-reduced by an integer factor (to at least 4× the model's
#: size) before any float copy is made, so memory stays proportional to the model's input.
_SHRINK_ABOVE = 4_000_000


def _shrink(image, height: int, width: int):
    factor = min(image.size[0] // (4 * width), image.size[1] // (4 * height))
    if image.size[0] * image.size[1] <= _SHRINK_ABOVE or factor < 2:
        return image
    if image.mode not in ("L", "RGB", "RGBA", "LA", "I", "F"):
        image = image.convert("RGBA" if image.mode in ("P", "PA") else "L" if image.mode == "1" else "RGB")
    return image.reduce(factor)


def image_to_raw(image, prep: Dict, path="image") -> np.ndarray:
    """A Pillow image of any size and mode -> ``(C, H, W)`` float32 in the data set's units.
    Non-finite pixels (a float TIFF of NaN) are refused, naming ``path``."""
    from PIL import Image

    channels = int(prep["channels"])
    height, width = (int(s) for s in prep["size"])
    image = _shrink(image, height, width)
    if image.mode in ("RGBA", "LA", "P", "PA"):
        # Transparent pixels become white paper, not black, before any colour conversion.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode in ("F", "I", "I;16") and channels == 1:
        pixels = np.asarray(image, dtype=np.float64)  # keep high-precision values: checked below
        if not np.all(np.isfinite(pixels)):
            raise ConvscopeError(f"{path} holds NaN or infinite pixel values")
        pixels = np.clip(pixels, 0, 255)
    else:
        if image.mode == "F" and not np.all(np.isfinite(np.asarray(image))):
            raise ConvscopeError(f"{path} holds NaN or infinite pixel values")
        image = image.convert("L" if channels == 1 else "RGB")
        pixels = np.asarray(image, dtype=np.float64)
    gray = pixels if channels == 1 else pixels.mean(axis=2)
    invert = prep["invert"]
    if invert == "auto":
        invert = _border_is_light(gray)
    if invert:
        pixels, gray = 255.0 - pixels, 255.0 - gray
    if prep["crop"] == "ink":
        box = _ink_box(gray)
        if box is not None:
            top, bottom, left, right = box
            pixels = pixels[top:bottom, left:right]
            h, w = pixels.shape[:2]
            side = max(h, w)
            pad_h, pad_w = side - h, side - w
            pad = [(pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)]
            if pixels.ndim == 3:
                pad.append((0, 0))
            pixels = np.pad(pixels, pad)  # zero = background once ink is light
    # Resize in float precision ("F" per channel) so no rounding happens before scaling.
    planes = [pixels] if channels == 1 else [pixels[..., i] for i in range(3)]
    resized = [np.asarray(Image.fromarray(np.ascontiguousarray(p, dtype=np.float32))
                          .resize((width, height), Image.Resampling.BOX), dtype=np.float64)
               for p in planes]
    lo, hi = (float(v) for v in prep["range"])
    raw = lo + (hi - lo) * np.stack(resized) / 255.0
    return raw.astype(np.float32)


def open_image(path, load: bool = True) -> "object":
    """Open an image file with Pillow, upright (EXIF orientation applied, as phones expect).

    Only regular files are read. The pixel count is checked against ``limits.MAX_IMAGE_PIXELS``
    from the header, before decoding (Pillow's own bomb check stays on, with our limit). With
    ``load=False`` only the header is read (size and mode, for choosing a data set's size).
    """
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    from .. import limits
    from ..files import open_regular

    path = require_file(path, "image", "give image files (PNG or JPEG)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = limits.MAX_IMAGE_PIXELS
            handle = open_regular(path, "image")
            image = Image.open(handle)
            width, height = image.size
            limits.check(f"{path}: its pixel count ({width}×{height})", width * height, "MAX_IMAGE_PIXELS",
                         "pixels")
            if not load:
                return image
            image.load()
            handle.close()
            image = ImageOps.exif_transpose(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ConvscopeError(f"{path} has more pixels than the {limits.MAX_IMAGE_PIXELS:,}-pixel budget "
                             "(limits.MAX_IMAGE_PIXELS); scale it down first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        if isinstance(error, ConvscopeError):
            raise
        raise ConvscopeError(f"{path} is not a readable image (PNG or JPEG expected): "
                             f"{str(error).splitlines()[0][:120] if str(error) else type(error).__name__}") from None
    return image


def load_images(paths: Iterable, prep: Dict, dtype=np.float32) -> np.ndarray:
    """Image files -> a model-ready batch ``(N, C, H, W)`` (data-set units, then normalised)."""
    raws: List[np.ndarray] = [image_to_raw(open_image(p), prep, p) for p in paths]
    return normalize(np.stack(raws), prep, dtype=dtype)


def describe(prep: Dict) -> str:
    """One line for people: 'grayscale, resized to 8×8, scaled to 0–16, inverted if light'."""
    parts = ["grayscale" if prep["channels"] == 1 else "RGB"]
    if prep["crop"] == "ink":
        parts.append("cropped to the ink")
    parts.append(f"resized to {prep['size'][0]}×{prep['size'][1]}")
    lo, hi = prep["range"]
    parts.append(f"scaled to {lo:g}–{hi:g}")
    if prep["invert"] == "auto":
        parts.append("inverted when the background is light")
    elif prep["invert"]:
        parts.append("inverted")
    return ", ".join(parts)

"""The explorer's input images: built-in samples, uploads, and conversion to model input.

Built-in samples (nothing is downloaded; both ship with scikit-learn):

* ``digit-K``: the first image of each digit class 0–9 in scikit-learn's handwritten digits
  (1×8×8, ink 0–16). A model whose input is 1×8×8 gets it as is, in the data set's units;
  other models get it as a picture (scaled to 0–255, resized);
* ``china`` and ``flower``: scikit-learn's two sample photographs (427×640 RGB).

The default input is ``digit-0`` when the model takes 1×8×8, ``china`` otherwise.

Conversion uses the checkpoint's preprocessing when the model came from a checkpoint
(exactly what ``predict`` does). Otherwise a picture becomes the model's input as
``x = v/255`` per channel after conversion to grayscale or RGB and a resize to H×W (Pillow's
BOX filter), and a digit is ``x = raw/16`` (the range a digits model is trained on).

Uploads are data: at most :data:`MAX_UPLOAD_BYTES` bytes and :data:`MAX_UPLOAD_PIXELS`
pixels, checked from the header before any pixel is decoded (so a decompression bomb is
refused without being expanded); only PNG, JPEG, GIF, BMP and WebP are opened.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from .. import sklearn_files
from ..errors import ConvscopeError

MAX_UPLOAD_BYTES = 8 * 1024 * 1024
MAX_UPLOAD_PIXELS = 25_000_000
_FORMATS = ["PNG", "JPEG", "GIF", "BMP", "WEBP"]


@dataclass
class Picture:
    """One input: a Pillow image (``image``) or, for a digit, its raw 8×8 values too."""

    key: str
    label: str
    image: object
    digit: Optional[np.ndarray] = None   # (8, 8) in 0–16 when the sample is a digit


def samples() -> List[Dict[str, str]]:
    """The built-in inputs: ``[{"key", "label"}]``."""
    out = [{"key": f"digit-{k}", "label": f"digit {k} (scikit-learn digits)"} for k in range(10)]
    out += [{"key": "china", "label": "china.jpg (scikit-learn sample photo)"},
            {"key": "flower", "label": "flower.jpg (scikit-learn sample photo)"}]
    return out


def default_key(input_shape) -> str:
    return "digit-0" if tuple(input_shape) == (1, 8, 8) else "china"


def sample(key: str) -> Picture:
    """The built-in input called ``key`` (see :func:`samples`)."""
    from PIL import Image

    if key.startswith("digit-") and key[6:].isdigit() and 0 <= int(key[6:]) <= 9:
        images, target = sklearn_files.digits()
        k = int(key[6:])
        raw = images[int(np.flatnonzero(target == k)[0])].astype(np.float64)
        image = Image.fromarray(np.round(raw * 255.0 / 16.0).astype(np.uint8), mode="L")
        return Picture(key, f"digit {k} (scikit-learn digits)", image, raw)
    if key in ("china", "flower"):
        image = Image.fromarray(sklearn_files.photo(key))
        return Picture(key, f"{key}.jpg (scikit-learn sample photo)", image)
    known = ", ".join(s["key"] for s in samples())
    raise ConvscopeError(f"unknown sample {key!r}; the built-in samples are {known}")


def decode_upload(data: bytes, name: str = "upload") -> Picture:
    """An uploaded file -> Picture, refusing large, huge-in-pixels or non-image data."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ConvscopeError("the upload is empty; send the bytes of a PNG or JPEG image")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ConvscopeError(f"the upload is {len(data):,} bytes; images up to {MAX_UPLOAD_BYTES:,} bytes "
                             "are accepted")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=_FORMATS)
            width, height = image.size
            if width * height > MAX_UPLOAD_PIXELS:
                raise ConvscopeError(f"the image is {width:,}×{height:,} = {width * height:,} pixels; images "
                                     f"up to {MAX_UPLOAD_PIXELS:,} pixels are accepted")
            image.load()
    except ConvscopeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ConvscopeError(f"the image has too many pixels to decode safely; images up to "
                             f"{MAX_UPLOAD_PIXELS:,} pixels are accepted") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConvscopeError(f"the upload is not a readable image (PNG, JPEG, GIF, BMP or WebP): "
                             f"{detail}") from None
    return Picture("upload", name, image)


def generic_preprocessing(input_shape) -> Dict:
    """How a picture becomes input for a model that records no preprocessing."""
    from ..train import preprocessing
    channels, height, width = (int(s) for s in input_shape)
    return preprocessing.make(channels, (height, width), (0.0, 255.0), invert=False, crop="none")


def to_model_input(picture: Picture, input_shape, prep: Optional[Dict], dtype) -> np.ndarray:
    """``(1, C, H, W)`` model input for ``picture`` (see the module docstring)."""
    from ..train import preprocessing

    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise ConvscopeError(f"the explorer shows images; this model takes {shape}, which is not 1×H×W or "
                             "3×H×W, so it runs on a fixed random input instead")
    if picture.digit is not None and shape == (1, 8, 8):
        raw = picture.digit[None, None].astype(np.float32)
        prep = prep or preprocessing.make(1, (8, 8), (0.0, 16.0))  # x = raw/16
        return preprocessing.normalize(raw, prep, dtype=dtype)
    prep = prep or generic_preprocessing(shape)
    raw = preprocessing.image_to_raw(picture.image, prep)[None]
    return preprocessing.normalize(raw, prep, dtype=dtype)


def random_input(input_shape, dtype) -> np.ndarray:
    """A fixed standard-normal input (seed 0) for models that do not take images."""
    return np.random.default_rng(0).standard_normal((1,) + tuple(input_shape)).astype(dtype)

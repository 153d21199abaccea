"""scikit-learn's bundled data files, read without importing scikit-learn.

``import sklearn`` costs about 1.5 s here (it imports scipy.stats), which is most of the
explorer's 2-second start-up budget and a visible share of a short training run. The files
themselves are small and plain, so they are read from the installed package's folder:

* ``sklearn/datasets/data/digits.csv.gz``: 1,797 rows of 64 pixel values (ink 0–16) and a
  label, exactly what ``sklearn.datasets.load_digits`` parses;
* ``sklearn/datasets/images/{china,flower}.jpg``: the two sample photographs of
  ``sklearn.datasets.load_sample_image``.

When the files are not where they are expected (a future layout), the public scikit-learn
functions are used instead, so the result is the same either way.
"""
from __future__ import annotations

import gzip
import importlib.util
import os
from typing import Optional, Tuple

import numpy as np

PHOTOS = ("china", "flower")


def _sklearn_folder() -> Optional[str]:
    """The installed scikit-learn package folder, found without executing it (or None)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def _data_file(*parts: str) -> Optional[str]:
    folder = _sklearn_folder()
    path = os.path.join(folder, "datasets", *parts) if folder else None
    return path if path and os.path.isfile(path) else None


def digits() -> Tuple[np.ndarray, np.ndarray]:
    """``(images, target)``: images ``(1797, 8, 8)`` float64 in 0–16, target ``(1797,)`` int."""
    path = _data_file("data", "digits.csv.gz")
    if path is None:
        from sklearn.datasets import load_digits
        bunch = load_digits()
        return bunch.images, bunch.target
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)


def photo(name: str) -> np.ndarray:
    """scikit-learn's sample photograph ``name`` ('china' or 'flower'): (427, 640, 3) uint8."""
    if name not in PHOTOS:
        raise ValueError(f"unknown sample photo {name!r}; expected one of {PHOTOS}")
    path = _data_file("images", f"{name}.jpg")
    if path is None:
        from sklearn.datasets import load_sample_image
        return load_sample_image(f"{name}.jpg")
    from PIL import Image
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))

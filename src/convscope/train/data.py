"""Data sets for training: loaders, deterministic splits and seeded batching.

``load_data(source)`` returns :class:`Data` (train / val / test :class:`Dataset` splits,
class names, and the preprocessing that maps a raw image to model input). ``source`` is

* ``"digits"``: scikit-learn's handwritten digits, bundled with scikit-learn (no download),
  1×8×8, values 0–16;
* a folder (or file) of IDX files in MNIST's layout (``train-images-idx3-ubyte[.gz]``,
  ``train-labels-idx1-ubyte[.gz]``, optional ``t10k-*``), gzip or not;
* a folder (or one file) of CIFAR-10 binary batches (``data_batch_*.bin``, ``test_batch.bin``,
  optional ``batches.meta.txt``);
* an ``.npz`` file with arrays ``x`` (N, C, H, W) or (N, H, W) and ``y`` (N,), optionally
  ``x_test``/``y_test`` and ``class_names``; loaded without unpickling;
* a folder of images with one sub-folder per class (read with Pillow).

Every loader checks what it reads (magic numbers, sizes, label range) and names the file and
the problem. Arrays stay in the data set's own units (e.g. 0–16 for digits); the trainer
normalises them with the preprocessing's mean and std.

Splits (the contract): when the source has no test set of its own, 20 % of the samples, drawn
with ``numpy.random.default_rng(seed=0)``, are held out as test; the validation split (10 % by
default) is then drawn from the rest by the same generator. The same seed gives the same split
on every machine.
"""
from __future__ import annotations

import difflib
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConvscopeError, format_count, format_shape
from . import preprocessing as prep_mod

NAMED_SOURCES = ("digits",)


@dataclass
class Dataset:
    """Samples ``x`` ``(N, C, H, W)`` float32 in the data set's units, labels ``y`` ``(N,)`` int64."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass
class Data:
    """A data set split three ways, with what a checkpoint needs to know about it."""

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    class_names: List[str]
    preprocessing: Dict = field(default_factory=dict)

    @property
    def input_shape(self) -> Tuple[int, ...]:
        return tuple(int(s) for s in self.train.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __repr__(self) -> str:
        return (f"Data({self.name!r}, input {format_shape(self.input_shape)}, {self.num_classes} classes, "
                f"train {len(self.train)}, val {len(self.val)}, test {len(self.test)})")


# ----- splitting and batching -----------------------------------------------------------------
def _split_counts(n: int, fraction: float) -> int:
    if n < 2 or fraction <= 0:
        return 0
    return min(n - 1, max(1, int(round(n * fraction))))


#: Labels are class indices; more classes than this (ImageNet-21k has 21,841) is a broken file.
MAX_CLASSES = 100_000


def from_arrays(x, y, class_names: Optional[Sequence[str]] = None, preprocessing: Optional[Dict] = None,
                name: str = "arrays", x_test=None, y_test=None, seed: int = 0,
                test_fraction: float = 0.2, val_fraction: float = 0.1) -> Data:
    """Split labelled arrays into train / val / test (see the module docstring for the rule)."""
    x, y = _check_arrays(x, y, name)
    if x_test is None and len(y) < 2:
        raise ConvscopeError(f"{name}: a data set needs at least 2 samples to train and test on, got {len(y)}")
    for label, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0 <= value < 1:
            raise ConvscopeError(f"{label} must be in [0, 1), got {value!r}")
    if x_test is not None:
        x_test, y_test = _check_arrays(x_test, y_test, f"{name} (test part)")
        if x_test.shape[1:] != x.shape[1:]:
            raise ConvscopeError(f"{name}: test images are {format_shape(x_test.shape[1:])} but training "
                                 f"images are {format_shape(x.shape[1:])}; both parts must have one size")
    highest = int(max(y.max(), y_test.max() if y_test is not None and len(y_test) else 0))
    if class_names is None:
        if highest >= MAX_CLASSES:  # one output per class: a stray huge label would eat all memory
            raise ConvscopeError(f"{name}: labels go up to {highest:,}, i.e. that many classes; labels must "
                                 f"be class indices 0..N-1 with N at most {MAX_CLASSES:,}")
        present = len(np.union1d(y, y_test if y_test is not None else []))
        if highest + 1 > 2 * present:  # most classes empty: a corrupt label, not a real class count
            raise ConvscopeError(f"{name}: labels go up to {highest}, but only {present} of the {highest + 1} "
                                 f"classes 0..{highest} occur; a label is corrupt (labels must be class "
                                 "indices 0..N-1)")
        class_names = [str(i) for i in range(highest + 1)]
    class_names = [str(c) for c in class_names]
    if highest >= len(class_names):
        raise ConvscopeError(f"{name}: labels go up to {highest} but there are only {len(class_names)} "
                             f"class names; labels must be in 0..{len(class_names) - 1}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    if x_test is None:
        n_test = _split_counts(len(y), test_fraction)
        test_idx, order = order[:n_test], order[n_test:]
        x_test, y_test = x[test_idx], y[test_idx]
    n_val = _split_counts(len(order), val_fraction)
    val_idx, train_idx = order[:n_val], order[n_val:]
    if preprocessing is None:
        lo, hi = float(min(0.0, x.min())), float(x.max())
        preprocessing = prep_mod.make(x.shape[1] if x.shape[1] in (1, 3) else 1, x.shape[2:],
                                      (lo, hi if hi > lo else lo + 1.0), invert=False)
    return Data(name=name, train=Dataset(x[np.sort(train_idx)], y[np.sort(train_idx)]),
                val=Dataset(x[np.sort(val_idx)], y[np.sort(val_idx)]),
                test=Dataset(x_test, y_test), class_names=class_names,
                preprocessing=preprocessing)


def _check_arrays(x, y, name: str) -> Tuple[np.ndarray, np.ndarray]:
    try:
        x, y = np.asarray(x), np.asarray(y)
    except ValueError:  # a ragged nested list
        raise ConvscopeError(f"{name}: images and labels must be rectangular arrays (every image the same "
                             "shape); got a ragged list") from None
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ConvscopeError(f"{name}: images must be an array (N, C, H, W) or (N, H, W), got shape "
                             f"{x.shape}")
    if x.dtype.kind not in "biuf":
        raise ConvscopeError(f"{name}: images must be numbers, got dtype {x.dtype}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ConvscopeError(f"{name}: expected one label per image ({x.shape[0]} labels), got labels of "
                             f"shape {y.shape}")
    if x.shape[0] == 0:
        raise ConvscopeError(f"{name}: the data set is empty")
    from .. import limits
    limits.check(f"{name}: the images as float32", x.size * 4, "MAX_DECODED_BYTES", "bytes")
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise ConvscopeError(f"{name}: labels must be whole numbers (class indices), got dtype {y.dtype}")
    if y.min() < 0:
        raise ConvscopeError(f"{name}: labels must be 0 or more (class indices), got {int(y.min())}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ConvscopeError(f"{name}: images contain NaN or infinite values")
    return x, y.astype(np.int64)


def batch_indices(n: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True) -> List[np.ndarray]:
    """Index arrays of one epoch's batches. The order depends only on (seed, epoch), so a
    resumed run sees exactly the batches an uninterrupted one would."""
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


# ----- the built-in data set ------------------------------------------------------------------
def load_digits(seed: int = 0, test_fraction: float = 0.2, val_fraction: float = 0.1) -> Data:
    """scikit-learn's 1,797 handwritten digits, 1×8×8, ink 0–16 on a zero background."""
    from .. import sklearn_files

    images, target = sklearn_files.digits()
    x = images.astype(np.float32)[:, None]
    prep = prep_mod.make(1, (8, 8), (0.0, 16.0), invert="auto", crop="ink")
    return from_arrays(x, target, [str(c) for c in range(10)], prep, name="digits",
                       seed=seed, test_fraction=test_fraction, val_fraction=val_fraction)


# ----- IDX (MNIST layout) ---------------------------------------------------------------------
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: str, declared=None) -> bytes:
    """A regular file's bytes, gunzipped when it starts with gzip's magic, never more than
    ``limits.MAX_DECODED_BYTES`` (checked on the file size, then while decompressing).
    ``declared(head)`` may return the size the first bytes promise, refused before inflating."""
    from .. import limits
    from ..files import read_regular

    raw = read_regular(path, "data file")
    if raw[:2] != b"\x1f\x8b":
        return raw
    budget = limits.MAX_DECODED_BYTES
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        if declared is not None:
            head = inflater.decompress(raw, 1024)
            promised = declared(head)
            if promised is not None:
                limits.check(f"{path}: the size its header declares", promised, "MAX_DECODED_BYTES", "bytes")
            out, tail = bytearray(head), inflater.unconsumed_tail or (inflater.unused_data if inflater.eof else b"")
        else:
            out, tail = bytearray(), raw
        while tail:  # in 16 MiB steps: never more than the budget is held
            if inflater.eof:  # concatenated gzip members (as `cat a.gz b.gz` makes) are one stream
                tail = inflater.unused_data
                if not tail.startswith(b"\x1f\x8b"):
                    break  # trailing bytes after the stream: ignored, as gzip(1) does
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += inflater.decompress(tail, 1 << 24)
            tail = inflater.unconsumed_tail or (inflater.unused_data if inflater.eof else b"")
            if len(out) > budget:
                raise limits.exceeded(f"{path}: the decompressed data", len(out), "MAX_DECODED_BYTES", "bytes")
        if not inflater.eof:
            raise zlib.error("the stream ends early")
    except zlib.error as error:
        raise ConvscopeError(f"{path}: the gzip stream is truncated or corrupt ({error})") from None
    return bytes(out)


def _idx_declared(head: bytes):
    """Bytes an IDX header promises (header included), or None if it is not an IDX header."""
    if len(head) < 4 or head[2] not in _IDX_TYPES or len(head) < 4 + 4 * head[3]:
        return None
    dims = struct.unpack(f">{head[3]}I", head[4:4 + 4 * head[3]])
    values = 1
    for d in dims:  # Python integers: 65536**4 does not wrap to 0 as int64 products did
        values *= d
    return 4 + 4 * len(dims) + values * np.dtype(_IDX_TYPES[head[2]]).itemsize


def read_idx(path) -> np.ndarray:
    """One IDX file (gzip or not) -> its array, after checking the header against the size.

    Header: two zero bytes, a type code (0x08 unsigned byte ... 0x0E float64), the number of
    dimensions, then each dimension as a big-endian 32-bit integer; the data follow.
    """
    path = os.fspath(path)
    raw = _read_bytes(path, _idx_declared)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ConvscopeError(f"{path} is not an IDX file: expected the magic number 0x0000 plus a type "
                             f"code 08-0E, got {raw[:4].hex() or 'an empty file'}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ConvscopeError(f"{path}: the IDX header is truncated or has 0 dimensions")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = _idx_declared(raw[:header]) - header
    if len(raw) - header != expected:
        raise ConvscopeError(f"{path}: the header promises {format_shape(dims)} values "
                             f"({format_count(expected)} bytes) but the file holds "
                             f"{format_count(len(raw) - header)}; the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


_IDX_NAME = re.compile(r"^(?P<part>train|t10k)-(?P<kind>images|labels)[.-]idx(?P<nd>\d)-ubyte(\.gz)?$")


def _idx_files(folder: str) -> Dict[Tuple[str, str], str]:
    found = {}
    for entry in sorted(os.listdir(folder)):
        match = _IDX_NAME.match(entry)
        if match:
            found.setdefault((match["part"], match["kind"]), os.path.join(folder, entry))
    return found


def load_idx(path, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> Data:
    """MNIST-layout IDX files: a folder holding train-/t10k- images and labels, or one images file
    whose labels file sits beside it (``images`` -> ``labels``, ``idx3`` -> ``idx1``)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        files = _idx_files(path)
    else:
        folder, base = os.path.split(path)
        labels = base.replace("images", "labels").replace("idx3", "idx1")
        files = {("train", "images"): path, ("train", "labels"): os.path.join(folder, labels)}
    if ("train", "images") not in files or ("train", "labels") not in files:
        raise ConvscopeError(f"{path}: expected train-images-idx3-ubyte and train-labels-idx1-ubyte "
                             "(optionally .gz) in MNIST's layout")

    def pair(part):
        images_path, labels_path = files[(part, "images")], files[(part, "labels")]
        if not os.path.exists(labels_path):
            raise ConvscopeError(f"labels file not found: {labels_path} (needed for {images_path})")
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim not in (3, 4):
            raise ConvscopeError(f"{images_path}: expected images (N, H, W), got an IDX array of shape "
                                 f"{images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise ConvscopeError(f"{labels_path}: expected {len(images)} labels (one per image in "
                                 f"{os.path.basename(images_path)}), got an array of shape {labels.shape}")
        return images, labels

    x, y = pair("train")
    x_test = y_test = None
    if ("t10k", "images") in files and ("t10k", "labels") in files:
        x_test, y_test = pair("t10k")
    size = x.shape[-2:]
    prep = prep_mod.make(1, size, (0.0, 255.0), invert="auto")
    return from_arrays(x, y, None, prep, name=path, x_test=x_test, y_test=y_test, seed=seed,
                       test_fraction=test_fraction, val_fraction=val_fraction)


# ----- CIFAR-10 binary ------------------------------------------------------------------------
_CIFAR_RECORD = 1 + 3 * 32 * 32
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def read_cifar_batch(path) -> Tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch: records of 1 label byte + 3,072 pixel bytes (R, G, B planes)."""
    path = os.fspath(path)
    raw = _read_bytes(path)
    if len(raw) == 0 or len(raw) % _CIFAR_RECORD:
        raise ConvscopeError(f"{path} is not a CIFAR-10 binary batch: its size ({format_count(len(raw))} "
                             f"bytes) is not a multiple of {format_count(_CIFAR_RECORD)} (1 label byte + "
                             "3,072 pixel bytes); the file is truncated or of another format")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= 10:
        raise ConvscopeError(f"{path}: CIFAR-10 labels must be 0-9, found {int(labels.max())}; the file "
                             "is corrupt or is not CIFAR-10")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def load_cifar10(path, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> Data:
    """CIFAR-10 binary version: a folder with ``data_batch_*.bin`` (and ``test_batch.bin``) or one
    ``.bin`` batch file; class names from ``batches.meta.txt`` when present."""
    path = os.fspath(path)
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    if os.path.isdir(path):
        train_files = sorted(f for f in os.listdir(path) if re.match(r"^data_batch_\d+\.bin$", f))
        if not train_files:
            raise ConvscopeError(f"{path}: no CIFAR-10 batches (data_batch_1.bin ...) found")
        train_files = [os.path.join(path, f) for f in train_files]
        test_file = os.path.join(path, "test_batch.bin")
        test_file = test_file if os.path.exists(test_file) else None
    else:
        train_files, test_file = [path], None
    parts = [read_cifar_batch(f) for f in train_files]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    x_test = y_test = None
    if test_file:
        x_test, y_test = read_cifar_batch(test_file)
    names = CIFAR10_CLASSES
    meta = os.path.join(folder, "batches.meta.txt")
    if os.path.exists(meta):
        with open(meta, encoding="utf-8", errors="replace") as handle:
            listed = [line.strip() for line in handle if line.strip()]
        if len(listed) != 10:
            raise ConvscopeError(f"{meta}: expected 10 class names, one per line, got {len(listed)}")
        names = listed
    prep = prep_mod.make(3, (32, 32), (0.0, 255.0), invert=False)
    return from_arrays(x, y, names, prep, name=path, x_test=x_test, y_test=y_test, seed=seed,
                       test_fraction=test_fraction, val_fraction=val_fraction)


# ----- .npz -----------------------------------------------------------------------------------
def load_npz(path, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> Data:
    """An ``.npz`` with ``x`` and ``y`` (optionally ``x_test``, ``y_test``, ``class_names``)."""
    from ..npzfile import load_npz_arrays

    path = os.fspath(path)
    arrays = load_npz_arrays(path, "data .npz file")
    for key in ("x", "y"):
        if key not in arrays:
            raise ConvscopeError(f"{path}: expected arrays 'x' (images) and 'y' (labels), found "
                                 f"{', '.join(sorted(arrays)) or 'none'}")
    names = arrays.get("class_names")
    if names is not None:
        names = [str(n) for n in np.asarray(names).ravel()]
    x_test, y_test = arrays.get("x_test"), arrays.get("y_test")
    if (x_test is None) != (y_test is None):
        raise ConvscopeError(f"{path}: give both 'x_test' and 'y_test', or neither")
    x, y = _check_arrays(arrays["x"], arrays["y"], path)
    if x.shape[1] not in (1, 3):
        raise ConvscopeError(f"{path}: x must be (N, C, H, W) with 1 or 3 channels, or (N, H, W); got shape "
                             f"{arrays['x'].shape} (channels-last arrays need x.transpose(0, 3, 1, 2))")
    if arrays["x"].dtype == np.uint8:
        prep = prep_mod.make(x.shape[1], x.shape[2:], (0.0, 255.0), invert=False)
    else:
        lo, hi = float(min(0.0, x.min())), float(x.max())
        prep = prep_mod.make(x.shape[1], x.shape[2:], (lo, hi if hi > lo else lo + 1.0), invert=False)
    return from_arrays(x, y, names, prep, name=path, x_test=x_test, y_test=y_test, seed=seed,
                       test_fraction=test_fraction, val_fraction=val_fraction)


# ----- folder of images -----------------------------------------------------------------------
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def load_image_folder(path, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> Data:
    """A folder with one sub-folder per class (sorted names = class names) of PNG/JPEG images.
    Images are brought to the most common size; grayscale if every image is."""
    from collections import Counter

    path = os.fspath(path)
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))
                     and not d.startswith("."))
    files: List[Tuple[str, int]] = []
    for label, name in enumerate(classes):
        folder = os.path.join(path, name)
        found = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not found:
            raise ConvscopeError(f"{folder}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        files.extend((os.path.join(folder, f), label) for f in found)
    if len(classes) < 2:
        raise ConvscopeError(f"{path}: an image folder needs one sub-folder per class and at least 2 "
                             f"classes, found {len(classes)}")
    from .. import limits

    # Headers first (size and mode only); then each image is decoded, resized and dropped in turn,
    # so memory holds one decoded image plus the resized array, whose size is checked up front.
    headers = []
    for f, _ in files:
        with prep_mod.open_image(f, load=False) as im:
            headers.append((im.mode, im.size))
    gray = all(mode in _GRAY_MODES for mode, _ in headers)
    width, height = Counter(size for _, size in headers).most_common(1)[0][0]
    limits.check(f"{path}: the images at the common size {width}×{height}",
                 len(files) * (1 if gray else 3) * width * height * 4, "MAX_DECODED_BYTES", "bytes")
    prep = prep_mod.make(1 if gray else 3, (height, width), (0.0, 255.0), invert=False)
    x = np.stack([prep_mod.image_to_raw(prep_mod.open_image(f), prep, f) for f, _ in files])
    y = np.array([label for _, label in files], dtype=np.int64)
    return from_arrays(x, y, classes, prep, name=path, seed=seed, test_fraction=test_fraction,
                       val_fraction=val_fraction)


# ----- dispatch -------------------------------------------------------------------------------
def _detect(path: str) -> str:
    if os.path.isdir(path):
        entries = os.listdir(path)
        if any(_IDX_NAME.match(e) for e in entries):
            return "idx"
        if any(re.match(r"^(data|test)_batch(_\d+)?\.bin$", e) for e in entries):
            return "cifar10"
        if any(os.path.isdir(os.path.join(path, e)) and not e.startswith(".") for e in entries):
            return "folder"
        raise ConvscopeError(f"{path}: found no data set here; expected MNIST-layout IDX files, CIFAR-10 "
                             "batches (data_batch_1.bin ...) or one sub-folder of images per class")
    lower = os.path.basename(path).lower()
    if lower.endswith(".npz"):
        return "npz"
    if lower.endswith(".bin"):
        return "cifar10"
    if "idx" in lower or "ubyte" in lower:
        return "idx"
    raise ConvscopeError(f"{path}: cannot tell the data format from the name; use an .npz file with x and "
                         "y, IDX files (MNIST layout), CIFAR-10 .bin batches or an image folder")


LOADERS = {"idx": load_idx, "cifar10": load_cifar10, "npz": load_npz, "folder": load_image_folder}


def load_data(source="digits", seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.2) -> Data:
    """Load a named data set (``"digits"``) or a path (format detected; see module docstring)."""
    if isinstance(source, Data):
        return source
    source = os.fspath(source)
    if source == "digits":
        return load_digits(seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    if not os.path.exists(source):
        if os.sep in source or "." in source:
            raise ConvscopeError(f"data not found: {source}")
        close = difflib.get_close_matches(source, NAMED_SOURCES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConvscopeError(f"unknown data set {source!r}{hint}; use 'digits' or a path to IDX files, "
                             "CIFAR-10 batches, an .npz file or a folder of images")
    kind = _detect(source)
    try:
        return LOADERS[kind](source, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    except (OSError, EOFError) as error:
        raise ConvscopeError(f"{source}: cannot read the data ({error})") from None

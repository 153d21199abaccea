"""Checkpoints: one ``.npz`` file, no pickled objects, written atomically.

Layout of the archive:

* every parameter and buffer under its state-dict name (``"0.weight"``, ``"1.running_mean"``),
* ``"__convscope__"``: a 0-d unicode array holding a JSON document::

      {"format": "convscope-checkpoint", "version": 1,
       "spec": {...model.spec()...}, "input_shape": [1, 8, 8], "dtype": "float32",
       "preprocessing": {...}, "class_names": ["0", ...],
       "epoch": 12,                      # epochs completed (optional)
       "optimizer": {"type", "hyper", "steps"} (optional), "training": {...} (optional),
       "rng": {"<layer path>.<attribute>": Generator state} (optional)}

* optimizer state arrays (when saved) under ``"optimizer:<parameter>:<slot>"``.

Writing goes to a temporary file in the destination folder, is flushed to disk and then
``os.replace``-d over the destination, so a crash or an exception mid-write leaves the previous
checkpoint untouched. Loading uses ``np.load(..., allow_pickle=False)``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from ..errors import ConvscopeError
from ..files import atomic_write, require_file
from . import preprocessing as prep_mod

META_KEY = "__convscope__"
OPTIM_PREFIX = "optimizer:"
FORMAT = "convscope-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint. ``model`` is built, with the saved weights and buffers loaded."""

    path: str
    model: object
    spec: Dict
    input_shape: tuple
    preprocessing: Optional[Dict]
    class_names: Optional[List[str]]
    epoch: Optional[int] = None
    optimizer_state: Optional[Dict] = None
    meta: Dict = field(default_factory=dict)


def generator_states(model) -> Dict[str, Dict]:
    """States of every ``numpy.random.Generator`` held by a layer (dropout masks), by path."""
    states = {}

    def walk(layer, prefix):
        for attr, value in vars(layer).items():
            if isinstance(value, np.random.Generator):
                states[f"{prefix}{attr}"] = value.bit_generator.state
        for name, child in layer.children():
            walk(child, f"{prefix}{name}.")

    walk(model, "")
    return states


def restore_generator_states(model, states: Dict[str, Dict]) -> None:
    def walk(layer, prefix):
        for attr, value in vars(layer).items():
            key = f"{prefix}{attr}"
            if isinstance(value, np.random.Generator) and key in states:
                value.bit_generator.state = states[key]
        for name, child in layer.children():
            walk(child, f"{prefix}{name}.")

    walk(model, "")


def _spec_of(model) -> Dict:
    from ..spec import to_spec
    return to_spec(model)


def save_checkpoint(path, model, *, input_shape=None, preprocessing: Optional[Dict] = None,
                    class_names: Optional[List[str]] = None, optimizer=None, epoch: Optional[int] = None,
                    training: Optional[Dict] = None, extra: Optional[Dict] = None) -> str:
    """Write ``model`` (built) and its description to ``path`` atomically; returns the path."""
    path = os.fspath(path)
    if not getattr(model, "built", False):
        raise ConvscopeError("only a built model can be saved; call model.build(input_shape) first")
    shape = tuple(int(s) for s in (input_shape if input_shape is not None else model.input_shape))
    meta = {"format": FORMAT, "version": VERSION, "spec": _spec_of(model), "input_shape": list(shape),
            "dtype": np.dtype(model.dtype).name,
            "preprocessing": prep_mod.validate(preprocessing) if preprocessing is not None else None,
            "class_names": [str(c) for c in class_names] if class_names is not None else None,
            "epoch": None if epoch is None else int(epoch), "training": training or {},
            "rng": generator_states(model)}
    arrays: Dict[str, np.ndarray] = dict(model.state_dict())
    if optimizer is not None:
        state = optimizer.state_dict()
        meta["optimizer"] = {k: v for k, v in state.items() if k != "arrays"}
        for key, value in state["arrays"].items():
            arrays[OPTIM_PREFIX + key] = value
    if extra:
        meta.update(extra)
    arrays[META_KEY] = np.array(json.dumps(meta))
    atomic_write(path, lambda handle: np.savez(handle, **arrays))
    return path


def _check_arrays(headers) -> None:
    """Checkpoint arrays are real floating-point (optimizer step counters may be integers), and
    the description is one string within ``limits.MAX_SPEC_BYTES``."""
    from .. import limits

    for name, (shape, dtype) in headers.items():
        if name == META_KEY:
            if dtype.kind != "U" or shape != ():
                raise ConvscopeError(f"its {META_KEY!r} entry is {dtype} {shape}, not a string")
            limits.check("its description's size", dtype.itemsize, "MAX_SPEC_BYTES", "bytes")
        elif dtype.kind in "iu" and (name.startswith(OPTIM_PREFIX) or name.endswith("num_batches_tracked")):
            continue  # step counters (optimizer, batch norm) are integers by the format
        elif dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
            what = "complex" if dtype.kind == "c" else str(dtype)
            raise ConvscopeError(f"array {name!r} holds {what} values; checkpoints hold real floating-point "
                                 "arrays only")


def read_checkpoint(path) -> tuple:
    """(meta dict, {name: array}) of a checkpoint file, validated; no model is built.

    Every check a later consumer relies on happens here, once: the archive's declared sizes
    and dtypes (before decompressing), finite values, and the description's schema
    (:func:`check_description`)."""
    from ..npzfile import load_npz_arrays

    path = require_file(path, "checkpoint", f"give the checkpoint file inside it, e.g. {os.fspath(path)}/model.npz")
    arrays = load_npz_arrays(path, "convscope checkpoint", _check_arrays)
    if META_KEY not in arrays:
        raise ConvscopeError(f"{path} is an .npz archive but not a convscope checkpoint (it has no "
                             f"{META_KEY!r} entry); save checkpoints with convscope train or save_checkpoint")
    meta = parse_description(str(arrays.pop(META_KEY)), path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConvscopeError(f"{path} is not a convscope checkpoint (its description lacks "
                             f"format={FORMAT!r})")
    version = meta.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ConvscopeError(f"{path}: the checkpoint's version must be an integer, got {str(version)[:40]!r}; "
                             "the file is damaged or was edited by hand")
    if version > VERSION:
        raise ConvscopeError(f"{path} is a version-{meta['version']} checkpoint; this convscope reads up "
                             f"to version {VERSION}: upgrade convscope")
    check_description(meta, path)
    for name, array in arrays.items():
        if not np.all(np.isfinite(array)):
            raise ConvscopeError(f"{path}: array {name!r} holds NaN or infinite values; the checkpoint is "
                                 "damaged (or was saved after training diverged)")
    return meta, arrays


def parse_description(text: str, path: str):
    """The JSON of a checkpoint's description (or of the same entries an exported ONNX file
    keeps in its metadata), with one line for each way it can be broken."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError) as error:
        raise ConvscopeError(f"{path}: the checkpoint's description is not valid JSON ({error})") from None
    except RecursionError:
        from .. import limits
        raise limits.too_deep(f"{path}: the checkpoint's description") from None
    except ValueError:  # an integer beyond Python's 4,300-digit conversion limit
        raise ConvscopeError(f"{path}: the checkpoint's description holds a number with thousands of digits; "
                             "the file is damaged or was edited by hand") from None


#: Entries of the description and the JSON types they must have (None is allowed for all but spec).
_META_TYPES = {"spec": (dict, list), "input_shape": list, "dtype": str, "preprocessing": dict,
               "class_names": list, "epoch": int, "training": dict, "optimizer": dict, "rng": dict}


def _damaged(path: str, what: str) -> ConvscopeError:
    return ConvscopeError(f"{path}: the checkpoint's {what}; the file is damaged or was edited by hand")


def check_description(meta: Dict, path: str) -> None:
    """The one schema of a checkpoint's description: JSON types, nesting within
    ``limits.MAX_SPEC_DEPTH``, input shape, dtype, class names, epoch, preprocessing (finite,
    sized within ``limits.MAX_IMAGE_SIDE``). After it, every consumer may trust the description."""
    from .. import limits
    from ..spec.document import check_document

    try:
        check_document(meta, "the checkpoint's description", count_layers=False)
        check_document(meta.get("spec"), "the checkpoint's spec")
    except ConvscopeError as error:
        raise ConvscopeError(f"{path}: {error}") from None
    _check_meta_types(meta, path)
    shape = meta.get("input_shape")
    if shape is not None and (not 1 <= len(shape) <= 3 or not all(
            isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= limits.MAX_TENSOR_VALUES for s in shape)):
        raise _damaged(path, f"input_shape must be 1 to 3 positive sizes, got {str(shape)[:60]}")
    names = meta.get("class_names")
    if names is not None:
        if len(names) > limits.MAX_CLASSES:
            raise ConvscopeError(f"{path}: " + str(limits.exceeded("the number of class names", len(names),
                                                                   "MAX_CLASSES")))
        if any(len(n) > limits.MAX_NAME_CHARS for n in names):
            raise _damaged(path, f"class names must be at most {limits.MAX_NAME_CHARS:,} characters "
                                 "(limits.MAX_NAME_CHARS)")
    epoch = meta.get("epoch")
    if epoch is not None and not 0 <= epoch <= limits.MAX_EPOCHS:
        raise _damaged(path, f"epoch must be from 0 to {limits.MAX_EPOCHS:,}, got {str(epoch)[:40]}")
    if meta.get("preprocessing") is not None:
        try:
            prep_mod.validate(meta["preprocessing"])
        except ConvscopeError as error:
            raise ConvscopeError(f"{path}: {error}") from None


def _check_meta_types(meta: Dict, path: str) -> None:
    """One sentence naming the first entry of the description that has the wrong JSON type."""
    for key, kinds in _META_TYPES.items():
        value = meta.get(key)
        if value is None and key != "spec":
            continue
        if not isinstance(value, kinds) or isinstance(value, bool):
            kinds = kinds if isinstance(kinds, tuple) else (kinds,)
            expected = " or ".join({dict: "an object", list: "a list", str: "a string", int: "an integer"}[k]
                                   for k in kinds)
            raise ConvscopeError(f"{path}: the checkpoint's {key!r} must be {expected}, got "
                                 f"{str(value)[:60]!r}; the file is damaged or was edited by hand")
    if meta.get("dtype", "float32") not in ("float32", "float64"):
        raise ConvscopeError(f"{path}: the checkpoint's dtype must be 'float32' or 'float64', got "
                             f"{str(meta['dtype'])[:40]!r}; the file is damaged or was edited by hand")
    names = meta.get("class_names")
    if names is not None and not all(isinstance(n, str) for n in names):
        raise ConvscopeError(f"{path}: the checkpoint's class_names must be strings, got "
                             f"{str(names)[:60]}; the file is damaged or was edited by hand")


def _check_sizes(model, shape: tuple, arrays: Dict[str, np.ndarray]) -> None:
    """Compare the values the spec needs with those the file holds BEFORE building, so an edited
    spec (10**12 channels, a huge input) is an error instead of a petabyte allocation."""
    from ..analysis import analyze

    report = analyze(model, shape)
    needed = report.total_params + report.total_buffers
    held = sum(int(a.size) for k, a in arrays.items() if not k.startswith(OPTIM_PREFIX))
    if needed > held:  # fewer values than needed is never loadable; names and shapes are checked later
        raise ConvscopeError(f"its spec needs {needed:,} parameter and buffer values but the file holds "
                             f"only {held:,}; the checkpoint is damaged or was edited by hand")


def load_checkpoint(path) -> Checkpoint:
    """Load a checkpoint: a built model with its weights, and what it was trained on."""
    from ..spec import from_spec

    path = os.fspath(path)
    meta, arrays = read_checkpoint(path)
    try:
        model = from_spec(meta["spec"])
        shape = tuple(int(s) for s in meta["input_shape"])
        _check_sizes(model, shape, arrays)
        model.build(shape, seed=0, dtype=np.dtype(meta.get("dtype", "float32")))
        weights = {k: v for k, v in arrays.items() if not k.startswith(OPTIM_PREFIX)}
        model.load_state_dict(weights, strict=True)
        restore_generator_states(model, meta.get("rng") or {})
    except ConvscopeError as error:
        raise ConvscopeError(f"{path}: the checkpoint does not load: {error}") from None
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise ConvscopeError(f"{path}: the checkpoint's description is incomplete or damaged "
                             f"({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None
    optimizer_state = None
    if meta.get("optimizer"):
        optimizer_state = dict(meta["optimizer"])
        optimizer_state["arrays"] = {k[len(OPTIM_PREFIX):]: v for k, v in arrays.items()
                                     if k.startswith(OPTIM_PREFIX)}
    prep = meta.get("preprocessing")  # validated by check_description
    return Checkpoint(path=path, model=model, spec=meta["spec"], input_shape=shape,
                      preprocessing=prep,
                      class_names=meta.get("class_names"), epoch=meta.get("epoch"),
                      optimizer_state=optimizer_state, meta=meta)

"""Constant folding for the ONNX importer: evaluate nodes whose inputs are all known arrays.

torch's exporters compute shapes in the graph (``Shape -> Gather -> Unsqueeze -> Concat ->
Reshape`` for ``x.view(x.size(0), -1)``); once every activation's per-sample shape is known
those chains are plain integer arithmetic. ``Shape`` of an activation is evaluated with the
batch set to :data:`PROBE_BATCH`, a prime no CNN size equals, so that a Reshape target can
tell the batch entry from the others.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import numpy as np

#: The batch size Shape(x) reports while folding (see the module docstring).
PROBE_BATCH = 7919

_ONNX_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64, 9: np.bool_,
                10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}


def _axes(attrs: Dict, args: List, position: int) -> Optional[List[int]]:
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    if len(args) > position and args[position] is not None:
        return [int(a) for a in np.asarray(args[position]).reshape(-1)]
    return None


def _slice(args: List, attrs: Dict) -> np.ndarray:
    data = args[0]
    if "starts" in attrs:  # opset < 10
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        starts, ends = args[1], args[2]
        axes = args[3] if len(args) > 3 else None
        steps = args[4] if len(args) > 4 else None
    starts = np.asarray(starts).reshape(-1)
    axes = range(len(starts)) if axes is None else np.asarray(axes).reshape(-1)
    steps = [1] * len(starts) if steps is None else np.asarray(steps).reshape(-1)
    index = [slice(None)] * data.ndim
    for axis, start, end, step in zip(axes, starts, np.asarray(ends).reshape(-1), steps):
        index[int(axis)] = slice(int(start), int(end), int(step))
    return data[tuple(index)]


def _reshape(args: List, attrs: Dict) -> np.ndarray:
    target = [int(v) for v in np.asarray(args[1]).reshape(-1)]
    if not attrs.get("allowzero", 0):
        target = [args[0].shape[i] if v == 0 else v for i, v in enumerate(target)]
    return args[0].reshape(target)


def _div(a, b):
    if np.issubdtype(np.asarray(a).dtype, np.integer):
        return np.trunc(np.asarray(a) / np.asarray(b)).astype(np.asarray(a).dtype)
    return np.asarray(a) / np.asarray(b)


#: op -> f(args, attrs) for the operators folded when all their inputs are constants.
FOLDERS: Dict[str, Callable] = {
    "Identity": lambda a, k: a[0],
    "Cast": lambda a, k: np.asarray(a[0]).astype(_ONNX_DTYPES.get(int(k.get("to", 1)), np.float32)),
    "Gather": lambda a, k: np.take(a[0], np.asarray(a[1]).astype(np.int64), axis=int(k.get("axis", 0))),
    "Unsqueeze": lambda a, k: np.expand_dims(a[0], tuple(sorted(
        ax % (np.ndim(a[0]) + len(_axes(k, a, 1))) for ax in _axes(k, a, 1)))),
    "Squeeze": lambda a, k: np.squeeze(a[0], None if _axes(k, a, 1) is None else tuple(_axes(k, a, 1))),
    "Concat": lambda a, k: np.concatenate([np.atleast_1d(x) for x in a], axis=int(k.get("axis", 0))),
    "Slice": lambda a, k: _slice(a, k),
    "Reshape": _reshape,
    "Transpose": lambda a, k: np.transpose(a[0], k.get("perm")),
    "Add": lambda a, k: np.asarray(a[0] + a[1]),
    "Sub": lambda a, k: np.asarray(a[0] - a[1]),
    "Mul": lambda a, k: np.asarray(a[0] * a[1]),
    "Div": lambda a, k: _div(a[0], a[1]),
    "Neg": lambda a, k: np.negative(a[0]),
    "Sqrt": lambda a, k: np.sqrt(a[0]),
    "Pow": lambda a, k: np.power(a[0], a[1]),
    "Equal": lambda a, k: np.equal(a[0], a[1]),
    "Where": lambda a, k: np.where(a[0], a[1], a[2]),
    "Expand": lambda a, k: a[0] * np.ones([int(v) for v in np.asarray(a[1]).reshape(-1)], a[0].dtype),
    "ConstantOfShape": lambda a, k: np.full([int(v) for v in np.asarray(a[0]).reshape(-1)],
                                            k["value"].reshape(-1)[0] if "value" in k else 0.0,
                                            k["value"].dtype if "value" in k else np.float32),
    "Range": lambda a, k: np.arange(np.asarray(a[0]).item(), np.asarray(a[1]).item(), np.asarray(a[2]).item()),
    "Floor": lambda a, k: np.floor(a[0]),
    "Ceil": lambda a, k: np.ceil(a[0]),
    "Abs": lambda a, k: np.abs(a[0]),
    "Max": lambda a, k: np.maximum.reduce(a),
    "Min": lambda a, k: np.minimum.reduce(a),
}


def fold(op: str, args: List[np.ndarray], attrs: Dict) -> Optional[np.ndarray]:
    """The value of ``op`` on constant ``args``, or None when it is not folded here."""
    folder = FOLDERS.get(op)
    if folder is None:
        return None
    return np.asarray(folder(args, attrs))

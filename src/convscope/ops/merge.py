"""Merge and shape ops: pure functions, forward and backward, on batched arrays.

Axes are those of the batched array (axis 0 is the batch), as in PyTorch. Each backward
takes dL/dy and returns dL/dx for every input; nothing here keeps state.

Broadcasting (add, mul) follows NumPy/PyTorch: shapes are aligned at the right and an axis
of size 1 stretches. The gradient of a broadcast input is dL/dy summed over the axes it was
stretched along (:func:`sum_to_shape`), since each of its elements fed every output there.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

Shape = Tuple[int, ...]


def sum_to_shape(dy: np.ndarray, shape: Shape) -> np.ndarray:
    """Reduce a broadcast gradient to ``shape``: sum over leading axes ``shape`` lacks and over
    axes where ``shape`` has size 1 but ``dy`` does not."""
    extra = dy.ndim - len(shape)
    if extra:
        dy = dy.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, (n, m) in enumerate(zip(shape, dy.shape)) if n == 1 and m != 1)
    if axes:
        dy = dy.sum(axis=axes, keepdims=True)
    return dy.reshape(shape)


def add_forward(xs: Sequence[np.ndarray]) -> np.ndarray:
    """``y = x_0 + x_1 + ... ``, broadcast."""
    y = xs[0]
    for x in xs[1:]:
        y = y + x
    return np.array(y, copy=True) if len(xs) == 1 else y


def add_backward(dy: np.ndarray, shapes: Sequence[Shape]) -> List[np.ndarray]:
    """``dL/dx_i = dL/dy`` summed to x_i's shape."""
    return [np.array(sum_to_shape(dy, tuple(s)), copy=True) for s in shapes]


def mul_forward(xs: Sequence[np.ndarray]) -> np.ndarray:
    """``y = x_0 · x_1 · ...`` element-wise, broadcast."""
    y = xs[0]
    for x in xs[1:]:
        y = y * x
    return np.array(y, copy=True) if len(xs) == 1 else y


def mul_backward(dy: np.ndarray, xs: Sequence[np.ndarray]) -> List[np.ndarray]:
    """``dL/dx_i = dL/dy · Π_{j≠i} x_j``, summed to x_i's shape (products recomputed, not divided,
    so zeros in an input are exact)."""
    out = []
    for i, x in enumerate(xs):
        g = dy
        for j, other in enumerate(xs):
            if j != i:
                g = g * other
        out.append(np.array(sum_to_shape(g, x.shape), copy=True))
    return out


def concat_forward(xs: Sequence[np.ndarray], axis: int) -> np.ndarray:
    return np.concatenate(list(xs), axis=axis)


def split_sizes_offsets(sizes: Sequence[int]) -> List[int]:
    return list(np.cumsum(sizes)[:-1])


def concat_backward(dy: np.ndarray, sizes: Sequence[int], axis: int) -> List[np.ndarray]:
    """dL/dy cut back into the inputs' pieces along ``axis``."""
    return [np.ascontiguousarray(p) for p in np.split(dy, split_sizes_offsets(sizes), axis=axis)]


def split_forward(x: np.ndarray, sizes: Sequence[int], axis: int) -> List[np.ndarray]:
    """Pieces of ``x`` along ``axis`` with the given sizes (copies, so no caller aliases x)."""
    return concat_backward(x, sizes, axis)


def split_backward(dys: Sequence[Optional[np.ndarray]], shapes: Sequence[Shape], axis: int,
                   dtype) -> np.ndarray:
    """Pieces' gradients joined; a piece nobody used (None) contributes zeros."""
    parts = [np.zeros(s, dtype=dtype) if d is None else d for d, s in zip(dys, shapes)]
    return np.concatenate(parts, axis=axis)


def permute_forward(x: np.ndarray, dims: Sequence[int]) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, dims))


def permute_backward(dy: np.ndarray, dims: Sequence[int]) -> np.ndarray:
    """The inverse permutation: axis ``dims[i]`` of x became axis i of y."""
    return np.ascontiguousarray(np.transpose(dy, np.argsort(dims)))


def channel_shuffle(x: np.ndarray, groups: int) -> np.ndarray:
    """ShuffleNet's shuffle: channels viewed as (groups, C/groups), transposed, flattened.
    Output channel ``i·groups + g`` is input channel ``g·(C/groups) + i``."""
    n, c = x.shape[:2]
    y = x.reshape((n, groups, c // groups) + x.shape[2:]).swapaxes(1, 2)
    return np.ascontiguousarray(y).reshape(x.shape)


def channel_shuffle_backward(dy: np.ndarray, groups: int) -> np.ndarray:
    """The shuffle is a permutation; its inverse is the shuffle with C/groups groups."""
    return channel_shuffle(dy, dy.shape[1] // groups)


def pad_widths(pad: Sequence[int], ndim: int) -> List[Tuple[int, int]]:
    """PyTorch's F.pad order (last axis first: left, right, then the axis before...) as
    per-axis (before, after) for an ``ndim``-axis array."""
    widths = [(0, 0)] * ndim
    for i in range(len(pad) // 2):
        widths[ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    return widths


def _crop_and_pad(x: np.ndarray, widths, value: float) -> np.ndarray:
    """Negative widths crop (as in F.pad), positive ones pad with ``value``."""
    crop = tuple(slice(max(-lo, 0), x.shape[i] - max(-hi, 0)) for i, (lo, hi) in enumerate(widths))
    x = x[crop]
    grow = [(max(lo, 0), max(hi, 0)) for lo, hi in widths]
    return np.pad(x, grow, mode="constant", constant_values=value)


def pad_forward(x: np.ndarray, pad: Sequence[int], value: float = 0.0) -> np.ndarray:
    """Constant padding: ``y = x`` surrounded by ``value``."""
    return _crop_and_pad(x, pad_widths(pad, x.ndim), value)


def pad_backward(dy: np.ndarray, pad: Sequence[int]) -> np.ndarray:
    """dL/dx: dL/dy with the padding cut off (a cropped edge gets zeros back)."""
    widths = pad_widths(pad, dy.ndim)
    return np.ascontiguousarray(_crop_and_pad(dy, [(-lo, -hi) for lo, hi in widths], 0.0))


def mean_forward(x: np.ndarray, axes: Tuple[int, ...], keepdim: bool) -> np.ndarray:
    return np.mean(x, axis=axes, keepdims=keepdim)


def mean_backward(dy: np.ndarray, x_shape: Shape, axes: Tuple[int, ...]) -> np.ndarray:
    """Every averaged element gets dL/dy / (number of elements averaged)."""
    count = int(np.prod([x_shape[a] for a in axes]))
    kept = tuple(1 if i in axes else n for i, n in enumerate(x_shape))
    return np.ascontiguousarray(np.broadcast_to(dy.reshape(kept) / count, x_shape))

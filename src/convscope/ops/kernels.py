"""Optional compiled loops (numba) for the forward passes NumPy cannot express in one sweep.

Installed with the ``fast`` extra (``pip install convscope[fast]``). Without numba every op
keeps its NumPy path; with it, :func:`depthwise_forward` replaces the k_h·k_w whole-plane
multiply-adds of a depthwise convolution (two memory passes per kernel offset) by one pass
that reads each input row once per tap and writes each output row once, its planes split
over convscope's threads (:func:`convscope.threads.run_split`).

The loops (in :mod:`convscope.ops._numba_kernels`) compute the definition in
:mod:`convscope.ops.conv`: per output value, the bias plus the taps in the order
a = 0..k_h−1, b = 0..k_w−1 (the NumPy paths add the bias last, so the two differ by
rounding only), reading the zero
padding implicitly (taps outside the input are skipped) instead of copying a padded input.
They are compiled once per dtype with ``cache=True``, so a later process loads the machine
code from numba's cache instead of compiling again.

``AVAILABLE`` says whether numba imported; tests set it to False to check the fallback.
"""
from __future__ import annotations

import importlib.util
from typing import Optional, Tuple

import numpy as np

from ..threads import run_split

#: True when numba is installed (checked without importing it: the import takes ~0.3 s and
#: happens only when a kernel is first used).
AVAILABLE = importlib.util.find_spec("numba") is not None

_compiled = []


def _numba():
    """The module of compiled kernels, :mod:`convscope.ops._numba_kernels` (imported, with
    numba, on first use)."""
    if not _compiled:
        from . import _numba_kernels
        _compiled.append(_numba_kernels)
    return _compiled[0]


def compiled(name: str):
    """The compiled loop ``name`` of :mod:`convscope.ops._numba_kernels` itself, for a caller
    that calls it many times on small arrays (one part, no thread split). Needs numba."""
    return getattr(_numba(), name)


#: Work split over threads comes in parts of at least this many values.
MIN_SPLIT_VALUES = 1 << 16


def _split(kernel, args, total: int, values_per_item: int) -> None:
    """``kernel(*args, start, stop)`` over ``range(total)``, split over convscope's threads in
    parts of at least MIN_SPLIT_VALUES values (below, handing a part to another thread costs
    more than it saves)."""
    if total * values_per_item < 2 * MIN_SPLIT_VALUES:   # one part: no closure, no pool (µs at batch 1)
        kernel(*args, 0, total)
        return
    run_split(lambda start, stop: kernel(*args, start, stop), total,
              min_part=max(1, MIN_SPLIT_VALUES // max(values_per_item, 1)))


def load() -> None:
    """Import numba and load the compiled kernels now rather than at their first use, which
    otherwise pays it: importing numba adds about 67 MB of RSS, and the first call of a
    kernel another 57 MB (LLVM's runtime and the cached machine code), once per process.
    Nothing without numba."""
    if AVAILABLE:
        x = np.zeros((1, 1, 2, 2), np.float32)
        windows_by_offset(x, np.empty((1, 1, 1, 1, 2, 2), np.float32))
        compiled("windows_by_sample")(x, np.empty((1, 1, 1, 1, 2, 2), np.float32), 0, 1)


def depthwise_forward(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray], stride, dilation, pads,
                      out) -> Optional[np.ndarray]:
    """groups = C_in = C_out convolution of the unpadded x (N, C, H, W) with w (C, 1, k_h, k_w):
    a fresh y (N, C, H_out, W_out), bias included; None when numba is absent (the caller then
    takes its NumPy path)."""
    if not AVAILABLE:
        return None
    dtype = np.result_type(x, w)
    x = np.ascontiguousarray(x, dtype=dtype)
    w3 = np.ascontiguousarray(w[:, 0], dtype=dtype)
    bias = np.ascontiguousarray(b, dtype=dtype) if b is not None else np.zeros(x.shape[1], dtype)
    y = np.empty((x.shape[0], x.shape[1]) + tuple(out), dtype=dtype)
    (top, _), (left, _) = pads
    if w3.shape[1:] == (3, 3) and tuple(dilation) == (1, 1):
        kernel = _numba().depthwise3x3
        args = (x, w3, bias, int(stride[0]), int(stride[1]), int(top), int(left), y)
    else:
        kernel = _numba().depthwise
        args = (x, w3, bias, int(stride[0]), int(stride[1]), int(dilation[0]), int(dilation[1]), int(top),
                int(left), y)
    # The planes split over convscope's threads (parts of at least ~64k multiply-adds).
    _split(kernel, args, x.shape[0] * x.shape[1], int(np.prod(out)) * w3.shape[1] * w3.shape[2])
    return y


FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
#: Signed integers as wide as each float (by item size), for selecting values on their bits.
SAME_WIDTH_INT = {2: np.int16, 4: np.int32, 8: np.int64}
#: Element-wise kernels only pay for their call below this many values (NumPy then).
MIN_ELEMENTWISE = 1 << 14

#: Exact element-wise kernels (ReLU, max pooling: the same bits as their NumPy passes) load
#: numba for arrays of at least this many values; once it is loaded (by them or by a
#: convolution), they take any array above their own minimum. Below, a process that never
#: needed numba does not pay its import and runtime (about 0.5 s and 125 MB) for a few
#: milliseconds: the main job's small CNN on 8×8 digits (at most 524K values an array)
#: stayed at 6.2 s, where loading numba for its pools made it 7.4 s.
FIRST_LOAD_MIN_VALUES = 1 << 20


def exact_elementwise(dtype, size: int, min_values: int = MIN_ELEMENTWISE) -> bool:
    """Whether an exact element-wise kernel takes an array of this dtype and size: numba
    installed, float32/float64, at least ``min_values`` values, and numba already loaded or
    the array large enough to load it (:data:`FIRST_LOAD_MIN_VALUES`)."""
    return AVAILABLE and dtype in FLOATS and size >= min_values and (bool(_compiled) or size >= FIRST_LOAD_MIN_VALUES)


def channel_affine(x: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> Optional[np.ndarray]:
    """A fresh ``x·scale[c] + shift[c]`` for x (N, C, *S) in one pass (batch norm at
    inference; NumPy needs two, and a temporary); None without numba or for small x.
    One thread: measured on 2 shared cores, handing half the planes to a second thread cost
    more than it saved even at 1.2M values."""
    if not AVAILABLE or x.size < MIN_ELEMENTWISE or x.ndim < 3 or x.dtype not in FLOATS:
        return None
    x = np.ascontiguousarray(x)
    planes = x.shape[0] * x.shape[1]
    y = np.empty_like(x)
    _numba().channel_affine(x.reshape(planes, -1), scale.astype(x.dtype), shift.astype(x.dtype),
                               y.reshape(planes, -1))
    return y


def batch_norm_train(x: np.ndarray, weight: Optional[np.ndarray], bias: Optional[np.ndarray], eps: float):
    """Batch normalisation of x (N, C, *S) with the batch's statistics in three passes over x
    and no temporaries: ``(x_hat, y, mean, var, inv_std)`` (fresh arrays in x's dtype; var
    biased), or None without numba, for other dtypes or small x. The channels split over
    convscope's threads. NumPy's form makes seven passes and four temporaries (ResNet-18's
    first stage at batch 32, 2M values: 7.7 ms a call on one thread)."""
    if not AVAILABLE or x.size < MIN_ELEMENTWISE or x.ndim < 3 or x.dtype not in FLOATS:
        return None
    n, c = x.shape[:2]
    x3 = np.ascontiguousarray(x).reshape(n, c, -1)
    x_hat, y = np.empty_like(x3), np.empty_like(x3)
    mean, var, inv_std = (np.empty(c, x.dtype) for _ in range(3))
    gamma = np.ones(c, x.dtype) if weight is None else np.ascontiguousarray(weight, x.dtype)
    beta = np.zeros(c, x.dtype) if bias is None else np.ascontiguousarray(bias, x.dtype)
    _split(_numba().batch_norm_train, (x3, gamma, beta, float(eps), x_hat, y, mean, var, inv_std), c,
           x3[:, 0].size)
    return x_hat.reshape(x.shape), y.reshape(x.shape), mean, var, inv_std


def windows_by_offset(xpad: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """cols[c, a, e, n, i, j] = xpad[n, c, i + a, j + e] for the padded input xpad (N, C, H_p, W_p)
    and cols (C, k_h, k_w, N, H_out, W_out): the stride-1 windows, kernel offset by offset
    (the layout of one GEMM over the batch), the (c, a) pairs split over convscope's threads.
    Needs numba (callers check :data:`AVAILABLE`); xpad is made C-contiguous in cols' dtype."""
    xpad = np.ascontiguousarray(xpad, dtype=cols.dtype)
    _split(_numba().windows_by_offset, (xpad, cols), cols.shape[0] * cols.shape[1], cols[0, 0].size)
    return cols


def add_windows_by_offset(dcols: np.ndarray, dxpad: np.ndarray) -> np.ndarray:
    """dxpad[n, c, i + a, j + e] += dcols[c, a, e, n, i, j]: the adjoint of
    :func:`windows_by_offset` (dcols C-contiguous, dxpad (N, C, H_p, W_p) C-contiguous and
    of dcols' dtype), the samples split over convscope's threads. Needs numba."""
    _split(_numba().add_windows_by_offset, (dcols, dxpad), dxpad.shape[0], dxpad[0].size)
    return dxpad


def max_pool_2x2(x: np.ndarray, y: np.ndarray, index: Optional[np.ndarray]) -> np.ndarray:
    """2×2 max pooling with stride 2 and no padding of x (N, C, H, W) into y (N, C, H // 2, W // 2),
    with the window index of each maximum into ``index`` (y's shape) unless it is None, in one
    pass (:func:`convscope.ops._numba_kernels.max_pool_2x2`), the planes split over convscope's
    threads. Needs numba (callers check :data:`AVAILABLE`)."""
    x = np.ascontiguousarray(x)
    record = index is not None
    index = index if record else np.empty((1, 1, 1, 1), np.uint8)
    _split(_numba().max_pool_2x2, (x, y, index, record), x.shape[0] * x.shape[1], x[0, 0].size)
    return y


def max_unpool(dy: np.ndarray, index: np.ndarray, kernel, stride, dilation, padding, dx: np.ndarray) -> np.ndarray:
    """dx (N, C, H, W), written whole, of max pooling: zeros, then each gradient of dy
    (N, C, H_out, W_out) added at the input position its window index names (outputs in
    row-major order, as PyTorch adds them), the planes split over convscope's threads. For
    overlapping windows: NumPy needs a masked pass per kernel offset there (ResNet's 3×3
    stride-2 pool at batch 32, 56² maps: 26 against 8.5 ms). Needs numba."""
    (_, k_w), (s_h, s_w), (d_h, d_w), (top, left) = kernel, stride, dilation, padding
    _split(_numba().max_unpool, (np.ascontiguousarray(dy), np.ascontiguousarray(index), k_w, s_h, s_w, d_h, d_w,
                                 top, left, dx), dx.shape[0] * dx.shape[1], dx[0, 0].size)
    return dx


def relu_forward(x: np.ndarray) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """(max(x, 0), the mask not (x <= 0)) of a float32/float64 x in one pass (fresh arrays), the
    values split over convscope's threads; None without numba, for other dtypes or small x
    (NumPy then; see :func:`exact_elementwise`). LeNet-5's first ReLU at batch 64 (301K
    values), one thread: 0.087 → 0.047 ms."""
    if not exact_elementwise(x.dtype, x.size):
        return None
    x = np.ascontiguousarray(x)
    y, active = np.empty_like(x), np.empty(x.shape, np.bool_)
    _split(_numba().relu_forward, (x.reshape(-1), y.reshape(-1), active.reshape(-1).view(np.int8)), x.size, 1)
    return y, active


def select(dy: np.ndarray, active: np.ndarray) -> Optional[np.ndarray]:
    """A fresh ``dy where active else +0`` (``active`` boolean, dy's shape) on the bits of dy, in
    one pass split over convscope's threads; None without numba, for other dtypes or small dy.
    The backward of ReLU-like layers: 0.127 → 0.047 ms for 301K values, one thread."""
    if not exact_elementwise(dy.dtype, dy.size) or active.shape != dy.shape:
        return None
    bits = SAME_WIDTH_INT[dy.dtype.itemsize]
    dy = np.ascontiguousarray(dy)
    dx = np.empty_like(dy)
    _split(_numba().select_bits, (dy.reshape(-1).view(bits), np.ascontiguousarray(active).reshape(-1).view(np.int8),
                                  dx.reshape(-1).view(bits)), dy.size, 1)
    return dx

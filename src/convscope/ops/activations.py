"""Element-wise activations and softmax: forward and backward, any array shape.

Notation
--------
x input, y output (same shape), dy = dL/dy, dx = dL/dx; products are element-wise.

=============  ==============================  ============================================
op             forward                         backward
=============  ==============================  ============================================
relu           y = max(x, 0)                   dx = dy·[x > 0]          (NaN: dy, as PyTorch)
relu6          y = min(max(x, 0), 6)           dx = dy·[0 < x < 6]      (NaN: dy, as PyTorch)
leaky_relu     y = x if x > 0 else a·x         dx = dy·(1 if x > 0 else a)
sigmoid        y = 1 / (1 + e^(−x))            dx = dy·y·(1 − y)
tanh           y = tanh(x)                     dx = dy·(1 − y²)
softmax        y_j = e^(x_j) / Σ_k e^(x_k)     dx_j = y_j·(dy_j − Σ_k dy_k·y_k)
hardsigmoid    y = min(max(x + 3, 0), 6) / 6   dx = dy/6·[−3 < x < 3]
hardswish      y = x·hardsigmoid(x)            dx = dy·(0 if x <= −3, x/3 + ½ if x < 3, else 1)
silu           y = x·σ(x)                      dx = dy·σ(x)·(1 + x·(1 − σ(x)))
gelu           y = x·Φ(x) = ½x(1 + erf(x/√2))  dx = dy·(Φ(x) + x·φ(x)),  φ(x) = e^(−x²/2)/√(2π)
gelu (tanh)    y = ½x(1 + tanh u),             dx = dy·(½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3c·x²))
               u = √(2/π)(x + c·x³), c = 0.044715, t = tanh u
=============  ==============================  ============================================

At the kinks the derivative is taken from the side PyTorch uses, so gradients match it
exactly: relu and relu6 give 0 at x = 0 (and relu6 at x = 6), leaky_relu gives ``a`` at 0,
hardsigmoid and hardswish take the outer side at ±3 (hardsigmoid 0 at both, hardswish 0 at
−3 and 1 at 3, as PyTorch).
Each ``*_forward`` returns ``(y, cache)``; each ``*_backward(dy, cache)`` returns ``dx``.
The caches hold only what backward needs (a boolean mask, or the output y).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from . import kernels
from .parallel import over_batch
from .workspace import Workspace, scratch, transient

#: np.maximum against a broadcast scalar runs a slow scalar loop; against a contiguous block of
#: zeros it vectorises, so the input is walked in rows of this many values.
_CHUNK = 16384
_ZEROS: dict = {}


def _zeros(dtype: np.dtype) -> np.ndarray:
    zeros = _ZEROS.get(dtype)
    if zeros is None:
        zeros = np.zeros(_CHUNK, dtype)
        zeros.flags.writeable = False
        _ZEROS[dtype] = zeros
    return zeros


def _max_with_zero(x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """``max(x, 0)`` (NaN stays NaN) for a C-contiguous float array, into a fresh array (or
    into ``out``, C-contiguous, of x's shape and dtype)."""
    y = np.empty(x.shape, x.dtype) if out is None else out
    flat_x, flat_y, zeros = x.reshape(-1), y.reshape(-1), _zeros(x.dtype)
    n = flat_x.size
    whole = n - n % _CHUNK
    if whole:
        np.maximum(flat_x[:whole].reshape(-1, _CHUNK), zeros, out=flat_y[:whole].reshape(-1, _CHUNK))
    if n > whole:
        np.maximum(flat_x[whole:], zeros[:n - whole], out=flat_y[whole:])
    return y


def _select(dy: np.ndarray, active: np.ndarray, ws: Optional[Workspace] = None) -> np.ndarray:
    """``dy where active else +0`` for a boolean ``active``, into a fresh array.

    The mask is widened to words of dy's width (−1: all bits set, or 0) in a reused work
    buffer, and ANDed with dy's bits: exact like PyTorch's select (an inf or NaN in dy at an
    inactive position gives 0, where a multiply by 0/1 would give NaN), and vectorised, where
    ``np.where`` on an irregular mask is an order of magnitude slower."""
    compiled = kernels.select(dy, active)   # numba's one pass, when installed and dy is big
    if compiled is not None:
        return compiled
    bits_type = kernels.SAME_WIDTH_INT.get(dy.dtype.itemsize)
    if bits_type is None or active.shape != dy.shape:
        return np.where(active, dy, dy.dtype.type(0))
    bits = transient(ws, "activation.bits", dy.shape, bits_type)   # backward only: model-wide
    dx = np.empty(dy.shape, dy.dtype)
    if dy.ndim == 0:
        dy, active, bits, dx_rows = dy.reshape(1), active.reshape(1), bits.reshape(1), dx.reshape(1)
    else:
        dx_rows = dx

    def rows(lo: int, hi: int) -> None:   # both cores on big arrays (ops/parallel.py)
        np.negative(active[lo:hi].view(np.int8), out=bits[lo:hi], casting="unsafe")
        np.bitwise_and(dy[lo:hi].view(bits_type), bits[lo:hi], out=dx_rows[lo:hi].view(bits_type))

    over_batch(rows, dy.shape[0], dy[:1].size)
    return dx


def _not(mask: np.ndarray) -> np.ndarray:
    return np.logical_not(mask, out=mask)


def relu_forward(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The cache is the boolean mask ``not (x <= 0)``: x > 0, and NaN, whose gradient PyTorch
    passes through (one byte per value)."""
    x = np.ascontiguousarray(x)
    if x.dtype.kind != "f":
        return np.maximum(x, 0), x > 0
    compiled = kernels.relu_forward(x)   # one pass instead of three, when numba is installed
    if compiled is not None:
        return compiled
    return _max_with_zero(x), _not(np.less_equal(x, 0))


def relu(x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """``max(x, 0)`` alone (inference: no mask for backward); ``out``: where to write it (a
    float x's shape and dtype, C-contiguous), else a fresh array."""
    x = np.ascontiguousarray(x)
    return _max_with_zero(x, out) if x.dtype.kind == "f" else np.maximum(x, 0)


def relu_backward(dy: np.ndarray, active: np.ndarray, workspace: Optional[Workspace] = None) -> np.ndarray:
    """dL/dx = dy where x > 0 (or NaN) else 0; ``workspace`` (the layer's) holds the mask words."""
    return _select(np.asarray(dy), active, workspace)


def relu6_forward(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    active = _not((x <= 0) | (x >= 6))  # NaN passes its gradient, as in PyTorch
    return np.clip(x, 0, 6).astype(x.dtype, copy=False), active


def relu6(x: np.ndarray) -> np.ndarray:
    """``min(max(x, 0), 6)`` alone (inference: no mask for backward; NaN stays NaN)."""
    # One pass (np.minimum against a scalar after _max_with_zero ran 3× slower).
    return np.clip(x, 0, 6)


def relu6_backward(dy: np.ndarray, active: np.ndarray, workspace: Optional[Workspace] = None) -> np.ndarray:
    return _select(np.asarray(dy), active, workspace)


def leaky_relu_forward(x: np.ndarray, negative_slope: float = 0.01) -> Tuple[np.ndarray, tuple]:
    positive = x > 0
    y = np.where(positive, x, x * negative_slope).astype(x.dtype, copy=False)
    return y, (positive, negative_slope)


def leaky_relu_backward(dy: np.ndarray, cache: tuple) -> np.ndarray:
    positive, negative_slope = cache
    return np.where(positive, dy, dy * negative_slope).astype(dy.dtype, copy=False)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow: e^(−|x|) never exceeds 1, and for x < 0 the
    equal form e^x / (1 + e^x) is used."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid_forward(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    y = sigmoid(x)
    return y, y


def sigmoid_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    return dy * y * (1 - y)


def tanh_forward(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    y = np.tanh(x)
    return y, y


def tanh_backward(dy: np.ndarray, y: np.ndarray) -> np.ndarray:
    return dy * (1 - y * y)


def softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    """Softmax along ``axis``. Subtracting the maximum first leaves the result unchanged
    (it cancels between numerator and denominator) and keeps every exponent <= 0."""
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    """``log softmax(x) = x − max − log Σ e^(x − max)`` (log-sum-exp), never log of 0."""
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def softmax_forward(x: np.ndarray, axis: int = 1) -> Tuple[np.ndarray, tuple]:
    y = softmax(x, axis)
    return y, (y, axis)


def softmax_backward(dy: np.ndarray, cache: tuple) -> np.ndarray:
    # The Jacobian is diag(y) − y·yᵀ along the axis; applied to dy without forming it.
    y, axis = cache
    return y * (dy - np.sum(dy * y, axis=axis, keepdims=True))


# ----- hard and smooth gates (MobileNetV3, EfficientNet, ConvNeXt) -----------------------------

def hardsigmoid_forward(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    y = (np.clip(x + 3, 0, 6) / 6).astype(x.dtype, copy=False)
    return y, x


def hardsigmoid_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    inside = (x > -3) & (x < 3)
    return np.where(inside, dy / 6, 0).astype(dy.dtype, copy=False)


def hardswish_forward(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    y = (x * np.clip(x + 3, 0, 6) / 6).astype(x.dtype, copy=False)
    return y, x


def hardswish_backward(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    slope = np.where(x <= -3, 0.0, np.where(x < 3, x / 3 + 0.5, 1.0))
    return (dy * slope).astype(dy.dtype, copy=False)


def silu_forward(x: np.ndarray) -> Tuple[np.ndarray, tuple]:
    s = sigmoid(x)
    return x * s, (x, s)


def silu_backward(dy: np.ndarray, cache: tuple) -> np.ndarray:
    x, s = cache
    return dy * s * (1 + x * (1 - s))


#: The constants of GELU's tanh approximation (Hendrycks & Gimpel 2016), as in PyTorch.
_GELU_C = 0.044715
_SQRT_2_OVER_PI = float(np.sqrt(2 / np.pi))


def gelu_forward(x: np.ndarray, approximate: str = "none") -> Tuple[np.ndarray, tuple]:
    """``approximate="none"``: the exact ½x(1 + erf(x/√2)); ``"tanh"``: the tanh form."""
    if approximate == "tanh":
        t = np.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x ** 3))
        return (0.5 * x * (1 + t)).astype(x.dtype, copy=False), (x, t, approximate)
    from scipy.special import erf  # scipy comes with scikit-learn, a core dependency

    cdf = 0.5 * (1 + erf(x / np.sqrt(2)))
    return (x * cdf).astype(x.dtype, copy=False), (x, cdf, approximate)


def gelu_backward(dy: np.ndarray, cache: tuple) -> np.ndarray:
    x, value, approximate = cache
    if approximate == "tanh":
        t = value
        slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * _GELU_C * x * x)
    else:
        slope = value + x * np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi)
    return (dy * slope).astype(dy.dtype, copy=False)

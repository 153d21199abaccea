"""Normalisation ops: batch, layer and local response normalisation, and per-channel scale.

Pure functions, no state: each ``*_forward`` returns ``(y, cache)`` and the matching
``*_backward(dy, cache)`` returns the gradients. Channels are axis 1 (NCL, NCHW, ...).

Notation
--------
N batch size, C channels, S the spatial positions of one channel (L, or H·W),
m = N·|S| values per channel, a_c / x input, y output, g = dL/dy the upstream gradient,
γ weight (scale), β bias (shift), ε eps, μ_c and σ²_c batch mean and biased variance of
channel c, ρ momentum, k, α, β_lrn and n (size) the LRN constants.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from ..errors import ConvscopeError
from . import kernels
from .parallel import over_batch


def _channel_axes(x: np.ndarray) -> Tuple[int, ...]:
    """Every axis except the channel axis (1): the axes batch statistics reduce over."""
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v: np.ndarray, ndim: int) -> np.ndarray:
    """Shape a (C,) vector to broadcast against an (N, C, *S) array."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


# ----- batch normalisation --------------------------------------------------------------------

def batch_norm_forward(x: np.ndarray, weight: Optional[np.ndarray], bias: Optional[np.ndarray],
                       running_mean: Optional[np.ndarray], running_var: Optional[np.ndarray],
                       training: bool, eps: float = 1e-5) -> Tuple[np.ndarray, Dict]:
    """Batch normalisation of ``x`` (N, C, *S) per channel.

    Forward, with statistics from the batch (``training=True``)::

        μ_c  = (1/m) Σ_{n,s} x_{n,c,s}
        σ²_c = (1/m) Σ_{n,s} (x_{n,c,s} − μ_c)²          (biased: divides by m)
        x̂    = (x − μ_c) / sqrt(σ²_c + ε)
        y    = γ_c · x̂ + β_c

    With ``training=False`` the running estimates replace μ_c and σ²_c. A missing ``weight``
    or ``bias`` (affine=False) means γ = 1, β = 0.

    Output: same shape as ``x``. The cache holds x̂, 1/sqrt(σ² + ε), γ and, in training,
    the batch ``mean``, biased ``var`` and ``count`` m (for the running-average update).
    Training statistics come from :func:`convscope.ops.kernels.batch_norm_train` when numba
    is installed (float64 sums; NumPy's path below sums in x's dtype): equal up to rounding.
    """
    if training:
        count = x.size // x.shape[1]
        if count < 2:
            raise ConvscopeError(
                f"batch normalisation in training mode needs more than one value per channel, got an "
                f"input of shape {x.shape}; use a batch of at least 2 or run it in eval mode")
        # numba's three passes without temporaries (float64 sums), when installed
        fused = kernels.batch_norm_train(x, weight, bias, eps) if weight is None or weight.dtype == x.dtype \
            else None
        if fused is None:
            axes = _channel_axes(x)
            mean = x.mean(axis=axes)
            centred = x - _per_channel(mean, x.ndim)
            var = np.mean(centred * centred, axis=axes)
    else:
        if running_mean is None or running_var is None:
            raise ConvscopeError("batch normalisation in eval mode needs running statistics; "
                                 "pass running_mean and running_var or use training=True")
        fused, count, mean, var = None, None, running_mean, running_var
        centred = x - _per_channel(mean, x.ndim)
    if fused is not None:
        x_hat, y, mean, var, inv_std = fused
    else:
        inv_std = 1.0 / np.sqrt(var + eps)
        x_hat = centred * _per_channel(inv_std, x.ndim)
        y = x_hat if weight is None else x_hat * _per_channel(weight, x.ndim)
        if bias is not None:
            y = y + _per_channel(bias, x.ndim)
    cache = {"x_hat": x_hat, "inv_std": inv_std, "weight": weight, "training": training,
             "affine": (weight is not None, bias is not None)}
    if training:
        cache.update(mean=mean, var=var, count=count)
    return y, cache


def batch_norm_inference(x: np.ndarray, weight: Optional[np.ndarray], bias: Optional[np.ndarray],
                         running_mean: np.ndarray, running_var: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """The eval-mode forward of :func:`batch_norm_forward` with nothing kept for backward, as
    one scale and one shift per channel (two passes over x instead of four)::

        y = x · a_c + b_c,   a_c = γ_c / sqrt(σ²_c + ε),   b_c = β_c − μ_c · a_c

    Equal to the step-by-step form up to rounding (PyTorch's CPU inference folds it alike)."""
    # a_c and b_c in float64 (C values), then the two passes in x's dtype.
    scale = 1.0 / np.sqrt(np.asarray(running_var, np.float64) + eps)
    if weight is not None:
        scale = scale * weight
    shift = -np.asarray(running_mean, np.float64) * scale
    if bias is not None:
        shift = shift + bias
    dtype = np.result_type(x, running_var)
    if x.dtype == dtype:
        y = kernels.channel_affine(x, scale, shift)   # one pass with numba
        if y is not None:
            return y
    y = np.multiply(x, _per_channel(scale.astype(dtype, copy=False), x.ndim), dtype=dtype)
    y += _per_channel(shift.astype(dtype, copy=False), x.ndim)
    return y


def batch_norm_backward(dy: np.ndarray, cache: Dict
                        ) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """Gradients ``(dx, dγ, dβ)`` of batch normalisation (``dγ``/``dβ`` are None without affine).

    Backward, common to both modes::

        dβ_c = Σ_{n,s} g            dγ_c = Σ_{n,s} g · x̂            ĝ = g · γ_c

    Eval mode (μ, σ² are constants)::

        dx = ĝ / sqrt(σ²_c + ε)

    Training mode (μ and σ² depend on every x of the channel)::

        dx = (1/m) / sqrt(σ²_c + ε) · (m·ĝ − Σ_{n,s} ĝ − x̂ · Σ_{n,s} ĝ·x̂)

    Computed as dx = a_c·g + b_c·x̂ + c_c with a_c = γ_c/sqrt(σ²_c + ε), b_c = −a_c·dγ_c/m,
    c_c = −a_c·dβ_c/m (Σ ĝ = γ_c·dβ_c and Σ ĝ·x̂ = γ_c·dγ_c): two reductions and one fused
    pass over the batch, split over the cores (:func:`convscope.ops.parallel.over_batch`).
    """
    x_hat, inv_std, weight = cache["x_hat"], cache["inv_std"], cache["weight"]
    has_weight, has_bias = cache["affine"]
    n, c = dy.shape[:2]
    dtype = np.result_type(dy, x_hat)
    g3 = np.ascontiguousarray(dy).reshape(n, c, -1)
    a = inv_std if weight is None else weight * inv_std
    dx = np.empty(g3.shape, dtype)
    if not cache["training"]:
        a3 = a.reshape(1, c, 1)
        over_batch(lambda lo, hi: np.multiply(g3[lo:hi], a3, out=dx[lo:hi]), n, g3[0].size)
        d_bias = g3.sum(axis=2).sum(axis=0) if has_bias else None
        d_weight = _channel_dot(g3, x_hat.reshape(n, c, -1)) if has_weight else None
        return dx.reshape(dy.shape), d_weight, d_bias
    x3 = x_hat.reshape(n, c, -1)
    sum_g = g3.sum(axis=2).sum(axis=0)              # dβ
    sum_gx = _channel_dot(g3, x3)                   # dγ
    m = cache["count"]
    a3 = a.reshape(1, c, 1).astype(dtype, copy=False)
    b3 = (-a * sum_gx / m).reshape(1, c, 1).astype(dtype, copy=False)
    c3 = (-a * sum_g / m).reshape(1, c, 1).astype(dtype, copy=False)

    def fused(lo: int, hi: int) -> None:
        out = dx[lo:hi]
        np.multiply(g3[lo:hi], a3, out=out)
        out += c3
        out += x3[lo:hi] * b3

    over_batch(fused, n, g3[0].size)
    return dx.reshape(dy.shape), (sum_gx if has_weight else None), (sum_g if has_bias else None)


def _channel_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Σ_{n,s} a[n, c, s]·b[n, c, s] per channel c, for a and b (N, C, S): one dot product per
    (n, c) row, no (N, C, S) temporary."""
    return np.matmul(a[:, :, None, :], b[:, :, :, None]).reshape(a.shape[:2]).sum(axis=0)


def running_stats_update(running_mean: np.ndarray, running_var: np.ndarray, batch_mean: np.ndarray,
                         batch_var: np.ndarray, count: int, factor: float
                         ) -> Tuple[np.ndarray, np.ndarray]:
    """New running estimates after one training batch (PyTorch's rule), as new arrays.

    The variance fed to the running average is the UNBIASED one, σ²·m/(m − 1), although the
    forward pass normalises with the biased σ²::

        running_mean ← (1 − f) · running_mean + f · μ
        running_var  ← (1 − f) · running_var  + f · σ² · m / (m − 1)

    ``f`` is the momentum ρ, or 1/t after the t-th batch for a cumulative average
    (momentum=None).
    """
    unbiased = batch_var * (count / (count - 1))
    new_mean = (1.0 - factor) * running_mean + factor * batch_mean
    new_var = (1.0 - factor) * running_var + factor * unbiased
    return new_mean, new_var


# ----- local response normalisation -----------------------------------------------------------

def _window_sum(v: np.ndarray, below: int, above: int) -> np.ndarray:
    """Σ_{c'=c−below}^{c+above} v_{c'} along axis 1, the window clipped to 0..C−1.

    Vectorised with a cumulative sum P (P_0 = 0, P_{i+1} = P_i + v_i):
    the window sum is P_{min(c+above+1, C)} − P_{max(c−below, 0)}.
    """
    channels = v.shape[1]
    zero = np.zeros_like(v[:, :1])
    prefix = np.concatenate([zero, np.cumsum(v, axis=1)], axis=1)
    c = np.arange(channels)
    hi = np.minimum(c + above + 1, channels)
    lo = np.maximum(c - below, 0)
    return np.take(prefix, hi, axis=1) - np.take(prefix, lo, axis=1)


def lrn_forward(x: np.ndarray, size: int, alpha: float = 1e-4, beta: float = 0.75,
                k: float = 1.0) -> Tuple[np.ndarray, Dict]:
    """Local response normalisation across channels (PyTorch's convention).

    Forward, for an input (N, C, *S) and every position::

        D_c = k + (α/n) · Σ_{c'=c−⌊n/2⌋}^{c+⌊(n−1)/2⌋} a_{c'}²     (c' clipped to 0..C−1)
        b_c = a_c · D_c^(−β_lrn)

    α is divided by the window size n, as in PyTorch (not in Krizhevsky et al. 2012's
    formula, which uses α alone); the zero padding of the window is still divided by n.

    Output: same shape as ``x``.
    """
    squares = x * x
    denominator = k + (alpha / size) * _window_sum(squares, size // 2, (size - 1) // 2)
    scale = denominator ** (-beta)
    y = x * scale
    return y, {"x": x, "denominator": denominator, "scale": scale, "size": size,
               "alpha": alpha, "beta": beta}


def lrn_backward(dy: np.ndarray, cache: Dict) -> np.ndarray:
    """dL/dx of local response normalisation.

    Channel j appears in the window of every c with j − ⌊(n−1)/2⌋ ≤ c ≤ j + ⌊n/2⌋ (the window
    reflected), so::

        dL/da_j = g_j · D_j^(−β) − (2αβ/n) · a_j · Σ_{c ∋ j} g_c · a_c · D_c^(−β−1)

    The reflected window sum uses the same cumulative-sum trick as the forward pass.
    """
    x, denominator, scale = cache["x"], cache["denominator"], cache["scale"]
    size, alpha, beta = cache["size"], cache["alpha"], cache["beta"]
    inner = dy * x * scale / denominator
    spread = _window_sum(inner, (size - 1) // 2, size // 2)
    return dy * scale - (2.0 * alpha * beta / size) * x * spread


# ----- layer normalisation --------------------------------------------------------------------

def _sum_to(v: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """Sum ``v`` over the axes along which an array of broadcast ``shape`` (same rank) was repeated."""
    axes = tuple(i for i, (n, m) in enumerate(zip(v.shape, shape)) if m == 1 and n != 1)
    return v.sum(axis=axes, keepdims=True) if axes else v


def layer_norm_forward(x: np.ndarray, weight: Optional[np.ndarray], bias: Optional[np.ndarray],
                       axes: Tuple[int, ...], eps: float = 1e-5) -> Tuple[np.ndarray, Dict]:
    """Layer normalisation of each sample over ``axes`` (statistics per sample, not per batch).

    With m the number of values in ``axes``::

        μ   = (1/m) Σ_axes x,   σ² = (1/m) Σ_axes (x − μ)²     (biased, as PyTorch)
        x̂   = (x − μ) / sqrt(σ² + ε)
        y   = γ·x̂ + β

    ``weight`` γ and ``bias`` β (either may be None) are given in a shape that broadcasts
    against x: ``(1, C, 1, 1)`` for the channel axis of NCHW (ConvNeXt's LayerNorm2d), the
    normalised trailing shape for ``torch.nn.LayerNorm``. Output: same shape as x. Training
    and inference compute the same thing (no running statistics).
    """
    mean = x.mean(axis=axes, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = centred * inv_std
    y = x_hat if weight is None else x_hat * weight
    if bias is not None:
        y = y + bias
    cache = {"x_hat": x_hat, "inv_std": inv_std, "axes": tuple(axes), "weight": weight,
             "bias_shape": None if bias is None else bias.shape}
    return y.astype(x.dtype, copy=False), cache


def layer_norm_backward(dy: np.ndarray, cache: Dict) -> Tuple[np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """Gradients ``(dx, dγ, dβ)`` of :func:`layer_norm_forward` (dγ, dβ in γ's and β's shapes,
    None when absent)::

        dβ = Σ_{other axes} g,    dγ = Σ_{other axes} g·x̂,    dx̂ = g·γ
        dx = (1/sqrt(σ² + ε))·(dx̂ − mean_axes(dx̂) − x̂·mean_axes(dx̂·x̂))
    """
    x_hat, inv_std, axes, weight = cache["x_hat"], cache["inv_std"], cache["axes"], cache["weight"]
    d_hat = dy if weight is None else dy * weight
    dx = inv_std * (d_hat - d_hat.mean(axis=axes, keepdims=True)
                    - x_hat * np.mean(d_hat * x_hat, axis=axes, keepdims=True))
    d_weight = None if weight is None else _sum_to(dy * x_hat, (1,) * (dy.ndim - weight.ndim) + weight.shape)
    d_bias = None
    if cache["bias_shape"] is not None:
        shape = cache["bias_shape"]
        d_bias = _sum_to(dy, (1,) * (dy.ndim - len(shape)) + tuple(shape)).reshape(shape)
    if d_weight is not None:
        d_weight = d_weight.reshape(weight.shape)
    return dx.astype(dy.dtype, copy=False), d_weight, d_bias


# ----- per-channel scale (layer scale) ---------------------------------------------------------

def channel_scale_forward(x: np.ndarray, gamma: np.ndarray) -> Tuple[np.ndarray, tuple]:
    """``y[n, c, ...] = γ[c]·x[n, c, ...]`` with γ of shape (C, 1, ..., 1) (one 1 per spatial
    axis, as torchvision's ConvNeXt ``layer_scale``) broadcasting over the sample."""
    return x * gamma, (x, gamma)


def channel_scale_backward(dy: np.ndarray, cache: tuple) -> Tuple[np.ndarray, np.ndarray]:
    """``dx = γ·g`` and ``dγ[c] = Σ_{n, positions} g·x`` (shaped like γ)."""
    x, gamma = cache
    d_gamma = _sum_to(dy * x, (1,) + gamma.shape).reshape(gamma.shape)
    return dy * gamma, d_gamma

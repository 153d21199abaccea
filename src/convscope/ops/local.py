"""Locally connected 2-D layer (unshared convolution): forward and backward.

Like a convolution, each output unit sees one k_h×k_w window of all input channels; unlike a
convolution, every output position has its own filter and its own bias (no weight sharing;
Keras's ``LocallyConnected2D``). Seed 003's example: a 55×55×96 output with 11×11×3 windows
needs 55·55·96·(11·11·3 + 1) = 105,705,600 parameters, against 96·(11·11·3 + 1) = 34,944 shared.

Notation:
    x (N, C, H, W) input, padding ((p_top, p_bottom), (p_left, p_right)), stride s,
    xpad the padded input, H_out×W_out output positions (the convolution rule, dilation 1),
    w (C_out, H_out, W_out, C, k_h, k_w) one filter per output unit, b (C_out, H_out, W_out),
    y (N, C_out, H_out, W_out).

Forward::

    y[n, o, i, j] = b[o, i, j] + Σ_{c, a, e} xpad[n, c, i·s_h + a, j·s_w + e] · w[o, i, j, c, a, e]

Backward (each weight is used once per sample, so only the batch is summed)::

    dL/dw[o, i, j] = Σ_n window(n, i, j) · dy[n, o, i, j]
    dL/db[o, i, j] = Σ_n dy[n, o, i, j]
    dL/dxpad       : window (i, j) receives Σ_o w[o, i, j] · dy[n, o, i, j]; crop the padding.

Computation: the windows are copied once into ``cols`` (P, K, N), P = H_out·W_out positions,
K = C·k_h·k_w; the weight viewed as (P, C_out, K) makes the forward pass one batched matrix
product over positions, ``(P, C_out, K) @ (P, K, N)``; backward uses the same two products
transposed and the strided col2im of :mod:`convscope.ops.im2col`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..errors import ConvscopeError
from .conv import _output_size, _pads2d, _pair
from .im2col import col2im_add, pad2d, unpad2d, window_view

__all__ = ["locally_connected2d_forward", "locally_connected2d_backward"]

_NAME = "locally_connected2d"


@dataclass
class LocalCache:
    """What backward needs from the last forward pass."""

    x_shape: Tuple[int, ...]
    w: np.ndarray
    has_bias: bool
    stride: Tuple[int, int]
    pads: Tuple[Tuple[int, int], Tuple[int, int]]
    cols: np.ndarray  # (P, K, N)


def locally_connected2d_forward(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray] = None,
                                stride=1, padding=0):
    """Unshared convolution of x (N, C, H, W) with w (C_out, H_out, W_out, C, k_h, k_w).

    ``padding`` is an int, ``(p_h, p_w)`` or ``((top, bottom), (left, right))``. Returns
    ``(y, cache)``, y of shape (N, C_out, H_out, W_out).
    """
    x, w = np.asarray(x), np.asarray(w)
    b = None if b is None else np.asarray(b)
    if x.ndim != 4 or w.ndim != 6:
        raise ConvscopeError(f"{_NAME} expects a 4-D input (N, C, H, W) and a 6-D weight "
                             f"(C_out, H_out, W_out, C, k_h, k_w), got shapes {x.shape} and {w.shape}")
    for label, array in (("input", x), ("weight", w)):
        if not np.issubdtype(array.dtype, np.floating):
            raise ConvscopeError(f"{_NAME} expects a floating-point {label}, got {array.dtype}; "
                                 "convert it with .astype(np.float32)")
    stride, pads = _pair(stride, "stride"), _pads2d(padding)
    c_out, kernel = w.shape[0], w.shape[4:]
    out = _output_size(_NAME, x.shape, kernel, stride, pads, (1, 1))
    expected = (c_out, *out, x.shape[1], *kernel)
    if w.shape != expected:
        raise ConvscopeError(f"{_NAME}: for input {x.shape[1:]} the weight must have shape {expected}, "
                             f"got {w.shape}")
    if b is not None and b.shape != (c_out, *out):
        raise ConvscopeError(f"{_NAME}: bias must have shape {(c_out, *out)}, got {b.shape}")
    n_batch = x.shape[0]
    positions, k = out[0] * out[1], x.shape[1] * kernel[0] * kernel[1]
    windows = window_view(pad2d(x, pads), kernel, stride, (1, 1), out)  # (N, C, k_h, k_w, H_out, W_out)
    cols = np.ascontiguousarray(windows.transpose(4, 5, 1, 2, 3, 0)).reshape(positions, k, n_batch)
    w_p = w.reshape(c_out, positions, k).transpose(1, 0, 2)  # (P, C_out, K), a view
    y = np.matmul(w_p, cols).transpose(2, 1, 0).reshape(n_batch, c_out, *out)
    if b is not None:
        y += b
    return y, LocalCache(x.shape, w, b is not None, stride, pads, cols)


def locally_connected2d_backward(dy: np.ndarray, cache: LocalCache):
    """Gradients ``(dx, dw, db)``; db is None when the forward pass had no bias."""
    dy = np.asarray(dy)
    w, cols = cache.w, cache.cols
    positions, k, n_batch = cols.shape
    c_out = w.shape[0]
    h_out, w_out = dy.shape[2:]
    db = dy.sum(axis=0) if cache.has_bias else None
    dy_p = np.ascontiguousarray(dy.reshape(n_batch, c_out, positions).transpose(2, 1, 0))  # (P, C_out, N)
    dw = np.matmul(dy_p, cols.transpose(0, 2, 1)).transpose(1, 0, 2).reshape(w.shape)
    w_p = w.reshape(c_out, positions, k).transpose(1, 0, 2)
    dcols = np.matmul(w_p.transpose(0, 2, 1), dy_p)  # (P, K, N)
    n, c_in, height, width = cache.x_shape
    k_h, k_w = w.shape[4:]
    dwindows = dcols.reshape(h_out, w_out, c_in, k_h, k_w, n).transpose(5, 2, 3, 4, 0, 1)
    (top, bottom), (left, right) = cache.pads
    dxpad = np.zeros((n, c_in, height + top + bottom, width + left + right), dtype=dcols.dtype)
    col2im_add(dxpad, dwindows, cache.stride, (1, 1))
    dx = unpad2d(dxpad, cache.pads)
    return (np.ascontiguousarray(dx) if dx is not dxpad else dx), dw, db

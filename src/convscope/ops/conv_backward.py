"""Faster kernels for the backward pass of convolution (the equations are in :mod:`convscope.ops.conv`).

Weight gradient from window matrices. With the windows of sample n as ``cols[n, g]`` (K, P)
(K = C_g·k_h·k_w values per window, P output positions) and the deltas ``dy[n, g]`` (O, P)
(O = C_out/G output channels of group g)::

    dW[g] = Σ_n dy[n, g] · cols[n, g]ᵀ        (O, K)

Two ways to compute the same sum (:func:`weight_grad`):

* per sample: N products of O×P by P×K, then a sum over n. No copy of the inputs, but each
  product is a full O×K matrix: N·O·K values written and summed, and when P is small each
  product is a thin rank-P update that BLAS runs far below its peak.
* one GEMM over batch × positions: cols copied to (G, K, N·P) and dy to (G, O, N·P)
  (N·P·(K + O) values moved), then a single (O × N·P)·(N·P × K) product.

The second moves less when O·K > P·(K + O), i.e. when 1/P > 1/O + 1/K: the strided and 1×1
layers deep in a network (ResNet-18's stage 4 on 32×32 inputs: P = 1, O = 512, K = 2304 —
per sample that was 32 rank-1 products of 512×2304 each). With P = 1 (or N = 1) the
positions and samples already form one axis in memory and no copy is needed at all.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .workspace import Workspace, transient

__all__ = ["weight_grad", "one_gemm_wins"]


def one_gemm_wins(out_channels: int, depth: int, positions: int) -> bool:
    """Whether one GEMM over batch × positions moves fewer values than per-sample products:
    O·K > P·(K + O) (see the module notes)."""
    return out_channels * depth > positions * (depth + out_channels)


def _sum_per_sample(dy: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Σ_n dy[n] @ cols[n]ᵀ in batch chunks, so the per-sample products never take more
    than ~32 MB at once. dy (N, G, O, P), cols (N, G, K, P) -> (G, O, K)."""
    n, g, o = dy.shape[:3]
    k = cols.shape[2]
    chunk = max(1, min(n, (32 << 20) // max(g * o * k * dy.itemsize, 1)))
    total = None
    for start in range(0, n, chunk):
        part = np.matmul(dy[start:start + chunk], cols[start:start + chunk].transpose(0, 1, 3, 2)).sum(axis=0)
        total = part if total is None else total + part
    return total


def weight_grad(dy: np.ndarray, cols: np.ndarray, ws: Optional[Workspace] = None) -> np.ndarray:
    """dW[g] = Σ_n dy[n, g] · cols[n, g]ᵀ for dy (N, G, O, P) and cols (N, G, K, P) (any strides):
    returns a fresh (G, O, K) array in dy's and cols' result dtype.

    Takes one GEMM over batch × positions when :func:`one_gemm_wins`, else per-sample products
    (see the module notes). The transposed copies are transient buffers of ``ws``'s model.
    """
    n, g, o, p = dy.shape
    k = cols.shape[2]
    if not one_gemm_wins(o, k, p):
        return _sum_per_sample(dy, cols)
    dtype = np.result_type(dy, cols)
    if p == 1 or n == 1:   # samples × positions is already one axis: no copy
        a = dy.reshape(n, g, o, p).transpose(1, 2, 0, 3).reshape(g, o, n * p)
        b = cols.reshape(n, g, k, p).transpose(1, 2, 0, 3).reshape(g, k, n * p)
        return np.matmul(a, b.transpose(0, 2, 1))
    a = transient(ws, "conv.bwd.dy_t", (g, o, n, p), dtype)
    np.copyto(a, dy.transpose(1, 2, 0, 3))
    b = transient(ws, "conv.bwd.cols_t", (g, k, n, p), dtype)
    np.copyto(b, cols.transpose(1, 2, 0, 3))
    return np.matmul(a.reshape(g, o, n * p), b.reshape(g, k, n * p).transpose(0, 2, 1))


def shifted_input_grad(dy_mat: np.ndarray, w: np.ndarray, shape, dilation, positions: int,
                       ws: Optional[Workspace] = None) -> np.ndarray:
    """dL/dxpad of the shifted path (see ``_shifted_windows`` in :mod:`convscope.ops.conv`), flat.

    dy_mat (C_out, N·positions) holds dy on the W_p-wide grid (zero in the extra columns),
    w (C_out, C_in, k_h, k_w), shape the padded input's (N, C_in, H_p, W_p). Kernel offset
    (a, b) sends ``w[:, :, a, b]ᵀ @ dy`` to the padded planes shifted by a·d_h·W_p + b·d_w::

        dxpad_flat[n, c, a·d_h·W_p + b·d_w + q] += Σ_o w[o, c, a, b] · dy_mat[o, n·positions + q]

    One kernel row a at a time: its (C_in·k_w, N·positions) product lives in a work buffer
    k_h times smaller than the whole dcols, still in cache when its k_w shifted adds read it.
    Returns a transient buffer of the model (:func:`convscope.ops.workspace.transient`) (N·C_in·H_p·W_p + (k_w − 1)·d_w values): the caller
    copies out what it keeps.
    """
    c_out, c_in, k_h, k_w = w.shape
    n, _, hp, wp = shape
    d_h, d_w = dilation
    dtype = dy_mat.dtype
    size = n * c_in * hp * wp
    dflat = transient(ws, "conv.shifted.dx", (size + (k_w - 1) * d_w,), dtype)
    dflat.fill(0)
    rows = transient(ws, "conv.shifted.drow", (c_in * k_w, n * positions), dtype)
    item = dflat.itemsize
    plane = hp * wp * item
    for a in range(k_h):
        np.matmul(w[:, :, a, :].reshape(c_out, c_in * k_w).T, dy_mat, out=rows)
        planes = rows.reshape(c_in, k_w, n, positions)
        for b in range(k_w):
            # For one offset the written elements are distinct (each plane's span is shorter
            # than the plane), so a plain += on the strided view is exact.
            target = np.lib.stride_tricks.as_strided(dflat[a * d_h * wp + b * d_w:], shape=(c_in, n, positions),
                                                     strides=(plane, c_in * plane, item))
            target += planes[:, b]
    return dflat

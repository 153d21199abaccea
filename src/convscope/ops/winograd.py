"""Winograd F(2×2, 3×3): stride-1 3×3 convolution with 2.25× fewer multiplications.

Notation: N batch, C input channels, K output channels, x padded input (N, C, Hp, Wp),
g a 3×3 filter, d a 4×4 input tile, Y the 2×2 output tile it produces. Tiles start every
2 pixels, so T_h = ⌈H_out/2⌉, T_w = ⌈W_out/2⌉ tiles per image (the last ones may overhang
and are cropped).

Forward (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):

    U = G g Gᵀ            (4×4 per filter pair k, c)
    V = Bᵀ d B            (4×4 per tile and channel)
    M[ξ] = U[ξ] · V[ξ]     for each of the 16 positions ξ: a (K×C)·(C×N·T) matrix product
    Y = Aᵀ M A            (2×2 per tile and output channel)

Backward, as the adjoint of the same linear maps:

    dM = A dY Aᵀ
    dU[ξ] = dM[ξ] · V[ξ]ᵀ  summed over tiles,   dg = Gᵀ dU G
    dx    = the same forward algorithm run on dy with the filter rotated 180° and its
            channel axes swapped (a stride-1 "full" correlation), padded by 2 − p.

Every transform is a handful of vectorised adds on strided views; the 16 products are BLAS
calls. Exact in exact arithmetic; in floating point its rounding error is of the order of
the direct method's (F(2,3) uses only the constants ±1 and ½).
"""
from __future__ import annotations

import numpy as np

from .workspace import workspace

# G (4×3) maps a 3-tap filter to 4 Winograd points; Bᵀ and Aᵀ are applied by hand below.
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def filter_transform(w: np.ndarray) -> np.ndarray:
    """U = G g Gᵀ for every (k, c): (K, C, 3, 3) -> (16, K, C), as two small matrix products."""
    g = _G.astype(w.dtype)
    u = np.matmul(np.matmul(g, w), g.T)                              # (K, C, 4, 4)
    return np.ascontiguousarray(u.transpose(2, 3, 0, 1)).reshape(16, w.shape[0], w.shape[1])


def _bt_pair(d0, d1, d2, d3, outs):
    """Bᵀ along one axis, written into ``outs``: (d0 − d2, d1 + d2, d2 − d1, d1 − d3)."""
    np.subtract(d0, d2, out=outs[0])
    np.add(d1, d2, out=outs[1])
    np.subtract(d2, d1, out=outs[2])
    np.subtract(d1, d3, out=outs[3])


def input_transform(xt: np.ndarray, th: int, tw: int, v: np.ndarray, key: str) -> np.ndarray:
    """V = Bᵀ d B for every 4×4 tile of the padded input ``xt``, laid out (C, N, ≥2·th+2, ≥2·tw+2).

    Writes into ``v`` (4, 4, C, N, th, tw) and returns it as (16, C, N·th·tw), the layout the
    16 products want. Channel-major input makes every write below contiguous.
    """
    c, n, _, wp = xt.shape
    rows = workspace(key + ".rows", (4, c, n, th, wp), xt.dtype)
    _bt_pair(*(xt[:, :, i:i + 2 * th:2, :] for i in range(4)), rows)  # d_i = rows 2t + i
    for i in range(4):
        _bt_pair(*(rows[i][..., j:j + 2 * tw:2] for j in range(4)), v[i])
    return v.reshape(16, c, n * th * tw)


def output_transform(m: np.ndarray, n: int, th: int, tw: int, y_full: np.ndarray, key: str) -> None:
    """Y = Aᵀ M A: m (16, K, N·th·tw) -> y_full (N, K, 2·th, 2·tw), written in place.

    Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]] along the tile's rows, then along its columns.
    """
    k = m.shape[1]
    m = m.reshape(4, 4, k, n, th, tw)
    rows = workspace(key + ".orows", (2, 4, k, n, th, tw), m.dtype)
    np.add(m[0], m[1], out=rows[0]); rows[0] += m[2]
    np.subtract(m[1], m[2], out=rows[1]); rows[1] -= m[3]
    # y_full[n, k, 2t + a, 2u + b] seen as (K, N, th, 2, tw, 2): writes land in place.
    y = y_full.reshape(n, k, th, 2, tw, 2).transpose(1, 0, 2, 3, 4, 5)
    for a in range(2):
        r = rows[a]
        np.add(r[0], r[1], out=y[:, :, :, a, :, 0]); y[:, :, :, a, :, 0] += r[2]
        np.subtract(r[1], r[2], out=y[:, :, :, a, :, 1]); y[:, :, :, a, :, 1] -= r[3]


def _pad_channel_major(x: np.ndarray, pads, th: int, tw: int, key: str) -> np.ndarray:
    """x (N, C, H, W) -> zero-padded (C, N, 2·th + 2, 2·tw + 2): padding and layout in one copy.

    Negative padding (the backward pass of a layer padded by more than 2 never comes here,
    but 2 − p can be 0) is not needed: pads are 0..2.
    """
    n, c, h, w = x.shape
    (pt, pb), (pl, pr) = pads
    xt = workspace(key, (c, n, 2 * th + 2, 2 * tw + 2), x.dtype)
    xt.fill(0)
    rows, cols = min(h, 2 * th + 2 - pt), min(w, 2 * tw + 2 - pl)
    xt[:, :, pt:pt + rows, pl:pl + cols] = x[:, :, :rows, :cols].transpose(1, 0, 2, 3)
    return xt


def conv3x3_forward(x: np.ndarray, w: np.ndarray, b, pads, *, keep_for_backward: bool = True,
                    key: str = "wino"):
    """Stride-1, dilation-1, ungrouped 3×3 convolution by Winograd F(2×2, 3×3).

    x (N, C, H, W), w (K, C, 3, 3), b (K,) or None, pads ((top, bottom), (left, right)),
    each 0..2. Returns (y (N, K, H_out, W_out), cache) with H_out = H + top + bottom − 2.
    """
    n, c, h, wd = x.shape
    k = w.shape[0]
    (pt, pb), (pl, pr) = pads
    h_out, w_out = h + pt + pb - 2, wd + pl + pr - 2
    th, tw = -(-h_out // 2), -(-w_out // 2)
    xt = _pad_channel_major(x, pads, th, tw, key + ".xt")
    v_shape = (4, 4, c, n, th, tw)
    # Backward needs V, so it gets its own array; otherwise a reused work buffer will do.
    v = input_transform(xt, th, tw, np.empty(v_shape, x.dtype) if keep_for_backward
                        else workspace(key + ".v", v_shape, x.dtype), key)
    m = np.matmul(filter_transform(w), v, out=workspace(key + ".m", (16, k, n * th * tw), x.dtype))
    exact = (2 * th, 2 * tw) == (h_out, w_out)
    y_full = np.empty((n, k, 2 * th, 2 * tw), x.dtype) if exact else \
        workspace(key + ".y", (n, k, 2 * th, 2 * tw), x.dtype)
    output_transform(m, n, th, tw, y_full, key)
    y = y_full if exact else np.ascontiguousarray(y_full[:, :, :h_out, :w_out])
    if b is not None:
        y += b.reshape(1, k, 1, 1)
    cache = None
    if keep_for_backward:
        cache = {"x_shape": x.shape, "w": w, "pads": pads, "v": v, "tiles": (th, tw),
                 "has_bias": b is not None}
    return y, cache


def conv3x3_backward(dy: np.ndarray, cache):
    """Gradients of :func:`conv3x3_forward`: returns (dx, dw, db)."""
    n, c, h, wd = cache["x_shape"]
    w = cache["w"]
    k = w.shape[0]
    th, tw = cache["tiles"]
    (pt, pb), (pl, pr) = cache["pads"]
    h_out, w_out = dy.shape[2:]

    # dM = A dY Aᵀ with A = [[1, 0], [1, 1], [1, −1], [0, −1]], on zero-extended 2×2 tiles
    # read channel-major: dyt[k, n, t, a, u, b] = dy[n, k, 2t + a, 2u + b].
    dyt = workspace("wino.dyt", (k, n, th, 2, tw, 2), dy.dtype)
    if (2 * th, 2 * tw) != (h_out, w_out):
        dyt.fill(0)
    dyt.reshape(k, n, 2 * th, 2 * tw)[:, :, :h_out, :w_out] = dy.transpose(1, 0, 2, 3)
    rows = workspace("wino.drows", (4, k, n, th, tw, 2), dy.dtype)
    y0, y1 = dyt[:, :, :, 0], dyt[:, :, :, 1]                        # (K, N, th, tw, 2)
    np.copyto(rows[0], y0); np.add(y0, y1, out=rows[1])
    np.subtract(y0, y1, out=rows[2]); np.negative(y1, out=rows[3])
    dm = workspace("wino.dm", (4, 4, k, n, th, tw), dy.dtype)
    for i in range(4):
        c0, c1 = rows[i][..., 0], rows[i][..., 1]
        np.copyto(dm[i, 0], c0); np.add(c0, c1, out=dm[i, 1])
        np.subtract(c0, c1, out=dm[i, 2]); np.negative(c1, out=dm[i, 3])
    du = np.matmul(dm.reshape(16, k, n * th * tw), cache["v"].transpose(0, 2, 1))   # (16, K, C)
    g = _G.astype(dy.dtype)
    du = du.reshape(4, 4, k, c).transpose(2, 3, 0, 1)                # (K, C, 4, 4)
    dw = np.matmul(np.matmul(g.T, du), g)                            # Gᵀ dU G: (K, C, 3, 3)

    # dx: full correlation of dy with the rotated, channel-swapped filter.
    w_rot = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    dx, _ = conv3x3_forward(dy, w_rot, None, ((2 - pt, 2 - pb), (2 - pl, 2 - pr)),
                            keep_for_backward=False, key="wino.dx")
    db = dy.sum(axis=(0, 2, 3)) if cache["has_bias"] else None
    return dx, dw.astype(dy.dtype, copy=False), db


def applies(kernel, stride, dilation, groups) -> bool:
    """Whether Winograd F(2×2, 3×3) can compute this convolution exactly."""
    return tuple(kernel) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1

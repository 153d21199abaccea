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
    """U = G g Gᵀ for every (k, c): (K, C, 3, 3) -> (16, K, C)."""
    g = _G.astype(w.dtype)
    u = np.einsum("ia,kcab,jb->ijkc", g, w, g, optimize=True)
    return np.ascontiguousarray(u.reshape(16, w.shape[0], w.shape[1]))


def _rows_bt(rows):
    """Bᵀ applied along one axis to the four views d0..d3: (d0−d2, d1+d2, d2−d1, d1−d3)."""
    d0, d1, d2, d3 = rows
    return (d0 - d2, d1 + d2, d2 - d1, d1 - d3)


def input_transform(xp: np.ndarray, th: int, tw: int, v: np.ndarray) -> np.ndarray:
    """V = Bᵀ d B for every 4×4 tile of the padded input xp (N, C, ≥2·th+2, ≥2·tw+2).

    Writes into ``v`` (4, 4, C, N, th, tw) and returns it as (16, C, N·th·tw), the layout
    the 16 products want.
    """
    n, c = xp.shape[:2]
    rows = [xp[:, :, i:i + 2 * th:2, :] for i in range(4)]          # d_i: rows 2t+i
    for i, r in enumerate(_rows_bt(rows)):                           # (N, C, th, Wp)
        cols = [r[:, :, :, j:j + 2 * tw:2] for j in range(4)]
        for j, t in enumerate(_rows_bt(cols)):                       # (N, C, th, tw)
            v[i, j] = t.transpose(1, 0, 2, 3)
    return v.reshape(16, c, n * th * tw)


def output_transform(m: np.ndarray, n: int, th: int, tw: int, h_out: int, w_out: int,
                     out: np.ndarray) -> np.ndarray:
    """Y = Aᵀ M A: m (16, K, N·th·tw) -> out (N, K, h_out, w_out), cropping overhanging tiles."""
    k = m.shape[1]
    m = m.reshape(4, 4, k, n, th, tw)
    # Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]] along the first axis, then along the second.
    r0 = m[0] + m[1] + m[2]
    r1 = m[1] - m[2] - m[3]
    full = np.empty((n, k, th, 2, tw, 2), dtype=m.dtype)
    for a, r in enumerate((r0, r1)):
        full[:, :, :, a, :, 0] = (r[0] + r[1] + r[2]).transpose(1, 0, 2, 3)
        full[:, :, :, a, :, 1] = (r[1] - r[2] - r[3]).transpose(1, 0, 2, 3)
    out[...] = full.reshape(n, k, 2 * th, 2 * tw)[:, :, :h_out, :w_out]
    return out


def _pad_for_tiles(x: np.ndarray, pads, th: int, tw: int, key: str) -> np.ndarray:
    """Zero-pad x by pads ((top, bottom), (left, right)) and further so whole tiles fit."""
    n, c, h, w = x.shape
    (pt, pb), (pl, pr) = pads
    hp, wp = 2 * th + 2, 2 * tw + 2
    xp = workspace(key, (n, c, hp, wp), x.dtype)
    xp.fill(0)
    # Negative padding (only on the backward pass of a heavily padded layer) crops.
    src_top, src_left = max(0, -pt), max(0, -pl)
    dst_top, dst_left = max(0, pt), max(0, pl)
    rows = min(h - src_top, hp - dst_top)
    cols = min(w - src_left, wp - dst_left)
    xp[:, :, dst_top:dst_top + rows, dst_left:dst_left + cols] = x[:, :, src_top:src_top + rows,
                                                                      src_left:src_left + cols]
    return xp


def conv3x3_forward(x: np.ndarray, w: np.ndarray, b, pads, *, keep_for_backward: bool = True,
                    key: str = "wino"):
    """Stride-1, dilation-1, ungrouped 3×3 convolution by Winograd F(2×2, 3×3).

    x (N, C, H, W), w (K, C, 3, 3), b (K,) or None, pads ((top, bottom), (left, right)).
    Returns (y (N, K, H_out, W_out), cache) with H_out = H + top + bottom − 2.
    """
    n, c, h, wd = x.shape
    k = w.shape[0]
    (pt, pb), (pl, pr) = pads
    h_out, w_out = h + pt + pb - 2, wd + pl + pr - 2
    th, tw = -(-h_out // 2), -(-w_out // 2)
    xp = _pad_for_tiles(x, pads, th, tw, key + ".xp")
    v_shape = (4, 4, c, n, th, tw)
    # Backward needs V, so it gets its own array; otherwise a reused work buffer will do.
    v = input_transform(xp, th, tw, np.empty(v_shape, x.dtype) if keep_for_backward
                        else workspace(key + ".v", v_shape, x.dtype))
    u = filter_transform(w)
    m = np.matmul(u, v, out=workspace(key + ".m", (16, k, n * th * tw), x.dtype))
    y = output_transform(m, n, th, tw, h_out, w_out, np.empty((n, k, h_out, w_out), dtype=x.dtype))
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

    # dM = A dY Aᵀ, with A = [[1, 0], [1, 1], [1, −1], [0, −1]], on zero-extended 2×2 tiles.
    dyt = np.zeros((n, k, th, 2, tw, 2), dtype=dy.dtype)
    dyt.reshape(n, k, 2 * th, 2 * tw)[:, :, :h_out, :w_out] = dy
    y0, y1 = dyt[:, :, :, 0], dyt[:, :, :, 1]                       # (N, K, th, tw, 2)
    rows = (y0, y0 + y1, y0 - y1, -y1)
    dm = workspace("wino.dm", (4, 4, k, n, th, tw), dy.dtype)
    for i, r in enumerate(rows):
        c0, c1 = r[..., 0], r[..., 1]
        for j, t in enumerate((c0, c0 + c1, c0 - c1, -c1)):
            dm[i, j] = t.transpose(1, 0, 2, 3)
    dm = dm.reshape(16, k, n * th * tw)
    du = np.matmul(dm, cache["v"].transpose(0, 2, 1))              # (16, K, C)
    g = _G.astype(dy.dtype)
    dw = np.einsum("ia,ijkc,jb->kcab", g, du.reshape(4, 4, k, c), g, optimize=True)

    # dx: full correlation of dy with the rotated, channel-swapped filter.
    w_rot = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    dx, _ = conv3x3_forward(dy, w_rot, None, ((2 - pt, 2 - pb), (2 - pl, 2 - pr)),
                            keep_for_backward=False, key="wino.dx")
    db = dy.sum(axis=(0, 2, 3)) if cache["has_bias"] else None
    return dx, dw.astype(dy.dtype, copy=False), db


def applies(kernel, stride, dilation, groups) -> bool:
    """Whether Winograd F(2×2, 3×3) can compute this convolution exactly."""
    return tuple(kernel) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1

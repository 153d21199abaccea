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
    dU[ξ] = dM[ξ] · V[ξ]ᵀ  summed over tiles,   dg = Gᵀ dU G   (V recomputed from x)
    dx    = the same forward algorithm run on dy with the filter rotated 180° and its
            channel axes swapped (a stride-1 "full" correlation), padded by 2 − p.

Every transform is a handful of vectorised adds on strided views; the 16 products are BLAS
calls. Exact in exact arithmetic; in floating point its rounding error is of the order of
the direct method's (F(2,3) uses only the constants ±1 and ½).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .workspace import Workspace, fresh_copy, scratch, transient_scope

# G (4×3) maps a 3-tap filter to 4 Winograd points; Bᵀ and Aᵀ are applied by hand below.
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


#: G ⊗ G maps a filter's 9 taps (row-major) to its 16 Winograd points: U = G g Gᵀ.
_G_KRON = np.kron(_G, _G)                                             # (16, 9)


def filter_transform(w: np.ndarray) -> np.ndarray:
    """U = G g Gᵀ for every (k, c): (K, C, 3, 3) -> (16, K, C), one GEMM over all filters."""
    k, c = w.shape[:2]
    return np.matmul(_G_KRON.astype(w.dtype), w.reshape(k * c, 9).T).reshape(16, k, c)


def transformed_filters(w: np.ndarray, key: str, ws: Optional[Workspace] = None) -> np.ndarray:
    """U = :func:`filter_transform` (w), remembered in the workspace with a copy of the w it
    came from: while the weights stay the same (every inference call), U is reused after one
    comparison of w with that copy instead of being recomputed (a 16·K·C product whose
    inner dimension, 9, keeps BLAS far from its peak). Weights updated in place are noticed
    by the comparison; a buffer the workspace dropped comes back as not kept."""
    if ws is None:
        return filter_transform(w)
    k, c = w.shape[:2]
    seen, seen_kept = ws.reuse(key + ".w_seen", w.shape, w.dtype)
    u, u_kept = ws.reuse(key + ".u", (16, k, c), w.dtype)
    if not (seen_kept and u_kept and np.array_equal(seen, w)):
        np.matmul(_G_KRON.astype(w.dtype), w.reshape(k * c, 9).T, out=u.reshape(16, k * c))
        np.copyto(seen, w)
    return u


def _bt_pair(d0, d1, d2, d3, outs):
    """Bᵀ along one axis, written into ``outs``: (d0 − d2, d1 + d2, d2 − d1, d1 − d3)."""
    np.subtract(d0, d2, out=outs[0])
    np.add(d1, d2, out=outs[1])
    np.subtract(d2, d1, out=outs[2])
    np.subtract(d1, d3, out=outs[3])


# Tiles are stored "wide": th rows of tw + 1 columns, the last column of each row garbage
# (never used in an output, zero in every gradient). That makes each transform step one
# contiguous 1-D NumPy operation instead of thousands of 7–16-element rows.


def input_transform(phases: np.ndarray, th: int, tw: int, v: np.ndarray, key: str,
                    ws: Optional[Workspace] = None) -> np.ndarray:
    """V = Bᵀ d B for every 4×4 tile, from the padded input split into phase planes.

    ``phases[r, c]`` (C, N, th + 1, tw + 1) holds the padded input's rows ≡ r and columns
    ≡ c (mod 2), so tile (t, u)'s row 2t + i is row t + i // 2 of phase i % 2 and its column
    2u + j is column u + j // 2 of phase j % 2. Writes into ``v`` (4, 4, C, N, th, tw + 1)
    and returns it as (16, C, N·th·(tw + 1)), the layout the 16 products want.
    """
    c, n = phases.shape[2:4]
    length = c * n * th * (tw + 1)
    rows = scratch(ws, key + ".rows", (4, 2, length + 1), phases.dtype)
    rows[:, :, length] = 0  # read by the very last (garbage) column below
    for cp in range(2):  # Bᵀ down the rows, for even and odd columns
        even, odd = phases[0, cp], phases[1, cp]
        outs = [rows[i, cp, :length].reshape(c, n, th, tw + 1) for i in range(4)]
        _bt_pair(even[:, :, :th], odd[:, :, :th], even[:, :, 1:], odd[:, :, 1:], outs)
    flat = v.reshape(4, 4, length)
    for i in range(4):   # then across the columns: a shift by one element is a shift by one column
        even, odd = rows[i, 0], rows[i, 1]
        _bt_pair(even[:length], odd[:length], even[1:], odd[1:], flat[i])
    return v.reshape(16, c, n * th * (tw + 1))


_AT = np.array([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]])
#: Aᵀ ⊗ Aᵀ maps a tile's 16 Winograd products to its 2×2 outputs; its transpose maps the 2×2
#: output gradients back to the 16 points (dM = A dY Aᵀ).
_AT_KRON = np.kron(_AT, _AT)                                          # (4, 16)


def output_transform(m: np.ndarray, n: int, th: int, tw: int, y_full: np.ndarray, key: str,
                     ws: Optional[Workspace] = None) -> None:
    """Y = Aᵀ M A: m (16, K, N·th·(tw + 1)) -> y_full (N, K, 2·th, 2·tw), written in place.

    One (4×16)·(16×K·N·T) product gives the four output phases; one copy interleaves them.
    """
    k = m.shape[1]
    planes = np.matmul(_AT_KRON.astype(m.dtype), m.reshape(16, -1),
                       out=scratch(ws, key + ".planes", (4, m[0].size), m.dtype))
    planes = planes.reshape(2, 2, k, n, th, tw + 1)[..., :tw]
    # planes[a, b, k, n, t, u] -> y_full[n, k, 2t + a, 2u + b], one phase at a time (one
    # interleaving copy would run NumPy's inner loop over b, two elements long).
    y6 = y_full.reshape(n, k, th, 2, tw, 2)
    for a in range(2):
        for b in range(2):
            np.copyto(y6[:, :, :, a, :, b], planes[a, b].transpose(1, 0, 2, 3))


def _phase_planes(x: np.ndarray, pads, th: int, tw: int, key: str, ws: Optional[Workspace] = None) -> np.ndarray:
    """x (N, C, H, W) -> its zero-padded, channel-major phase planes (2, 2, C, N, th+1, tw+1).

    ``planes[r, c, ch, n, i, j] = xpad[n, ch, 2i + r, 2j + c]`` where xpad is x padded by
    ``pads`` (each 0..2) and by zeros beyond, so that whole tiles fit.
    """
    n, c, h, w = x.shape
    (pt, _), (pl, _) = pads
    planes = scratch(ws, key, (2, 2, c, n, th + 1, tw + 1), x.dtype)
    planes.fill(0)
    xc = x.transpose(1, 0, 2, 3)
    for r in range(2):
        # padded row 2i + r is input row 2i + r − pt; the first such row index ≥ 0:
        r0 = (r - pt) % 2
        i0 = (r0 + pt - r) // 2
        rows = xc[:, :, r0::2][:, :, :th + 1 - i0]
        for cc in range(2):
            c0 = (cc - pl) % 2
            j0 = (c0 + pl - cc) // 2
            block = rows[..., c0::2][..., :tw + 1 - j0]
            planes[r, cc, :, :, i0:i0 + block.shape[2], j0:j0 + block.shape[3]] = block
    return planes


def conv3x3_forward(x: np.ndarray, w: Optional[np.ndarray], b, pads, *, keep_for_backward: bool = True,
                    key: str = "wino", workspace: Optional[Workspace] = None, reuse_filters: bool = False,
                    u: Optional[np.ndarray] = None):
    """Stride-1, dilation-1, ungrouped 3×3 convolution by Winograd F(2×2, 3×3).

    x (N, C, H, W), w (K, C, 3, 3), b (K,) or None, pads ((top, bottom), (left, right)),
    each 0..2. Returns (y (N, K, H_out, W_out), cache) with H_out = H + top + bottom − 2.
    ``workspace`` (the layer's) holds the transforms' scratch between calls; y is always fresh.
    ``reuse_filters`` (inference, where the weights rarely change between calls) keeps the
    transformed filters in the workspace (:func:`transformed_filters`).
    ``u`` (16, K, C), any strides, is the filter transform when the caller already has it
    (the backward pass, whose rotated filter's transform is a permutation of w's); w is then unused.
    """
    n, c, h, wd = x.shape
    if u is None:
        u = transformed_filters(w, key, workspace) if reuse_filters else filter_transform(w)
    # Everything below is scratch of this call only (V for backward is its own array): the
    # model-wide transient buffers, not buffers kept per layer (45 MB less for resnet18 b32).
    ws = workspace.transient_view() if workspace is not None else None
    k = u.shape[1]
    (pt, pb), (pl, pr) = pads
    h_out, w_out = h + pt + pb - 2, wd + pl + pr - 2
    th, tw = -(-h_out // 2), -(-w_out // 2)
    exact = (2 * th, 2 * tw) == (h_out, w_out)
    y_full = np.empty((n, k, 2 * th, 2 * tw), x.dtype) if exact else \
        scratch(ws, key + ".y", (n, k, 2 * th, 2 * tw), x.dtype)
    for start, stop in _sample_chunks(n, max(c, k) * th * (tw + 1), x.itemsize):
        with transient_scope(ws):
            m = scratch(ws, key + ".m", (16, k, (stop - start) * th * (tw + 1)), x.dtype)
            with transient_scope(ws):   # V (4× the input) is dead once M is computed
                np.matmul(u, _input_points(x[start:stop], pads, th, tw, key, ws), out=m)
            output_transform(m, stop - start, th, tw, y_full[start:stop], key, ws)
    y = y_full if exact else fresh_copy(y_full[:, :, :h_out, :w_out])
    if b is not None:
        y += b.reshape(1, k, 1, 1)
    cache = None
    if keep_for_backward:
        # Backward recomputes V from x: V is 4× the input (th·(tw + 1) tiles of 16 points
        # for every 4 pixels), and keeping it cost ResNet-18 (CIFAR stem, batch 32) 274 MB of
        # its 732 MB peak, where x is usually alive anyway (the previous layer's output).
        cache = {"x": x, "w": w, "pads": pads, "tiles": (th, tw), "has_bias": b is not None,
                 "workspace": ws, "key": key}
    return y, cache


#: The transforms run over chunks of samples whose V (and M) take at most about this many
#: bytes: their scratch then costs a model this much instead of 4× its largest feature map
#: twice over (ResNet-18 at batch 32: 103 MB of transient scratch). Splitting the batch
#: leaves every output's sums as they were; dU adds the chunks' products in turn.
CHUNK_BYTES = 8 << 20


def _sample_chunks(n: int, points_per_sample: int, itemsize: int):
    """(start, stop) ranges over n samples in chunks of equal size (±1), each chunk's
    16·points_per_sample values per sample within CHUNK_BYTES (at least one sample a chunk)."""
    most = max(1, CHUNK_BYTES // max(16 * points_per_sample * itemsize, 1))
    chunks = -(-n // most)
    return [(n * i // chunks, n * (i + 1) // chunks) for i in range(chunks)]


def _input_points(x: np.ndarray, pads, th: int, tw: int, key: str, ws: Optional[Workspace]) -> np.ndarray:
    """V (16, C, N·th·(tw + 1)) of x (N, C, H, W) padded by ``pads``, in ``ws``'s buffers."""
    n, c = x.shape[:2]
    v = scratch(ws, key + ".v", (4, 4, c, n, th, tw + 1), x.dtype)
    with transient_scope(ws):   # the phase planes and row transforms die with this block
        return input_transform(_phase_planes(x, pads, th, tw, key + ".phases", ws), th, tw, v, key, ws)


#: Rotating a filter by 180° reverses its taps, and G·J = P·G with P swapping Winograd points
#: 0 and 3 (G's middle rows are symmetric): the rotated filter's transform is w's with its
#: points permuted, so backward builds it straight from w (no rotated copy of the filter).
_POINTS_ROTATED = np.array([3, 1, 2, 0])
_G_KRON_ROTATED = _G_KRON.reshape(4, 4, 9)[_POINTS_ROTATED][:, _POINTS_ROTATED].reshape(16, 9)


def conv3x3_backward(dy: np.ndarray, cache, need_dx: bool = True):
    """Gradients of :func:`conv3x3_forward`: returns (dx, dw, db); dx is None unless needed."""
    x = cache["x"]
    n, c = x.shape[:2]
    w = cache["w"]
    k = w.shape[0]
    th, tw = cache["tiles"]
    (pt, pb), (pl, pr) = cache["pads"]
    ws = cache["workspace"]
    dtype = dy.dtype
    # Nothing below outlives this call: model-wide transient buffers, not the layer's own.
    tws = None if ws is None else ws.transient_view()

    # dW, chunk by chunk of samples (see CHUNK_BYTES): dU = Σ_chunks dM · Vᵀ.
    du = np.empty((16, k, c), dtype)
    for start, stop in _sample_chunks(n, max(c, k) * th * (tw + 1), dy.itemsize):
        with transient_scope(tws):
            dm = _output_points_grad(dy[start:stop], th, tw, tws)
            part = du if start == 0 else scratch(tws, "wino.du", (16, k, c), dtype)
            with transient_scope(tws):   # the forward's V again, dead once its product is made
                v = _input_points(x[start:stop], cache["pads"], th, tw, cache["key"], tws)
                np.matmul(dm.reshape(16, k, -1), v.transpose(0, 2, 1), out=part)
            if part is not du:
                du += part
    # dg = Gᵀ dU G for every (k, c), i.e. (G ⊗ G)ᵀ applied to the 16 points: one GEMM on
    # contiguous operands, then one transposing copy into the filters' layout.
    dg = np.matmul(_G_KRON.T.astype(dtype), du.reshape(16, k * c),
                   out=scratch(tws, "wino.dg", (9, k * c), dtype))
    dw = np.empty((k, c, 3, 3), dtype)
    np.copyto(dw.reshape(k * c, 9), dg.T)
    db = dy.sum(axis=(0, 2, 3)) if cache["has_bias"] else None
    if not need_dx:
        return None, dw, db
    # dx: full correlation of dy with the rotated, channel-swapped filter, whose transform is
    # w's with permuted points, transposed per point: (16, C, K).
    u_rot = np.matmul(_G_KRON_ROTATED.astype(w.dtype), w.reshape(k * c, 9).T,
                      out=scratch(tws, "wino.u_rot", (16, k * c), w.dtype)).reshape(16, k, c)
    dx, _ = conv3x3_forward(dy, None, None, ((2 - pt, 2 - pb), (2 - pl, 2 - pr)), keep_for_backward=False,
                            key="wino.dx", workspace=tws, u=u_rot.transpose(0, 2, 1))
    return dx, dw, db


def _output_points_grad(dy: np.ndarray, th: int, tw: int, ws: Optional[Workspace]) -> np.ndarray:
    """dM = A dY Aᵀ (16, K·N·th·(tw + 1)) for dy (N, K, H_out, W_out): the 2×2 output gradients
    of each (wide) tile, zero where a tile overhangs the output or in its garbage column,
    times (Aᵀ ⊗ Aᵀ)ᵀ."""
    n, k = dy.shape[:2]
    dyt = scratch(ws, "wino.dyt", (2, 2, k, n, th, tw + 1), dy.dtype)
    dyt[..., tw:] = 0
    # dyt[a, b, k, n, t, u] = dy[n, k, 2t + a, 2u + b] (0 past an odd output edge)
    for a in range(2):
        rows = dy[:, :, a::2].transpose(1, 0, 2, 3)          # (K, N, rows, W_out)
        for b in range(2):
            block = rows[..., b::2]
            target = dyt[a, b]
            np.copyto(target[:, :, :block.shape[2], :block.shape[3]], block)
            target[:, :, block.shape[2]:, :tw] = 0
            target[:, :, :block.shape[2], block.shape[3]:tw] = 0
    return np.matmul(_AT_KRON.T.astype(dy.dtype), dyt.reshape(4, -1),
                     out=scratch(ws, "wino.dm", (16, k * n * th * (tw + 1)), dy.dtype))


def applies(kernel, stride, dilation, groups) -> bool:
    """Whether Winograd F(2×2, 3×3) can compute this convolution exactly."""
    return tuple(kernel) == (3, 3) and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1

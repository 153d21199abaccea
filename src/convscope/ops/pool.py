"""Pooling ops: max, average, adaptive average and global average pooling.

Pure functions, no state: each ``*_forward`` returns ``(y, cache)`` and the matching
``*_backward(dy, cache)`` returns dL/dx. Layout NCHW; the 1-D ops run the 2-D ones on
``(N, C, 1, L)`` with a ``1 × k`` window. Every op follows PyTorch's rules exactly.

Notation
--------
N batch, C channels, H × W input size (L for 1-D), k = (k_h, k_w) kernel, s stride,
p padding (added on both sides), d dilation, H_out × W_out output size,
x input, y output, g = dL/dy the upstream gradient, x_p the padded input,
W(i, j) the input positions seen by output (i, j):
``{(i·s_h − p_h + a·d_h, j·s_w − p_w + b·d_w) : 0 <= a < k_h, 0 <= b < k_w}``.

Output size along each axis (one rule, :func:`convscope.shapes.conv_output_size`)::

    out = floor((n + 2p − d·(k − 1) − 1) / s) + 1          (ceil instead of floor in ceil mode;
                                                           a last window starting past n + p is dropped)

PyTorch's validity rules, enforced here: every size positive and ``p <= k // 2`` per axis
(a window must always see at least one real input). In ceil mode the last window may run
past the padded edge; those positions count as missing (max: −∞, average: see below).
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConvscopeError
from ..shapes import adaptive_window, conv_output_size
from . import kernels
from .parallel import over_batch
from .workspace import Workspace, fresh_copy, scratch, step_buffer

Pair = Tuple[int, int]
AXES_2D = ("height", "width")
AXES_1D = ("length",)


# ----- geometry -------------------------------------------------------------------------------

class PoolGeometry(NamedTuple):
    """Where the windows of a 2-D pool fall: per axis (height, width)."""

    in_size: Pair     # (H, W)
    out_size: Pair    # (H_out, W_out)
    kernel: Pair
    stride: Pair
    padding: Pair     # before (and nominally after) each axis
    dilation: Pair
    pad_after: Pair   # right/bottom padding actually needed (> padding in ceil mode, may be less)

    def offsets(self):
        """(a, b) kernel offsets in row-major order: window index t = a·k_w + b."""
        return [(a, b) for a in range(self.kernel[0]) for b in range(self.kernel[1])]

    def window_slices(self, a: int, b: int) -> Tuple[slice, slice]:
        """Strided slices of the padded input holding offset (a, b) of every window."""
        return tuple(slice(o * d, o * d + (m - 1) * s + 1, s)
                     for o, d, m, s in zip((a, b), self.dilation, self.out_size, self.stride))

    @property
    def padded_size(self) -> Pair:
        return tuple(p + n + q for p, n, q in zip(self.padding, self.in_size, self.pad_after))


def check_padding(name: str, kernel: Sequence[int], padding: Sequence[int],
                  axes: Sequence[str] = AXES_2D) -> None:
    """PyTorch's rule ``padding <= kernel_size // 2`` per axis, so no window is all padding."""
    for axis, k, p in zip(axes, kernel, padding):
        if p > k // 2:
            raise ConvscopeError(
                f"{name}: padding {p} along the {axis} is more than half of kernel_size {k}; "
                f"PyTorch allows at most {k // 2}, so use padding <= kernel_size // 2")


def pool_geometry(name: str, in_size: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                  padding: Sequence[int], dilation: Sequence[int], ceil_mode: bool,
                  axes: Sequence[str] = AXES_2D) -> PoolGeometry:
    """Output size and padding of a pool; raises :class:`ConvscopeError` (naming ``name``
    and the axis) when the padding breaks PyTorch's rule or the input is smaller than the window.

    Memoised: a layer asks for the same geometry on every batch, and working it out in
    Python costs more than pooling a single small sample."""
    return _pool_geometry(name, _ints(in_size), _ints(kernel), _ints(stride), _ints(padding),
                          _ints(dilation), bool(ceil_mode), tuple(axes))


def _ints(values: Sequence[int]) -> Tuple[int, ...]:
    return tuple(int(v) for v in values)


@lru_cache(maxsize=1024)
def _pool_geometry(name, in_size, kernel, stride, padding, dilation, ceil_mode, axes) -> PoolGeometry:
    check_padding(name, kernel, padding, axes)
    outs, after = [], []
    for axis, n, k, s, p, d in zip(axes, in_size, kernel, stride, padding, dilation):
        out = conv_output_size(n, k, s, p, p, d, ceil_mode)
        if out < 1:
            span = d * (k - 1) + 1
            # ceil mode keeps a window that overhangs the padded input by up to s - 1
            overhang = s - 1 if ceil_mode else 0
            need = span - 2 * p - overhang
            dilated = f" dilated by {d}" if d > 1 else ""
            allowance = f" and ceil_mode allows {overhang} more" if overhang else ""
            raise ConvscopeError(
                f"{name}: the input {axis} {n} is too small for the window: kernel_size {k}{dilated} "
                f"spans {span}, padding adds {2 * p}{allowance}, so the {axis} must be at least {need}, "
                f"{need - n} more than {n}; use a larger input, more padding or a smaller kernel_size")
        outs.append(out)
        # The last window ends at (out - 1)·s + d·(k - 1); pad after the input up to there.
        after.append(max(0, (out - 1) * s + d * (k - 1) + 1 - p - n))
    if len(outs) == 1:  # a 1-D pool, run as 2-D with a 1 × k window
        return PoolGeometry((1, in_size[0]), (1, outs[0]), (1, kernel[0]), (1, stride[0]),
                            (0, padding[0]), (1, dilation[0]), (0, after[0]))
    return PoolGeometry(tuple(in_size), tuple(outs), tuple(kernel), tuple(stride),
                        tuple(padding), tuple(dilation), tuple(after))


class _Plan(NamedTuple):
    """How the vectorised loops walk one geometry (worked out once per geometry).

    ``slices[t]`` selects offset t = a·k_w + b of every window from the padded (N, C, ·, ·)
    array. Offsets with ``a·d_h < s_h`` and ``b·d_w < s_w`` touch pairwise disjoint input
    positions (two of them could only meet where (a − a')·d_h is a multiple of s_h), so
    backward may *write* them (``assign[t]``) before it *adds* the others; only positions
    they do not cover need zeros first: the rows from ``clear_from[0]`` on and the columns
    from ``clear_from[1]`` on, or everything when ``clear_from`` is None.
    """

    slices: Tuple[tuple, ...]
    assign: Tuple[bool, ...]
    padded: bool                   # the input needs padding (before or after) on some side
    clear_from: Optional[Pair]


@lru_cache(maxsize=256)
def _plan(g: PoolGeometry) -> _Plan:
    whole = (slice(None), slice(None))
    slices, assign = [], []
    for a, b in g.offsets():
        slices.append(whole + g.window_slices(a, b))
        assign.append(a * g.dilation[0] < g.stride[0] and b * g.dilation[1] < g.stride[1])
    # With d = 1 and k >= s, the offsets a < s cover rows [0, out·s) along that axis.
    covers = all(d == 1 and k >= s for d, k, s in zip(g.dilation, g.kernel, g.stride))
    clear_from = tuple(m * s for m, s in zip(g.out_size, g.stride)) if covers else None
    padded = any(g.padding) or any(g.pad_after)
    return _Plan(tuple(slices), tuple(assign), padded, clear_from)


def _check_batch(name: str, x: np.ndarray, spatial: int) -> None:
    if x.ndim != 2 + spatial:
        layout = "(N, C, H, W)" if spatial == 2 else "(N, C, L)"
        raise ConvscopeError(f"{name} expects an array {layout}, got shape {x.shape}")


def _pad(x: np.ndarray, g: PoolGeometry, fill: float, name: str, ws: Optional[Workspace]) -> np.ndarray:
    """``x`` inside a border of ``fill``, in a reused work buffer (only read inside an op)."""
    (ph, pw), (h, w) = g.padding, g.in_size
    xp = scratch(ws, name, x.shape[:2] + g.padded_size, x.dtype)
    xp[:, :, :ph] = fill
    xp[:, :, ph + h:] = fill
    xp[:, :, ph:ph + h, :pw] = fill
    xp[:, :, ph:ph + h, pw + w:] = fill
    xp[:, :, ph:ph + h, pw:pw + w] = x
    return xp


def _unpad(dxp: np.ndarray, g: PoolGeometry) -> np.ndarray:
    """The interior of a padded gradient work buffer, always as a new array."""
    (ph, pw), (h, w) = g.padding, g.in_size
    return fresh_copy(dxp[:, :, ph:ph + h, pw:pw + w])


def _gradient_buffer(shape, dtype, plan: _Plan, name: str, ws: Optional[Workspace]) -> np.ndarray:
    """The (padded) dL/dx array, zero wherever no assigned offset will write.

    A fresh array when it is returned as is; a work buffer when only its interior is
    copied out (padding)."""
    dxp = scratch(ws, name, shape, dtype) if plan.padded else np.empty(shape, dtype)
    if plan.clear_from is None:
        dxp.fill(0)
    else:
        rows, cols = plan.clear_from
        dxp[:, :, rows:] = 0
        dxp[:, :, :rows, cols:] = 0
    return dxp


class _PoolCache(NamedTuple):
    geometry: PoolGeometry
    batch: Tuple[int, int]        # (N, C)
    payload: object               # max: window index of the maximum (None: not recorded);
                                  # average: divisor (an array, 0-d when uniform)
    squeeze: bool                 # True when a 1-D op added the H = 1 axis
    source: Optional[np.ndarray] = None  # max without a recorded index: the (N, C, H, W) input
    workspace: Optional[Workspace] = None  # the caller's scratch, reused by backward


# ----- max pooling ----------------------------------------------------------------------------

def _max_pool(x: np.ndarray, g: PoolGeometry, record: bool, ws: Optional[Workspace],
              out: Optional[np.ndarray] = None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Running maximum over the k_h·k_w strided views of the (padded) input.

    With ``record``, also the window index t of the maximum: at step t, ``better = v_t > y``
    (strict, so the first maximum is kept on ties, as in PyTorch) marks the windows whose
    maximum moves to t; since t only grows, ``index = max(index, t·better)`` tracks it with
    two cheap byte-wide passes instead of a masked store.
    """
    plan = _plan(g)
    y = np.empty(x.shape[:2] + g.out_size, x.dtype) if out is None else out
    if _compiled_2x2(x.dtype, x.size, g, plan):
        index = np.empty(y.shape, np.uint8) if record else None
        kernels.max_pool_2x2(x, y, index)
        return y, index
    xp = _pad(x, g, -np.inf, "max_pool.input", ws) if plan.padded else x
    views = [xp[s] for s in plan.slices]
    np.copyto(y, views[0])
    if not record:
        for v in views[1:]:
            np.maximum(y, v, out=y)  # NaN propagates, as in PyTorch
        return y, None
    index_type = np.min_scalar_type(len(views) - 1)
    index = np.zeros(y.shape, index_type)
    if len(views) > 1:
        better = scratch(ws, "max_pool.better", y.shape, np.bool_)
        step = scratch(ws, "max_pool.step", y.shape, index_type)
        flags = better.view(np.uint8)
        for t, v in enumerate(views[1:], start=1):
            np.greater(v, y, out=better)
            np.maximum(y, v, out=y)
            np.multiply(flags, index_type.type(t), out=step)
            np.maximum(index, step, out=index)
        if y.size and np.isnan(np.max(y)):
            _max_pool_with_nan(views, y, index)
    return y, index


def _compiled_2x2(dtype, size: int, g: PoolGeometry, plan: _Plan) -> bool:
    """2×2 windows at stride 2 without padding (LeNet, VGG), float32/float64, numba installed:
    its one pass reads each window once, where NumPy makes three maximum passes (and four
    more to record the index), at every size: LeNet-5's first pool at batch 64, one thread,
    0.32 → 0.15 ms (recording the index 0.39 → 0.26 ms); at batch 1, 10.2 → 4.9 µs, so any
    size once numba is loaded (:func:`convscope.ops.kernels.exact_elementwise`)."""
    return g.kernel == (2, 2) and g.stride == (2, 2) and g.dilation == (1, 1) and not plan.padded \
        and kernels.exact_elementwise(dtype, size, min_values=0)


def _max_pool_with_nan(views, y: np.ndarray, index: np.ndarray) -> None:
    """Redo y and index with PyTorch's rule for NaN (a NaN always wins, the last one stays);
    only when the output holds a NaN, so the common case pays one reduction for it."""
    np.copyto(y, views[0])
    index.fill(0)
    for t, v in enumerate(views[1:], start=1):
        better = (v > y) | np.isnan(v)
        np.copyto(y, v, where=better)
        index[better] = t


def _select(dy: np.ndarray, hit: np.ndarray, bits: Optional[np.ndarray], out: np.ndarray) -> None:
    """``out = dy where hit else +0``, exactly (an inf or NaN in dy stays where it is sent).

    A multiply by the mask would turn 0·inf into NaN; a bitwise AND with all-ones/all-zeros
    words is exact and vectorises, unlike ``np.where`` on an irregular mask."""
    if bits is None:
        np.copyto(out, np.where(hit, dy, dy.dtype.type(0)))
        return
    np.negative(hit.view(np.int8), out=bits, casting="unsafe")  # True -> -1 (all ones), False -> 0
    np.bitwise_and(dy.view(bits.dtype), bits, out=out.view(bits.dtype))


def _max_unpool(dy: np.ndarray, index: np.ndarray, g: PoolGeometry, ws: Optional[Workspace]) -> np.ndarray:
    plan = _plan(g)
    if not all(plan.assign) and kernels.exact_elementwise(dy.dtype, dy.size):   # overlapping windows
        dx = np.empty(dy.shape[:2] + g.in_size, dy.dtype)
        return kernels.max_unpool(dy, index, g.kernel, g.stride, g.dilation, g.padding, dx)
    tws = None if ws is None else ws.transient_view()   # nothing here outlives the call
    dxp = _gradient_buffer(dy.shape[:2] + g.padded_size, dy.dtype, plan, "max_pool.grad", tws)
    hit = scratch(tws, "max_pool.hit", dy.shape, np.bool_)
    bits_type = kernels.SAME_WIDTH_INT.get(dy.dtype.itemsize)
    bits = None if bits_type is None else scratch(tws, "max_pool.bits", dy.shape, bits_type)
    part = None if all(plan.assign) else scratch(tws, "max_pool.part", dy.shape, dy.dtype)

    def samples(lo: int, hi: int) -> None:   # samples lo..hi-1; every buffer sliced alike
        dy_s, index_s, hit_s, dxp_s = dy[lo:hi], index[lo:hi], hit[lo:hi], dxp[lo:hi]
        bits_s = None if bits is None else bits[lo:hi]
        for t, (window, assign) in enumerate(zip(plan.slices, plan.assign)):
            np.equal(index_s, t, out=hit_s)
            target = dxp_s[window]
            if assign:
                _select(dy_s, hit_s, bits_s, target)
            else:
                # Within one offset the windows' positions are distinct, so a strided += is exact.
                _select(dy_s, hit_s, bits_s, part[lo:hi])
                np.add(target, part[lo:hi], out=target)

    over_batch(samples, dy.shape[0], dxp[0].size)
    return _unpad(dxp, g) if plan.padded else dxp


def max_pool2d_forward(x: np.ndarray, kernel_size: Pair, stride: Pair, padding: Pair = (0, 0),
                       dilation: Pair = (1, 1), ceil_mode: bool = False, *, record_argmax: bool = True,
                       workspace: Optional[Workspace] = None):
    """2-D max pooling of ``x`` (N, C, H, W).

    Forward::

        y[n, c, i, j] = max over (h, w) in W(i, j) of x_p[n, c, h, w]     (padding is −∞)

    Backward: the whole gradient of an output goes to the position that won its max
    (the first one on ties, as in PyTorch)::

        dL/dx[n, c, h, w] = Σ_{(i, j) : argmax(i, j) = (h, w)} g[n, c, i, j]

    The cache keeps, per output, the window index t = a·k_w + b of the maximum (one byte
    for windows up to 256 positions). Backward selects ``g`` where ``argmax == t`` onto the
    strided slice of offset t: a plain write for offsets whose positions cannot collide
    (all of them when the windows do not overlap, stride >= kernel), an add for the rest.
    A window that holds only padding (possible with dilation) outputs −∞ and passes no gradient.

    ``record_argmax=False`` (inference) skips the index: the forward is then k_h·k_w − 1
    maximum passes, and a later backward recomputes the index from the cached input.
    ``workspace`` (the caller's, e.g. the layer's) holds scratch reused across calls; the
    arrays returned never share memory with it.

    Output: (N, C, H_out, W_out).
    """
    _check_batch("max_pool2d", x, 2)
    g = pool_geometry("max_pool2d", x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    y, argmax = _max_pool(x, g, record_argmax, workspace)
    return y, _PoolCache(g, x.shape[:2], argmax, False, None if record_argmax else x, workspace)


def max_pool2d_inference_step(x_shape, dtype, kernel_size: Pair, stride: Pair, padding: Pair = (0, 0),
                              dilation: Pair = (1, 1), ceil_mode: bool = False,
                              workspace: Optional[Workspace] = None):
    """``run(x) -> y``: ``max_pool2d_forward(x, ..., record_argmax=False)[0]`` for inputs of
    shape ``x_shape``, the window geometry worked out once; y is one buffer, rewritten by
    every call (a model's inference plan)."""
    g = pool_geometry("max_pool2d", tuple(x_shape[2:]), kernel_size, stride, padding, dilation, ceil_mode)
    y = step_buffer(tuple(x_shape[:2]) + g.out_size, dtype)
    if _compiled_2x2(np.dtype(dtype), int(np.prod(x_shape)), g, _plan(g)):   # decided once per plan
        return lambda x: kernels.max_pool_2x2(x, y, None)
    return lambda x: _max_pool(x, g, False, workspace, y)[0]


def max_pool2d_backward(dy: np.ndarray, cache) -> np.ndarray:
    """dL/dx of :func:`max_pool2d_forward` (also of :func:`max_pool1d_forward`)."""
    g = cache.geometry
    index = cache.payload
    if index is None:
        index = _max_pool(cache.source, g, True, cache.workspace)[1]
    dy = np.asarray(dy)
    if dy.dtype.kind != "f":
        dy = dy.astype(np.float64)
    dx = _max_unpool(dy.reshape(index.shape), index, g, cache.workspace)
    return dx[:, :, 0, :] if cache.squeeze else dx


def max_pool1d_forward(x: np.ndarray, kernel_size: int, stride: int, padding: int = 0,
                       dilation: int = 1, ceil_mode: bool = False, *, record_argmax: bool = True,
                       workspace: Optional[Workspace] = None):
    """1-D max pooling of ``x`` (N, C, L): :func:`max_pool2d_forward` on (N, C, 1, L) with a
    1 × k window. Output: (N, C, L_out)."""
    _check_batch("max_pool1d", x, 1)
    g = pool_geometry("max_pool1d", x.shape[2:], (kernel_size,), (stride,), (padding,), (dilation,),
                      ceil_mode, AXES_1D)
    x4 = x[:, :, None, :]
    y, argmax = _max_pool(x4, g, record_argmax, workspace)
    return y[:, :, 0, :], _PoolCache(g, x.shape[:2], argmax, True, None if record_argmax else x4, workspace)


max_pool1d_backward = max_pool2d_backward


# ----- average pooling ------------------------------------------------------------------------

def _avg_divisors(n: int, k: int, s: int, p: int, out: int, count_include_pad: bool) -> np.ndarray:
    """Per-axis divisor of each output, PyTorch's rule: a window is clipped to the padded input
    [−p, n + p) (counting padding) or to the input [0, n) (not counting it)."""
    start = np.arange(out) * s - p
    end = np.minimum(start + k, n + p)
    if count_include_pad:
        return end - start
    return np.minimum(end, n) - np.maximum(start, 0)


def _avg_pool(x: np.ndarray, g: PoolGeometry, divisor: np.ndarray, ws: Optional[Workspace]) -> np.ndarray:
    """Σ of the k_h·k_w strided views of the zero-padded input (added in window order),
    then divided by D in place."""
    plan = _plan(g)
    xp = _pad(x, g, 0, "avg_pool.input", ws) if plan.padded else x
    total = np.empty(x.shape[:2] + g.out_size, x.dtype)
    np.copyto(total, xp[plan.slices[0]])
    for window in plan.slices[1:]:
        np.add(total, xp[window], out=total)
    np.divide(total, divisor, out=total)
    return total


def _avg_unpool(dy: np.ndarray, g: PoolGeometry, divisor: np.ndarray, ws: Optional[Workspace]) -> np.ndarray:
    plan = _plan(g)
    share = scratch(ws, "avg_pool.share", dy.shape, np.result_type(dy, divisor))
    np.divide(dy, divisor, out=share)
    dxp = _gradient_buffer(dy.shape[:2] + g.padded_size, share.dtype, plan, "avg_pool.grad", ws)
    for window, assign in zip(plan.slices, plan.assign):
        target = dxp[window]
        if assign:
            np.copyto(target, share)
        else:
            np.add(target, share, out=target)
    return _unpad(dxp, g) if plan.padded else dxp


def _divisor(g: PoolGeometry, count_include_pad: bool, divisor_override, dtype) -> np.ndarray:
    """D as an array of the input's dtype: 0-d when every window has the same divisor (the
    usual case), so the division is by one number; memoised and read-only."""
    return _divisor_cached(g, bool(count_include_pad), divisor_override, np.dtype(dtype))


@lru_cache(maxsize=256)
def _divisor_cached(g: PoolGeometry, count_include_pad: bool, divisor_override, dtype: np.dtype) -> np.ndarray:
    if divisor_override is not None:
        divisor = np.asarray(divisor_override, dtype=dtype)
    else:
        rows, cols = (_avg_divisors(n, k, s, p, m, count_include_pad)
                      for n, k, s, p, m in zip(g.in_size, g.kernel, g.stride, g.padding, g.out_size))
        if rows.min() == rows.max() and cols.min() == cols.max():
            divisor = np.asarray(rows[0] * cols[0], dtype=dtype)
        else:
            divisor = np.outer(rows, cols).astype(dtype)
    divisor.flags.writeable = False
    return divisor


def avg_pool2d_forward(x: np.ndarray, kernel_size: Pair, stride: Pair, padding: Pair = (0, 0),
                       ceil_mode: bool = False, count_include_pad: bool = True, divisor_override=None,
                       *, workspace: Optional[Workspace] = None):
    """2-D average pooling of ``x`` (N, C, H, W).

    Forward (padding is 0)::

        y[n, c, i, j] = (1 / D(i, j)) · Σ over (h, w) in W(i, j) of x_p[n, c, h, w]

    The divisor D follows PyTorch: with ``divisor_override`` it is that number; otherwise
    D(i, j) = D_h(i)·D_w(j) where, per axis, a window starting at ``o·s − p`` is clipped to
    the padded input ``[−p, n + p)`` (``count_include_pad=True``: padding counts, but a
    ceil-mode window running past the padded edge divides by its clipped size) or to the
    input ``[0, n)`` (``count_include_pad=False``: only real inputs count).

    Backward: each output's gradient is shared equally over its window::

        dL/dx[n, c, h, w] = Σ_{(i, j) : (h, w) in W(i, j)} g[n, c, i, j] / D(i, j)

    done as k_h·k_w strided-slice writes (offsets that cannot collide) or adds of g / D.
    Output: (N, C, H_out, W_out).
    """
    _check_batch("avg_pool2d", x, 2)
    g = pool_geometry("avg_pool2d", x.shape[2:], kernel_size, stride, padding, (1, 1), ceil_mode)
    divisor = _divisor(g, count_include_pad, divisor_override, x.dtype)
    return _avg_pool(x, g, divisor, workspace), _PoolCache(g, x.shape[:2], divisor, False, None, workspace)


def avg_pool2d_backward(dy: np.ndarray, cache) -> np.ndarray:
    """dL/dx of :func:`avg_pool2d_forward` (also of :func:`avg_pool1d_forward`)."""
    g = cache.geometry
    dx = _avg_unpool(np.asarray(dy).reshape(cache.batch + g.out_size), g, cache.payload, cache.workspace)
    return dx[:, :, 0, :] if cache.squeeze else dx


def avg_pool1d_forward(x: np.ndarray, kernel_size: int, stride: int, padding: int = 0,
                       ceil_mode: bool = False, count_include_pad: bool = True, *,
                       workspace: Optional[Workspace] = None):
    """1-D average pooling of ``x`` (N, C, L): :func:`avg_pool2d_forward` on (N, C, 1, L) with
    a 1 × k window (PyTorch's AvgPool1d has no divisor_override). Output: (N, C, L_out)."""
    _check_batch("avg_pool1d", x, 1)
    g = pool_geometry("avg_pool1d", x.shape[2:], (kernel_size,), (stride,), (padding,), (1,),
                      ceil_mode, AXES_1D)
    divisor = _divisor(g, count_include_pad, None, x.dtype)
    y = _avg_pool(x[:, :, None, :], g, divisor, workspace)
    return y[:, :, 0, :], _PoolCache(g, x.shape[:2], divisor, True, None, workspace)


avg_pool1d_backward = avg_pool2d_backward


# ----- adaptive average pooling ---------------------------------------------------------------

def adaptive_matrix(n_in: int, n_out: int, dtype=np.float64) -> np.ndarray:
    """(n_out, n_in) averaging matrix of a 1-D adaptive average pool: row i holds
    1 / (e_i − s_i) on the window [s_i, e_i) = [floor(i·n_in/n_out), ceil((i+1)·n_in/n_out))."""
    a = np.zeros((n_out, n_in), dtype=dtype)
    for i in range(n_out):
        start, end = adaptive_window(i, n_in, n_out)
        a[i, start:end] = 1.0 / (end - start)
    return a


def adaptive_avg_pool2d_forward(x: np.ndarray, output_size: Pair):
    """Adaptive 2-D average pooling of ``x`` (N, C, H, W) to ``output_size`` (H_out, W_out).

    Output cell (i, j) averages rows [floor(i·H/H_out), ceil((i+1)·H/H_out)) and columns
    [floor(j·W/W_out), ceil((j+1)·W/W_out)) (windows may differ in size and overlap).
    The window is a rectangle, so its mean is separable: with A_h (H_out, H) and A_w
    (W_out, W) from :func:`adaptive_matrix`::

        y = A_h · x · A_wᵀ            (per sample and channel)
        dL/dx = A_hᵀ · g · A_w

    Output: (N, C, H_out, W_out).
    """
    _check_batch("adaptive_avg_pool2d", x, 2)
    out_h, out_w = (int(m) for m in output_size)
    if out_h < 1 or out_w < 1:
        raise ConvscopeError(f"adaptive_avg_pool2d: output_size must be positive, got {tuple(output_size)}")
    a_h = adaptive_matrix(x.shape[2], out_h, x.dtype)
    a_w = adaptive_matrix(x.shape[3], out_w, x.dtype)
    y = np.matmul(np.matmul(a_h, x), a_w.T)
    return y, (a_h, a_w)


def adaptive_avg_pool2d_backward(dy: np.ndarray, cache) -> np.ndarray:
    """dL/dx of :func:`adaptive_avg_pool2d_forward`."""
    a_h, a_w = cache
    return np.matmul(np.matmul(a_h.T, dy), a_w)


# ----- global average pooling -----------------------------------------------------------------

def global_avg_pool_forward(x: np.ndarray):
    """Mean over every spatial axis of ``x`` (N, C, *S): ``y[n, c] = (1/|S|) Σ_s x[n, c, s]``.

    Backward: ``dL/dx[n, c, s] = g[n, c] / |S|``. Output: (N, C).
    """
    if x.ndim < 3:
        raise ConvscopeError(f"global_avg_pool expects an array (N, C, *spatial) with at least one "
                             f"spatial axis, got shape {x.shape}")
    return x.mean(axis=tuple(range(2, x.ndim))), x.shape


def global_avg_pool_backward(dy: np.ndarray, cache) -> np.ndarray:
    """dL/dx of :func:`global_avg_pool_forward`."""
    shape = cache
    count = int(np.prod(shape[2:]))
    share = (dy / count).reshape(dy.shape + (1,) * (len(shape) - 2))
    return np.broadcast_to(share, shape).copy()

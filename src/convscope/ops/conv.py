"""Convolution (cross-correlation, as in PyTorch) in 2-D and 1-D: forward and backward.

Notation:
    x (N, C_in, H, W) input, w (C_out, C_in/G, k_h, k_w) filters, b (C_out,) biases,
    G groups (output channel o reads the C_g = C_in/G input channels of group g = o // (C_out/G)),
    s stride, d dilation, padding ((p_top, p_bottom), (p_left, p_right)),
    xpad the zero-padded input, y (N, C_out, H_out, W_out) output, dy = dL/dy.

Output size (``convscope.shapes.conv_output_size``, the one rule):
    H_out = floor((H + p_top + p_bottom - d_h·(k_h - 1) - 1) / s_h) + 1, likewise W_out.

Forward (window of output position (i, j) in group g's channels)::

    y[n, o, i, j] = b[o] + Σ_{c<C_g, a<k_h, e<k_w} xpad[n, g·C_g + c, i·s_h + a·d_h, j·s_w + e·d_w] · w[o, c, a, e]

Backward: the filter is shared by every position, so its gradient is a sum over positions::

    dL/dw[o]  = Σ_{n, i, j} window(n, g, i, j) · dy[n, o, i, j]
    dL/db[o]  = Σ_{n, i, j} dy[n, o, i, j]
    dL/dxpad  : every window receives w[o] · dy[n, o, i, j] (added where windows overlap);
                dL/dx is dL/dxpad with the padding cropped.

Several paths compute the same numbers:

* ``"reference"``: explicit loops over samples, output channels and positions, exactly the
  equations above. Slow; for reading, teaching and as the oracle of the fast paths.
* ``"im2col"``: the windows of the padded input are a strided view
  (:func:`convscope.ops.im2col.window_view`) copied once into ``cols`` of shape
  (N, G, K, P) with K = C_g·k_h·k_w and P = H_out·W_out, so ``W (G, C_out/G, K) @ cols``
  is (N, G, C_out/G, P), which *is* NCHW after a reshape. Backward: dW by per-sample GEMMs
  summed over the batch or one GEMM over batch × positions, whichever moves fewer values
  (:func:`convscope.ops.conv_backward.weight_grad`), ``dcols = Wᵀ @ dy``, and col2im by
  k_h·k_w strided slice adds.
* ``"pointwise"`` (chosen automatically): 1×1 stride-1 unpadded layers are a plain GEMM on
  the input itself, with no window copy and no col2im.
* ``"winograd"``: stride-1 3×3 layers by Winograd F(2×2, 3×3) (:mod:`convscope.ops.winograd`).

* ``"shifted"``: stride-1 ungrouped layers with every padded plane flattened, so kernel
  offset (a, b) is a flat shift a·d_h·W_p + b·d_w: the window copy runs over whole rows,
  outputs are computed W_p wide (the extra columns are cropped, their gradients zero), and
  forward and dW are each ONE GEMM over the batch (cols is (C·k_h·k_w, N·H_out·W_p)).

* ``"offset"`` (needs numba): stride-1, undilated, ungrouped layers with the windows copied
  kernel offset by offset into cols (C·k_h·k_w, N·H_out·W_out) by a plain compiled loop, so
  forward, dW and the window gradients are each ONE GEMM over the batch (no garbage columns,
  unlike "shifted"); the window gradients go back onto the input by the adjoint loop.

``path=None`` (what layers pass) uses the path of the innermost enclosing
``with using_path(name):`` block, a scoped override that ends with the block and is private
to its thread or asyncio task (a context variable), else ``"auto"``. (:func:`set_default_path`
changes the fallback for the whole process; kept for old scripts.) ``"auto"`` (alias
``"fast"``) picks Winograd for stride-1 3×3 layers with at least ``WINOGRAD_MIN_CHANNELS``
input and output channels, ``"pointwise"`` for 1×1 layers, ``"offset"`` for other stride-1
layers when numba is installed (else ``"shifted"`` for those with deep enough windows), ``"depthwise"`` for
layers with groups = C_in = C_out (k_h·k_w vectorised multiply-adds: one filter per channel
leaves no GEMM worth doing), and im2col otherwise. ``"space_to_depth"`` (forced only)
rewrites a strided layer as a stride-1 one over the s×s input phases. 1-D convolution is
the 2-D op with H = 1 (:func:`conv1d_forward`, :func:`conv1d_backward`).
Arrays keep their dtype: float32 in, float32 out. Scratch comes from the caller's
``workspace`` (:mod:`convscope.ops.workspace`); no returned array shares memory with it.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..errors import ConvscopeError
from ..shapes import conv_output_size
from ..threads import run_split
from . import kernels, winograd
from .conv_backward import shifted_input_grad, weight_grad
from .im2col import col2im_add, pad2d, unpad2d, window_view
from .workspace import Workspace, fresh_copy, scratch, step_buffer, transient, transient_scope

__all__ = ["conv2d_forward", "conv2d_backward", "conv1d_forward", "conv1d_backward",
           "using_path", "set_default_path", "get_default_path", "PATHS"]

#: Every path. "auto" (alias "fast") picks per layer: depthwise multiply-adds for
#: groups = C_in = C_out, Winograd for wide stride-1 3×3 layers, a plain GEMM for 1×1
#: ("pointwise"), "offset" for other stride-1 layers with numba (else shifted im2col for deep
#: stride-1 windows), im2col otherwise.
PATHS = ("auto", "fast", "im2col", "shifted", "offset", "pointwise", "depthwise", "space_to_depth",
         "winograd", "reference")
_default_path = "auto"
#: The scoped override set by :func:`using_path` (None outside any such block).
_scoped_path: "contextvars.ContextVar[Optional[str]]" = contextvars.ContextVar("convscope_conv_path",
                                                                             default=None)

#: Winograd's transforms cost memory passes that only pay off with enough channels to share
#: them (measured on this project's benchmarks: slower than im2col below ~16 channels).
WINOGRAD_MIN_CHANNELS = 16


def _check_path(path: str) -> None:
    if path not in PATHS:
        raise ConvscopeError(f"convolution path must be one of {', '.join(PATHS)}, got {path!r}")


@contextlib.contextmanager
def using_path(path: str) -> Iterator[None]:
    """Within the ``with`` block, every convolution called with ``path=None`` (every layer)
    takes ``path``; the previous choice comes back when the block ends, even on an error::

        with cs.ops.conv.using_path("reference"):
            y = model.forward(x)

    A special-purpose path ("winograd", "shifted", "pointwise", "depthwise",
    "space_to_depth") applies to the layers it can compute; the others take "auto".
    Blocks nest; the setting belongs to the current thread or task (a context variable).
    """
    _check_path(path)
    token = _scoped_path.set(path)
    try:
        yield
    finally:
        _scoped_path.reset(token)


def set_default_path(path: str) -> None:
    """Choose the process-wide fallback used when an op is called with ``path=None`` outside
    any :func:`using_path` block. Prefer :func:`using_path`, which is scoped; this stays for
    existing scripts.

    A special-purpose default ("winograd", "shifted", "pointwise", "depthwise",
    "space_to_depth") applies to the layers it can compute; the others fall back to
    "auto". "im2col" and "reference" apply to every layer.
    """
    global _default_path
    _check_path(path)
    _default_path = path


def get_default_path() -> str:
    """The path used when an op is called with ``path=None`` here: the innermost
    :func:`using_path` block's, else the process-wide fallback."""
    scoped = _scoped_path.get()
    return _default_path if scoped is None else scoped


def _unavailable(path: str, kernel, stride, dilation, groups: int, pads, c_in: int, c_out: int):
    """Why ``path`` cannot compute this layer exactly (None when it can)."""
    if path == "winograd" and not (winograd.applies(kernel, stride, dilation, groups)
                                   and max(max(p) for p in pads) <= 2):
        return "a 3×3 kernel, stride 1, dilation 1, groups 1 and padding at most 2"
    if path == "depthwise" and not (groups == c_in == c_out and groups > 1):
        return "groups == in_channels == out_channels"
    if path == "space_to_depth" and not space_to_depth_applies(stride, dilation, groups):
        return "stride > 1, dilation 1 and groups 1"
    if path == "shifted" and (tuple(stride) != (1, 1) or groups != 1):
        return "stride 1 and groups 1"
    if path == "offset" and not (tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1
                                 and kernels.AVAILABLE):
        return "stride 1, dilation 1, groups 1 and numba (the fast extra)"
    if path == "pointwise" and not (tuple(kernel) == (1, 1) and tuple(stride) == (1, 1) and groups == 1
                                    and not any(map(any, pads))):
        return "a 1×1 kernel, stride 1, groups 1 and no padding"
    return None


def choose_path(path: Optional[str], kernel, stride, dilation, groups: int, pads, c_in: int, c_out: int,
                width: Optional[int] = None, inference: bool = False, out_size=None,
                batch: Optional[int] = None) -> str:
    """The concrete path ("im2col", "shifted", "depthwise", "space_to_depth", "pointwise",
    "winograd" or "reference") a call takes. ``inference`` (nothing kept for backward): "auto"
    never picks "shifted", whose gain is its one-GEMM dW (see SHIFTED_MIN_DEPTH). ``out_size``
    (H_out, W_out) and ``batch``, when both given, keep Winograd off calls with fewer than
    WINOGRAD_MIN_POSITIONS output positions.

    A path asked for by this call must apply (else an error says what it needs); the scoped
    or module default falls back to "auto" for layers it cannot compute.
    """
    explicit = path is not None
    path = get_default_path() if path is None else path
    _check_path(path)
    needs = _unavailable(path, kernel, stride, dilation, groups, pads, c_in, c_out)
    if needs is not None:
        if explicit:
            raise ConvscopeError(f"the {path} path needs {needs}; use path 'auto' for this layer")
        path = "auto"
    if path not in ("auto", "fast"):
        return path
    if groups == c_in == c_out and groups > 1:
        return "depthwise"
    if _unavailable("winograd", kernel, stride, dilation, groups, pads, c_in, c_out) is None \
            and c_in >= WINOGRAD_MIN_CHANNELS and c_out >= WINOGRAD_MIN_CHANNELS \
            and (out_size is None or batch is None
                 or batch * out_size[0] * out_size[1] >= WINOGRAD_MIN_POSITIONS):
        return "winograd"
    if _unavailable("pointwise", kernel, stride, dilation, groups, pads, c_in, c_out) is None:
        return "pointwise"
    if _unavailable("offset", kernel, stride, dilation, groups, pads, c_in, c_out) is None and (
            out_size is None or batch is None or _offset_pays(c_in * kernel[0] * kernel[1], batch, out_size,
                                                              inference)):
        return "offset"
    if not inference and groups == 1 and c_in * kernel[0] * kernel[1] >= SHIFTED_MIN_DEPTH \
            and shifted_applies(kernel, stride, dilation, pads, width):
        return "shifted"
    return "im2col"


#: Winograd F(2×2, 3×3) needs this many output positions (batch × H_out × W_out) to pay: its
#: 16 transformed filters are 16/9 times the filters' size, and with few positions reading
#: them costs more than the multiplications saved. Measured (one thread, 512 → 512 channels,
#: Winograd against im2col): 7×7 at batch 1 (49 positions) 8.5 against 5.8 ms forward, 38
#: against 19 ms forward and backward; at batch 2 (98) a tie forward, 44 against 32 ms
#: training; 4×4 at batch 8 (128) 11.6 against 17.3 ms forward; 2×2 at batch 32 (128)
#: 15 against 34 ms forward, 53 against 80 ms training.
WINOGRAD_MIN_POSITIONS = 100

#: "offset" is taken only for window matrices of at least this many values (2 MB in float32):
#: below, the per-sample paths are as fast, and they need no compiled loops, whose first use
#: costs a process about 0.5 s and 125 MB (numba's import and runtime). The main job's CNN on
#: 8×8 digits (windows of 18K and 295K values) took 5.95 s with "offset" and 5.44 s without.
OFFSET_MIN_VALUES = 1 << 19

#: Inference takes "offset" (one GEMM over the batch, then a copy to NCHW) only for maps of
#: fewer output positions than this, where per-sample products are thin (LeNet-5's conv2:
#: 100 positions, 1.79 -> 1.15 ms at batch 64); on larger maps per-sample GEMMs are already
#: efficient and write NCHW directly (CIFAR's 3->32 stem at 32×32: 0.43 of torch's time by
#: im2col, 0.80 by "offset"). A single sample is one plain GEMM either way (im2col).
OFFSET_MAX_INFERENCE_POSITIONS = 256


def _offset_pays(depth: int, batch: int, out_size, inference: bool) -> bool:
    """Whether "auto" takes "offset" for a window matrix of depth × batch·H_out·W_out values."""
    positions = out_size[0] * out_size[1]
    if depth * batch * positions < OFFSET_MIN_VALUES:
        return False
    return not inference or (batch > 1 and positions < OFFSET_MAX_INFERENCE_POSITIONS)


#: The shifted path computes W_p instead of W_out columns per row; past this ratio the
#: wasted GEMM work outweighs the faster copy.
SHIFTED_MAX_WIDTH_RATIO = 1.5
#: ... and its one batch-wide GEMM only beats per-sample GEMMs once each window holds
#: this many values (C_in·k_h·k_w; measured: LeNet's 6·5·5 wins, 1·5·5 and 3·3·3 lose).
#: Forward alone it loses: on LeNet's conv2 at batch 64, per-sample GEMMs (im2col) took
#: 0.88 ms against 1.40 ms (medians, one thread), and with 2 threads on shared cores the one
#: big threaded GEMM waited for its second thread (13–24 ms against 0.87 ms).
SHIFTED_MIN_DEPTH = 64

#: Space-to-depth is not chosen by "auto": on AlexNet's conv1 (11×11/4) it measured no
#: faster than im2col on this project's 2-core benchmark machine and used more memory
#: (its regrouped copies of input and filters). Force it with path="space_to_depth".


def space_to_depth_applies(stride, dilation, groups) -> bool:
    return max(stride) > 1 and tuple(dilation) == (1, 1) and groups == 1


def shifted_applies(kernel, stride, dilation, pads, width: int) -> bool:
    """Whether the shifted im2col (stride 1, modest padding overhead) suits this layer."""
    if tuple(stride) != (1, 1) or width is None:
        return False
    padded = width + pads[1][0] + pads[1][1]
    out = padded - dilation[1] * (kernel[1] - 1)
    return out >= 1 and padded <= SHIFTED_MAX_WIDTH_RATIO * out


@dataclass
class ConvCache:
    """What backward needs from the last forward pass."""

    path: str
    x_shape: Tuple[int, ...]
    w: np.ndarray
    has_bias: bool
    stride: Tuple[int, int]
    pads: Tuple[Tuple[int, int], Tuple[int, int]]
    dilation: Tuple[int, int]
    groups: int
    # im2col, offset, pointwise: x; shifted: (x, padded shape); depthwise and
    # reference: xpad; winograd: its own cache; space_to_depth: (inner cache, shapes).
    data: object
    workspace: Optional[Workspace] = None   # the caller's scratch, reused by backward


# ----- argument handling ----------------------------------------------------------------------

def _pair(value, name: str) -> Tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    values = tuple(int(v) for v in value)
    if len(values) != 2:
        raise ConvscopeError(f"{name} must be an integer or 2 integers, got {value!r}")
    return values


def _pads2d(padding) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """int p, (p_h, p_w) or ((top, bottom), (left, right)) -> ((top, bottom), (left, right))."""
    if isinstance(padding, (int, np.integer)):
        return (int(padding),) * 2, (int(padding),) * 2
    padding = tuple(padding)
    if len(padding) == 2 and all(isinstance(p, (int, np.integer)) for p in padding):
        return (int(padding[0]),) * 2, (int(padding[1]),) * 2
    if len(padding) == 2 and all(len(p) == 2 for p in padding):
        return tuple((int(p[0]), int(p[1])) for p in padding)
    raise ConvscopeError(f"padding must be an int, (p_h, p_w) or ((top, bottom), (left, right)), "
                         f"got {padding!r}")


def _check(name: str, x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray], groups: int) -> None:
    """Shape agreement between input, filters and biases; errors say expected vs got."""
    for label, array in (("input", x), ("weight", w)):
        if array.dtype.kind != "f":   # real floating point, as np.issubdtype(..., np.floating)
            raise ConvscopeError(f"{name} expects a floating-point {label}, got {array.dtype}; "
                                 "convert it with .astype(np.float32)")
    if groups < 1:
        raise ConvscopeError(f"{name}: groups must be a positive integer, got {groups}")
    c_out, c_per_group = w.shape[:2]
    if c_out % groups:
        raise ConvscopeError(f"{name}: {c_out} output channels cannot be split into {groups} groups; "
                             "use a groups value that divides the output channels")
    if x.shape[1] != c_per_group * groups:
        raise ConvscopeError(f"{name}: the weight expects {c_per_group * groups} input channels "
                             f"({c_per_group} per group × {groups} groups), got {x.shape[1]}")
    if b is not None and b.shape != (c_out,):
        raise ConvscopeError(f"{name}: bias must have shape ({c_out},), got {b.shape}")


def _output_size(name, x_shape, kernel, stride, pads, dilation) -> Tuple[int, int]:
    out = []
    for axis, n, k, s, (lo, hi), d in zip(("height", "width"), x_shape[2:], kernel, stride, pads, dilation):
        size = conv_output_size(n, k, s, lo, hi, d)
        if size < 1:
            span = d * (k - 1) + 1
            raise ConvscopeError(f"{name}: the kernel spans {span} along {axis} but the padded input "
                                 f"has {n + lo + hi} ({n} + padding {lo} + {hi}); use a smaller kernel "
                                 "or dilation, or more padding")
        out.append(size)
    return tuple(out)


def _span(i: int, s: int, k: int, d: int) -> slice:
    """Rows (or columns) of the padded input seen by output index i: i·s, i·s + d, ..., i·s + d·(k-1)."""
    return slice(i * s, i * s + d * (k - 1) + 1, d)


# ----- 2-D ------------------------------------------------------------------------------------

def conv2d_forward(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray] = None, stride=1, padding=0,
                   dilation=1, groups: int = 1, path: Optional[str] = None,
                   workspace: Optional[Workspace] = None, _name: str = "conv2d",
                   keep_for_backward: bool = True):
    """y = x ⋆ w + b (cross-correlation) for x (N, C_in, H, W), w (C_out, C_in/G, k_h, k_w).

    ``padding`` is an int, ``(p_h, p_w)`` or ``((top, bottom), (left, right))``. Returns
    ``(y, cache)`` with y of shape (N, C_out, H_out, W_out); pass ``cache`` to
    :func:`conv2d_backward`. ``workspace``, a :class:`~convscope.ops.workspace.Workspace`
    the caller owns (a layer owns one), lets the fast paths reuse their column matrices and
    scratch across calls of the same shape instead of allocating them anew each time; the
    arrays returned (here and by backward) never share memory with it.
    ``keep_for_backward=False`` (inference) returns ``(y, None)`` and keeps nothing for
    backward: no window matrix, no Winograd input transform, no padded copy.
    """
    x, w = np.asarray(x), np.asarray(w)
    b = None if b is None else np.asarray(b)
    if x.ndim != 4 or w.ndim != 4:
        raise ConvscopeError(f"{_name} expects a 4-D input (N, C, H, W) and 4-D weight, got shapes "
                             f"{x.shape} and {w.shape}")
    stride, dilation, pads = _pair(stride, "stride"), _pair(dilation, "dilation"), _pads2d(padding)
    groups = int(groups)
    _check(_name, x, w, b, groups)
    kernel = w.shape[2:]
    out = _output_size(_name, x.shape, kernel, stride, pads, dilation)
    path = choose_path(path, kernel, stride, dilation, groups, pads, x.shape[1], w.shape[0], x.shape[3],
                       inference=not keep_for_backward, out_size=out, batch=x.shape[0])
    if path == "winograd":
        y, data = winograd.conv3x3_forward(x, w, b, pads, keep_for_backward=keep_for_backward,
                                           workspace=workspace, reuse_filters=not keep_for_backward)
        return y, _cache(keep_for_backward, path, x.shape, w, b is not None, stride, pads, dilation, groups,
                         data, workspace)
    if path == "depthwise":
        y = kernels.depthwise_forward(x, w, b, stride, dilation, pads, out)
        if y is not None:   # numba's one-pass loop; without numba the NumPy path below
            return y, _cache(keep_for_backward, path, x.shape, w, b is not None, stride, pads, dilation,
                             groups, pad2d(x, pads) if keep_for_backward else None, workspace)
    if path == "pointwise":
        y, data = _forward_pointwise(x, w), x
    elif path == "shifted":
        y, data = _forward_shifted(x, w, pads, dilation, out, workspace)
    elif path == "space_to_depth":
        y, data = _forward_space_to_depth(x, w, pads, stride, out, workspace)
    elif path == "depthwise":
        xpad = pad2d(x, pads)
        y, data = _forward_depthwise(xpad, w, stride, dilation, out, workspace), xpad
    elif path == "offset" and _offset_dtype(np.result_type(x, w)):
        y, data = _forward_by_offset(pad2d(x, pads), w, b, out, workspace), x   # backward copies the windows again
    elif path in ("im2col", "offset"):   # (offset: numba's loops take float32 and float64 only)
        path = "im2col"
        y = _forward_fast(pad2d(x, pads), w, b, kernel, stride, dilation, groups, out, workspace)
        data = x   # backward copies the windows again (see _backward_fast)
    else:
        xpad = pad2d(x, pads)
        y, data = _forward_reference(xpad, w, kernel, stride, dilation, groups, out), xpad
    if b is not None and path not in ("im2col", "offset"):   # those two add it with their last pass
        y += b.reshape(1, -1, 1, 1)
    return y, _cache(keep_for_backward, path, x.shape, w, b is not None, stride, pads, dilation, groups, data,
                     workspace)


def conv2d_inference_step(x_shape, w_shape, dtype, stride, padding, dilation, groups: int,
                          workspace: Optional[Workspace] = None):
    """A function ``run(x, w, b) -> y`` doing exactly what ``conv2d_forward(x, w, b, ...,
    keep_for_backward=False)`` does for inputs of shape ``x_shape`` (N, C_in, H, W), with the
    argument checks, output size and path choice done once, here, and y written into one buffer
    that every call rewrites: for a model's inference plan
    (:meth:`convscope.layers.base.Layer.inference_step`). None when the path is not im2col (the
    others keep their own per-call work; the plan then calls the layer's forward)."""
    stride, dilation, pads = _pair(stride, "stride"), _pair(dilation, "dilation"), _pads2d(padding)
    kernel = tuple(w_shape[2:])
    out = _output_size("conv2d", x_shape, kernel, stride, pads, dilation)
    path = choose_path(None, kernel, stride, dilation, groups, pads, x_shape[1], w_shape[0], x_shape[3],
                       inference=True, out_size=out, batch=x_shape[0])
    if path not in ("im2col", "offset"):
        return None

    n, c_out = x_shape[0], w_shape[0]
    if path == "offset" and _offset_dtype(dtype):
        cols = step_buffer((x_shape[1],) + kernel + (n,) + tuple(out), dtype)
        wide = step_buffer((c_out, n * out[0] * out[1]), dtype)
        y_buffer = step_buffer((n, c_out) + tuple(out), dtype)

        return lambda x, w, b: _forward_by_offset(pad2d(x, pads), w, b, out, workspace, cols, wide, y_buffer)
    if n == 1 and groups == 1:
        return _single_sample_step(x_shape, w_shape, dtype, stride, pads, dilation, out)
    buffer = step_buffer((n, groups, c_out // groups, out[0] * out[1]), dtype)
    cols = step_buffer((n, x_shape[1]) + kernel + tuple(out), dtype)  # the windows, rewritten by every call

    def run(x, w, b):
        return _forward_fast(pad2d(x, pads), w, b, kernel, stride, dilation, groups, out, workspace, buffer, cols)
    return run


def _single_sample_step(x_shape, w_shape, dtype, stride, pads, dilation, out):
    """The inference step of an ungrouped convolution of ONE sample: the windows copied into
    cols (C_in·k_h·k_w, H_out·W_out), then y (C_out, H_out·W_out) = W (C_out, C_in·k_h·k_w) @ cols
    + b, with every view made here once (at batch 1 the per-call shape work was a quarter of
    LeNet-5's conv steps), the windows copied by :func:`_window_copier`'s rule (LeNet-5's
    conv2 by numba's row loop: 11.2 -> 7.4 µs)."""
    c_in, c_out, kernel = x_shape[1], w_shape[0], tuple(w_shape[2:])
    depth, positions = c_in * kernel[0] * kernel[1], out[0] * out[1]
    cols = step_buffer((1, c_in) + kernel + tuple(out), dtype)
    y = step_buffer((1, c_out) + tuple(out), dtype)
    cols_matrix, y_matrix = cols.reshape(depth, positions), y.reshape(c_out, positions)
    copy_windows = _window_copier(cols, kernel, stride, dilation, out)

    def run_single(x, w, b):
        copy_windows(np.ascontiguousarray(pad2d(x, pads), dtype=cols.dtype), 0, 1)
        np.matmul(w.reshape(c_out, depth), cols_matrix, out=y_matrix)
        if b is not None:
            np.add(y_matrix, b.reshape(c_out, 1), out=y_matrix)
        return y
    return run_single


def _window_copier(cols, kernel, stride, dilation, out):
    """``copy(xpad, lo, hi)``: the windows of samples lo..hi-1 of the padded input xpad
    (C-contiguous, cols' dtype) into cols (N, C, k_h, k_w, H_out, W_out), im2col's matrix.
    Stride-1 undilated windows are copied by numba's row loop when numba is loaded or cols is
    large (1.5-1.7x NumPy's copy of the strided view, whose rows are only W_out values long);
    else NumPy copies the view."""
    if tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) \
            and kernels.exact_elementwise(cols.dtype, cols.size, min_values=0):   # a copy: exact
        by_sample = kernels.compiled("windows_by_sample")
        return lambda xpad, lo, hi: by_sample(xpad, cols, lo, hi)

    def copy_view(xpad, lo, hi):
        np.copyto(cols[lo:hi], window_view(xpad[lo:hi], kernel, stride, dilation, out))
    return copy_view


def _cache(keep: bool, *fields) -> Optional[ConvCache]:
    """The ConvCache backward needs, or None for an inference pass (nothing kept alive)."""
    return ConvCache(*fields) if keep else None


def conv2d_backward(dy: np.ndarray, cache: ConvCache, need_dx: bool = True):
    """Gradients ``(dx, dw, db)`` of the convolution that produced ``cache``; db is None
    when the forward pass had no bias, dx is None when ``need_dx`` is False (the fast
    paths then skip the whole dcols/col2im half of the work)."""
    dy = np.asarray(dy)
    if cache.path == "winograd":
        return winograd.conv3x3_backward(dy, cache.data, need_dx=need_dx)
    db = dy.sum(axis=(0, 2, 3)) if cache.has_bias else None
    if cache.path == "im2col":
        dx, dw = _backward_fast(dy, cache, need_dx)
    elif cache.path == "pointwise":
        dx, dw = _backward_pointwise(dy, cache, need_dx)
    elif cache.path == "shifted":
        dx, dw = _backward_shifted(dy, cache, need_dx)
    elif cache.path == "offset":
        dx, dw = _backward_by_offset(dy, cache, need_dx)
    elif cache.path == "depthwise":
        dx, dw = _backward_depthwise(dy, cache, need_dx)
    elif cache.path == "space_to_depth":
        dx, dw = _backward_space_to_depth(dy, cache, need_dx)
    else:
        dx, dw = _backward_reference(dy, cache)
        dx = dx if need_dx else None
    return dx, dw, db


def _forward_reference(xpad, w, kernel, stride, dilation, groups, out):
    n_batch, c_out = xpad.shape[0], w.shape[0]
    c_g, o_g = w.shape[1], c_out // groups
    (k_h, k_w), (s_h, s_w), (d_h, d_w), (h_out, w_out) = kernel, stride, dilation, out
    y = np.zeros((n_batch, c_out, h_out, w_out), dtype=np.result_type(xpad, w))
    for n in range(n_batch):
        for o in range(c_out):
            g = o // o_g
            channels = slice(g * c_g, (g + 1) * c_g)
            for i in range(h_out):
                for j in range(w_out):
                    window = xpad[n, channels, _span(i, s_h, k_h, d_h), _span(j, s_w, k_w, d_w)]
                    y[n, o, i, j] = np.sum(window * w[o])
    return y


def _backward_reference(dy, cache: ConvCache):
    xpad, w = cache.data, cache.w
    c_out, c_g, k_h, k_w = w.shape
    o_g = c_out // cache.groups
    (s_h, s_w), (d_h, d_w) = cache.stride, cache.dilation
    dtype = np.result_type(dy, w)
    dw = np.zeros(w.shape, dtype=dtype)
    dxpad = np.zeros(xpad.shape, dtype=dtype)
    n_batch, _, h_out, w_out = dy.shape
    for n in range(n_batch):
        for o in range(c_out):
            g = o // o_g
            channels = slice(g * c_g, (g + 1) * c_g)
            for i in range(h_out):
                for j in range(w_out):
                    rows, cols = _span(i, s_h, k_h, d_h), _span(j, s_w, k_w, d_w)
                    delta = dy[n, o, i, j]
                    dw[o] += xpad[n, channels, rows, cols] * delta     # window × delta
                    dxpad[n, channels, rows, cols] += w[o] * delta    # filter × delta, scattered
    return fresh_copy(unpad2d(dxpad, cache.pads)), dw


#: The im2col forward splits its samples over convscope's threads when their windows hold at
#: least this many values (each thread copies its samples' windows and makes their products)
#: and each sample's product is small enough that BLAS runs it on one thread. LeNet-5's conv1
#: at inference, batch 64, two threads: 0.89 -> 0.63 ms (min of 15), conv2 by im2col 1.23 ->
#: 0.88 ms.
SPLIT_MIN_WINDOW_VALUES = 1 << 18
#: OpenBLAS runs a GEMM of at most this many multiply-adds (M·N·K) on one thread
#: (SMP_THRESHOLD_MIN · GEMM_MULTITHREAD_THRESHOLD = 65536 · 4, interface/gemm.c); larger
#: per-sample products (ResNet's strided 3×3 layers) already use every core, and splitting
#: their samples too would run two BLAS thread pools on two cores.
BLAS_ONE_THREAD_MACS = 1 << 18


def _forward_fast(xpad, w, b, kernel, stride, dilation, groups, out, ws=None, y=None, cols=None):
    """im2col: y[n, g] = W_g (C_out/G, K) @ cols[n, g] (K, P) (+ b), K = C_in/G·k_h·k_w,
    P = H_out·W_out, over the windows copied into cols (N, C_in, k_h, k_w, H_out, W_out).
    Returns y (N, C_out, H_out, W_out)."""
    n_batch, c_in = xpad.shape[:2]
    c_out = w.shape[0]
    k = w.shape[1] * kernel[0] * kernel[1]
    positions = out[0] * out[1]
    if cols is None:
        cols = transient(ws, "conv.cols", (n_batch, c_in) + tuple(kernel) + tuple(out), xpad.dtype)
    xpad = np.ascontiguousarray(xpad, dtype=cols.dtype)
    copy_windows = _window_copier(cols, kernel, stride, dilation, out)
    matrix = cols.reshape(n_batch, groups, k, positions)
    if y is None:
        y = np.empty((n_batch, groups, c_out // groups, positions), np.result_type(w, cols))
    if n_batch * groups == 1:  # one plain GEMM: numpy's stacked matmul costs ~3 µs more a call
        copy_windows(xpad, 0, 1)
        np.matmul(w.reshape(c_out, k), matrix[0, 0], out=y[0, 0])
        if b is not None:
            y[0, 0] += b.reshape(c_out, 1)
        return y.reshape(n_batch, c_out, *out)
    w_groups = w.reshape(groups, c_out // groups, k)
    bias = None if b is None else b.reshape(groups, c_out // groups, 1)

    def samples(lo: int, hi: int) -> None:   # each thread its own samples: the same bits whatever the split
        copy_windows(xpad, lo, hi)
        np.matmul(w_groups, matrix[lo:hi], out=y[lo:hi])   # (N, G, C_out/G, P)
        if bias is not None:
            y[lo:hi] += bias

    per_sample = max(1, int(np.prod(cols.shape[1:])))
    if c_out * k * positions // groups > BLAS_ONE_THREAD_MACS:
        samples(0, n_batch)
    else:
        run_split(samples, n_batch, min_part=max(1, SPLIT_MIN_WINDOW_VALUES // 2 // per_sample))
    return y.reshape(n_batch, c_out, *out)


def _windows_again(cache: ConvCache, out) -> np.ndarray:
    """The forward pass's window matrix (N, G, K, P), copied again from the input it kept.

    Training keeps x rather than the windows, which are k_h·k_w/(s_h·s_w) times larger
    (ResNet-18's strided 3×3 layers: 2.25×; LeNet-5's conv1: 19×): one more copy per
    backward, for a cache the size of the input (x is usually alive anyway, the previous
    layer's output). The copy, by the forward's rule (:func:`_window_copier`), is a transient
    of the model's arena."""
    xpad = np.ascontiguousarray(pad2d(cache.data, cache.pads))
    n, c_in = xpad.shape[:2]
    kernel = tuple(cache.w.shape[2:])
    cols = transient(cache.workspace, "conv.cols", (n, c_in) + kernel + tuple(out), xpad.dtype)
    _window_copier(cols, kernel, cache.stride, cache.dilation, out)(xpad, 0, n)
    return cols.reshape(n, cache.groups, c_in // cache.groups * kernel[0] * kernel[1], out[0] * out[1])


def _offset_dtype(dtype) -> bool:
    """Whether the "offset" path's numba loops take this dtype (float32, float64)."""
    return np.dtype(dtype) in (np.dtype(np.float32), np.dtype(np.float64))


def _forward_by_offset(xpad, w, b, out, ws=None, cols=None, wide=None, y=None):
    """Stride-1 ungrouped inference as ONE GEMM over the batch: the windows copied kernel offset
    by offset into cols (C·k_h·k_w, N·H_out·W_out) by numba's plain loop
    (:func:`convscope.ops.kernels.windows_by_offset`), wide = W (C_out, C·k_h·k_w) @ cols,
    then one pass to NCHW adding the bias b (or None). Per-sample GEMMs (im2col) are thin
    when H_out·W_out is small: LeNet-5's conv2 at batch 64 is 64 products of 16×150 by
    150×100, which one 16×150 by 150×6400 product beats, and the offset-major copy runs whole
    rows of every sample in turn (1.5–1.7× NumPy's copy of the strided view, one thread)."""
    n, c_in = xpad.shape[:2]
    c_out, _, k_h, k_w = w.shape
    positions = out[0] * out[1]
    if cols is None:
        cols = transient(ws, "conv.offset.cols", (c_in, k_h, k_w, n) + tuple(out), np.result_type(xpad, w))
    kernels.windows_by_offset(xpad, cols)
    wide = transient(ws, "conv.offset.y", (c_out, n * positions), cols.dtype) if wide is None else wide
    np.matmul(w.reshape(c_out, -1).astype(cols.dtype, copy=False), cols.reshape(c_in * k_h * k_w, -1), out=wide)
    y = np.empty((n, c_out) + tuple(out), cols.dtype) if y is None else y
    by_sample = wide.reshape(c_out, n, positions).transpose(1, 0, 2)
    if b is None:
        np.copyto(y.reshape(n, c_out, positions), by_sample)
    else:
        np.add(by_sample, b.reshape(1, c_out, 1), out=y.reshape(n, c_out, positions))
    return y


def _backward_by_offset(dy, cache: ConvCache, need_dx: bool = True):
    """Backward of :func:`_forward_by_offset`, one GEMM each for dW and the window gradients:

        dW (C_out, K)      = dy (C_out, N·P) @ colsᵀ,   cols the windows copied again from x
        dcols (K, N·P)     = Wᵀ @ dy,   then added back onto the padded input's pixels
                             (numba's adjoint loop, samples split over threads)."""
    x, w = cache.data, cache.w
    n, c_in = x.shape[:2]
    c_out, _, k_h, k_w = w.shape
    out = tuple(dy.shape[2:])
    positions = out[0] * out[1]
    dtype = np.result_type(dy, w)
    ws = cache.workspace
    dy_t = transient(ws, "conv.offset.dy", (c_out, n, positions), dtype)
    np.copyto(dy_t, dy.reshape(n, c_out, positions).transpose(1, 0, 2))
    dy_mat = dy_t.reshape(c_out, n * positions)
    with transient_scope(ws):   # the windows die once dW is made
        cols = transient(ws, "conv.offset.cols", (c_in, k_h, k_w, n) + out, dtype)
        kernels.windows_by_offset(pad2d(x, cache.pads), cols)
        dw = np.matmul(dy_mat, cols.reshape(-1, n * positions).T)
    dw = dw.reshape(w.shape)
    if not need_dx:
        return None, dw
    dcols = np.matmul(w.reshape(c_out, -1).T.astype(dtype, copy=False), dy_mat,
                      out=transient(ws, "conv.offset.dcols", (c_in * k_h * k_w, n * positions), dtype))
    (top, bottom), (left, right) = cache.pads
    height, width = x.shape[2:]
    padded = (n, c_in, height + top + bottom, width + left + right)
    has_pad = padded != tuple(x.shape)
    dxpad = transient(ws, "conv.offset.dxpad", padded, dtype) if has_pad else np.empty(padded, dtype)
    dxpad.fill(0)
    kernels.add_windows_by_offset(dcols.reshape(c_in, k_h, k_w, n, *out), dxpad)
    return (fresh_copy(unpad2d(dxpad, cache.pads)) if has_pad else dxpad), dw


def _backward_fast(dy, cache: ConvCache, need_dx: bool = True):
    w, groups = cache.w, cache.groups
    cols = _windows_again(cache, dy.shape[2:])
    n_batch, _, k, positions = cols.shape
    c_out = w.shape[0]
    w_g = w.reshape(groups, c_out // groups, k)
    dy_g = np.ascontiguousarray(dy).reshape(n_batch, groups, c_out // groups, positions)
    dtype = np.result_type(dy, w)
    # dW: Σ over samples and positions of delta × window (per-sample GEMMs or one big one).
    dw = weight_grad(dy_g, cols, cache.workspace)
    if not need_dx:
        return None, dw.reshape(w.shape).astype(dtype, copy=False)
    n, c_in, height, width = cache.x_shape
    (top, bottom), (left, right) = cache.pads
    k_h, k_w = w.shape[2:]
    h_out, w_out = dy.shape[2:]
    if (k_h, k_w) == (1, 1) and cache.stride == (1, 1) and not any(map(any, cache.pads)):
        dx = np.matmul(w_g.transpose(0, 2, 1), dy_g)  # no overlap: dcols is dx
        return dx.reshape(cache.x_shape), dw.reshape(w.shape).astype(dtype, copy=False)
    dcols = np.matmul(w_g.transpose(0, 2, 1), dy_g,
                      out=transient(cache.workspace, "conv.dcols", (n_batch, groups, k, positions), dtype))
    padded = (n, c_in, height + top + bottom, width + left + right)
    has_pad = padded != tuple(cache.x_shape)
    dxpad = transient(cache.workspace, "conv.dxpad", padded, dtype) if has_pad else np.empty(padded, dtype)
    dxpad.fill(0)
    col2im_add(dxpad, dcols.reshape(n, c_in, k_h, k_w, h_out, w_out), cache.stride, cache.dilation)
    dx = fresh_copy(unpad2d(dxpad, cache.pads)) if has_pad else dxpad
    return dx, dw.reshape(w.shape).astype(dtype, copy=False)


def _shifted_windows(flat: np.ndarray, shape, kernel, dilation, out_h: int) -> np.ndarray:
    """Windows of a stride-1 convolution as flat shifts: a view (C, k_h, k_w, N, H_out·W_p).

    With every padded plane flattened (row length W_p), kernel offset (a, b) reads the plane
    shifted by a·d_h·W_p + b·d_w, and output row i, column u sits at i·W_p + u. Columns
    u ≥ W_out are garbage: they may run into the next plane (or the (k_w−1)·d_w elements
    ``flat`` carries past its end) and are dropped or zeroed by the callers.
    """
    n, c, hp, wp = shape
    item = flat.itemsize
    return as_strided(flat, shape=(c, kernel[0], kernel[1], n, out_h * wp),
                      strides=(hp * wp * item, dilation[0] * wp * item, dilation[1] * item,
                               c * hp * wp * item, item), writeable=False)


def _padded_flat(x: np.ndarray, pads, kernel, dilation, key: str, ws) -> Tuple[np.ndarray, Tuple[int, ...]]:
    """x zero-padded into a flat work buffer with (k_w − 1)·d_w spare elements at the end."""
    n, c, h, w = x.shape
    (top, bottom), (left, right) = pads
    shape = (n, c, h + top + bottom, w + left + right)
    size = int(np.prod(shape))
    flat = transient(ws, key, (size + (kernel[1] - 1) * dilation[1],), x.dtype)
    flat.fill(0)
    flat[:size].reshape(shape)[:, :, top:top + h, left:left + w] = x
    return flat, shape


def _forward_shifted(x, w, pads, dilation, out, ws=None):
    """Stride-1, ungrouped: cols (C·k_h·k_w, N·H_out·W_p) by flat shifts, then ONE GEMM for
    the whole batch; the crop of the garbage columns also restores the NCHW layout."""
    n = x.shape[0]
    c_out = w.shape[0]
    cols, shape = _shifted_cols(x, w.shape, pads, dilation, out[0], ws)
    wp = shape[3]
    positions = out[0] * wp
    wide = np.matmul(w.reshape(c_out, -1), cols,
                     out=transient(ws, "conv.shifted.y", (c_out, n * positions), x.dtype))
    y = np.empty((n, c_out, out[0], out[1]), dtype=x.dtype)
    np.copyto(y.transpose(1, 0, 2, 3), wide.reshape(c_out, n, out[0], wp)[..., :out[1]])
    return y, (x, shape)   # backward copies the windows again (as _windows_again does)


def _shifted_cols(x, w_shape, pads, dilation, out_h: int, ws) -> Tuple[np.ndarray, Tuple[int, ...]]:
    """The shifted path's window matrix (C·k_h·k_w, N·H_out·W_p), a transient of ``ws``'s
    model, and the padded input's shape."""
    n = x.shape[0]
    _, c_in, k_h, k_w = w_shape
    flat, shape = _padded_flat(x, pads, (k_h, k_w), dilation, "conv.shifted.x", ws)
    cols = transient(ws, "conv.shifted.cols", (c_in, k_h, k_w, n, out_h * shape[3]), x.dtype)
    np.copyto(cols, _shifted_windows(flat, shape, (k_h, k_w), dilation, out_h))
    return cols.reshape(c_in * k_h * k_w, -1), shape


def _backward_shifted(dy, cache: ConvCache, need_dx: bool = True):
    x, shape = cache.data
    w = cache.w
    c_out, c_in, k_h, k_w = w.shape
    n, _, h_out, w_out = dy.shape
    wp = shape[3]
    positions = h_out * wp
    dtype = np.result_type(dy, w)
    ws = cache.workspace
    # dy channel-major on the wide grid, zero in the garbage columns so they add nothing.
    dy_wide = transient(ws, "conv.shifted.dy", (c_out, n, h_out, wp), dtype)
    dy_wide[..., w_out:] = 0
    np.copyto(dy_wide[..., :w_out], dy.transpose(1, 0, 2, 3))
    dy_mat = dy_wide.reshape(c_out, n * positions)
    cols, _ = _shifted_cols(x, w.shape, cache.pads, cache.dilation, h_out, ws)
    dw = np.matmul(dy_mat, cols.T)                       # Σ over batch and positions: one GEMM
    if not need_dx:
        return None, dw.reshape(w.shape).astype(dtype, copy=False)
    dflat = shifted_input_grad(dy_mat, w, shape, cache.dilation, positions, ws)
    size = int(np.prod(shape))
    (top, _), (left, _) = cache.pads
    height, width = cache.x_shape[2:]
    dx = fresh_copy(dflat[:size].reshape(shape)[:, :, top:top + height, left:left + width])
    return dx, dw.reshape(w.shape).astype(dtype, copy=False)


def _forward_space_to_depth(x, w, pads, stride, out, ws=None):
    """A stride-s convolution as a stride-1 one: with a = s·a' + r and b = s·b' + q,

        y[n, k, i, j] = Σ_{c,a,b} xpad[n, c, s·i + a, s·j + b] · w[k, c, a, b]
                      = Σ_{(c,r,q), a', b'} xs[n, (c,r,q), i + a', j + b'] · ws[k, (c,r,q), a', b']

    where xs regroups xpad's s×s phases into channels (C·s_h·s_w of them) and ws is w
    zero-padded to a multiple of s and regrouped alike (kernel ⌈k/s⌉). The stride-1
    convolution then takes whichever fast path suits it (Winograd for AlexNet's conv1)."""
    n, c, _, _ = x.shape
    k_out, _, k_h, k_w = w.shape
    s_h, s_w = stride
    kh2, kw2 = -(-k_h // s_h), -(-k_w // s_w)
    xpad = pad2d(x, pads)
    hs, ws_ = -(-xpad.shape[2] // s_h), -(-xpad.shape[3] // s_w)
    hs, ws_ = max(hs, out[0] + kh2 - 1), max(ws_, out[1] + kw2 - 1)
    ext = np.zeros((n, c, hs * s_h, ws_ * s_w), dtype=x.dtype)
    ext[:, :, :xpad.shape[2], :xpad.shape[3]] = xpad
    xs = np.ascontiguousarray(ext.reshape(n, c, hs, s_h, ws_, s_w).transpose(0, 1, 3, 5, 2, 4)
                              ).reshape(n, c * s_h * s_w, hs, ws_)
    wpad = np.zeros((k_out, c, kh2 * s_h, kw2 * s_w), dtype=w.dtype)
    wpad[:, :, :k_h, :k_w] = w
    wsd = np.ascontiguousarray(wpad.reshape(k_out, c, kh2, s_h, kw2, s_w).transpose(0, 1, 3, 5, 2, 4)
                               ).reshape(k_out, c * s_h * s_w, kh2, kw2)
    y_full, inner = conv2d_forward(xs, wsd, None, 1, 0, 1, 1, path="auto", workspace=ws)
    y = y_full if y_full.shape[2:] == tuple(out) else fresh_copy(y_full[:, :, :out[0], :out[1]])
    return y, (inner, y_full.shape, ext.shape)


def _backward_space_to_depth(dy, cache: ConvCache, need_dx: bool = True):
    inner, full_shape, ext_shape = cache.data
    n, c, height, width = cache.x_shape
    k_out, _, k_h, k_w = cache.w.shape
    s_h, s_w = cache.stride
    kh2, kw2 = -(-k_h // s_h), -(-k_w // s_w)
    if dy.shape != full_shape:
        dy_full = np.zeros(full_shape, dtype=dy.dtype)
        dy_full[:, :, :dy.shape[2], :dy.shape[3]] = dy
    else:
        dy_full = dy
    dxs, dws, _ = conv2d_backward(dy_full, inner, need_dx)
    dw = dws.reshape(k_out, c, s_h, s_w, kh2, kw2).transpose(0, 1, 4, 2, 5, 3)
    dw = np.ascontiguousarray(dw.reshape(k_out, c, kh2 * s_h, kw2 * s_w)[:, :, :k_h, :k_w])
    if not need_dx:
        return None, dw
    hs, ws_ = ext_shape[2] // s_h, ext_shape[3] // s_w
    dext = dxs.reshape(n, c, s_h, s_w, hs, ws_).transpose(0, 1, 4, 2, 5, 3).reshape(ext_shape)
    (top, _), (left, _) = cache.pads
    return fresh_copy(dext[:, :, top:top + height, left:left + width]), dw


def _forward_depthwise(xpad, w, stride, dilation, out, ws=None):
    """groups = C_in = C_out: each channel has its own k_h×k_w filter, so there is nothing to
    share a GEMM over. Instead, k_h·k_w multiply-adds of whole (N, C, H_out, W_out) slices:
    y[n, c] = Σ_{a,b} w[c, 0, a, b] · xpad[n, c, a·d_h + s_h·i, b·d_w + s_w·j].

    At stride 1 each offset is a flat shift of the padded planes (see the shifted path), so
    every multiply-add runs over whole planes instead of one output row at a time."""
    n, c, hp, wp = xpad.shape
    k_h, k_w = w.shape[2:]
    if tuple(stride) == (1, 1):
        positions = out[0] * wp
        flat = scratch(ws, "conv.depthwise.x", (n * c * hp * wp + (k_w - 1) * dilation[1],), xpad.dtype)
        flat[:xpad.size] = xpad.reshape(-1)
        flat[xpad.size:] = 0
        item = flat.itemsize
        wide = np.zeros((n, c, positions), dtype=xpad.dtype)
        term = scratch(ws, "conv.depthwise.term", wide.shape, xpad.dtype)
        for a in range(k_h):
            for b in range(k_w):
                shifted = as_strided(flat[a * dilation[0] * wp + b * dilation[1]:], shape=wide.shape,
                                     strides=(c * hp * wp * item, hp * wp * item, item))
                np.multiply(shifted, w[:, 0, a, b].reshape(1, -1, 1), out=term)
                wide += term
        return fresh_copy(wide.reshape(n, c, out[0], wp)[..., :out[1]])
    view = window_view(xpad, (k_h, k_w), stride, dilation, out)   # (N, C, k_h, k_w, H_out, W_out)
    y = np.zeros((n, c) + tuple(out), dtype=xpad.dtype)
    term = np.empty_like(y)
    for a in range(k_h):
        for b in range(k_w):
            np.multiply(view[:, :, a, b], w[:, 0, a, b].reshape(1, -1, 1, 1), out=term)
            y += term
    return y


def _backward_depthwise(dy, cache: ConvCache, need_dx: bool = True):
    xpad, w = cache.data, cache.w
    n, c, hp, wp = xpad.shape
    k_h, k_w = w.shape[2:]
    d_h, d_w = cache.dilation
    dtype = np.result_type(dy, w)
    ws = cache.workspace
    dw = np.empty(w.shape, dtype=dtype)
    if tuple(cache.stride) == (1, 1):
        # The forward's flat shifts again: dy on the W_p-wide grid (zero in the extra
        # columns), one dot product per channel and offset for dW, shifted adds for dx.
        h_out, w_out = dy.shape[2:]
        positions = h_out * wp
        dy_wide = transient(ws, "conv.depthwise.dy", (n, c, h_out, wp), dtype)
        dy_wide[..., w_out:] = 0
        dy_wide[..., :w_out] = dy
        dy_wide = dy_wide.reshape(n, c, positions)
        size = n * c * hp * wp
        flat = transient(ws, "conv.depthwise.xb", (size + (k_w - 1) * d_w,), dtype)
        flat[:size] = xpad.reshape(-1)
        flat[size:] = 0
        item = flat.itemsize
        strides = (c * hp * wp * item, hp * wp * item, item)
        for a in range(k_h):
            for b in range(k_w):
                shifted = as_strided(flat[a * d_h * wp + b * d_w:], shape=dy_wide.shape, strides=strides)
                dw[:, 0, a, b] = np.einsum("ncp,ncp->c", shifted, dy_wide)
        if not need_dx:
            return None, dw
        dflat = transient(ws, "conv.depthwise.dx", (size + (k_w - 1) * d_w,), dtype)
        dflat.fill(0)
        term = transient(ws, "conv.depthwise.term", dy_wide.shape, dtype)
        for a in range(k_h):
            for b in range(k_w):
                target = as_strided(dflat[a * d_h * wp + b * d_w:], shape=dy_wide.shape, strides=strides)
                np.multiply(dy_wide, w[:, 0, a, b].reshape(1, -1, 1), out=term)
                target += term
        (top, _), (left, _) = cache.pads
        height, width = cache.x_shape[2:]
        dx = dflat[:size].reshape(n, c, hp, wp)[:, :, top:top + height, left:left + width]
        return fresh_copy(dx), dw
    view = window_view(xpad, (k_h, k_w), cache.stride, cache.dilation, dy.shape[2:])
    term = np.empty(dy.shape, dtype=dtype)
    for a in range(k_h):
        for b in range(k_w):
            # Σ over samples and positions of window value × delta, per channel.
            np.multiply(view[:, :, a, b], dy, out=term)
            dw[:, 0, a, b] = term.sum(axis=(0, 2, 3))
    if not need_dx:
        return None, dw
    dxpad = np.zeros(xpad.shape, dtype=dtype)
    windows = np.empty((n, c, k_h, k_w) + dy.shape[2:], dtype=dtype)
    for a in range(k_h):
        for b in range(k_w):
            np.multiply(dy, w[:, 0, a, b].reshape(1, -1, 1, 1), out=windows[:, :, a, b])
    col2im_add(dxpad, windows, cache.stride, cache.dilation)
    dx = unpad2d(dxpad, cache.pads)
    return (fresh_copy(dx) if dx is not dxpad else dx), dw


def _forward_pointwise(x, w):
    """1×1, stride 1, unpadded, ungrouped: y[n] = W (C_out, C_in) @ x[n] (C_in, H·W), no copy of x."""
    n, c_in, h, wd = x.shape
    y = np.matmul(w.reshape(w.shape[0], c_in), x.reshape(n, c_in, h * wd))
    return y.reshape(n, w.shape[0], h, wd)


def _backward_pointwise(dy, cache: ConvCache, need_dx: bool = True):
    x, w = cache.data, cache.w
    n, c_in, h, wd = x.shape
    c_out = w.shape[0]
    dy_m = np.ascontiguousarray(dy).reshape(n, c_out, h * wd)
    w_m = w.reshape(c_out, c_in)
    dw = weight_grad(dy_m[:, None], x.reshape(n, 1, c_in, h * wd), cache.workspace)[0]
    dx = np.matmul(w_m.T, dy_m).reshape(x.shape) if need_dx else None
    return dx, dw.reshape(w.shape).astype(np.result_type(dy, w), copy=False)


# ----- 1-D: the 2-D op with H = 1 -------------------------------------------------------------

def _pads1d(padding):
    if isinstance(padding, (int, np.integer)):
        return (0, 0), (int(padding), int(padding))
    padding = tuple(padding)
    if len(padding) == 1:
        padding = padding[0]
        if isinstance(padding, (int, np.integer)):
            return (0, 0), (int(padding), int(padding))
    if len(padding) == 2 and all(isinstance(p, (int, np.integer)) for p in padding):
        return (0, 0), (int(padding[0]), int(padding[1]))
    raise ConvscopeError(f"conv1d padding must be an int or (before, after), got {padding!r}")


def _one(value, name):
    if isinstance(value, (int, np.integer)):
        return int(value)
    values = tuple(value)
    if len(values) != 1:
        raise ConvscopeError(f"conv1d {name} must be one integer, got {value!r}")
    return int(values[0])


def conv1d_forward(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray] = None, stride=1, padding=0,
                   dilation=1, groups: int = 1, path: Optional[str] = None,
                   workspace: Optional[Workspace] = None, keep_for_backward: bool = True):
    """1-D convolution: x (N, C_in, L), w (C_out, C_in/G, k) -> y (N, C_out, L_out).

    ``padding`` is an int or ``(before, after)``. It runs :func:`conv2d_forward` on
    x viewed as (N, C_in, 1, L) and w as (C_out, C_in/G, 1, k) (``keep_for_backward`` as there).
    """
    x, w = np.asarray(x), np.asarray(w)
    if x.ndim != 3 or w.ndim != 3:
        raise ConvscopeError(f"conv1d expects a 3-D input (N, C, L) and 3-D weight, got shapes "
                             f"{x.shape} and {w.shape}")
    y, cache = conv2d_forward(x[:, :, None, :], w[:, :, None, :], b, (1, _one(stride, "stride")),
                              _pads1d(padding), (1, _one(dilation, "dilation")), groups, path,
                              workspace, _name="conv1d", keep_for_backward=keep_for_backward)
    return y[:, :, 0, :], cache


def conv1d_backward(dy: np.ndarray, cache: ConvCache, need_dx: bool = True):
    """Gradients ``(dx, dw, db)`` of :func:`conv1d_forward`; db is None without a bias,
    dx None when ``need_dx`` is False."""
    dx, dw, db = conv2d_backward(np.asarray(dy)[:, :, None, :], cache, need_dx)
    return (dx[:, :, 0, :] if dx is not None else None), dw[:, :, 0, :], db

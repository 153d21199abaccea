"""Pooling layers: max, average, adaptive average and global average pooling.

None of them has parameters and none counts MACs (the counting convention counts conv and
linear only). Each keeps PyTorch's constructor names and defaults, checks its arguments
when it is made, and delegates the maths to :mod:`convscope.ops.pool`.

Notation
--------
C channels, H × W (or L) input size, k kernel, s stride (defaults to k), p padding on both
sides, d dilation; along each axis the output size is the one rule
:func:`convscope.shapes.conv_output_size`::

    out = floor((n + 2p − d·(k − 1) − 1) / s) + 1      (ceil in ceil_mode, as in PyTorch)
"""
from __future__ import annotations

from typing import Optional, Tuple

from ..errors import ConvscopeError, format_count, format_shape
from ..ops import pool as ops
from ..shapes import adaptive_window, as_tuple, prod
from .base import Layer, Shape
from .registry import register

__all__ = ["MaxPool1d", "MaxPool2d", "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool2d", "GlobalAvgPool"]


def _check_bool(name: str, value, label: str) -> bool:
    if not isinstance(value, bool):
        raise ConvscopeError(f"{label}: {name} must be true or false, got {value!r}")
    return value


def _axes_count(shape: Shape) -> str:
    return f"{len(shape)} axis" if len(shape) == 1 else f"{len(shape)} axes"


def _stride_or_none(module):
    """A torch pool's stride, or None when it equals the kernel (torch's default)."""
    def as_list(v):
        return list(v) if isinstance(v, (tuple, list)) else [v]
    kernel, stride = as_list(module.kernel_size), as_list(module.stride)
    if len(stride) == 1 and len(kernel) > 1:
        stride = stride * len(kernel)
    if len(kernel) == 1 and len(stride) > 1:
        kernel = kernel * len(stride)
    return None if stride == kernel else module.stride


class _MaxPool:
    """Declarations the max pools share (a mixin beside _SlidingPool)."""

    _torch_arguments = ("kernel_size", "stride", "padding", "dilation", "ceil_mode")

    @classmethod
    def from_torch_module(cls, module, path, input_shape, reader=None):
        if module.return_indices:
            raise ConvscopeError(f"module {path} ({type(module).__name__}) has return_indices=True, which returns "
                                 "two tensors; convscope layers return one, so set return_indices=False")
        return _SlidingPool.from_torch_module.__func__(cls, module, path, input_shape, reader)

    def to_onnx(self, g, inputs, path):
        return [g.node("MaxPool", list(inputs), path, kernel_shape=list(self.kernel_size),
                       strides=list(self.strides), pads=list(self.padding) * 2, dilations=list(self.dilation),
                       ceil_mode=int(self.ceil_mode))]


class _AvgPool:
    """Declarations the average pools share (a mixin beside _SlidingPool)."""

    window_op = "adds"

    def to_onnx(self, g, inputs, path):
        if getattr(self, "divisor_override", None) is not None:
            raise g.refuse(path, self, "ONNX AveragePool has no divisor_override; remove it (divide by the "
                                       "window size) or export with to_torch instead")
        return [g.node("AveragePool", list(inputs), path, kernel_shape=list(self.kernel_size),
                       strides=list(self.strides), pads=list(self.padding) * 2, ceil_mode=int(self.ceil_mode),
                       count_include_pad=int(self.count_include_pad))]


class _Pool(Layer):
    """Shared bookkeeping of the pools: rank checks, labels, running an op and its backward."""

    spatial = 2

    @property
    def _axes(self) -> Tuple[str, ...]:
        return ops.AXES_2D if self.spatial == 2 else ops.AXES_1D

    def _label(self) -> str:
        """How messages name the layer: ``maxpool2d(3, stride=2)``, like the text form."""
        text = repr(self)
        return self.type_name + text[len(type(self).__name__):]

    def _check_rank(self, input_shape: Shape) -> None:
        if len(input_shape) != 1 + self.spatial:
            layout = "(C, H, W)" if self.spatial == 2 else "(C, L)"
            raise ConvscopeError(
                f"{self._label()} expects a per-sample input {layout}, got {format_shape(input_shape)} "
                f"({_axes_count(input_shape)}); give it channels and {self.spatial} spatial "
                f"axis{'es' if self.spatial > 1 else ''}")

    def _run(self, forward, x, *args, **kwargs):
        y, self._cache = forward(x, *args, **kwargs)
        self._out_shape = y.shape
        return y


class _SlidingPool(_Pool):
    """A pool whose windows slide with a fixed kernel, stride, padding and dilation."""

    family = "pool"
    #: What each window element costs, for the derivation of the pooling count.
    window_op = "compares"

    def other_ops(self, input_shape, output_shape):
        """One compare (max) or add (average) per window element, padding included."""
        window = self.window(tuple(input_shape))
        return {"pooling": int(output_shape[0]) * prod(output_shape[1:]) * prod(k for k, _s, _p, _d in window)}

    def shape_derivation(self, input_shape, output_shape):
        from ..analysis.derivations import window_shape_lines
        return window_shape_lines(self, input_shape, output_shape, self.window(input_shape), pooling=True)

    @classmethod
    def from_torch_module(cls, module, path, input_shape, reader=None):
        """torch stores ``stride=kernel_size`` when none was given; convscope keeps None then."""
        kwargs = {name: getattr(module, name) for name in cls._torch_arguments}
        kwargs["stride"] = _stride_or_none(module)
        return cls(**kwargs)

    def _init_window(self, kernel_size, stride, padding, dilation, ceil_mode) -> None:
        n = self.spatial
        if isinstance(padding, str):
            raise ConvscopeError(f"{self.type_name}: padding must be an integer or a list of {n} integers "
                                 f"(PyTorch's pooling has no 'same' or 'valid'), got {padding!r}")
        try:
            self.kernel_size = as_tuple(kernel_size, n, "kernel_size")
            self.stride = None if stride is None else as_tuple(stride, n, "stride")
            self.padding = as_tuple(padding, n, "padding", minimum=0)
            self.dilation = as_tuple(dilation, n, "dilation")
        except ConvscopeError as error:
            raise ConvscopeError(f"{self.type_name}: {error}") from None
        self.ceil_mode = ceil_mode
        _check_bool("ceil_mode", ceil_mode, self.type_name)
        ops.check_padding(self._label(), self.kernel_size, self.padding, self._axes)

    @property
    def strides(self) -> Tuple[int, ...]:
        """The stride in use: ``stride``, or ``kernel_size`` when it is None (PyTorch's default)."""
        return self.kernel_size if self.stride is None else self.stride

    def geometry(self, input_shape: Shape) -> ops.PoolGeometry:
        self._check_rank(input_shape)
        return ops.pool_geometry(self._label(), input_shape[1:], self.kernel_size, self.strides,
                                 self.padding, self.dilation, self.ceil_mode, self._axes)

    def output_shape(self, input_shape: Shape) -> Shape:
        g = self.geometry(tuple(input_shape))
        outs = g.out_size if self.spatial == 2 else g.out_size[1:]
        return (input_shape[0],) + tuple(outs)

    def window(self, input_shape: Shape):
        return tuple(zip(self.kernel_size, self.strides, self.padding, self.dilation))

    @classmethod
    def symbolic_counts(cls, args, input_shape):
        """The output-size rule for an input whose sizes may be sympy symbols
        (convscope.analysis.symbolic); the window itself is checked by the numeric layer."""
        from ..analysis.symbolic import Counts, window_size
        layer = cls(**args)  # the window's own arguments are numbers: validate them
        if layer.ceil_mode:
            raise ConvscopeError(f"{cls.type_name}: ceil_mode on a size given as a name has no single formula; "
                                 "bind the names with --set")
        spatial = tuple(window_size(x, k, s, p, p, d) for x, (k, s, p, d)
                        in zip(tuple(input_shape)[1:], layer.window(input_shape)))
        return Counts((input_shape[0], *spatial))


@register
class MaxPool2d(_MaxPool, _SlidingPool):
    """2-D max pooling: each output is the largest input in its window.

    ``y[n, c, i, j] = max_{a < k_h, b < k_w} x_p[n, c, i·s_h + a·d_h, j·s_w + b·d_w]`` where
    x_p is x padded with −∞. Backward sends each output's gradient to the input that won
    its max (the first on ties, as in PyTorch).

    Arguments (PyTorch's): ``kernel_size``, ``stride=None`` (= kernel_size), ``padding=0``
    (at most kernel_size // 2), ``dilation=1``, ``ceil_mode=False``.

    Shape: input (N, C, H, W), output (N, C, H_out, W_out) by the rule above. No parameters.
    """

    type_name = "maxpool2d"
    torch_class = "MaxPool2d"

    @classmethod
    def examples(cls):
        return [(cls(2), (2, 6, 6)), (cls(3, stride=(2, 1), padding=(1, 0), ceil_mode=True), (2, 7, 5)),
                (cls((2, 3), stride=1, dilation=(2, 1)), (1, 6, 6)),
                (cls(3, 1, (1, 0)), (1, 6, 6))]  # issue 11's batch-1 aliasing case

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__()
        self._init_window(kernel_size, stride, padding, dilation, ceil_mode)

    def inference_step(self, x_shape):
        return ops.max_pool2d_inference_step(x_shape, self.dtype, self.kernel_size, self.strides, self.padding,
                                             self.dilation, self.ceil_mode, workspace=self.workspace)

    def _forward(self, x, train):
        # Inference skips recording the argmax; a backward after it recomputes the index.
        y, self._cache = ops.max_pool2d_forward(x, self.kernel_size, self.strides, self.padding,
                                                self.dilation, self.ceil_mode, record_argmax=train,
                                                workspace=self.workspace)
        self._out_shape = y.shape
        return y

    def _backward(self, dy):
        return ops.max_pool2d_backward(dy, self._cache)


@register
class MaxPool1d(_MaxPool, _SlidingPool):
    """1-D max pooling over the last axis: :class:`MaxPool2d` with H = 1.

    Arguments as :class:`MaxPool2d`, each a single integer.
    Shape: input (N, C, L), output (N, C, L_out). No parameters.
    """

    type_name = "maxpool1d"
    torch_class = "MaxPool1d"

    @classmethod
    def examples(cls):
        return [(cls(2), (2, 8)), (cls(3, stride=2, padding=1, dilation=2, ceil_mode=True), (2, 9))]
    spatial = 1

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__()
        self._init_window(kernel_size, stride, padding, dilation, ceil_mode)

    def _forward(self, x, train):
        (k,), (s,), (p,), (d,) = self.kernel_size, self.strides, self.padding, self.dilation
        y, self._cache = ops.max_pool1d_forward(x, k, s, p, d, self.ceil_mode, record_argmax=train,
                                                workspace=self.workspace)
        self._out_shape = y.shape
        return y

    def _backward(self, dy):
        return ops.max_pool1d_backward(dy, self._cache)


@register
class AvgPool2d(_AvgPool, _SlidingPool):
    """2-D average pooling: each output is the mean of its window.

    ``y[n, c, i, j] = (1 / D(i, j)) · Σ_{a < k_h, b < k_w} x_p[n, c, i·s_h + a, j·s_w + b]``
    with zero padding. The divisor D is PyTorch's: ``divisor_override`` if given; else the
    window's size clipped to the padded input (``count_include_pad=True``; in ceil_mode a
    window running past the padded edge divides by its clipped size) or the number of real
    inputs it covers (``count_include_pad=False``). Backward shares g / D over the window.

    Arguments (PyTorch's): ``kernel_size``, ``stride=None`` (= kernel_size), ``padding=0``
    (at most kernel_size // 2), ``ceil_mode=False``, ``count_include_pad=True``,
    ``divisor_override=None`` (a non-zero integer).

    Shape: input (N, C, H, W), output (N, C, H_out, W_out). No parameters.
    """

    type_name = "avgpool2d"
    torch_class = "AvgPool2d"
    _torch_arguments = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")

    @classmethod
    def examples(cls):
        return [(cls(2), (2, 6, 6)), (cls(3, stride=(2, 1), padding=(1, 0), count_include_pad=False), (2, 7, 5)),
                (cls(3, stride=2, padding=1, ceil_mode=True), (1, 6, 6)),
                (cls(3, 1, (1, 0)), (1, 6, 6))]  # issue 11's batch-1 aliasing case

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override
        self._init_window(kernel_size, stride, padding, 1, ceil_mode)
        _check_bool("count_include_pad", count_include_pad, self.type_name)
        if divisor_override is not None and (not isinstance(divisor_override, int)
                                             or isinstance(divisor_override, bool) or divisor_override == 0):
            raise ConvscopeError(f"{self.type_name}: divisor_override must be a non-zero integer or None, "
                                 f"got {divisor_override!r}")

    def _forward(self, x, train):
        return self._run(ops.avg_pool2d_forward, x, self.kernel_size, self.strides, self.padding,
                         self.ceil_mode, self.count_include_pad, self.divisor_override,
                         workspace=self.workspace)

    def _backward(self, dy):
        return ops.avg_pool2d_backward(dy, self._cache)


@register
class AvgPool1d(_AvgPool, _SlidingPool):
    """1-D average pooling over the last axis: :class:`AvgPool2d` with H = 1 (PyTorch's
    AvgPool1d has no ``divisor_override``).

    Shape: input (N, C, L), output (N, C, L_out). No parameters.
    """

    type_name = "avgpool1d"
    torch_class = "AvgPool1d"
    _torch_arguments = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")

    @classmethod
    def examples(cls):
        return [(cls(2), (2, 8)), (cls(3, stride=2, padding=1, count_include_pad=False), (2, 9))]
    spatial = 1

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.count_include_pad = count_include_pad
        self._init_window(kernel_size, stride, padding, 1, ceil_mode)
        _check_bool("count_include_pad", count_include_pad, self.type_name)

    def _forward(self, x, train):
        (k,), (s,), (p,) = self.kernel_size, self.strides, self.padding
        return self._run(ops.avg_pool1d_forward, x, k, s, p, self.ceil_mode, self.count_include_pad,
                         workspace=self.workspace)

    def _backward(self, dy):
        return ops.avg_pool1d_backward(dy, self._cache)


@register
class AdaptiveAvgPool2d(_Pool):
    """Average pooling to a fixed output size, whatever the input size.

    Output cell (i, j) averages rows [floor(i·H/H_out), ceil((i+1)·H/H_out)) and columns
    [floor(j·W/W_out), ceil((j+1)·W/W_out)), as in PyTorch; windows may differ in size by
    one and overlap.

    Arguments: ``output_size``, an integer or a pair; a ``None`` entry keeps that input size.

    Shape: input (N, C, H, W), output (N, C, H_out, W_out). No parameters.

    For receptive fields, :meth:`window` reports an exact sliding window (k = s = n / m) on
    an axis where the input size n is a multiple of the output size m; otherwise the largest
    window, ``ceil``-sized, with the smallest non-zero step between window starts
    ``max(1, floor(n / m))``, which bounds the receptive field from above.
    """

    type_name = "adaptive_avgpool2d"
    family = "pool"
    torch_class = "AdaptiveAvgPool2d"

    @classmethod
    def examples(cls):
        return [(cls((2, 3)), (2, 5, 7)), (cls(1), (3, 4, 4)), (cls(3), (1, 6, 6))]

    def other_ops(self, input_shape, output_shape):
        """One add per input element of each cell: cell i spans [floor(i·n/m), ceil((i+1)·n/m)),
        separable, so the per-axis sums multiply."""
        total = int(output_shape[0])
        for n, m in zip(input_shape[1:], output_shape[1:]):
            total *= sum(end - start for start, end in (adaptive_window(i, n, m) for i in range(m)))
        return {"pooling": total}

    def shape_derivation(self, input_shape, output_shape):
        from ..analysis.derivations import adaptive_lines
        return adaptive_lines(tuple(input_shape), tuple(output_shape))

    def to_onnx(self, g, inputs, path):
        """GlobalAveragePool for a 1×1 output; otherwise the exact averaging matrices,
        ``MatMul(A_h, x)`` then ``MatMul(·, A_wᵀ)``."""
        out_h, out_w = self.resolved_size(self.input_shape)
        if (out_h, out_w) == (1, 1):
            return [g.node("GlobalAveragePool", list(inputs), path)]
        _, height, width = self.input_shape
        rows = g.const(g.name(path, "rows"), ops.adaptive_matrix(height, out_h))      # (H_out, H)
        cols = g.const(g.name(path, "cols"), ops.adaptive_matrix(width, out_w).T)     # (W, W_out)
        y = g.node("MatMul", [rows, inputs[0]], path)
        return [g.node("MatMul", [y, cols], path)]

    def __init__(self, output_size):
        super().__init__()
        self.output_size = self._check_output_size(output_size)

    def _check_output_size(self, value) -> Tuple[Optional[int], Optional[int]]:
        def ok(v):
            return v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)

        if ok(value):
            return (value, value)
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(ok(v) for v in value):
            return tuple(value)
        raise ConvscopeError(f"{self.type_name}: output_size must be a positive integer or a pair of "
                             f"positive integers (None keeps the input size), got {value!r}")

    def resolved_size(self, input_shape: Shape) -> Tuple[int, int]:
        """The output (H_out, W_out) for ``input_shape``, with None entries filled from the input."""
        return tuple(n if m is None else m for n, m in zip(input_shape[1:], self.output_size))

    def output_shape(self, input_shape: Shape) -> Shape:
        input_shape = tuple(input_shape)
        self._check_rank(input_shape)
        return (input_shape[0],) + self.resolved_size(input_shape)

    def window(self, input_shape: Shape):
        self._check_rank(tuple(input_shape))
        axes = []
        for n, m in zip(input_shape[1:], self.resolved_size(input_shape)):
            if n % m == 0:
                axes.append((n // m, n // m, 0, 1))
            else:
                largest = max(end - start for start, end in (adaptive_window(i, n, m) for i in range(m)))
                axes.append((largest, max(1, n // m), 0, 1))
        return tuple(axes)

    def _forward(self, x, train):
        return self._run(ops.adaptive_avg_pool2d_forward, x, self.resolved_size(x.shape[1:]))

    def _backward(self, dy):
        return ops.adaptive_avg_pool2d_backward(dy, self._cache)


@register
class GlobalAvgPool(_Pool):
    """Global average pooling: the mean of each channel over all its positions.

    ``y[n, c] = (1 / |S|) Σ_s x[n, c, s]`` over the spatial positions S; backward gives every
    position ``g[n, c] / |S|``.

    Shape: input (N, C, L) or (N, C, H, W), output (N, C) — the spatial axes are removed,
    like Keras's GlobalAveragePooling1D/2D (PyTorch's ``AdaptiveAvgPool2d(1)`` keeps them as
    1 × 1, so there it needs a ``flatten`` after it). No arguments, no parameters.
    """

    type_name = "global_avgpool"
    family = "pool"
    torch_class = "GlobalAvgPool"  # convscope's own (interop.torch_modules)

    @classmethod
    def examples(cls):
        return [(cls(), (3, 4, 5)), (cls(), (2, 7))]

    def other_ops(self, input_shape, output_shape):
        return {"pooling": prod(input_shape)}  # one add per input element

    def shape_derivation(self, input_shape, output_shape):
        x, y = tuple(input_shape), tuple(output_shape)
        return [f"output C = {y[0]}: each channel's mean over {format_shape(x[1:])} = "
                f"{format_count(prod(x[1:]))} positions"]

    def torch_desc(self, path):
        from ..interop.torch_export import TorchDesc
        return TorchDesc(self.torch_class, {}, custom=True)

    def to_onnx(self, g, inputs, path):
        return [g.node("Flatten", [g.node("GlobalAveragePool", list(inputs), path)], path, axis=1)]

    def __init__(self):
        super().__init__()

    def _check_rank(self, input_shape: Shape) -> None:
        if len(input_shape) not in (2, 3):
            raise ConvscopeError(
                f"{self.type_name} expects a per-sample input (C, L) or (C, H, W), got "
                f"{format_shape(input_shape)} ({_axes_count(input_shape)}); it averages the spatial axes "
                "of a feature map, so put it before flatten")

    def output_shape(self, input_shape: Shape) -> Shape:
        self._check_rank(tuple(input_shape))
        return (input_shape[0],)

    def window(self, input_shape: Shape):
        return "global"

    def _forward(self, x, train):
        return self._run(ops.global_avg_pool_forward, x)

    def _backward(self, dy):
        return ops.global_avg_pool_backward(dy, self._cache)

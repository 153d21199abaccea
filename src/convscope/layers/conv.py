"""Convolution layers: :class:`Conv1d`, :class:`Conv2d` (shared filters) and
:class:`LocallyConnected2d` (one filter per output position).

Notation: C_in input channels, C_out output channels, G groups, k kernel, s stride,
p padding (before, after), d dilation; per spatial axis
``out = floor((n + p_lo + p_hi - d·(k - 1) - 1) / s) + 1`` (``shapes.conv_output_size``).

Counting (the contract): a convolution has ``C_out·(C_in/G)·k_h·k_w`` weights and ``C_out``
biases, and costs ``C_out·H_out·W_out·(C_in/G)·k_h·k_w`` multiply-accumulates per sample
(bias additions are not MACs). A locally connected layer does the same MACs but stores a
separate filter and bias for each of the ``C_out·H_out·W_out`` output units.

The maths lives in :mod:`convscope.ops.conv` and :mod:`convscope.ops.local`; these classes
validate arguments, state the shape rules and hold the Parameters.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from ..errors import ConvscopeError, format_shape
from ..ops.conv import conv1d_backward, conv1d_forward, conv2d_backward, conv2d_forward
from ..ops.local import locally_connected2d_backward, locally_connected2d_forward
from ..shapes import as_tuple, conv_output_size, prod, resolve_padding
from .base import Layer, Shape
from .registry import register

__all__ = ["Conv1d", "Conv2d", "LocallyConnected2d"]

_AXES = {1: ("length",), 2: ("height", "width")}
_LAYOUT = {1: "(C, L)", 2: "(C, H, W)"}


def _positive_int(value, name: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConvscopeError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return int(value)


def _sizes(value, ndim: int, name: str, owner: str, minimum: int = 1) -> Tuple[int, ...]:
    try:
        return as_tuple(value, ndim, name, minimum=minimum)
    except ConvscopeError as error:
        raise ConvscopeError(f"{owner}: {error}") from None


def _padding(padding, ndim: int, stride: Tuple[int, ...], kernel: Tuple[int, ...], owner: str):
    """Validated padding: the string "same"/"valid" as given, otherwise a tuple of ints >= 0."""
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ConvscopeError(f"{owner}: padding must be an integer, a list, 'same' or 'valid', "
                                 f"got {padding!r}")
        if padding == "same" and any(s != 1 for s in stride):
            # PyTorch refuses too: with stride > 1 no padding keeps the size.
            halves = [k // 2 for k in kernel]
            hint = halves[0] if len(set(halves)) == 1 else halves
            shown = stride[0] if len(set(stride)) == 1 else list(stride)
            raise ConvscopeError(f"{owner}: padding='same' needs stride 1 (as in PyTorch), got "
                                 f"stride={shown}; use an integer padding instead, such as padding={hint}")
        return padding
    return _sizes(padding, ndim, "padding", owner, minimum=0)


def _check_channels(layer: Layer, x: np.ndarray) -> None:
    """The weights were allocated for the built channel count; other spatial sizes are fine."""
    if x.shape[1] != layer.input_shape[0]:
        raise ConvscopeError(f"{layer.type_name} was built for {layer.input_shape[0]} input channels, got "
                             f"{x.shape[1]} (input {format_shape(x.shape[1:])}); fix the input or "
                             "rebuild the model for it")


def _spatial_output(owner: str, spatial: Shape, kernel, stride, pads, dilation) -> Tuple[int, ...]:
    """Output size per spatial axis; an error names the axis and how far the window overshoots."""
    out = []
    for axis, n, k, s, (lo, hi), d in zip(_AXES[len(spatial)], spatial, kernel, stride, pads, dilation):
        size = conv_output_size(n, k, s, lo, hi, d)
        if size < 1:
            span = d * (k - 1) + 1
            padded = n + lo + hi
            what = f"kernel_size {k}" + (f" with dilation {d}" if d != 1 else "")
            raise ConvscopeError(
                f"{owner}: the window ({what}) spans {span} along {axis} but the padded input has only "
                f"{padded} ({n} + padding {lo} + {hi}), {span - padded} too many; use a smaller "
                f"kernel_size{' or dilation' if d != 1 else ''} or more padding")
        out.append(size)
    return tuple(out)


class _ConvNd(Layer):
    """Shared by Conv1d and Conv2d: a convolution with ``ndim`` spatial axes."""

    ndim = 2

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, in_channels=None):
        super().__init__()
        owner = self.type_name
        self.out_channels = _positive_int(out_channels, "out_channels", owner)
        self.kernel_size = _sizes(kernel_size, self.ndim, "kernel_size", owner)
        self.stride = _sizes(stride, self.ndim, "stride", owner)
        self.dilation = _sizes(dilation, self.ndim, "dilation", owner)
        self.groups = _positive_int(groups, "groups", owner)
        self.padding = _padding(padding, self.ndim, self.stride, self.kernel_size, owner)
        if not isinstance(bias, (bool, np.bool_)):
            raise ConvscopeError(f"{owner}: bias must be true or false, got {bias!r}")
        self.bias = bool(bias)
        self.in_channels = None if in_channels is None else _positive_int(in_channels, "in_channels", owner)
        if self.out_channels % self.groups:
            raise ConvscopeError(f"{owner}: groups={self.groups} must divide out_channels={self.out_channels}; "
                                 "choose groups among the divisors of out_channels")
        if self.in_channels is not None and self.in_channels % self.groups:
            raise ConvscopeError(f"{owner}: groups={self.groups} must divide in_channels={self.in_channels}; "
                                 "choose groups among the common divisors of in_channels and out_channels")

    # ----- shape rules ----------------------------------------------------------------------
    def _pads(self) -> Tuple[Tuple[int, int], ...]:
        return resolve_padding(self.padding, self.kernel_size, self.dilation)

    def _channels(self, input_shape: Shape) -> int:
        owner = self.type_name
        shape = tuple(input_shape)
        if len(shape) != self.ndim + 1:
            raise ConvscopeError(f"{owner} expects a per-sample input {_LAYOUT[self.ndim]} with "
                                 f"{self.ndim + 1} axes, got {format_shape(shape)} ({len(shape)} axes); "
                                 "reshape the input or use the matching layer")
        channels = shape[0]
        if self.in_channels is not None and channels != self.in_channels:
            raise ConvscopeError(f"{owner} was given in_channels={self.in_channels} but the input "
                                 f"{format_shape(shape)} has {channels} channels; fix in_channels "
                                 "or leave it out to infer it")
        if channels % self.groups:
            raise ConvscopeError(f"{owner}: groups={self.groups} must divide the input channels, got "
                                 f"{channels} (input {format_shape(shape)}); choose groups among the "
                                 f"common divisors of {channels} and {self.out_channels}")
        return channels

    def output_shape(self, input_shape: Shape) -> Shape:
        self._channels(input_shape)
        spatial = _spatial_output(self.type_name, tuple(input_shape)[1:], self.kernel_size, self.stride,
                                  self._pads(), self.dilation)
        return (self.out_channels, *spatial)

    def param_shapes(self, input_shape: Shape) -> Dict[str, Shape]:
        channels = self._channels(input_shape)
        shapes = {"weight": (self.out_channels, channels // self.groups, *self.kernel_size)}
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def fan_in(self, input_shape: Shape) -> int:
        return self._channels(input_shape) // self.groups * prod(self.kernel_size)

    def macs(self, input_shape: Shape) -> int:
        out = self.output_shape(input_shape)
        return prod(out) * (tuple(input_shape)[0] // self.groups) * prod(self.kernel_size)

    def window(self, input_shape: Shape):
        return tuple((k, s, lo, d) for k, s, (lo, _), d in
                     zip(self.kernel_size, self.stride, self._pads(), self.dilation))

    # ----- running --------------------------------------------------------------------------
    def _weights(self):
        bias = self._params["bias"].value if self.bias else None
        return self._params["weight"].value, bias

    def _set_grads(self, dw, db) -> None:
        self._params["weight"].grad[...] = dw
        if self.bias:
            self._params["bias"].grad[...] = db


@register
class Conv2d(_ConvNd):
    """2-D convolution (cross-correlation, as in PyTorch's ``nn.Conv2d``).

    Shape:
        Input ``(N, C_in, H_in, W_in)``; output ``(N, C_out, H_out, W_out)`` with
        ``H_out = floor((H_in + p_top + p_bottom - d_h·(k_h - 1) - 1) / s_h) + 1`` (W likewise).

    Arguments (PyTorch's names and defaults): ``out_channels``; ``kernel_size``, ``stride``,
    ``dilation``: an int or ``[h, w]``; ``padding``: an int, ``[p_h, p_w]``, ``"valid"`` (0) or
    ``"same"`` (stride 1 only; total ``d·(k-1)``, the odd pixel after, like PyTorch);
    ``groups`` splits the channels into G independent convolutions (``groups = C_in``:
    depthwise); ``in_channels`` is inferred from the input unless given.

    Attributes:
        weight ``(C_out, C_in/G, k_h, k_w)`` and bias ``(C_out,)``, both initialised
        ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with ``fan_in = (C_in/G)·k_h·k_w``, like PyTorch.
    """

    type_name = "conv2d"
    ndim = 2

    def _forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        _check_channels(self, x)
        w, b = self._weights()
        y, self._cache = conv2d_forward(x, w, b, self.stride, self._pads(), self.dilation, self.groups,
                                         workspace=self.workspace)
        self._out_shape = y.shape
        return y

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        dx, dw, db = conv2d_backward(dy, self._cache, need_dx=self._input_grad)
        self._set_grads(dw, db)
        return dx


@register
class Conv1d(_ConvNd):
    """1-D convolution (PyTorch's ``nn.Conv1d``): the 2-D convolution with height 1.

    Shape:
        Input ``(N, C_in, L_in)``; output ``(N, C_out, L_out)`` with
        ``L_out = floor((L_in + p_lo + p_hi - d·(k - 1) - 1) / s) + 1``.

    Arguments as :class:`Conv2d`, each size a single int.

    Attributes:
        weight ``(C_out, C_in/G, k)`` and bias ``(C_out,)``, initialised
        ``U(±1/sqrt((C_in/G)·k))``.
    """

    type_name = "conv1d"
    ndim = 1

    def _forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        _check_channels(self, x)
        w, b = self._weights()
        y, self._cache = conv1d_forward(x, w, b, self.stride, self._pads()[0], self.dilation,
                                        self.groups, workspace=self.workspace)
        self._out_shape = y.shape
        return y

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        dx, dw, db = conv1d_backward(dy, self._cache, need_dx=self._input_grad)
        self._set_grads(dw, db)
        return dx


@register
class LocallyConnected2d(Layer):
    """Locally connected 2-D layer: a convolution without weight sharing (Keras's
    ``LocallyConnected2D``). Each output unit ``(o, i, j)`` has its own filter and bias.

    Shape:
        Input ``(N, C_in, H_in, W_in)``; output ``(N, C_out, H_out, W_out)``, the
        convolution's rule with dilation 1.

    Arguments: ``out_channels``; ``kernel_size``, ``stride``: an int or ``[h, w]``;
    ``padding``: an int, ``[p_h, p_w]``, ``"valid"`` or ``"same"`` (stride 1 only);
    ``in_channels`` is inferred unless given.

    Attributes:
        weight ``(C_out, H_out, W_out, C_in, k_h, k_w)`` and bias ``(C_out, H_out, W_out)``,
        initialised ``U(±1/sqrt(C_in·k_h·k_w))``. Count: ``C_out·H_out·W_out·(C_in·k_h·k_w + 1)``
        parameters; seed 003's 55×55×96 output over 11×11×3 windows has 105,705,600.
    """

    type_name = "locally_connected2d"

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, bias=True, in_channels=None):
        super().__init__()
        owner = self.type_name
        self.out_channels = _positive_int(out_channels, "out_channels", owner)
        self.kernel_size = _sizes(kernel_size, 2, "kernel_size", owner)
        self.stride = _sizes(stride, 2, "stride", owner)
        self.padding = _padding(padding, 2, self.stride, self.kernel_size, owner)
        if not isinstance(bias, (bool, np.bool_)):
            raise ConvscopeError(f"{owner}: bias must be true or false, got {bias!r}")
        self.bias = bool(bias)
        self.in_channels = None if in_channels is None else _positive_int(in_channels, "in_channels", owner)

    def _pads(self):
        return resolve_padding(self.padding, self.kernel_size, (1, 1))

    def _channels(self, input_shape: Shape) -> int:
        owner = self.type_name
        shape = tuple(input_shape)
        if len(shape) != 3:
            raise ConvscopeError(f"{owner} expects a per-sample input (C, H, W) with 3 axes, got "
                                 f"{format_shape(shape)} ({len(shape)} axes); reshape the input")
        if self.in_channels is not None and shape[0] != self.in_channels:
            raise ConvscopeError(f"{owner} was given in_channels={self.in_channels} but the input "
                                 f"{format_shape(shape)} has {shape[0]} channels; fix in_channels "
                                 "or leave it out to infer it")
        return shape[0]

    def output_shape(self, input_shape: Shape) -> Shape:
        self._channels(input_shape)
        spatial = _spatial_output(self.type_name, tuple(input_shape)[1:], self.kernel_size, self.stride,
                                  self._pads(), (1, 1))
        return (self.out_channels, *spatial)

    def param_shapes(self, input_shape: Shape) -> Dict[str, Shape]:
        out = self.output_shape(input_shape)
        shapes = {"weight": (*out, tuple(input_shape)[0], *self.kernel_size)}
        if self.bias:
            shapes["bias"] = out
        return shapes

    def fan_in(self, input_shape: Shape) -> int:
        return self._channels(input_shape) * prod(self.kernel_size)

    def macs(self, input_shape: Shape) -> int:
        return prod(self.output_shape(input_shape)) * self.fan_in(input_shape)

    def window(self, input_shape: Shape):
        return tuple((k, s, lo, 1) for k, s, (lo, _) in zip(self.kernel_size, self.stride, self._pads()))

    def _forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        if x.shape[1:] != self.input_shape:
            # One filter per output position: the weights fit only the built input size.
            raise ConvscopeError(f"{self.type_name} was built for inputs of shape "
                                 f"{format_shape(self.input_shape)}, got {format_shape(x.shape[1:])}; "
                                 "resize the input or rebuild the model for it")
        b = self._params["bias"].value if self.bias else None
        y, self._cache = locally_connected2d_forward(x, self._params["weight"].value, b, self.stride,
                                                     self._pads())
        self._out_shape = y.shape
        return y

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        dx, dw, db = locally_connected2d_backward(dy, self._cache)
        self._params["weight"].grad[...] = dw
        if self.bias:
            self._params["bias"].grad[...] = db
        return dx

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

from typing import Dict, List, Tuple

import numpy as np

from ..errors import ConvscopeError, format_count, format_shape
from ..ops.conv import conv1d_backward, conv1d_forward, conv2d_backward, conv2d_forward, conv2d_inference_step
from ..ops.local import locally_connected2d_backward, locally_connected2d_forward
from ..shapes import as_tuple, conv_output_size, prod, resolve_padding
from .base import Layer, Shape, keeps_caches
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


# ----- declarations shared by the convolutions (docs/adding-a-layer.md) ------------------------

def _window_mac_lines(row) -> List[str]:
    """``MACs = C_out·H_out·W_out·(C_in/G)·k_h·k_w`` with its values (convolutions and the
    locally connected layer, which does the same multiplications without sharing)."""
    from ..analysis.derivations import eq, flops, kernel_symbols
    from ..analysis.describe import axis_names
    x, y = tuple(row.input_shape), tuple(row.output_shape)
    groups = getattr(row.layer, "groups", 1)
    kernel = tuple(k for k, _s, _p, _d in row.window)
    ks = kernel_symbols(len(kernel))
    names = axis_names(len(kernel))
    cin_sym = "C_in" if groups == 1 else "(C_in/G)"
    cin_val = f"{x[0]}" if groups == 1 else f"({x[0]}/{groups})"
    value = prod(y) * (x[0] // groups) * prod(kernel)
    return [eq(f"MACs = C_out·{'·'.join(f'{n}_out' for n in names)}·{cin_sym}·{'·'.join(ks)}",
               "·".join([format_count(v) for v in y] + [cin_val] + [str(k) for k in kernel]),
               value, row.macs) + flops(row.macs)]


def _unshared_line(row, c_per_group, kernel, cin_sym, cin_val, k_sym, k_val) -> str:
    """What parameter sharing saves: the same connections with every output neuron owning its
    weights (and bias), as a fully connected layer would (CS231n's 290,400·364 = 105,705,600)."""
    from ..analysis.describe import axis_names
    y = tuple(row.output_shape)
    neurons = prod(y)
    per_neuron = c_per_group * prod(kernel) + (1 if "bias" in row.param_shapes else 0)
    plus = " + 1" if "bias" in row.param_shapes else ""
    total = neurons * per_neuron
    outs = "·".join(f"{n}_out" for n in axis_names(len(kernel)))
    ratio = f", {format_count(total // row.params)}× fewer" if row.params and total % row.params == 0 else ""
    return (f"without sharing = C_out·{outs}·({cin_sym}·{k_sym}{plus}) = "
            f"{'·'.join(format_count(v) for v in y)}·({cin_val}·{k_val}{plus}) = "
            f"{format_count(neurons)}·{format_count(per_neuron)} = {format_count(total)} "
            f"(every output neuron with its own weights{' and bias' if plus else ''}; shared, one filter "
            f"per output channel reused at all {format_count(neurons // y[0])} positions: "
            f"{format_count(row.params)}{ratio})")


def _conv_onnx_padding(layer) -> dict:
    """padding="same" as ONNX's SAME_UPPER (the odd pixel after, as in PyTorch), else explicit pads.
    A dilated "same" convolution gets explicit pads too: ONNX Runtime refuses SAME_UPPER with
    dilation (found by tests/test_conformance.py)."""
    if layer.padding == "same" and all(d == 1 for d in getattr(layer, "dilation", (1,))):
        return {"auto_pad": "SAME_UPPER"}
    pads = layer._pads()
    return {"pads": [lo for lo, _ in pads] + [hi for _, hi in pads]}


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

    # ----- declarations ---------------------------------------------------------------------
    family = "conv"
    has_filters = True

    def other_ops(self, input_shape, output_shape):
        return {}  # MACs, and the bias adds counted generically

    def shape_derivation(self, input_shape, output_shape):
        from ..analysis.derivations import window_shape_lines
        return window_shape_lines(self, input_shape, output_shape, self.window(input_shape))

    def param_derivation(self, row):
        from ..analysis.derivations import eq, kernel_symbols
        w = row.param_shapes["weight"]
        c_out, c_per_group, kernel = w[0], w[1], w[2:]
        c_in, groups = row.input_shape[0], self.groups
        ks = kernel_symbols(len(kernel))
        k_sym, k_val = "·".join(ks), "·".join(str(k) for k in kernel)
        cin_sym = "C_in" if groups == 1 else "(C_in/G)"
        cin_val = f"{c_in}" if groups == 1 else f"({c_in}/{groups})"
        weights = c_out * c_per_group * prod(kernel)
        lines = [eq(f"weights = C_out·{cin_sym}·{k_sym}", f"{c_out}·{cin_val}·{k_val}", weights, row.weights)]
        if "bias" in row.param_shapes:
            lines.append(eq("biases = C_out", f"{c_out}", c_out, row.biases) + " (one per filter, shared by "
                         "every position and every input channel)")
            lines.append(eq(f"params = ({cin_sym}·{k_sym} + 1)·C_out", f"({cin_val}·{k_val} + 1)·{c_out}",
                            (c_per_group * prod(kernel) + 1) * c_out, row.params))
        else:
            lines.append(f"params = weights = {format_count(row.params)} (bias=False)")
        lines.append(_unshared_line(row, c_per_group, kernel, cin_sym, cin_val, k_sym, k_val))
        return lines

    def mac_derivation(self, row):
        return _window_mac_lines(row)

    @classmethod
    def symbolic_counts(cls, args, input_shape):
        """The shape/param/MAC rules above for sizes that may be sympy symbols
        (convscope.analysis.symbolic): weights C_out·k_h·k_w·(C_in/G), MACs
        C_out·H_out·W_out·(C_in/G)·k_h·k_w."""
        from ..analysis.symbolic import Counts, is_symbolic, per_axis, window_size
        owner, n = cls.type_name, cls.ndim
        if len(input_shape) != n + 1:
            raise ConvscopeError(f"{owner} expects a per-sample input {_LAYOUT[n]}, got {len(input_shape)} axes")
        kernel = per_axis(args["kernel_size"], n, "kernel_size", owner)
        stride = per_axis(args["stride"], n, "stride", owner)
        dilation = per_axis(args["dilation"], n, "dilation", owner)
        padding = args["padding"]
        if padding == "same":
            if any(is_symbolic(v) for v in kernel + dilation):
                raise ConvscopeError(f"{owner}: padding='same' with a kernel size given as a name has no single "
                                     "formula; give the kernel size as a number")
            pads = resolve_padding("same", kernel, dilation)
        else:
            pads = tuple((p, p) for p in per_axis(0 if padding == "valid" else padding, n, "padding", owner))
        c_in, groups, c_out = input_shape[0], args["groups"], args["out_channels"]
        per_group = c_in if groups == 1 else (c_in // groups if not is_symbolic(c_in) else c_in / groups)
        spatial = tuple(window_size(x, k, s, lo, hi, d) for x, k, s, (lo, hi), d
                        in zip(input_shape[1:], kernel, stride, pads, dilation))
        out = (c_out, *spatial)
        return Counts(out, weights=(c_out, *kernel, per_group), biases=(c_out,) if args["bias"] else None,
                      macs=(*out, per_group, *kernel))

    def torch_desc(self, path):
        from ..interop.torch_export import TorchDesc
        return TorchDesc(self.torch_class, {
            "in_channels": self.input_shape[0], "out_channels": self.out_channels,
            "kernel_size": self.kernel_size, "stride": self.stride, "padding": self.padding,
            "dilation": self.dilation, "groups": self.groups, "bias": self.bias})

    @classmethod
    def from_torch_module(cls, module, path, input_shape, reader=None):
        if module.padding_mode != "zeros":
            raise ConvscopeError(f"module {path} ({type(module).__name__}) uses padding_mode="
                                 f"{module.padding_mode!r}; convscope pads with zeros only, so use padding_mode='zeros'")
        return cls(module.out_channels, module.kernel_size, stride=module.stride, padding=module.padding,
                   dilation=module.dilation, groups=module.groups, bias=module.bias is not None)

    def to_onnx(self, g, inputs, path):
        params = dict(self.named_parameters())
        args = [inputs[0], g.const(g.name(path, "weight"), params["weight"].value)]
        if self.bias:
            args.append(g.const(g.name(path, "bias"), params["bias"].value))
        return [g.node("Conv", args, path, kernel_shape=list(self.kernel_size), strides=list(self.stride),
                       dilations=list(self.dilation), group=self.groups, **_conv_onnx_padding(self))]

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
    torch_class = "Conv2d"
    ndim = 2

    @classmethod
    def examples(cls):
        return [(cls(3, 3, padding=1), (2, 5, 5)),
                (cls(4, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2, bias=False), (2, 7, 6)),
                (cls(2, 3, padding="same", dilation=2), (1, 6, 5)),
                (cls(1, 3, padding=(1, 0)), (1, 6, 6))]  # issue 11's batch-1 aliasing case

    def inference_step(self, x_shape):
        run = conv2d_inference_step(x_shape, self._params["weight"].value.shape, self.dtype, self.stride,
                                    self._pads(), self.dilation, self.groups, self.workspace)
        if run is None:
            return None
        return lambda x: run(x, *self._weights())

    def _forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        _check_channels(self, x)
        w, b = self._weights()
        y, self._cache = conv2d_forward(x, w, b, self.stride, self._pads(), self.dilation, self.groups,
                                         workspace=self.workspace, keep_for_backward=keeps_caches(train))
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
    torch_class = "Conv1d"
    ndim = 1

    @classmethod
    def examples(cls):
        return [(cls(3, 3, padding=1), (2, 7)), (cls(4, 2, stride=2, dilation=2, groups=2, bias=False), (2, 9))]

    def _forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        _check_channels(self, x)
        w, b = self._weights()
        y, self._cache = conv1d_forward(x, w, b, self.stride, self._pads()[0], self.dilation,
                                        self.groups, workspace=self.workspace,
                                        keep_for_backward=keeps_caches(train))
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
    family = "conv"
    torch_class = "LocallyConnected2d"  # convscope's own (interop.torch_modules)

    @classmethod
    def examples(cls):
        return [(cls(2, 3), (2, 5, 5)), (cls(3, (2, 3), stride=2, padding=1, bias=False), (1, 6, 5))]

    def other_ops(self, input_shape, output_shape):
        return {}  # MACs, and the bias adds counted generically

    def shape_derivation(self, input_shape, output_shape):
        from ..analysis.derivations import window_shape_lines
        return window_shape_lines(self, input_shape, output_shape, self.window(input_shape))

    def param_derivation(self, row):
        from ..analysis.derivations import eq
        fc = format_count
        w = row.param_shapes["weight"]
        c_out, (h, wd) = w[0], w[1:3]
        c_in, (kh, kw) = w[3], w[4:]
        bias = 1 if "bias" in row.param_shapes else 0
        per_unit = c_in * kh * kw + bias
        units = c_out * h * wd
        unit_sym = "C_in·k_h·k_w + 1" if bias else "C_in·k_h·k_w"
        unit_val = f"{c_in}·{kh}·{kw} + 1" if bias else f"{c_in}·{kh}·{kw}"
        shared = (c_in * kh * kw + bias) * c_out
        return [
            eq(f"params = C_out·H_out·W_out·({unit_sym})", f"{c_out}·{h}·{wd}·({unit_val})",
               units * per_unit, row.params),
            f"no weight sharing: each of the C_out·H_out·W_out = {c_out}·{h}·{wd} = {fc(units)} output "
            f"units has its own {unit_sym} = {fc(per_unit)} parameters "
            f"({'weights and a bias' if bias else 'weights'}): {fc(units)}·{fc(per_unit)} = {fc(units * per_unit)}",
            f"a conv2d of the same shape shares one filter per output channel across all "
            f"H_out·W_out = {h}·{wd} = {fc(h * wd)} positions: ({unit_sym})·C_out = ({unit_val})·{c_out} = "
            f"{fc(shared)}, {fc(h * wd)}× fewer",
        ]

    def mac_derivation(self, row):
        return _window_mac_lines(row)

    def torch_desc(self, path):
        from ..interop.torch_export import TorchDesc
        return TorchDesc(self.torch_class, {
            "in_channels": self.input_shape[0], "out_channels": self.out_channels,
            "input_size": tuple(self.input_shape[1:]), "kernel_size": self.kernel_size, "stride": self.stride,
            "padding": self.padding, "bias": self.bias}, custom=True)

    @classmethod
    def from_torch_module(cls, module, path, input_shape, reader=None):
        return cls(module.out_channels, module.kernel_size, stride=module.stride, padding=module.padding,
                   bias=module.bias is not None)

    def to_onnx(self, g, inputs, path):
        """Three nodes: an "unfold" Conv with one-hot kernels (group = C; output channel
        c·k_h·k_w + a·k_w + e copies input channel c at offset (a, e), so it holds every window in
        the weight's own (C, k_h, k_w) order), ``Einsum("nkij,oijk->noij")`` with the weight viewed
        as (C_out, H_out, W_out, C·k_h·k_w), then Add of the bias."""
        params = dict(self.named_parameters())
        channels = self.input_shape[0]
        k_h, k_w = self.kernel_size
        window = k_h * k_w
        unfold = np.zeros((channels * window, 1, k_h, k_w), dtype=np.float32)
        for k in range(channels * window):
            unfold[k, 0, (k % window) // k_w, k % k_w] = 1.0
        cols = g.node("Conv", [inputs[0], g.const(g.name(path, "unfold"), unfold)], path, kernel_shape=[k_h, k_w],
                      strides=list(self.stride), group=channels, **_conv_onnx_padding(self))
        weight = params["weight"].value
        flat = weight.reshape(weight.shape[:3] + (-1,))
        y = g.node("Einsum", [cols, g.const(g.name(path, "weight"), flat)], path, equation="nkij,oijk->noij")
        if self.bias:
            y = g.node("Add", [y, g.const(g.name(path, "bias"), params["bias"].value)], path)
        return [y]

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

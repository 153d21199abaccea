"""Shape errors that say where the wrong size came from and how to fix it.

When a layer rejects its input during :func:`~convscope.analysis.analyze`, the walk knows the
path of layers that produced that input. :func:`failure` turns the layer's own complaint into
one sentence with

* the layer (dotted name and how it is written),
* what it expected and what it got,
* the layers that turned a fitting size into the wrong one, e.g.
  ``linear expects 43,264 inputs, got 9,216: 256×13×13 became 256×6×6 after maxpool2d(3, stride=2)``,
* a fix.

Covered specifically: linear input features, input channels (conv, batch norm), windows
larger than their padded input and zero-size outputs; anything else keeps the layer's own
message and adds where its input came from.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

from ..errors import ConvscopeError, format_count, format_shape
from ..shapes import conv_output_size, prod, resolve_padding
from .describe import axis_names, call_text

Shape = Tuple[int, ...]


class ShapeMismatch(ConvscopeError):
    """A layer cannot take the shape it is given. Attributes: ``layer`` (dotted name),
    ``expected``, ``got`` (None when not a single number) and ``fix`` (a suggestion)."""

    def __init__(self, message: str, layer: str, expected=None, got=None, fix: str = ""):
        super().__init__(message)
        self.layer = layer
        self.expected = expected
        self.got = got
        self.fix = fix


def _where(name: str, layer) -> str:
    return f"layer {name} ({call_text(layer)})"


def _after(entries) -> str:
    """'maxpool2d(3, stride=2) (layer 12)' for one, a comma list for several."""
    return ", ".join(f"{call_text(layer)} (layer {name})" for name, layer, _i, _o in entries)


def _count_story(history, want: int, got_shape: Shape) -> str:
    """How a size of ``want`` elements turned into ``got_shape``'s count, if it ever was ``want``."""
    changers = []
    for entry in reversed(history):
        _name, _layer, before, out = entry
        if prod(out) == want and changers:
            return _became(out, changers)
        if prod(before) != prod(out):
            changers.insert(0, entry)
            if prod(before) == want:
                return _became(before, changers)
    return _last_change(history, got_shape)


def _became(origin: Shape, changers) -> str:
    return f"{format_shape(origin)} became {format_shape(changers[-1][3])} after {_after(changers)}"


def _last_change(history, got_shape: Shape) -> str:
    for entry in reversed(history):
        _name, _layer, before, out = entry
        if tuple(before) != tuple(out) and prod(before) != prod(out):
            return f"{format_shape(before)} became {format_shape(out)} after {_after([entry])}"
    return f"the network input is {format_shape(got_shape)}" if not history else \
        f"it arrives as {format_shape(got_shape)}"


def _channel_story(history, got: int) -> str:
    for entry in reversed(history):
        _name, layer, before, out = entry
        if before[:1] != out[:1]:
            return f"the {got} channels come from {_after([entry])}"
    return f"the network input has {got} channels"


def failure(name: str, layer, shape: Sequence[int], error: ConvscopeError, history) -> ShapeMismatch:
    """A :class:`ShapeMismatch` for ``layer`` (at dotted ``name``) given ``shape``."""
    shape = tuple(int(n) for n in shape)
    if isinstance(error, ShapeMismatch):  # already diagnosed deeper inside a container
        return error
    for check in (_linear, _channels, _window):
        found = check(name, layer, shape, history)
        if found is not None:
            return found
    story = _last_change(history, shape) if history else f"the network input is {format_shape(shape)}"
    return ShapeMismatch(f"{_where(name, layer)}: {error} ({story})", name)


def _linear(name, layer, shape, history) -> Optional[ShapeMismatch]:
    if not hasattr(layer, "in_features"):  # layers that read features on the last axis (linear)
        return None
    expected = layer.in_features
    if len(shape) > 1 and expected is None:
        fix = "add flatten before it"
        return ShapeMismatch(f"{_where(name, layer)}: {layer.type_name} expects a flat vector of features, got "
                             f"{format_shape(shape)}; {fix}", name, None, shape, fix)
    got = prod(shape)
    if expected is None or int(expected) == got:
        return None
    expected = int(expected)
    story = _count_story(history, expected, shape)
    fix = (f"set in_features={got} (or leave it out to infer it), or change the layers before it "
           f"so they give {format_count(expected)}")
    message = (f"{_where(name, layer)}: {layer.type_name} expects {format_count(expected)} inputs, got "
               f"{format_count(got)}: {story}; {fix}")
    if len(shape) > 1:
        message += f", and add flatten before it (the input is {format_shape(shape)})"
    return ShapeMismatch(message, name, expected, got, fix)


def _channels(name, layer, shape, history) -> Optional[ShapeMismatch]:
    for attribute in ("in_channels", "num_features"):
        expected = getattr(layer, attribute, None)
        if expected is not None:
            break
    else:
        return None
    got = shape[0]
    if int(expected) == got:
        return None
    fix = f"set {attribute}={got} (or leave it out to infer it)"
    return ShapeMismatch(f"{_where(name, layer)}: {layer.type_name} expects {format_count(int(expected))} "
                         f"input channels, got {format_count(got)}: {_channel_story(history, got)}; {fix}",
                         name, int(expected), got, fix)


def _window(name, layer, shape, history) -> Optional[ShapeMismatch]:
    """Kernel larger than the padded input, or an output of size zero."""
    kernel = getattr(layer, "kernel_size", None)
    if not isinstance(kernel, tuple) or len(shape) != len(kernel) + 1:
        return None
    stride = _tuple(getattr(layer, "stride", None), kernel)
    dilation = _tuple(getattr(layer, "dilation", 1), kernel)
    try:
        pads = resolve_padding(getattr(layer, "padding", 0), kernel, dilation)
    except ConvscopeError:
        return None
    ceil_mode = bool(getattr(layer, "ceil_mode", False))
    spatial = shape[1:]
    for axis, n, k, s, d, (p_lo, p_hi) in zip(axis_names(len(spatial)), spatial, kernel, stride,
                                              dilation, pads):
        extent = d * (k - 1) + 1
        padded = n + p_lo + p_hi
        if extent > padded or conv_output_size(n, k, s, p_lo, p_hi, d, ceil_mode) < 1:
            window = "×".join(str(d_ * (k_ - 1) + 1) for k_, d_ in zip(kernel, dilation))
            padded_text = "×".join(str(n_ + lo + hi) for n_, (lo, hi) in zip(spatial, pads))
            story = _last_change(history, shape) if history else f"the network input is {format_shape(shape)}"
            fix = ("use a smaller kernel or stride, add padding, or remove a downsampling layer before it")
            return ShapeMismatch(
                f"{_where(name, layer)}: its {window} window does not fit its padded input "
                f"{padded_text} ({axis} = {n} + {p_lo} + {p_hi} = {padded} < {extent}, so the output "
                f"would have size 0): {story}; {fix}", name, extent, padded, fix)
    return None


def _tuple(value, like: tuple) -> tuple:
    if value is None:
        return like  # pooling: stride defaults to the kernel size
    if isinstance(value, int):
        return (value,) * len(like)
    return tuple(value)

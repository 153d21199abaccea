"""Merge layers (several inputs, one output): :class:`Add`, :class:`Mul`, :class:`Cat`.

They are nodes of a :class:`~convscope.layers.graph.Graph` (``arity = None``: one or more
inputs) and implement the multi-input protocol: ``output_shape_multi(shapes)``,
``forward_multi(xs, train)`` and ``backward_multi(dy) -> [dx_0, dx_1, ...]``. With a single
input (inside a Sequential) add and mul are the identity and cat returns its input.

Shapes are per sample; ``dim`` counts axes of the batched array (0 is the batch), as in
PyTorch. The maths is in :mod:`convscope.ops.merge`.
"""
from __future__ import annotations

import numbers
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConvscopeError, format_shape
from ..ops import merge as ops
from .base import Layer, Shape
from .registry import register

__all__ = ["Add", "Mul", "Cat"]


def batched_axis(dim, rank: int, what: str) -> int:
    """A batched-array axis (negative counts from the end) as a non-negative index;
    the batch axis itself is refused."""
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
        raise ConvscopeError(f"{what} must be an integer axis such as 1 or -1, got {dim!r}")
    axis = int(dim) + rank if dim < 0 else int(dim)
    if not 1 <= axis < rank:
        raise ConvscopeError(f"{what}={dim} is not an axis after the batch axis of a {rank}-axis batch; "
                             f"choose one from 1 to {rank - 1} (or -1 to -{rank - 1})")
    return axis


def _names(names, count) -> List[str]:
    return [repr(n) for n in names] if names else [f"input {i}" for i in range(count)]


class MergeLayer(Layer):
    """A layer with one or more inputs and no parameters."""

    arity = None
    family = "join"

    def output_shape_multi(self, shapes: Sequence[Shape], names: Optional[Sequence[str]] = None) -> Shape:
        raise NotImplementedError

    def output_shape(self, input_shape: Shape) -> Shape:
        return self.output_shape_multi([tuple(input_shape)])

    def _build_multi(self, shapes: Sequence[Shape], rng, dtype) -> Shape:
        """Validate the inputs' shapes and record them (nothing to allocate)."""
        out = self.output_shape_multi([tuple(s) for s in shapes])
        self.input_shapes = [tuple(s) for s in shapes]
        self.input_shape = self.input_shapes[0]
        self.dtype = np.dtype(dtype)
        self._cache = None
        return out

    def forward_multi(self, xs: Sequence[np.ndarray], train: bool = False) -> np.ndarray:
        if not self.built:
            raise ConvscopeError(f"{self.type_name} is not built; build the model that holds it first")
        xs = [np.asarray(x).astype(self.dtype, copy=False) for x in xs]
        self.output_shape_multi([x.shape[1:] for x in xs])  # a clear error for a wrong shape
        y = self._forward_multi(xs, train)
        self._out_shape = y.shape
        return y

    def backward_multi(self, dy: np.ndarray) -> List[np.ndarray]:
        if self._cache is None:
            raise ConvscopeError(f"{self.type_name}: backward called before forward; "
                                 "run forward(x, train=True) first")
        dxs = self._backward_multi(np.asarray(dy).astype(self.dtype, copy=False))
        self._cache = None
        return dxs

    def _forward(self, x, train):
        return self._forward_multi([x], train)

    def _backward(self, dy):
        return self._backward_multi(dy)[0]

    # ----- protocol hooks ------------------------------------------------------------------
    def window(self, input_shape):
        return None

    def other_ops(self, input_shape, output_shape) -> Dict[str, int]:
        return self.other_ops_multi([tuple(input_shape)], output_shape)

    def other_ops_multi(self, shapes, output_shape) -> Dict[str, int]:
        """Non-MAC ops per sample for these input shapes (see analysis.counting)."""
        return {}

    def torch_desc(self, path: str):
        from ..interop.graph_torch import merge_desc
        return merge_desc(self)

    def shape_derivation(self, input_shape, output_shape):
        return self.shape_derivation_multi([tuple(input_shape)], [tuple(output_shape)])

    def shape_derivation_multi(self, shapes, outputs) -> List[str]:
        """Explanation lines for the output shape, given every input's shape."""
        return []


def broadcast_shape(shapes: Sequence[Shape], verb: str, names=None) -> Shape:
    """NumPy/PyTorch broadcasting of per-sample shapes (the batch axis is shared)."""
    labels = _names(names, len(shapes))
    out = tuple(shapes[0])
    for i, shape in enumerate(shapes[1:], start=1):
        try:
            out = tuple(np.broadcast_shapes(out, tuple(shape)))
        except ValueError:
            raise ConvscopeError(
                f"cannot {verb} {labels[0]} ({format_shape(shapes[0])}) and {labels[i]} "
                f"({format_shape(shape)}): sizes must be equal or 1 on every axis (aligned at the right); "
                "change one input's channels or spatial size") from None
    return out


class _Arithmetic(MergeLayer):
    """Add or mul: broadcast inputs, one op per output element for each input after the
    first (counted under ``category``), a chain of binary ONNX nodes."""

    verb = ""
    category = ""

    def __init__(self):
        super().__init__()

    def output_shape_multi(self, shapes, names=None):
        return broadcast_shape(shapes, self.verb, names)

    def other_ops_multi(self, shapes, output_shape):
        return {self.category: int(np.prod(output_shape)) * (len(shapes) - 1)}

    def shape_derivation_multi(self, shapes, outputs):
        listed = ", ".join(format_shape(s) for s in shapes)
        if all(tuple(s) == tuple(outputs[0]) for s in shapes):
            return [f"{self.type_name} of {len(shapes)} inputs of equal shape {format_shape(outputs[0])}, element by element"]
        return [f"broadcast {listed} (aligned at the right; a size 1 stretches to the other size) "
                f"→ {format_shape(outputs[0])}, then {self.verb} element by element"]

    def to_onnx(self, g, inputs, path):
        out = inputs[0]
        for other in inputs[1:]:
            out = g.node(self.onnx_op, [out, other], path)
        return [out if len(inputs) > 1 else g.node("Identity", [out], path)]


@register
class Add(_Arithmetic):
    """``y = x_0 + x_1 + ...`` with broadcasting (ResNet's skip connection).

    Backward: every input gets dL/dy, summed over the axes along which it was broadcast.
    """

    type_name = "add"
    onnx_op = "Add"
    verb = "add"
    category = "elementwise_adds"

    def _forward_multi(self, xs, train):
        self._cache = [x.shape for x in xs]
        return ops.add_forward(xs)

    def _backward_multi(self, dy):
        return ops.add_backward(dy, self._cache)

    @classmethod
    def examples(cls):
        from .graph import Graph
        from .conv import Conv2d
        return [(Graph([("a", Conv2d(4, 3, padding=1), "input"), ("b", Conv2d(4, 1), "input"),
                        ("out", Add(), ["a", "b", "input"])], "out"), (4, 5, 5))]


@register
class Mul(_Arithmetic):
    """``y = x_0 · x_1 · ...`` element-wise with broadcasting, e.g. a squeeze-and-excitation
    gate N×C×1×1 times a feature map N×C×H×W.

    Backward: ``dL/dx_i = dL/dy · Π_{j≠i} x_j``, summed over the axes x_i was broadcast along.
    """

    type_name = "mul"
    onnx_op = "Mul"
    verb = "multiply"
    category = "elementwise_muls"

    def _forward_multi(self, xs, train):
        self._cache = xs
        return ops.mul_forward(xs)

    def _backward_multi(self, dy):
        return ops.mul_backward(dy, self._cache)

    @classmethod
    def examples(cls):
        from .graph import Graph
        from .pool import GlobalAvgPool
        from .activation import Sigmoid
        from .reshape import Reshape
        return [(Graph([("pool", GlobalAvgPool(), "input"), ("gate", Sigmoid(), "pool"),
                        ("view", Reshape((3, 1, 1)), "gate"),
                        ("out", Mul(), ["input", "view"])], "out"), (3, 4, 4))]


@register
class Cat(MergeLayer):
    """Join inputs along ``dim`` (default 1, the channels), as ``torch.cat``.

    Its spec type is ``"concat"`` in a graph node (``{"type": "concat", "inputs": [...]}``;
    ``"cat"`` is accepted too); a ``"concat"`` entry with ``branches`` is the
    :class:`~convscope.layers.Concat` container. Every input must agree on all other axes.
    Backward cuts dL/dy back into the inputs' pieces.
    """

    type_name = "cat"
    spec_type = "concat"

    def __init__(self, dim: int = 1):
        super().__init__()
        if not isinstance(dim, numbers.Integral) or isinstance(dim, bool) or dim == 0:
            raise ConvscopeError(f"concat dim must be a non-batch axis such as 1 (channels) or -1, got {dim!r}")
        self.dim = int(dim)

    def _axis(self, shape: Shape) -> int:
        return batched_axis(self.dim, len(shape) + 1, "concat dim")

    def output_shape_multi(self, shapes, names=None):
        labels = _names(names, len(shapes))
        first = tuple(shapes[0])
        axis = self._axis(first)
        for i, shape in enumerate(shapes[1:], start=1):
            same_rest = len(shape) == len(first) and all(
                a == b for k, (a, b) in enumerate(zip(shape, first)) if k != axis - 1)
            if not same_rest:
                raise ConvscopeError(
                    f"cannot concatenate {labels[0]} ({format_shape(first)}) and {labels[i]} "
                    f"({format_shape(shape)}) on axis {self.dim}: every other axis must be equal; "
                    "adjust the padding or stride of one branch")
        total = sum(int(s[axis - 1]) for s in shapes)
        return first[:axis - 1] + (total,) + first[axis:]

    def shape_derivation_multi(self, shapes, outputs):
        axis = self._axis(shapes[0])
        sizes = " + ".join(str(s[axis - 1]) for s in shapes)
        return [f"axis {axis} (batch = 0): {sizes} = {outputs[0][axis - 1]}; every other axis equal: "
                f"{' + '.join(format_shape(s) for s in shapes)} → {format_shape(outputs[0])}"]

    def _forward_multi(self, xs, train):
        axis = self._axis(xs[0].shape[1:])
        self._cache = (axis, [x.shape[axis] for x in xs])
        return ops.concat_forward(xs, axis)

    def _backward_multi(self, dy):
        axis, sizes = self._cache
        return ops.concat_backward(dy, sizes, axis)

    def spec_entry(self) -> dict:
        entry = super().spec_entry()
        entry["type"] = self.spec_type
        return entry

    def to_onnx(self, g, inputs, path):
        return [g.node("Concat", list(inputs), path, axis=self.dim)]

    @classmethod
    def examples(cls):
        from .graph import Graph
        from .conv import Conv2d
        return [(Graph([("a", Conv2d(2, 3, padding=1), "input"), ("b", Conv2d(3, 1), "input"),
                        ("out", Cat(), ["a", "input", "b"])], "out"), (2, 4, 4)),
                (Graph([("a", Conv2d(2, 1), "input"), ("out", Cat(dim=-1), ["a", "input"])], "out"),
                 (2, 3, 4))]

"""Shape-only layers: :class:`Flatten`.

No arithmetic happens here: forward is a reshape and backward reshapes the gradient back,
so every gradient value passes through unchanged.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..errors import ConvscopeError, format_count, format_shape
from ..shapes import prod
from .base import Layer, Shape
from .registry import register

__all__ = ["Flatten"]


def _dim(value, name: str) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    raise ConvscopeError(f"{name} must be an integer axis such as 1 or -1, got {value!r}")


@register
class Flatten(Layer):
    """Merge axes ``start_dim..end_dim`` (inclusive, counted on the batched array as in
    ``torch.nn.Flatten``; negative values count from the end) into one.

    Shape
        Input ``(N, C, H, W)`` with the defaults ``start_dim=1, end_dim=-1``: output
        ``(N, C·H·W)``, e.g. 256×6×6 -> 9,216. In general the merged axis has the product of
        the merged sizes. The batch axis (0) is never merged.
    Backward
        ``dx = dy`` reshaped to the input's shape.
    """

    type_name = "flatten"
    family = "shape"
    torch_class = "Flatten"

    @classmethod
    def examples(cls):
        return [(cls(), (3, 2, 4)), (cls(2), (2, 3, 4)), (cls(1, 2), (2, 3, 4)), (cls(), (5,))]

    def other_ops(self, input_shape, output_shape):
        return {}  # a reshape

    def shape_derivation(self, input_shape, output_shape):
        x, y = tuple(input_shape), tuple(output_shape)
        return [f"flatten {format_shape(x)} = {format_count(prod(x))}" if len(y) == 1 else
                f"flatten {format_shape(x)} → {format_shape(y)} (count unchanged: {format_count(prod(y))})"]

    def to_onnx(self, g, inputs, path):
        """Flatten(axis=1) when it merges every axis after the batch, else Reshape to
        ``[0, *per-sample output shape]``."""
        start, end = self._axes(self.input_shape)
        if start == 1 and end == len(self.input_shape):
            return [g.node("Flatten", list(inputs), path, axis=1)]
        shape = [0] + list(self.output_shape(self.input_shape))  # 0: keep the batch size
        return [g.node("Reshape", [inputs[0], g.const(g.name(path, "shape"), shape, np.int64)], path)]

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = _dim(start_dim, "start_dim")
        self.end_dim = _dim(end_dim, "end_dim")
        if self.start_dim == 0:
            raise ConvscopeError("flatten never merges the batch axis, got start_dim=0; use start_dim=1")

    def _axes(self, input_shape: Shape):
        """(start, end) as batched-array axes, validated against the input's rank."""
        rank = len(input_shape) + 1  # with the batch axis
        start = self.start_dim + rank if self.start_dim < 0 else self.start_dim
        end = self.end_dim + rank if self.end_dim < 0 else self.end_dim
        for name, given, axis in (("start_dim", self.start_dim, start), ("end_dim", self.end_dim, end)):
            if not 0 <= axis < rank:
                raise ConvscopeError(
                    f"flatten {name}={given} is not an axis of a batch of shape "
                    f"(N, {', '.join(map(str, input_shape))}); choose an axis from 1 to {rank - 1}")
        if start == 0:
            raise ConvscopeError(f"flatten never merges the batch axis, got start_dim={self.start_dim} "
                                 f"for {rank}-axis batches; use start_dim=1")
        if start > end:
            raise ConvscopeError(f"flatten start_dim ({self.start_dim}) must not come after end_dim "
                                 f"({self.end_dim}) for {format_shape(input_shape)} inputs; swap them")
        return start, end

    def output_shape(self, input_shape: Shape) -> Shape:
        start, end = self._axes(input_shape)
        shape = tuple(input_shape)
        # per-sample index = batched index − 1
        return shape[:start - 1] + (prod(shape[start - 1:end]),) + shape[end:]

    def window(self, input_shape: Shape):
        start, end = self._axes(input_shape)
        return None if start == end else "global"

    @classmethod
    def symbolic_counts(cls, args, input_shape):
        """``output_shape`` for sizes that may be sympy symbols (convscope.analysis.symbolic)."""
        from ..analysis.symbolic import Counts, sympy
        start, end = cls(**args)._axes(input_shape)
        shape = tuple(input_shape)
        return Counts(shape[:start - 1] + (sympy().Mul(*shape[start - 1:end]),) + shape[end:])

    def inference_step(self, x_shape):
        shape = (x_shape[0],) + self.output_shape(tuple(x_shape[1:]))
        return lambda x: x.reshape(shape)

    def _forward(self, x: np.ndarray, train: bool) -> np.ndarray:
        out = self.output_shape(x.shape[1:])
        self._cache = x.shape
        y = x.reshape((x.shape[0],) + out)
        self._out_shape = y.shape
        return y

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        return dy.reshape(self._cache)

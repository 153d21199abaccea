"""Shape layers without arithmetic (or with only a mean): :class:`Reshape`, :class:`Permute`,
:class:`Transpose`, :class:`ChannelShuffle`, :class:`Pad`, :class:`Identity`, :class:`Mean`,
and the multi-output :class:`Split` and :class:`Chunk`.

Shapes are per sample; every ``dim`` counts axes of the batched array (0 is the batch, which
none of these layers may move or change), as in PyTorch. The maths is in
:mod:`convscope.ops.merge`.

Multi-output layers (split, chunk) are Graph nodes whose outputs are named ``"node:0"``,
``"node:1"``, ... They implement ``output_shapes(input_shape)``, ``forward_outputs(x, train)``
and ``backward_outputs(dys)`` (a ``None`` gradient is an output nobody used: zeros).
"""
from __future__ import annotations

import numbers
from typing import Dict, List, Sequence

import numpy as np

from ..errors import ConvscopeError, format_shape
from ..ops import merge as ops
from ..shapes import prod
from .base import Layer, Shape
from .merge import batched_axis
from .registry import register

__all__ = ["Reshape", "Permute", "Transpose", "ChannelShuffle", "Pad", "Identity", "Mean", "Split", "Chunk"]


def _ints(value, what: str, allow_negative=True) -> tuple:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items):
        raise ConvscopeError(f"{what} must be an integer or a list of integers, got {value!r}")
    items = tuple(int(v) for v in items)
    if not allow_negative and any(v < 0 for v in items):
        raise ConvscopeError(f"{what} must not be negative, got {value!r}")
    return items


class _ShapeLayer(Layer):
    family = "shape"

    def other_ops(self, input_shape, output_shape) -> Dict[str, int]:
        return {}

    def shape_derivation(self, input_shape, output_shape):
        return None

    def torch_desc(self, path: str):
        from ..interop.graph_torch import shape_desc
        return shape_desc(self)

    def _forward(self, x, train):
        y = self._op(x)
        self._out_shape = y.shape
        return y


@register
class Identity(_ShapeLayer):
    """``y = x`` (a copy); ``dx = dy``. A named pass-through node for graphs."""

    type_name = "identity"
    torch_class = "Identity"
    onnx_op = "Identity"

    def __init__(self):
        super().__init__()

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def _op(self, x):
        self._cache = True
        return x.copy()

    def _backward(self, dy):
        return dy.copy()

    def to_onnx(self, g, inputs, path):
        return [g.node("Identity", inputs[:1], path)]

    @classmethod
    def examples(cls):
        return [(cls(), (2, 3, 3))]


@register
class Reshape(_ShapeLayer):
    """View each sample as ``shape`` (per sample, without the batch axis; one entry may be -1,
    inferred): ``torch.reshape(x, (N, *shape))``. ``dx = dy`` reshaped back."""

    type_name = "reshape"

    def __init__(self, shape):
        super().__init__()
        self.shape = _ints(shape, "reshape shape")
        if sum(1 for s in self.shape if s == -1) > 1 or any(s == 0 or s < -1 for s in self.shape):
            raise ConvscopeError(f"reshape shape must be positive sizes with at most one -1, got {list(self.shape)}")

    def output_shape(self, input_shape):
        total = prod(input_shape)
        known = prod(s for s in self.shape if s != -1)
        if -1 in self.shape:
            if total % known:
                raise ConvscopeError(f"reshape cannot view {format_shape(input_shape)} ({total:,} values) as "
                                     f"{list(self.shape)}: {total:,} is not a multiple of {known:,}")
            return tuple(total // known if s == -1 else s for s in self.shape)
        if known != total:
            raise ConvscopeError(f"reshape cannot view {format_shape(input_shape)} ({total:,} values) as "
                                 f"{format_shape(self.shape)} ({known:,} values); the counts must be equal")
        return self.shape

    def window(self, input_shape):
        out = self.output_shape(input_shape)
        return None if tuple(out[1:]) == tuple(input_shape[1:]) else "global"

    def shape_derivation(self, input_shape, output_shape):
        inferred = "" if -1 not in self.shape else f" (-1 = {prod(input_shape):,} / {prod(s for s in self.shape if s != -1):,})"
        return [f"reshape {format_shape(input_shape)} → {format_shape(output_shape)}{inferred}; "
                f"count unchanged: {prod(output_shape):,}"]

    def _op(self, x):
        self._cache = x.shape
        return x.reshape((x.shape[0],) + self.output_shape(x.shape[1:])).copy()

    def _backward(self, dy):
        return dy.reshape(self._cache).copy()

    def to_onnx(self, g, inputs, path):
        shape = g.const(f"{path}.shape", [0] + list(self.shape), dtype=np.int64)
        return [g.node("Reshape", [inputs[0], shape], path)]

    @classmethod
    def examples(cls):
        return [(cls((4, -1)), (2, 2, 3)), (cls([2, 3, 2]), (12,))]


@register
class Permute(_ShapeLayer):
    """``torch.permute(x, dims)``: axis i of y is axis ``dims[i]`` of x. ``dims`` lists every
    axis of the batched array and keeps the batch first (``dims[0] == 0``), e.g. NCHW -> NHWC
    is ``(0, 2, 3, 1)``. Backward applies the inverse permutation."""

    type_name = "permute"
    onnx_op = "Transpose"

    @classmethod
    def from_onnx_attributes(cls, attributes):
        if set(attributes) - {"perm"} or "perm" not in attributes:
            raise ConvscopeError(f"reads Transpose with a 'perm' only, got {sorted(attributes)}")
        return cls(list(attributes["perm"]))

    def __init__(self, dims):
        super().__init__()
        self.dims = _ints(dims, "permute dims")

    def _perm(self, input_shape) -> tuple:
        rank = len(input_shape) + 1
        dims = tuple(d + rank if d < 0 else d for d in self.dims)
        if sorted(dims) != list(range(rank)):
            raise ConvscopeError(f"permute dims {list(self.dims)} must list each of the {rank} axes of a batch of "
                                 f"{format_shape(input_shape)} samples exactly once")
        if dims[0] != 0:
            raise ConvscopeError(f"permute dims {list(self.dims)} must keep the batch axis first (dims[0] = 0)")
        return dims

    def output_shape(self, input_shape):
        perm = self._perm(input_shape)
        return tuple(input_shape[d - 1] for d in perm[1:])

    def window(self, input_shape):
        perm = self._perm(input_shape)
        return None if perm == tuple(range(len(perm))) else "global"

    def shape_derivation(self, input_shape, output_shape):
        perm = self._perm(input_shape)
        return [f"axis i of the output is axis dims[i] of the input, dims = {list(perm)}: "
                f"{format_shape(input_shape)} → {format_shape(output_shape)}"]

    def _op(self, x):
        perm = self._perm(x.shape[1:])
        self._cache = perm
        return ops.permute_forward(x, perm)

    def _backward(self, dy):
        return ops.permute_backward(dy, self._cache)

    def to_onnx(self, g, inputs, path):
        return [g.node("Transpose", inputs[:1], path, perm=list(self._perm(self.input_shape)))]

    @classmethod
    def examples(cls):
        return [(cls((0, 2, 3, 1)), (2, 3, 4)), (cls([0, -1, 1]), (3, 5))]


@register
class Transpose(Permute):
    """``torch.transpose(x, dim0, dim1)``: swap two non-batch axes."""

    type_name = "transpose"
    onnx_op = None  # ONNX Transpose is read as a permute

    def __init__(self, dim0: int, dim1: int):
        Layer.__init__(self)
        self.dim0 = _ints(dim0, "transpose dim0")[0]
        self.dim1 = _ints(dim1, "transpose dim1")[0]

    @property
    def dims(self):
        return None

    def _perm(self, input_shape):
        rank = len(input_shape) + 1
        a = batched_axis(self.dim0, rank, "transpose dim0")
        b = batched_axis(self.dim1, rank, "transpose dim1")
        perm = list(range(rank))
        perm[a], perm[b] = perm[b], perm[a]
        return tuple(perm)

    @classmethod
    def examples(cls):
        return [(cls(1, -1), (2, 3, 4))]


@register
class ChannelShuffle(_ShapeLayer):
    """ShuffleNet's channel shuffle (``torch.nn.ChannelShuffle``): channels viewed as
    (groups, C/groups), transposed and flattened, so output channel ``i·groups + g`` is input
    channel ``g·(C/groups) + i``. A permutation: backward applies its inverse."""

    type_name = "channel_shuffle"
    torch_class = "ChannelShuffle"

    def __init__(self, groups: int):
        super().__init__()
        self.groups = _ints(groups, "channel_shuffle groups", allow_negative=False)[0]
        if self.groups < 1:
            raise ConvscopeError(f"channel_shuffle groups must be at least 1, got {groups!r}")

    def output_shape(self, input_shape):
        if len(input_shape) < 1 or input_shape[0] % self.groups:
            raise ConvscopeError(f"channel_shuffle with groups={self.groups} needs channels divisible by "
                                 f"{self.groups}, got {format_shape(input_shape)}")
        return tuple(input_shape)

    def shape_derivation(self, input_shape, output_shape):
        c, g = input_shape[0], self.groups
        return [f"channels viewed as {g}×{c // g}, transposed to {c // g}×{g} and flattened: output channel "
                f"i·{g} + k is input channel k·{c // g} + i; shape unchanged {format_shape(output_shape)}"]

    def _op(self, x):
        self._cache = True
        return ops.channel_shuffle(x, self.groups)

    def _backward(self, dy):
        return ops.channel_shuffle_backward(dy, self.groups)

    def to_onnx(self, g, inputs, path):
        c, rest = self.input_shape[0], list(self.input_shape[1:])
        view = g.const(f"{path}.view", [0, self.groups, c // self.groups] + rest, dtype=np.int64)
        back = g.const(f"{path}.back", [0, c] + rest, dtype=np.int64)
        y = g.node("Reshape", [inputs[0], view], path)
        y = g.node("Transpose", [y], path, perm=[0, 2, 1] + list(range(3, 3 + len(rest))))
        return [g.node("Reshape", [y, back], path)]

    @classmethod
    def examples(cls):
        return [(cls(2), (6, 2, 3)), (cls(3), (6, 4))]


@register
class Pad(_ShapeLayer):
    """Constant padding in ``torch.nn.functional.pad`` order: ``pad = (left, right)`` pads the
    last axis, ``(left, right, top, bottom)`` the last two, and so on (never the batch axis).
    Negative amounts crop, as in PyTorch. Backward cuts the padding off dL/dy."""

    type_name = "pad"

    def __init__(self, pad, value: float = 0.0):
        super().__init__()
        self.pad = _ints(pad, "pad")
        if len(self.pad) % 2:
            raise ConvscopeError(f"pad needs pairs (before, after) per axis, last axis first; got "
                                 f"{len(self.pad)} numbers {list(self.pad)}")
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise ConvscopeError(f"pad value must be a number, got {value!r}")
        self.value = float(value)

    def output_shape(self, input_shape):
        if len(self.pad) // 2 > len(input_shape):
            raise ConvscopeError(f"pad {list(self.pad)} pads {len(self.pad) // 2} axes but a "
                                 f"{format_shape(input_shape)} sample has {len(input_shape)} (the batch is never padded)")
        widths = ops.pad_widths(self.pad, len(input_shape))
        out = tuple(n + lo + hi for n, (lo, hi) in zip(input_shape, widths))
        if any(n < 1 for n in out):
            raise ConvscopeError(f"pad {list(self.pad)} crops {format_shape(input_shape)} to nothing "
                                 f"({format_shape(out)})")
        return out

    def window(self, input_shape):
        widths = ops.pad_widths(self.pad, len(input_shape))[1:]  # spatial axes only
        if not any(lo for lo, _ in widths):
            return None
        return tuple((1, 1, lo, 1) for lo, _ in widths)

    def shape_derivation(self, input_shape, output_shape):
        widths = ops.pad_widths(self.pad, len(input_shape))
        parts = [f"{n} + {lo} + {hi} = {m}" for n, (lo, hi), m in zip(input_shape, widths, output_shape) if lo or hi]
        return [f"per padded axis, size + before + after: {'; '.join(parts) or 'nothing padded'} → "
                f"{format_shape(output_shape)}"]

    def _op(self, x):
        self.output_shape(x.shape[1:])
        self._cache = True
        return ops.pad_forward(x, self.pad, self.value)

    def _backward(self, dy):
        return ops.pad_backward(dy, self.pad)

    def to_onnx(self, g, inputs, path):
        widths = [(0, 0)] + ops.pad_widths(self.pad, len(self.input_shape))
        pads = g.const(f"{path}.pads", [lo for lo, _ in widths] + [hi for _, hi in widths], dtype=np.int64)
        value = g.const(f"{path}.value", self.value)
        return [g.node("Pad", [inputs[0], pads, value], path, mode="constant")]

    @classmethod
    def examples(cls):
        return [(cls((1, 2, 0, 1)), (2, 3, 3)), (cls([1, 0, -1, 1], value=0.5), (2, 4, 4))]


@register
class Mean(_ShapeLayer):
    """``torch.mean(x, dim, keepdim)``: the average over the axes ``dim`` (an int or a list of
    non-batch axes). Global average pooling is ``Mean((2, 3))`` on NCHW (``keepdim=True``
    keeps 1×1). Backward gives each averaged element dL/dy divided by the count."""

    type_name = "mean"
    onnx_op = "ReduceMean"

    @classmethod
    def from_onnx_attributes(cls, attributes):
        if set(attributes) - {"axes", "keepdims"} or "axes" not in attributes:
            raise ConvscopeError(f"reads ReduceMean with 'axes' (and 'keepdims') only, got {sorted(attributes)}")
        return cls(list(attributes["axes"]), keepdim=bool(attributes.get("keepdims", 1)))  # ONNX keeps by default

    def __init__(self, dim, keepdim: bool = False):
        super().__init__()
        self.dim = _ints(dim, "mean dim")
        if not isinstance(keepdim, bool):
            raise ConvscopeError(f"mean keepdim must be true or false, got {keepdim!r}")
        self.keepdim = keepdim

    def _axes(self, input_shape) -> tuple:
        rank = len(input_shape) + 1
        axes = tuple(sorted(batched_axis(d, rank, "mean dim") for d in self.dim))
        if len(set(axes)) != len(axes):
            raise ConvscopeError(f"mean dim {list(self.dim)} names an axis twice")
        return axes

    def output_shape(self, input_shape):
        axes = self._axes(input_shape)
        if self.keepdim:
            return tuple(1 if i + 1 in axes else n for i, n in enumerate(input_shape))
        return tuple(n for i, n in enumerate(input_shape) if i + 1 not in axes)

    def window(self, input_shape):
        return "global" if any(a >= 2 for a in self._axes(input_shape)) else None

    def other_ops(self, input_shape, output_shape):
        return {"pooling": prod(input_shape)}

    def shape_derivation(self, input_shape, output_shape):
        axes = self._axes(input_shape)
        count = prod(input_shape[a - 1] for a in axes)
        return [f"mean over axes {list(axes)} (batch = 0){', kept as size 1' if self.keepdim else ''}: "
                f"{format_shape(input_shape)} → {format_shape(output_shape) or 'a scalar'}, each output the "
                f"average of {count:,} values"]

    def _op(self, x):
        axes = self._axes(x.shape[1:])
        self._cache = (x.shape, axes)
        return np.ascontiguousarray(ops.mean_forward(x, axes, self.keepdim))

    def _backward(self, dy):
        shape, axes = self._cache
        return ops.mean_backward(dy, shape, axes)

    def to_onnx(self, g, inputs, path):
        return [g.node("ReduceMean", inputs[:1], path, axes=list(self._axes(self.input_shape)),
                       keepdims=int(self.keepdim))]

    @classmethod
    def examples(cls):
        return [(cls((2, 3)), (3, 4, 5)), (cls(-1, keepdim=True), (3, 4, 5)), (cls([1]), (3, 4))]


class _MultiOutput(_ShapeLayer):
    """A layer with several outputs, for Graph nodes only (outputs ``node:0``, ``node:1``...)."""

    multi_output = True

    def _axis(self, input_shape) -> int:
        return batched_axis(self.dim, len(input_shape) + 1, f"{self.type_name} dim")

    def sizes(self, input_shape) -> List[int]:
        raise NotImplementedError

    def output_shapes(self, input_shape) -> List[Shape]:
        axis = self._axis(input_shape)
        return [tuple(input_shape[:axis - 1]) + (n,) + tuple(input_shape[axis:]) for n in self.sizes(input_shape)]

    def output_shape(self, input_shape):
        names = ", ".join(f"'NAME:{i}'" for i in range(len(self.output_shapes(input_shape))))
        raise ConvscopeError(f"{self.type_name} has several outputs: use it as a cs.Graph node and name "
                             f"its outputs {names}")

    def _forward(self, x, train):
        self.output_shape(x.shape[1:])  # the one-line error: a single output does not exist

    def _build(self, input_shape, rng, dtype):
        shapes = self.output_shapes(input_shape)
        self.input_shape, self.dtype, self._cache = tuple(input_shape), np.dtype(dtype), None
        return shapes

    def window(self, input_shape):
        return None

    def shape_derivation_multi(self, shapes, outputs):
        axis = self._axis(shapes[0])
        sizes = self.sizes(shapes[0])
        return [f"{self.type_name} on axis {axis} (batch = 0): {shapes[0][axis - 1]} = {' + '.join(map(str, sizes))}; "
                f"pieces :0 to :{len(sizes) - 1} = {', '.join(format_shape(s) for s in self.output_shapes(shapes[0]))}"]

    def forward_outputs(self, x, train=False) -> List[np.ndarray]:
        x = self._check_input(x)
        shapes = self.output_shapes(x.shape[1:])
        axis = self._axis(x.shape[1:])
        self._cache = (axis, [(x.shape[0],) + s for s in shapes])
        return ops.split_forward(x, [s[axis - 1] for s in shapes], axis)

    def backward_outputs(self, dys: Sequence) -> np.ndarray:
        if self._cache is None:
            raise ConvscopeError(f"{self.type_name}: backward called before forward; "
                                 "run forward(x, train=True) first")
        axis, shapes = self._cache
        self._cache = None
        return ops.split_backward(dys, shapes, axis, self.dtype)

    def to_onnx(self, g, inputs, path):
        sizes = g.const(f"{path}.split", self.sizes(self.input_shape), dtype=np.int64)
        name = g._unique(f"/{path}/Split")
        outs = [g._unique(f"{name}_output_{i}") for i in range(len(self.sizes(self.input_shape)))]
        g.nodes.append(g.helper.make_node("Split", [inputs[0], sizes], outs, name=name,
                                          axis=self._axis(self.input_shape)))
        return outs


@register
class Split(_MultiOutput):
    """``torch.split(x, split_size_or_sections, dim)``: an int cuts pieces of that size (the
    last may be smaller); a list gives each piece's size (they must add up to the axis)."""

    type_name = "split"

    def __init__(self, split_size_or_sections, dim: int = 1):
        super().__init__()
        self.split_size_or_sections = (_ints(split_size_or_sections, "split sizes", allow_negative=False)
                                       if isinstance(split_size_or_sections, (list, tuple))
                                       else _ints(split_size_or_sections, "split size", allow_negative=False)[0])
        self.dim = _ints(dim, "split dim")[0]

    def sizes(self, input_shape):
        n = input_shape[self._axis(input_shape) - 1]
        given = self.split_size_or_sections
        if isinstance(given, tuple):
            if sum(given) != n or any(s < 1 for s in given):
                raise ConvscopeError(f"split sizes {list(given)} must be positive and add up to {n} "
                                     f"(axis {self.dim} of {format_shape(input_shape)})")
            return list(given)
        if given < 1:
            raise ConvscopeError(f"split size must be at least 1, got {given}")
        return [min(given, n - start) for start in range(0, n, given)]

    @classmethod
    def examples(cls):
        return [(_pieces_graph(cls(2)), (5, 3, 3)), (_pieces_graph(cls([1, 3], dim=-1)), (2, 3, 4))]


@register
class Chunk(_MultiOutput):
    """``torch.chunk(x, chunks, dim)``: pieces of ceil(n/chunks) along ``dim`` (the last may be
    smaller, and there may be fewer than ``chunks`` pieces, as in PyTorch)."""

    type_name = "chunk"

    def __init__(self, chunks: int, dim: int = 1):
        super().__init__()
        self.chunks = _ints(chunks, "chunks", allow_negative=False)[0]
        if self.chunks < 1:
            raise ConvscopeError(f"chunks must be at least 1, got {chunks!r}")
        self.dim = _ints(dim, "chunk dim")[0]

    def sizes(self, input_shape):
        n = input_shape[self._axis(input_shape) - 1]
        step = -(-n // self.chunks)
        return [min(step, n - start) for start in range(0, n, step)]

    @classmethod
    def examples(cls):
        return [(_pieces_graph(cls(2)), (4, 3, 3)), (_pieces_graph(cls(3, dim=2)), (2, 7, 3))]


def _pieces_graph(layer):
    """A graph using every piece of a split: the pieces scaled differently and joined again."""
    from .graph import Graph
    from .merge import Cat
    return Graph([("split", layer, "input"), ("join", Cat(dim=layer.dim), ["split:1", "split:0"])], "join")

"""Containers: :class:`Sequential` (a chain), :class:`Concat` (branches joined on channels)
and :class:`Residual` (body + shortcut, added).

Names follow PyTorch's state-dict convention for the same structure: ``"3.weight"`` in a
Sequential, ``"2.branches.1.0.bias"`` in a Concat, ``"4.body.0.weight"`` and
``"4.shortcut.0.weight"`` in a Residual.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConvscopeError, format_shape
from .base import Layer, Shape, _check_shape
from .registry import register


def _as_layers(layers, what: str) -> List[Layer]:
    if isinstance(layers, Layer):
        return [layers]
    layers = list(layers)
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise ConvscopeError(f"{what}[{i}] must be a layer such as cs.layers.ReLU(), "
                                 f"got {type(layer).__name__}")
    return layers


def _child_error(name: str, layer: Layer, error: ConvscopeError) -> ConvscopeError:
    text = repr(layer)
    if "\n" in text:  # a nested Sequential's repr spans lines; errors must stay one line
        text = f"{type(layer).__name__}({len(layer.children())} layers)"
    return ConvscopeError(f"layer {name} ({text}): {error}")


@register
class Sequential(Layer):
    """Layers applied one after another: ``y = f_n(... f_2(f_1(x)))``.

    ``input_shape`` (optional, per-sample) is remembered so ``build()`` needs no argument.
    """

    type_name = "sequential"

    def __init__(self, layers: Sequence[Layer] = (), input_shape: Optional[Sequence[int]] = None):
        super().__init__()
        self.layers = _as_layers(layers, "layers")
        self.declared_input = _check_shape(input_shape) if input_shape is not None else None

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index) -> Layer:
        return self.layers[index]

    def __iter__(self):
        return iter(self.layers)

    def children(self) -> List[Tuple[str, Layer]]:
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    @property
    def has_train_mode(self) -> bool:  # type: ignore[override]
        return any(layer.has_train_mode for _, layer in self.children())

    def output_shape(self, input_shape: Shape) -> Shape:
        shape = tuple(input_shape)
        for name, layer in self.children():
            try:
                shape = layer.output_shape(shape)
            except ConvscopeError as error:
                raise _child_error(name, layer, error) from None
        return shape

    def build(self, input_shape=None, seed=0, dtype=np.float32) -> "Sequential":
        return build_declared(self, input_shape, seed, dtype)

    def _build(self, input_shape, rng, dtype) -> Shape:
        self.input_shape = tuple(input_shape)
        self.dtype = dtype
        shape = self.input_shape
        for name, layer in self.children():
            try:
                shape = layer._build(shape, rng, dtype)
            except ConvscopeError as error:
                raise _child_error(name, layer, error) from None
        self._cache = None
        return shape

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        x = self._check_input(x)
        for name, layer in self.children():
            try:
                x = layer.forward(x, train)
            except ConvscopeError as error:
                raise _child_error(name, layer, error) from None
        self._cache = True
        return x

    __call__ = forward

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray:
        """Backward through every layer in reverse; ``input_grad=False`` lets the first layer
        skip dL/dx (the trainer passes it: the data needs no gradient)."""
        if self._cache is None:
            raise ConvscopeError("backward called before forward; run forward(x, train=True) first")
        children = self.children()
        for index in range(len(children) - 1, -1, -1):
            name, layer = children[index]
            try:
                dy = layer.backward(dy, input_grad=input_grad or index > 0)
            except ConvscopeError as error:
                raise _child_error(name, layer, error) from None
        self._cache = None
        return dy

    def spec_entry(self) -> dict:
        return {"type": self.type_name, "layers": [layer.spec_entry() for layer in self.layers]}

    def spec(self) -> dict:
        """The model as a spec document: ``{"input": [...] (when known), "layers": [...]}``."""
        doc = {}
        shape = self.input_shape or self.declared_input
        if shape is not None:
            doc["input"] = list(shape)
        doc["layers"] = [layer.spec_entry() for layer in self.layers]
        return doc

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({i}): " + repr(layer).replace("\n", "\n  ") for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)" if self.layers else "Sequential()"


def build_declared(model: Layer, input_shape, seed, dtype) -> Layer:
    """``Layer.build`` for a model that may carry its input shape (``declared_input``)."""
    if input_shape is None:
        if model.declared_input is None:
            raise ConvscopeError("build needs the per-sample input shape, e.g. model.build((3, 32, 32))")
        input_shape = model.declared_input
    return Layer.build(model, input_shape, seed=seed, dtype=dtype)


def _branch(layers, what: str) -> Sequential:
    if isinstance(layers, Sequential):
        return layers
    return Sequential(_as_layers(layers, what))


@register
class Concat(Layer):
    """Runs every branch on the same input and joins the outputs on the channel axis (axis 1).

    Input: ``(N, C, *S)``. Output: ``(N, sum of branch channels, *S)``; every branch must
    produce the same spatial size. Backward splits dy by channels and adds the branches' dx.
    """

    type_name = "concat"

    def __init__(self, branches: Sequence[Sequence[Layer]]):
        super().__init__()
        branches = list(branches)
        if not branches:
            raise ConvscopeError("concat needs at least one branch, got branches=[]")
        self.branches = [_branch(b, f"branches[{i}]") for i, b in enumerate(branches)]

    def children(self):
        return [(f"branches.{i}", b) for i, b in enumerate(self.branches)]

    @property
    def has_train_mode(self) -> bool:  # type: ignore[override]
        return any(b.has_train_mode for b in self.branches)

    def output_shape(self, input_shape: Shape) -> Shape:
        shapes = []
        for i, branch in enumerate(self.branches):
            try:
                shapes.append(branch.output_shape(input_shape))
            except ConvscopeError as error:
                raise ConvscopeError(f"branches.{i}: {error}") from None
        first = shapes[0]
        for i, shape in enumerate(shapes[1:], start=1):
            if len(shape) != len(first) or shape[1:] != first[1:]:
                raise ConvscopeError(
                    f"concat joins on channels, so every branch must give the same spatial size: "
                    f"branch 0 gives {format_shape(first)}, branch {i} gives {format_shape(shape)}; "
                    "adjust that branch's padding or stride")
        return (sum(s[0] for s in shapes),) + tuple(first[1:])

    def _build(self, input_shape, rng, dtype):
        output = self.output_shape(input_shape)
        self.input_shape, self.dtype = tuple(input_shape), dtype
        for branch in self.branches:
            branch._build(input_shape, rng, dtype)
        return output

    def _forward(self, x, train):
        outputs = [branch.forward(x, train) for branch in self.branches]
        self._cache = [o.shape[1] for o in outputs]
        y = np.concatenate(outputs, axis=1)
        self._out_shape = y.shape
        return y

    def _backward(self, dy):
        splits = np.cumsum(self._cache)[:-1]
        dx = None
        for branch, part in zip(self.branches, np.split(dy, splits, axis=1)):
            d = branch.backward(np.ascontiguousarray(part))
            dx = d if dx is None else dx + d
        return dx

    def spec_entry(self) -> dict:
        return {"type": self.type_name, "branches": [[l.spec_entry() for l in b.layers] for b in self.branches]}

    def __repr__(self) -> str:
        return f"Concat({len(self.branches)} branches)"


@register
class Residual(Layer):
    """``y = body(x) + shortcut(x)``; without a shortcut, ``y = body(x) + x``.

    Backward: ``dx = body.backward(dy) + shortcut.backward(dy)`` (or ``+ dy`` for identity):
    the gradient flows through both paths and adds where they split.
    """

    type_name = "residual"

    def __init__(self, body: Sequence[Layer], shortcut: Optional[Sequence[Layer]] = None):
        super().__init__()
        self.body = _branch(body, "body")
        self.shortcut = _branch(shortcut, "shortcut") if shortcut else None

    def children(self):
        kids = [("body", self.body)]
        if self.shortcut is not None:
            kids.append(("shortcut", self.shortcut))
        return kids

    @property
    def has_train_mode(self) -> bool:  # type: ignore[override]
        return any(c.has_train_mode for _, c in self.children())

    def output_shape(self, input_shape: Shape) -> Shape:
        try:
            body = self.body.output_shape(input_shape)
        except ConvscopeError as error:
            raise ConvscopeError(f"body: {error}") from None
        if self.shortcut is not None:
            try:
                other = self.shortcut.output_shape(input_shape)
            except ConvscopeError as error:
                raise ConvscopeError(f"shortcut: {error}") from None
            where = "the shortcut"
        else:
            other, where = tuple(input_shape), "the input (identity shortcut)"
        if tuple(body) != tuple(other):
            raise ConvscopeError(
                f"residual adds body and shortcut, which must have equal shapes: body gives "
                f"{format_shape(body)}, {where} gives {format_shape(other)}; add a shortcut such as "
                f"conv2d({body[0]}, 1, stride=...) to match")
        return tuple(body)

    def _build(self, input_shape, rng, dtype):
        output = self.output_shape(input_shape)
        self.input_shape, self.dtype = tuple(input_shape), dtype
        for _, child in self.children():
            child._build(input_shape, rng, dtype)
        return output

    def _forward(self, x, train):
        y = self.body.forward(x, train)
        y = y + (self.shortcut.forward(x, train) if self.shortcut is not None else x)
        self._cache = True
        self._out_shape = y.shape
        return y

    def _backward(self, dy):
        dx = self.body.backward(dy)
        return dx + (self.shortcut.backward(dy) if self.shortcut is not None else dy)

    def spec_entry(self) -> dict:
        entry = {"type": self.type_name, "body": [l.spec_entry() for l in self.body.layers]}
        if self.shortcut is not None:
            entry["shortcut"] = [l.spec_entry() for l in self.shortcut.layers]
        return entry

    def __repr__(self) -> str:
        return f"Residual(body={len(self.body)} layers, shortcut={'identity' if self.shortcut is None else len(self.shortcut)})"

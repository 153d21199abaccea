"""Containers: :class:`Sequential` (a chain), :class:`Concat` (branches joined on channels)
and :class:`Residual` (body + shortcut, added).

Names follow PyTorch's state-dict convention for the same structure: ``"3.weight"`` in a
Sequential, ``"2.branches.1.0.bias"`` in a Concat, ``"4.body.0.weight"`` and
``"4.shortcut.0.weight"`` in a Residual.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConvscopeError, format_count, format_shape
from ..ops.workspace import step_buffer
from ..shapes import prod
from .base import Layer, Shape, _check_shape, inside_inference, keeps_caches
from .plan import chain_step, forget_plans, plan_for
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
    family = "container"
    is_chain = True
    torch_class = "Sequential"

    @classmethod
    def examples(cls):
        from .activation import ReLU
        from .conv import Conv2d
        return [(cls([Conv2d(2, 3, padding=1), ReLU()]), (1, 4, 4)), (cls([]), (3,))]

    # ----- declarations ---------------------------------------------------------------------
    def other_ops(self, input_shape, output_shape):
        return {}  # its layers count their own

    def shape_derivation(self, input_shape, output_shape):
        return [f"a chain of {len(self.children())} layers: {format_shape(input_shape)} → {format_shape(output_shape)}"]

    def torch_desc(self, path):
        from ..interop.torch_export import TorchDesc
        return TorchDesc("Sequential", {"modules": [child.torch_desc(_child_path(path, name))
                                                    for name, child in self.children()]}, varargs=True)

    @classmethod
    def from_torch_module(cls, module, path, input_shape, reader=None):
        return reader.sequential(module, path, input_shape)

    def to_onnx(self, g, inputs, path):
        for name, child in self.children():
            inputs = child.to_onnx(g, inputs, g.name(path, name))
        return list(inputs)

    @classmethod
    def from_spec_entry(cls, kwargs, path, parse):
        parse.check_keys(kwargs, {"layers"}, path)
        return cls(parse.layers(kwargs.get("layers", []), f"{path}.layers"))

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
        forget_plans(self)
        return shape

    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        x = self._check_input(x)
        # A plan for the built per-sample shape only: there every layer's own shape checks
        # have passed at build time (another shape goes through the layers' checks).
        if not keeps_caches(train) and not inside_inference() and x.shape[1:] == self.input_shape:
            return self._forward_recording(x, train, self._run_planned)
        return self._forward_recording(x, train, self._run_children)

    def inference_step(self, x_shape):
        return chain_step([layer for _, layer in self.children()], x_shape)

    def _run_planned(self, x: np.ndarray, train: bool) -> np.ndarray:
        """An outermost inference pass: the plan for x's shape (layers/plan.py). A plan that
        fails is run again layer by layer, so the error names the layer as usual."""
        plan = plan_for(self, x)
        if plan is None:
            return self._run_children(x, train)
        try:
            return plan(x)
        except ConvscopeError:
            return self._run_children(x, train)

    def _run_children(self, x: np.ndarray, train: bool) -> np.ndarray:
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
        self._replay_for_backward()
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


def _child_path(path: str, name: str) -> str:
    """A child's path in messages; the top of a model is called "model" (or "")."""
    return f"{path}.{name}" if path and path != "model" else name


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
    family = "join"
    torch_class = "Concat"  # convscope's own (interop.torch_modules)

    @classmethod
    def examples(cls):
        from .conv import Conv2d
        from .pool import MaxPool2d
        return [(cls([[Conv2d(2, 1)], [MaxPool2d(3, 1, 1), Conv2d(3, 3, padding=1)]]), (2, 4, 4)),
                (cls([[Conv2d(1, 1)]]), (1, 3, 3))]

    # ----- declarations ---------------------------------------------------------------------
    def other_ops(self, input_shape, output_shape):
        return {}  # a copy

    def shape_derivation(self, input_shape, output_shape):
        y = tuple(output_shape)
        channels = [b.output_shape(input_shape)[0] for b in self.branches]
        return [f"C_out = Σ branch channels = {' + '.join(format_count(c) for c in channels)} = "
                f"{format_count(y[0])}; every branch gives {format_shape(y[1:]) or 'the same size'}, "
                "joined on channels"]

    def diagram_join(self, name):
        return {"word": "concat", "columns": [(f"{name}.branches.{i}.", list(b.layers))
                                              for i, b in enumerate(self.branches)],
                "tooltip": f"{name}: concat of {len(self.branches)} branches on channels"}

    def torch_desc(self, path):
        from ..interop.torch_export import TorchDesc
        return TorchDesc("Concat", {"branches": [b.torch_desc(f"{path}.branches.{i}")
                                                 for i, b in enumerate(self.branches)]}, custom=True)

    @classmethod
    def from_torch_module(cls, module, path, input_shape, reader=None):
        return cls([reader.branch(b, f"{path}.branches.{i}", input_shape) for i, b in enumerate(module.branches)])

    def to_onnx(self, g, inputs, path):
        outputs = [b.to_onnx(g, inputs, g.name(path, f"branches.{i}"))[0] for i, b in enumerate(self.branches)]
        return [g.node("Concat", outputs, path, axis=1)]

    @classmethod
    def from_spec_entry(cls, kwargs, path, parse):
        parse.check_keys(kwargs, {"branches"}, path)
        branches = kwargs.get("branches")
        if not isinstance(branches, list) or not branches:
            raise ConvscopeError(f"{path}.branches: expected a non-empty list of layer lists")
        return cls([parse.layers(b, f"{path}.branches[{i}]") for i, b in enumerate(branches)])

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

    def inference_step(self, x_shape):
        steps = [branch.inference_step(x_shape) for branch in self.branches]
        y = step_buffer((x_shape[0],) + self.output_shape(tuple(x_shape[1:])), self.dtype)
        return lambda x: np.concatenate([step(x) for step in steps], axis=1, out=y)

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
    family = "join"
    torch_class = "Residual"  # convscope's own (interop.torch_modules)

    @classmethod
    def examples(cls):
        from .activation import ReLU
        from .conv import Conv2d
        return [(cls([Conv2d(2, 3, padding=1), ReLU()]), (2, 4, 4)),
                (cls([Conv2d(3, 3, stride=2, padding=1)], [Conv2d(3, 1, stride=2)]), (2, 5, 5))]

    # ----- declarations ---------------------------------------------------------------------
    @property
    def passes_input(self) -> bool:
        return self.shortcut is None

    def other_ops(self, input_shape, output_shape):
        return {"elementwise_adds": prod(output_shape)}  # body + shortcut

    def shape_derivation(self, input_shape, output_shape):
        y = format_shape(output_shape)
        shortcut = "identity" if self.shortcut is None else "shortcut(x)"
        return [f"y = body(x) + {shortcut}: {y} + {y} → {y}"]

    def diagram_join(self, name):
        columns = [(f"{name}.body.", list(self.body.layers))]
        if self.shortcut is not None:
            columns.append((f"{name}.shortcut.", list(self.shortcut.layers)))
        return {"word": "add (+)", "columns": columns,
                "tooltip": f"{name}: residual, body + {'shortcut' if self.shortcut is not None else 'identity'}"}

    def torch_desc(self, path):
        from ..interop.torch_export import TorchDesc
        shortcut = None if self.shortcut is None else self.shortcut.torch_desc(f"{path}.shortcut")
        return TorchDesc("Residual", {"body": self.body.torch_desc(f"{path}.body"), "shortcut": shortcut},
                         custom=True)

    @classmethod
    def from_torch_module(cls, module, path, input_shape, reader=None):
        shortcut = module.shortcut
        return cls(reader.branch(module.body, f"{path}.body", input_shape),
                   None if shortcut is None else reader.branch(shortcut, f"{path}.shortcut", input_shape))

    def to_onnx(self, g, inputs, path):
        body = self.body.to_onnx(g, inputs, g.name(path, "body"))[0]
        shortcut = inputs[0] if self.shortcut is None else self.shortcut.to_onnx(g, inputs, g.name(path, "shortcut"))[0]
        return [g.node("Add", [body, shortcut], path)]

    @classmethod
    def from_spec_entry(cls, kwargs, path, parse):
        parse.check_keys(kwargs, {"body", "shortcut"}, path)
        if "body" not in kwargs:
            raise ConvscopeError(f"{path}: residual needs a 'body' list of layers")
        shortcut = kwargs.get("shortcut")
        return cls(parse.layers(kwargs["body"], f"{path}.body"),
                   parse.layers(shortcut, f"{path}.shortcut") if shortcut else None)

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

    def inference_step(self, x_shape):
        body = self.body.inference_step(x_shape)
        shortcut = self.shortcut.inference_step(x_shape) if self.shortcut is not None else (lambda x: x)
        y = step_buffer((x_shape[0],) + self.output_shape(tuple(x_shape[1:])), self.dtype)
        # body's result lives in a buffer of its own steps, which the shortcut's never touch
        return lambda x: np.add(body(x), shortcut(x), out=y)

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

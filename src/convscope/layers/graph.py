"""Any topology: :class:`Graph`, a model of named nodes wired by name (a DAG).

Python API
----------
::

    import convscope as cs
    L = cs.layers
    block = cs.Graph(
        nodes=[("conv1", L.Conv2d(8, 3, padding=1), "input"),   # (name, layer, inputs)
               ("relu1", L.ReLU(), "conv1"),
               ("conv2", L.Conv2d(8, 3, padding=1), "relu1"),
               ("out", L.Add(), ["conv2", "conv1"])],           # fan-in: several inputs
        outputs=["out"],                                         # or "out"
        input_shape=(8, 16, 16))                                 # optional, as for Sequential

* A node is ``(name, layer, inputs)``, a :class:`Node` or a dict ``{"name", "layer",
  "inputs"}``. ``inputs`` is one name or a list of names: ``"input"`` (the model's input) or
  another node's name. Nodes may be listed in any order; they run in a topological order that
  keeps the listed order where it can.
* Node names are strings; dots are allowed (``"features.0"``, ``"layer1.0.conv1"``) so a
  model imported from PyTorch keeps its module paths. ``"input"`` and names with ``:`` are
  reserved. Parameters are named ``<node name>.<param>`` (``"layer1.0.conv1.weight"``).
* A layer is any convscope layer or container (Sequential, Concat, Residual, another Graph).
  Ordinary layers take exactly one input; merge layers (``arity = None``: add, mul, concat)
  take one or more.
* Multi-output layers (split, chunk) give outputs named ``"<node>:0"``, ``"<node>:1"``, ...;
  consumers must name the piece (``"split1:1"``). A piece nobody uses gets a zero gradient.
* Fan-out: a node's output may feed any number of nodes; backward sums their gradients.
* Sharing: the same layer object in two nodes shares its parameters (counted once, named
  after the first node; its gradient is the sum over both uses). Both uses must see the same
  input shape. In a spec the second node says ``{"name": ..., "shares": "<first node>",
  "inputs": [...]}``.
* One output (``outputs`` is a list of one name, as in the spec, or a plain name).

Everything is checked when the Graph is made, before anything is built: two nodes with one
name, an input no node defines, a cycle, a node that does not reach the output, a wrong
number of inputs; shapes (add/concat mismatches naming both inputs and their shapes) when
the input shape is known. Each is one :class:`~convscope.ConvscopeError` line naming the node.

Spec: ``{"type": "graph", "nodes": [{"name": "conv1", "type": "conv2d", ..., "inputs":
["input"]}, ...], "outputs": ["out"]}``; ``model.spec()`` of a top-level Graph adds
``"input"`` when known.
"""
from __future__ import annotations

import copy
import heapq
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ConvscopeError, format_shape
from .base import Layer, Shape, _check_shape
from .registry import register

__all__ = ["Graph", "Node", "INPUT"]

#: The name of the model's input in ``inputs`` lists.
INPUT = "input"


class Node(NamedTuple):
    """One node: its ``name``, its ``layer`` and the names of its ``inputs``."""

    name: str
    layer: Layer
    inputs: Tuple[str, ...]


def _node(item, index: int) -> Node:
    if isinstance(item, dict):
        unknown = set(item) - {"name", "layer", "inputs"}
        if unknown:
            raise ConvscopeError(f"nodes[{index}]: unknown key {sorted(unknown)[0]!r}; a node dict has "
                                 "'name', 'layer' and 'inputs'")
        item = (item.get("name"), item.get("layer"), item.get("inputs", INPUT))
    if not isinstance(item, (tuple, list)) or len(item) != 3:
        raise ConvscopeError(f"nodes[{index}]: expected (name, layer, inputs), got {item!r:.80}")
    name, layer, inputs = item
    if not isinstance(name, str) or not name:
        raise ConvscopeError(f"nodes[{index}]: a node name must be a non-empty string, got {name!r}")
    if name == INPUT or ":" in name:
        raise ConvscopeError(f"node {name!r}: the name {INPUT!r} and names with ':' are reserved "
                             "(the model's input and the pieces of multi-output nodes)")
    if "" in name.split("."):
        raise ConvscopeError(f"node {name!r}: a dotted name needs a word between dots, like a PyTorch "
                             "module path ('layer1.0.conv1')")
    if not isinstance(layer, Layer):
        raise ConvscopeError(f"node {name!r}: expected a convscope layer, got {type(layer).__name__}")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, (list, tuple)) or not all(isinstance(i, str) for i in inputs):
        raise ConvscopeError(f"node {name!r}: inputs must be a name or a list of names, got {inputs!r:.80}")
    return Node(name, layer, tuple(inputs))


def _source(ref: str) -> Tuple[str, Optional[int]]:
    """'split1:0' -> ('split1', 0); 'conv1' -> ('conv1', None)."""
    if ":" in ref:
        base, _, index = ref.rpartition(":")
        if index.isdigit():
            return base, int(index)
    return ref, None


def _multi(layer) -> bool:
    return bool(getattr(layer, "multi_output", False))


@register
class Graph(Layer):
    """A model of named nodes, each a layer with named inputs (see the module docstring for
    the API, the naming of nodes, parameters and multi-output pieces).

    Shape: whatever the nodes make of the input; forward returns the output node's tensor.
    Backward walks the nodes in reverse topological order; a tensor used by several nodes
    gets the sum of their gradients.
    """

    type_name = "graph"
    family = "container"

    def __init__(self, nodes: Sequence[Union[Node, tuple, dict]], outputs: Union[str, Sequence[str]],
                 input_shape=None):
        super().__init__()
        listed = [_node(item, i) for i, item in enumerate(list(nodes))]
        if not listed:
            raise ConvscopeError("a graph needs at least one node, got nodes=[]")
        self.nodes: List[Node] = listed
        outputs = [outputs] if isinstance(outputs, str) else list(outputs)
        if len(outputs) != 1 or not isinstance(outputs[0], str):
            raise ConvscopeError(f"a graph has exactly one output, got outputs={outputs!r:.80}; "
                                 "concatenate or add several results into one node")
        self.outputs = outputs
        self.declared_input = _check_shape(input_shape) if input_shape is not None else None
        self._index = self._check_names()
        self.order: List[Node] = self._toposort()
        self._check_reach()
        self._first_use: Dict[int, str] = {}
        for node in self.order:
            self._first_use.setdefault(id(node.layer), node.name)
        self._clones: Dict[str, Layer] = {}
        if self.declared_input is not None:
            self.output_shape(self.declared_input)

    # ----- structure checks -------------------------------------------------------------------
    def _check_names(self) -> Dict[str, Node]:
        index: Dict[str, Node] = {}
        for node in self.nodes:
            if node.name in index:
                raise ConvscopeError(f"node {node.name!r}: two nodes have this name; node names must be unique")
            index[node.name] = node
        for node in self.nodes:
            arity = getattr(node.layer, "arity", 1)
            if not node.inputs:
                raise ConvscopeError(f"node {node.name!r}: no inputs; name at least one (e.g. 'input')")
            if arity is not None and len(node.inputs) != arity:
                raise ConvscopeError(f"node {node.name!r}: {node.layer.type_name} takes {arity} input"
                                     f"{'s' if arity != 1 else ''}, got {len(node.inputs)} ({', '.join(node.inputs)}); "
                                     "join several tensors with an add, mul or concat node first")
            for ref in node.inputs:
                self._check_ref(node.name, ref, index)
        self._check_ref("outputs", self.outputs[0], index)
        return index

    def _check_ref(self, who: str, ref: str, index: Dict[str, Node]) -> None:
        if ref == INPUT:
            return
        base, piece = _source(ref)
        where = f"node {who!r}" if who != "outputs" else "outputs"
        if base not in index:
            names = ", ".join(repr(n) for n in list(index)[:8])
            raise ConvscopeError(f"{where}: input {ref!r} is not defined by any node (defined: 'input', {names}"
                                 f"{' ...' if len(index) > 8 else ''})")
        multi = _multi(index[base].layer)
        if multi and piece is None:
            raise ConvscopeError(f"{where}: {base!r} is a {index[base].layer.type_name} with several outputs; "
                                 f"name one piece, e.g. '{base}:0'")
        if not multi and piece is not None:
            raise ConvscopeError(f"{where}: {base!r} has a single output; write {base!r}, not {ref!r}")

    def _toposort(self) -> List[Node]:
        """Kahn's algorithm; among the nodes ready to run, the earliest listed goes first, so a
        list already in order keeps its order. O((nodes + edges)·log nodes)."""
        position = {n.name: i for i, n in enumerate(self.nodes)}
        deps = {n.name: {_source(r)[0] for r in n.inputs if r != INPUT} for n in self.nodes}
        readers: Dict[str, List[str]] = {}
        for name, needs in deps.items():
            for need in needs:
                readers.setdefault(need, []).append(name)
        waiting = {name: len(needs) for name, needs in deps.items()}
        ready = [position[name] for name, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        order: List[Node] = []
        while ready:
            node = self.nodes[heapq.heappop(ready)]
            order.append(node)
            for reader in readers.get(node.name, []):
                waiting[reader] -= 1
                if waiting[reader] == 0:
                    heapq.heappush(ready, position[reader])
        if len(order) < len(self.nodes):
            done = {n.name for n in order}
            node, loop = self._cycle_text([n for n in self.nodes if n.name not in done])
            raise ConvscopeError(f"node {node!r} is in a cycle ({loop}, each reading the next); "
                                 "a graph must be acyclic")
        return order

    def _cycle_text(self, remaining: List[Node]) -> Tuple[str, str]:
        """(a node on the cycle, the cycle written 'a -> b -> a', each reading the next)."""
        blocked = {n.name for n in remaining}
        name, path, seen = remaining[0].name, [], {}
        while name not in seen:
            seen[name] = len(path)
            path.append(name)
            name = next(b for b in (_source(r)[0] for r in self._index[name].inputs) if b in blocked)
        loop = path[seen[name]:] + [name]
        return loop[0], " -> ".join(repr(n) for n in loop)

    def _check_reach(self) -> None:
        needed = set()
        stack = [_source(self.outputs[0])[0]]
        while stack:
            name = stack.pop()
            if name == INPUT or name in needed:
                continue
            needed.add(name)
            stack.extend(_source(r)[0] for r in self._index[name].inputs)
        for node in self.nodes:
            if node.name not in needed:
                raise ConvscopeError(f"node {node.name!r} does not reach the output {self.outputs[0]!r}; "
                                     "remove it or feed it into a node on the way to the output")

    # ----- structure --------------------------------------------------------------------------
    def children(self) -> List[Tuple[str, Layer]]:
        """Each layer once, under the first node that uses it (shared layers count once)."""
        return [(n.name, n.layer) for n in self.order if self._first_use[id(n.layer)] == n.name]

    def node(self, name: str) -> Node:
        if name not in self._index:
            raise ConvscopeError(f"no node named {name!r} in this graph")
        return self._index[name]

    def shares(self, node: Node) -> Optional[str]:
        """The first node using the same layer object, if ``node`` is a later use of it."""
        first = self._first_use[id(node.layer)]
        return None if first == node.name else first

    @property
    def has_train_mode(self) -> bool:  # type: ignore[override]
        return any(layer.has_train_mode for _, layer in self.children())

    def consumers(self) -> Dict[str, List[str]]:
        """Tensor name -> the nodes that read it, in running order."""
        out: Dict[str, List[str]] = {}
        for node in self.order:
            for ref in node.inputs:
                out.setdefault(ref, []).append(node.name)
        return out

    # ----- shapes -----------------------------------------------------------------------------
    def tensor_shapes(self, input_shape: Shape) -> Dict[str, Shape]:
        """Per-sample shape of every tensor: ``"input"``, each node, each piece ``"node:i"``."""
        shapes: Dict[str, Shape] = {INPUT: tuple(input_shape)}
        uses: Dict[int, Tuple[str, List[Shape]]] = {}
        for node in self.order:
            ins = [shapes[r] for r in node.inputs]
            first = uses.setdefault(id(node.layer), (node.name, ins))
            if first[1] != ins:
                raise ConvscopeError(
                    f"node {node.name!r} reuses the layer of node {first[0]!r}, which gets "
                    f"{', '.join(map(format_shape, first[1]))}, but gets {', '.join(map(format_shape, ins))}; "
                    "a shared layer needs the same input shape at every use")
            for ref, shape in self.node_outputs(node, ins).items():
                shapes[ref] = shape
        return shapes

    def node_outputs(self, node: Node, ins: List[Shape]) -> Dict[str, Shape]:
        """{tensor name: shape} that ``node`` produces from input shapes ``ins``."""
        layer = node.layer
        try:
            if getattr(layer, "arity", 1) is None:
                return {node.name: tuple(layer.output_shape_multi(ins, names=list(node.inputs)))}
            if _multi(layer):
                return {f"{node.name}:{i}": tuple(s) for i, s in enumerate(layer.output_shapes(ins[0]))}
            return {node.name: tuple(layer.output_shape(ins[0]))}
        except ConvscopeError as error:
            raise ConvscopeError(f"node {node.name!r} ({layer.type_name}): {error}") from None

    def output_shape(self, input_shape: Shape) -> Shape:
        return self.tensor_shapes(input_shape)[self.outputs[0]]

    # ----- building ---------------------------------------------------------------------------
    def build(self, input_shape=None, seed=0, dtype=np.float32) -> "Graph":
        from .containers import build_declared
        return build_declared(self, input_shape, seed, dtype)

    def _build(self, input_shape, rng, dtype) -> Shape:
        shapes = self.tensor_shapes(tuple(input_shape))  # every check before anything is allocated
        self.input_shape, self.dtype = tuple(input_shape), np.dtype(dtype)
        for node in self.order:
            if self.shares(node) is not None:
                continue
            ins = [shapes[r] for r in node.inputs]
            try:
                if getattr(node.layer, "arity", 1) is None:
                    node.layer._build_multi(ins, rng, dtype)
                else:
                    node.layer._build(ins[0], rng, dtype)
            except ConvscopeError as error:
                raise ConvscopeError(f"node {node.name!r} ({node.layer.type_name}): {error}") from None
        self._clones = {node.name: _clone(node.layer) for node in self.order if self.shares(node) is not None}
        self._cache = None
        return shapes[self.outputs[0]]

    def _runner(self, node: Node) -> Layer:
        """The object that runs ``node``: its layer, or for a repeated use a clone sharing the
        parameter arrays (so each use keeps its own backward cache)."""
        return self._clones.get(node.name, node.layer)

    # ----- running ----------------------------------------------------------------------------
    def forward(self, x: np.ndarray, train: bool = False) -> np.ndarray:
        return self._forward_recording(self._check_input(x), train, self._run_all)

    def _run_all(self, x: np.ndarray, train: bool) -> np.ndarray:
        y = self.run(x, train)
        self._cache = True
        self._out_shape = y.shape
        return y

    def run(self, x: np.ndarray, train: bool = False, call=None) -> np.ndarray:
        """Run the nodes in order on a checked batch ``x``; each tensor is freed after its last
        reader. ``call(node, layer, xs, default)`` may replace how one node is run (viz uses it
        to stop inside a node); ``default(layer, xs)`` is the ordinary run, returning
        {tensor name: array}."""
        values: Dict[str, np.ndarray] = {INPUT: x}
        remaining = {ref: len(users) for ref, users in self.consumers().items()}
        output = self.outputs[0]
        for node in self.order:
            layer = self._runner(node)
            xs = [values[r] for r in node.inputs]

            def default(layer, xs, node=node):
                if getattr(layer, "arity", 1) is None:
                    return {node.name: layer.forward_multi(xs, train)}
                if _multi(layer):
                    return {f"{node.name}:{i}": y for i, y in enumerate(layer.forward_outputs(xs[0], train))}
                return {node.name: layer.forward(xs[0], train)}

            try:
                produced = default(layer, xs) if call is None else call(node, layer, xs, default)
            except ConvscopeError as error:
                raise ConvscopeError(f"node {node.name!r} ({layer.type_name}): {error}") from None
            values.update(produced)
            for ref in node.inputs:  # free what no later node reads
                remaining[ref] -= 1
                if remaining[ref] == 0 and ref != output:
                    values.pop(ref, None)
        return values[output]

    __call__ = forward

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> Optional[np.ndarray]:
        """Reverse topological order; gradients of a tensor read by several nodes are summed.
        With ``input_grad=False`` nodes that read only the model input skip dL/dx and None is
        returned. Shared layers get the sum of their uses' gradients."""
        if self._cache is None:
            raise ConvscopeError("backward called before forward; run forward(x, train=True) first")
        self._replay_for_backward()
        dy = np.asarray(dy)
        if dy.shape != self._out_shape:
            raise ConvscopeError(f"graph: backward expects dy of shape {self._out_shape} (the last output's), "
                                 f"got {dy.shape}")
        grads: Dict[str, np.ndarray] = {self.outputs[0]: dy.astype(self.dtype, copy=False)}
        for node in reversed(self.order):
            layer = self._runner(node)
            needs = input_grad or any(r != INPUT for r in node.inputs)
            try:
                if getattr(layer, "arity", 1) is None:
                    dxs = layer.backward_multi(grads.pop(node.name))
                elif _multi(layer):
                    pieces = [grads.pop(f"{node.name}:{i}", None) for i in range(len(layer._cache[1]))]
                    dxs = [layer.backward_outputs(pieces)]
                else:
                    dxs = [layer.backward(grads.pop(node.name), input_grad=needs)]
            except ConvscopeError as error:
                raise ConvscopeError(f"node {node.name!r} ({layer.type_name}): {error}") from None
            for ref, dx in zip(node.inputs, dxs):
                if dx is None:
                    continue
                if dx.base is not None:  # a view of a layer's work buffer: keep our own copy
                    dx = dx.copy()
                grads[ref] = dx if ref not in grads else grads[ref] + dx
        self._sum_shared_grads()
        self._cache = None
        return grads.get(INPUT) if input_grad else None

    def _sum_shared_grads(self) -> None:
        if not self._clones:
            return
        owners = {node.name: node.layer for node in self.order}
        for name, clone in self._clones.items():
            primary = owners[self.shares(self._index[name])]
            for (_, p), (_, q) in zip(primary.named_parameters(), clone.named_parameters()):
                p.grad += q.grad

    # ----- description ------------------------------------------------------------------------
    def spec_entry(self) -> dict:
        nodes = []
        for node in self.nodes:
            entry = {"name": node.name}
            first = self.shares(node)
            if first is not None:
                entry["shares"] = first
            else:
                entry.update(node.layer.spec_entry())
            entry["inputs"] = list(node.inputs)
            nodes.append(entry)
        return {"type": self.type_name, "nodes": nodes, "outputs": list(self.outputs)}

    def spec(self) -> dict:
        """``{"input": [...] (when known), "type": "graph", "nodes": [...], "outputs": [...]}``."""
        doc = {}
        shape = self.input_shape or self.declared_input
        if shape is not None:
            doc["input"] = list(shape)
        doc.update(self.spec_entry())
        return doc

    def __repr__(self) -> str:
        lines = []
        for node in self.nodes:
            first = self.shares(node)
            text = f"shares {first!r}" if first else repr(node.layer).replace("\n", "\n  ")
            lines.append(f"  ({node.name}): {text} <- {', '.join(node.inputs)}")
        lines.append(f"  outputs: {', '.join(self.outputs)}")
        return "Graph(\n" + "\n".join(lines) + "\n)"

    def other_ops(self, input_shape, output_shape):
        return {}  # a graph's own row: its nodes have the counts

    @classmethod
    def from_spec_entry(cls, kwargs, path, parse):
        from ..spec.document import layer_from_entry
        from ..spec.graph import graph_from_entry
        return graph_from_entry(kwargs, path, layer_from_entry)

    def torch_desc(self, path: str):
        from ..interop.graph_torch import graph_desc
        return graph_desc(self, path)

    def to_onnx(self, g, inputs, path):
        from ..interop.graph_torch import graph_to_onnx
        return graph_to_onnx(self, g, inputs, path)

    @classmethod
    def examples(cls):
        from .conv import Conv2d
        from .activation import ReLU
        from .merge import Add, Cat
        return [(cls([("a", Conv2d(3, 3, padding=1), "input"), ("r", ReLU(), "a"),
                      ("b", Conv2d(3, 1), "r"), ("sum", Add(), ["b", "a"]),
                      ("out", Cat(), ["sum", "input"])], "out"), (2, 4, 4))]


def _clone(layer: Layer) -> Layer:
    """A deep copy of ``layer`` whose parameter values and buffers are the same arrays (shared),
    with its own gradients and caches."""
    memo = {}
    for _, p in layer.named_parameters():
        memo[id(p.value)] = p.value
    for _, b in layer.named_buffers():
        memo[id(b)] = b
    return copy.deepcopy(layer, memo)

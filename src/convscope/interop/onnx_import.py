"""ONNX -> convscope: read a graph back into Sequential/Concat/Residual layers.

This is the structural reader :func:`from_onnx` tries first; a file it cannot read as
chains and blocks goes to the graph reader (:mod:`.onnx_graph`), which returns a cs.Graph.
Shared here: loading (external data only from the model's folder), checked attributes,
the size limit :data:`MAX_ELEMENTS` and weight loading.

Reads the graphs :mod:`.onnx_export` writes and the common ones ``torch.onnx.export``
writes for CNNs. Nodes and the layers they become:

==============================================  =================================================
Conv                                            conv1d / conv2d (symmetric pads, or PyTorch's
                                                "same"); with one-hot kernels followed by
                                                ``Einsum("nkij,oijk->noij")`` (and Add): a
                                                locally_connected2d, as :mod:`.onnx_export` writes it
Gemm; MatMul (+ Add of a constant)              linear
MatMul(A_h, x), MatMul(·, A_wᵀ) (averaging      adaptive_avgpool2d
matrices)
Relu, Clip(0, 6) / Clip(0, ∞), LeakyRelu,       relu, relu6 / relu, leaky_relu, sigmoid, tanh,
Sigmoid, Tanh, Softmax                          softmax
MaxPool, AveragePool                            maxpool1d/2d, avgpool1d/2d
GlobalAveragePool (+ Flatten or a flattening    adaptive_avgpool2d(1) (global_avgpool with the
Reshape)                                        flatten)
BatchNormalization, LRN                         batchnorm1d/2d (running statistics), local_response_norm
Flatten(axis=1); Reshape to a flattened shape   flatten
Dropout, Identity                               dropout, nothing
Concat(axis=1); Add of two branches             concat; residual (first input the body)
==============================================  =================================================

A Reshape's first target entry may be 0, −1 or the batch size the graph was exported with
(``torch.onnx.export`` bakes it in for ``x.view(x.size(0), -1)``); it is read as the batch.

How branches are found: where a tensor feeds several nodes, the block ends at the first
Concat or Add that every path from there passes through (its immediate post-dominator);
each input of that node is one branch, itself parsed the same way. Graphs that are not
built from chains, concats and residual additions are refused with the node names.
"""
from __future__ import annotations

import collections
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from .. import layers as L
from ..errors import ConvscopeError, format_shape
from ..files import require_file
from ..layers.base import Layer, _check_shape, without_initialisation
from ..layers.containers import Concat, Residual, Sequential
from ..ops.pool import adaptive_matrix
from ..shapes import prod, same_padding
from .onnx_checks import constant_value, read_attrs
from .optional import require

#: Ops read by the converters below (one-to-one ops come from the registry: one_to_one()).
_CONVERTED = ("AveragePool", "BatchNormalization", "Clip", "Concat", "Constant", "Conv", "Dropout", "Einsum",
              "Flatten", "Gemm", "GlobalAveragePool", "Identity", "LRN", "LeakyRelu", "MatMul", "MaxPool",
              "Add", "Reshape", "Softmax")


def one_to_one() -> Dict[str, type]:
    """ONNX op type -> layer class, for the registered types that declare an attribute-free
    one-to-one ``onnx_op`` (relu, sigmoid, tanh, ...)."""
    from ..layers.registry import LAYER_TYPES
    return {cls.onnx_op: cls for cls in LAYER_TYPES.values() if cls.onnx_op}


SUPPORTED = tuple(sorted(set(_CONVERTED) | set(one_to_one())))


def supported_ops() -> list:
    """Every operator the importer reads (the structural reader's, the graph reader's and the
    constant folder's), sorted, for error messages."""
    from . import onnx_fold, onnx_graph
    graph_ops = {name[3:] for name in dir(onnx_graph.GraphReader) if name.startswith("_g_")}
    return sorted((set(SUPPORTED) | set(one_to_one()) | graph_ops | set(onnx_fold.FOLDERS)
                   | {"Shape", "Constant", "Erf", "Sqrt", "Pow", "Sub"}) - {"Einsum"})
_DTYPES = {1: np.float32, 11: np.float64}
#: Operators allowed on *shape values* (computed from Shape(x)), e.g. torch's x.view(x.size(0), -1).
SHAPE_OPS = ("Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Identity")
#: Two batch sizes to evaluate shape values with: the target's first entry must follow the batch.
_PROBE_BATCHES = (7919, 7907)


#: Largest per-sample tensor convscope agrees to plan for (elements): 2**28 float32 = 1 GiB.
MAX_ELEMENTS = 2 ** 28

#: Attributes ONNX defines as lists of integers / single integers (a mistyped one is refused).
_INTS = {"strides", "pads", "dilations", "kernel_shape", "perm", "axes", "split", "output_padding"}
_INT = {"group", "axis", "allowzero", "keepdims", "ceil_mode", "count_include_pad", "transA", "transB",
        "size", "storage_order", "training_mode", "to", "start", "end", "noop_with_empty_axes"}


def _check_size(path: str, what: str, shape) -> None:
    if prod(shape) > MAX_ELEMENTS:
        raise ConvscopeError(f"{path}: {what} has shape {format_shape(shape)} ({prod(shape):,} values per sample), "
                             f"more than convscope plans for ({MAX_ELEMENTS:,}); refused before allocating")


def _load(path: str, onnx):
    """(ModelProto, {initializer name: checked array}) of the file at ``path``; the arrays of a
    file's own raw data are writable views of the file's bytes (:mod:`.onnx_weights`)."""
    from .onnx_checks import check_model, check_text, initializer_values
    from .onnx_weights import load, read_external

    path = require_file(path, "ONNX file", "give the .onnx file inside it")
    proto, decoded = load(onnx, path, "MAX_MODEL_BYTES")
    if proto.ir_version < 1 or not proto.HasField("graph") or not proto.opset_import:
        raise ConvscopeError(f"{path} is not an ONNX model: it has no graph or opset; give a .onnx file "
                             "such as to_onnx writes")
    check_text(proto, path)
    # Declared sizes, and external data only in regular files inside the model's folder (a file
    # cannot make convscope read /etc/passwd), all before any tensor is decoded or read:
    check_model(onnx, proto, path)
    read_external(onnx, proto, os.path.realpath(os.path.dirname(os.path.abspath(path))), path, decoded)
    return proto, initializer_values(onnx, proto, path, decoded)


class _Reader:
    """One pass over a graph: constants, the node DAG, then the layer tree."""

    def __init__(self, proto, onnx, path: str, consts: Dict[str, np.ndarray]):
        self.onnx = onnx
        self.path = path
        graph = proto.graph
        self.opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=1)
        self.consts = consts  # {initializer name: checked array}
        self.nodes = []
        self.shape_nodes: Dict[str, object] = {}  # output name -> node computing a shape value
        unsupported = collections.Counter()
        for node in graph.node:
            op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            if self._computes_shape(node, op):
                for name in node.output:
                    self.shape_nodes[name] = node
            elif op not in SUPPORTED and op not in one_to_one():
                unsupported[op] += 1
            elif op == "Constant":
                self.consts[node.output[0]] = self._constant_value(node)
            elif op == "Identity" and node.input[0] in self.consts:
                self.consts[node.output[0]] = self.consts[node.input[0]]
            else:
                self.nodes.append(node)
        if unsupported:
            listed = ", ".join(f"{op} ({n})" if n > 1 else op for op, n in sorted(unsupported.items()))
            raise ConvscopeError(f"{path} uses operators convscope cannot read: {listed}; supported: "
                                 f"{', '.join(sorted((set(SUPPORTED) | set(one_to_one())) - {'Constant', 'Einsum'}))}")
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise ConvscopeError(f"{path} has {len(inputs)} inputs and {len(graph.output)} outputs; convscope "
                                 "reads models with one input and one output")
        self.input, self.output = inputs[0], graph.output[0].name
        self.producer: Dict[str, int] = {}
        self.consumers: Dict[str, List[int]] = collections.defaultdict(list)
        for index, node in enumerate(self.nodes):
            for name in node.output:
                self.producer[name] = index
            for name in dict.fromkeys(self.activations(node)):
                self.consumers[name].append(index)
        self.visited = set()
        self.shapes: Dict[str, tuple] = {}  # per-sample shape of each activation tensor reached
        self.weights: List[Tuple[Layer, Dict[str, np.ndarray]]] = []

    # ----- graph helpers --------------------------------------------------------------------
    def _constant_value(self, node) -> np.ndarray:
        return constant_value(self.onnx, node, lambda: f"{self.path}: {self.name(node)}")

    def activations(self, node) -> List[str]:
        return [name for name in node.input if name and name not in self.consts and name not in self.shape_nodes]

    def _computes_shape(self, node, op: str) -> bool:
        """Shape(x), and shape-only operators whose inputs are all shape values or constants."""
        if op == "Shape":
            return True
        inputs = [n for n in node.input if n and n not in self.consts]
        return op in SHAPE_OPS and bool(inputs) and all(n in self.shape_nodes for n in inputs)

    def shape_value(self, name: str, batch: int) -> np.ndarray:
        """Evaluate a shape value for a batch of ``batch`` samples (a tiny interpreter)."""
        if name in self.consts:
            return np.asarray(self.consts[name])
        node = self.shape_nodes[name]
        op, attrs = node.op_type, self.attrs(node)
        if op == "Shape":
            if node.input[0] not in self.shapes:
                raise self.fail(node, "reads the shape of a tensor outside the chain of layers")
            full = np.array((batch,) + self.shapes[node.input[0]], dtype=np.int64)
            return full[attrs.get("start", 0):attrs.get("end", len(full))]
        args = [self.shape_value(n, batch) if n else None for n in node.input]
        if op == "Gather":
            return np.take(args[0], args[1], axis=attrs.get("axis", 0))
        if op in ("Unsqueeze", "Squeeze"):
            axes = attrs.get("axes", None if len(args) < 2 or args[1] is None else list(args[1]))
            if op == "Unsqueeze":
                return np.expand_dims(args[0], tuple(axes))
            return np.squeeze(args[0], None if axes is None else tuple(axes))
        if op == "Concat":
            return np.concatenate([np.atleast_1d(a) for a in args], axis=attrs.get("axis", 0))
        if op == "Slice":
            starts, ends = args[1], args[2]
            axes = args[3] if len(args) > 3 and args[3] is not None else range(len(starts))
            steps = args[4] if len(args) > 4 and args[4] is not None else [1] * len(starts)
            index = [slice(None)] * args[0].ndim
            for axis, start, end, step in zip(axes, starts, ends, steps):
                index[int(axis)] = slice(int(start), int(end), int(step))
            return args[0][tuple(index)]
        return np.asarray(args[0]).astype(np.int64)  # Cast, Identity

    def attrs(self, node) -> Dict:
        return read_attrs(self.onnx, node, lambda: f"{self.path}: {self.name(node)}")

    def name(self, node) -> str:
        return f"{node.op_type} node {node.name!r}" if node.name else f"a {node.op_type} node"

    def fail(self, node, why: str) -> ConvscopeError:
        return ConvscopeError(f"{self.path}: {self.name(node)} {why}")

    def const(self, node, position: int, what: str, optional: bool = False) -> Optional[np.ndarray]:
        names = list(node.input)
        if position >= len(names) or not names[position]:
            if optional:
                return None
            raise self.fail(node, f"has no {what}")
        if names[position] not in self.consts:
            raise self.fail(node, f"computes its {what} in the graph; convscope needs it stored as a constant")
        return self.consts[names[position]]

    def only_first_output(self, node) -> None:
        for extra in list(node.output)[1:]:
            if extra and (self.consumers.get(extra) or extra == self.output):
                raise self.fail(node, f"uses its extra output {extra!r}; convscope layers have one output")

    def is_join(self, index: int) -> bool:
        node = self.nodes[index]
        return node.op_type == "Concat" or (node.op_type == "Add" and len(self.activations(node)) == 2)

    def take(self, index: int):
        if index in self.visited:
            raise self.fail(self.nodes[index], "is reached twice; the graph is not a chain of layers")
        self.visited.add(index)
        return self.nodes[index]

    def follower(self, tensor: str, stop: str, op: str) -> Optional[int]:
        """The node after ``tensor`` when it is the only one reading it and is an ``op``."""
        users = self.consumers.get(tensor, [])
        if tensor == stop or tensor == self.output or len(users) != 1:
            return None
        node = self.nodes[users[0]]
        if node.op_type != op or self.activations(node) != [tensor] or users[0] in self.visited:
            return None
        return users[0]

    def _reaches_output(self, starts, avoid: int) -> bool:
        target = self.producer.get(self.output)
        seen, stack = set(), [s for s in starts if s != avoid]
        while stack:
            index = stack.pop()
            if index == target:
                return True
            if index in seen:
                continue
            seen.add(index)
            for name in self.nodes[index].output:
                stack.extend(u for u in self.consumers.get(name, []) if u != avoid)
        return False

    def _descendants(self, starts) -> set:
        seen, stack = set(), list(starts)
        while stack:
            index = stack.pop()
            if index in seen:
                continue
            seen.add(index)
            for name in self.nodes[index].output:
                stack.extend(self.consumers.get(name, []))
        return seen

    # ----- structure ------------------------------------------------------------------------
    def chain(self, tensor: str, stop: str, shape, allowed=None) -> Tuple[List[Layer], tuple]:
        """Layers from ``tensor`` up to ``stop``; ``allowed`` limits the first step's readers."""
        layers: List[Layer] = []
        while tensor != stop:
            self.shapes[tensor] = tuple(shape)
            users = self.consumers.get(tensor, [])
            if allowed is not None:
                users, allowed = [u for u in users if u in allowed], None
            if not users:
                raise ConvscopeError(f"{self.path}: the graph stops at tensor {tensor!r} before reaching "
                                     f"{stop!r}; it is not a chain of layers")
            if len(users) == 1 and not self.is_join(users[0]):
                new, tensor = self.unary(users[0], tensor, stop, shape)
            else:
                block, tensor = self.block(tensor, users, shape)
                new = [block]
            for layer in new:
                try:
                    shape = tuple(layer.output_shape(shape))
                    _check_size(self.path, f"{layer!r}'s output", shape)
                except ConvscopeError as error:
                    raise ConvscopeError(f"{self.path}: {layer!r} does not fit its input "
                                         f"{format_shape(shape)}: {error}") from None
                layers.append(layer)
        return layers, shape

    def block(self, tensor: str, users: List[int], shape) -> Tuple[Layer, str]:
        """A fork at ``tensor``: branches up to their join, as a Concat or a Residual."""
        reach = [self._descendants([u]) for u in users]
        join = None
        for index in sorted(set.intersection(*reach)):
            if self.is_join(index) and not self._reaches_output(users, avoid=index):
                join = index
                break
        if join is None:
            names = ", ".join(self.name(self.nodes[u]) for u in users)
            raise ConvscopeError(f"{self.path}: tensor {tensor!r} feeds {names}, whose paths never join in one "
                                 "Concat or Add; convscope reads chains, concats and residual additions only")
        node = self.nodes[join]
        inputs = self.activations(node)
        groups: Dict[str, List[int]] = {name: [] for name in inputs if name != tensor}
        for user in users:
            if user == join:
                continue
            hits = [name for name in groups
                    if self.producer.get(name) == user or self.producer.get(name) in self._descendants([user])]
            if len(set(hits)) != 1:
                raise self.fail(self.nodes[user], "belongs to several branches (or none) of the "
                                                  f"{self.name(node)}; the graph is not a chain of blocks")
            groups[hits[0]].append(user)
        branches = []
        for name in inputs:
            if name == tensor:
                branches.append([])
            else:
                layers, _ = self.chain(tensor, name, shape, allowed=set(groups[name]))
                branches.append(layers)
        self.take(join)
        if node.op_type == "Concat":
            axis = self.attrs(node).get("axis", 1)
            if axis not in (1, 1 - (len(shape) + 1)):
                raise self.fail(node, f"joins on axis {axis}; convscope's concat joins on channels (axis 1)")
            return Concat(branches), node.output[0]
        body, shortcut = branches
        if not body and shortcut:
            body, shortcut = shortcut, []
        return Residual(body, shortcut or None), node.output[0]

    # ----- single nodes (and the short patterns they start) ---------------------------------
    def unary(self, index: int, tensor: str, stop: str, shape) -> Tuple[List[Layer], str]:
        node = self.take(index)
        handler = getattr(self, f"_op_{node.op_type}", None) or self._one_to_one(node.op_type)
        if handler is None:
            raise self.fail(node, "does not start a layer convscope knows in this position")
        if self.activations(node) != [tensor] and node.op_type not in ("MatMul",):
            raise self.fail(node, f"reads the activations in an unexpected way (inputs {list(node.input)})")
        result = handler(node, tensor, stop, shape)
        layers, out = result if isinstance(result, tuple) else (result, node.output[0])
        if not isinstance(layers, list):
            layers = [layers]
        return layers, out

    def _one_to_one(self, op: str):
        cls = one_to_one().get(op)
        if cls is None:
            return None

        def convert(node, tensor, stop, shape):
            if any(name in self.consts for name in node.input):
                raise self.fail(node, "combines the activations with a constant; the graph reader reads it")
            try:
                return cls.from_onnx_attributes(self.attrs(node))
            except ConvscopeError as error:
                raise self.fail(node, str(error)) from None
        return convert

    def _layer(self, layer: Layer, **weights) -> Layer:
        self.weights.append((layer, {k: v for k, v in weights.items() if v is not None}))
        return layer

    def _window_pads(self, node, attrs, n: int, pool: bool):
        pads = list(attrs.get("pads", [0] * 2 * n))
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if auto_pad == "VALID":
            pads = [0] * 2 * n
        elif auto_pad == "SAME_UPPER" and not pool and all(s == 1 for s in attrs.get("strides", [1] * n)):
            return "same", "same"  # PyTorch's padding="same": the odd pixel after
        elif auto_pad != "NOTSET":
            raise self.fail(node, f"uses auto_pad={auto_pad}; convscope reads explicit pads (or SAME_UPPER "
                                  "at stride 1 on a convolution)")
        return pads[:n], pads[n:]

    def _op_Conv(self, node, tensor, stop, shape):
        w = self.const(node, 1, "weight")
        b = self.const(node, 2, "bias", optional=True)
        attrs = self.attrs(node)
        n = w.ndim - 2
        if n not in (1, 2):
            raise self.fail(node, f"is a {n}-D convolution; convscope has conv1d and conv2d")
        kernel = tuple(attrs.get("kernel_shape", w.shape[2:]))
        stride = tuple(attrs.get("strides", [1] * n))
        dilation = tuple(attrs.get("dilations", [1] * n))
        groups = int(attrs.get("group", 1))
        lo, hi = self._window_pads(node, attrs, n, pool=False)
        if lo == "same":
            padding = "same"
        elif lo == hi:
            padding = tuple(lo)
        elif all(1 == s for s in stride) and [same_padding(k, d) for k, d in zip(kernel, dilation)] == list(zip(lo, hi)):
            padding = "same"
        else:
            raise self.fail(node, f"pads {lo} before and {hi} after; convscope pads both sides equally "
                                  "(or as padding='same')")
        einsum = self.follower(node.output[0], stop, "Einsum")
        if n == 2 and groups == shape[0] and b is None and dilation == (1, 1) and _is_unfold(w, groups, kernel) \
                and einsum is not None:
            return self._locally_connected(node, einsum, padding, kernel, stride, stop)
        cls = L.Conv2d if n == 2 else L.Conv1d
        return self._layer(cls(int(w.shape[0]), kernel, stride=stride, padding=padding, dilation=dilation,
                               groups=groups, bias=b is not None), weight=w, bias=b)

    def _locally_connected(self, conv, einsum_index, padding, kernel, stride, stop):
        einsum = self.take(einsum_index)
        equation = self.attrs(einsum).get("equation", b"")
        equation = (equation.decode() if isinstance(equation, bytes) else equation).replace(" ", "")
        if equation != "nkij,oijk->noij" or list(einsum.input)[0] != conv.output[0]:
            raise self.fail(einsum, f"has equation {equation!r}; after an unfold Conv convscope reads "
                                    "'nkij,oijk->noij' (a locally connected layer)")
        flat = self.const(einsum, 1, "weight")
        out = einsum.output[0]
        bias = None
        add = self.follower(out, stop, "Add")
        if add is not None and len(self.nodes[add].input) == 2 and self.nodes[add].input[1] in self.consts:
            add_node = self.take(add)
            bias, out = self.consts[add_node.input[1]], add_node.output[0]
        c_out, h_out, w_out, _ = flat.shape
        weight = flat.reshape(c_out, h_out, w_out, -1, *kernel)
        layer = L.LocallyConnected2d(int(c_out), kernel, stride=stride, padding=padding, bias=bias is not None)
        return self._layer(layer, weight=weight, bias=bias), out

    def _op_Gemm(self, node, tensor, stop, shape):
        attrs = self.attrs(node)
        if list(node.input)[0] != tensor or attrs.get("transA", 0):
            raise self.fail(node, "multiplies the activations from the right or transposed; convscope's "
                                  "linear computes x·Wᵀ + b")
        b = self.const(node, 1, "weight")
        c = self.const(node, 2, "bias", optional=True)
        alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
        weight = b if attrs.get("transB", 0) else b.T
        if alpha != 1.0:  # otherwise no product: a copy of a 400 MB weight took 0.4 s
            weight = weight * alpha
        bias = None if c is None else np.broadcast_to(c * beta, (weight.shape[0],)).copy()
        return self._layer(L.Linear(int(weight.shape[0]), bias=c is not None), weight=weight, bias=bias)

    def _op_MatMul(self, node, tensor, stop, shape):
        first, second = list(node.input)
        if first == tensor and second in self.consts and self.consts[second].ndim == 2:
            weight = self.consts[second].T
            out, bias = node.output[0], None
            add = self.follower(out, stop, "Add")
            if add is not None:
                other = [n for n in self.nodes[add].input if n != out]
                if len(other) == 1 and other[0] in self.consts and self.consts[other[0]].size == weight.shape[0]:
                    self.take(add)
                    bias, out = self.consts[other[0]].reshape(-1), self.nodes[add].output[0]
            in_features = int(weight.shape[1]) if len(shape) > 1 else None
            layer = L.Linear(int(weight.shape[0]), bias=bias is not None, in_features=in_features)
            return self._layer(layer, weight=weight, bias=bias), out
        if second == tensor and first in self.consts and len(shape) == 3:
            return self._adaptive(node, self.consts[first], stop, shape)
        raise self.fail(node, "is not x·W with a constant 2-D W (a linear layer) nor an adaptive average pool")

    def _adaptive(self, node, rows, stop, shape):
        following = self.follower(node.output[0], stop, "MatMul")
        _, height, width = shape
        if following is not None:
            second = self.nodes[following]
            cols = self.consts.get(second.input[1])
            if cols is not None and rows.ndim == 2 and cols.ndim == 2 and rows.shape[1] == height \
                    and cols.shape[0] == width \
                    and np.allclose(rows, adaptive_matrix(height, rows.shape[0]), atol=1e-6) \
                    and np.allclose(cols, adaptive_matrix(width, cols.shape[1]).T, atol=1e-6):
                self.take(following)
                return L.AdaptiveAvgPool2d((int(rows.shape[0]), int(cols.shape[1]))), second.output[0]
        raise self.fail(node, "multiplies a constant by the activations, which convscope reads only as an "
                              "adaptive average pool (two averaging matrices)")

    def _op_Add(self, node, tensor, stop, shape):
        raise self.fail(node, "adds a constant that does not follow a MatMul; convscope has no such layer")

    def _op_Einsum(self, node, tensor, stop, shape):
        raise self.fail(node, "is not part of a locally connected layer (unfold Conv then Einsum)")

    def _op_LeakyRelu(self, node, tensor, stop, shape):
        return L.LeakyReLU(_float(self.attrs(node).get("alpha", 0.01)))

    def _op_Softmax(self, node, tensor, stop, shape):
        axis = int(self.attrs(node).get("axis", -1 if self.opset >= 13 else 1))
        if self.opset < 13 and len(shape) > 1:
            raise self.fail(node, f"is an opset-{self.opset} Softmax over flattened axes; re-export with "
                                  "opset 13 or later")
        return L.Softmax(axis)

    def _op_Clip(self, node, tensor, stop, shape):
        if self.opset >= 11:
            low = self.const(node, 1, "minimum", optional=True)
            high = self.const(node, 2, "maximum", optional=True)
        else:
            attrs = self.attrs(node)
            low, high = attrs.get("min"), attrs.get("max")
        low = None if low is None else float(np.asarray(low))
        high = None if high is None else float(np.asarray(high))
        if low == 0.0 and high == 6.0:
            return L.ReLU6()
        if low == 0.0 and (high is None or np.isinf(high)):
            return L.ReLU()
        raise self.fail(node, f"clips to [{low}, {high}]; convscope reads Clip(0, 6) as relu6 and Clip(0) "
                              "as relu only")

    def _pool(self, node, shape, average: bool):
        attrs = self.attrs(node)
        kernel = tuple(attrs["kernel_shape"])
        n = len(kernel)
        if len(shape) != n + 1:
            raise self.fail(node, f"is a {n}-D pool on a {format_shape(shape)} input")
        stride = tuple(attrs.get("strides", [1] * n))
        dilation = tuple(attrs.get("dilations", [1] * n))
        lo, hi = self._window_pads(node, attrs, n, pool=True)
        if lo != hi:
            raise self.fail(node, f"pads {lo} before and {hi} after; convscope pools pad both sides equally")
        stride_arg = None if stride == kernel else stride
        ceil = bool(attrs.get("ceil_mode", 0))
        self.only_first_output(node)
        if average:
            if any(d != 1 for d in dilation):
                raise self.fail(node, "is a dilated average pool; PyTorch and convscope have none")
            cls = L.AvgPool2d if n == 2 else L.AvgPool1d
            return cls(kernel, stride=stride_arg, padding=tuple(lo), ceil_mode=ceil,
                       count_include_pad=bool(attrs.get("count_include_pad", 0)))
        if attrs.get("storage_order", 0):
            raise self.fail(node, "has storage_order=1, which only changes its unused indices; remove it")
        cls = L.MaxPool2d if n == 2 else L.MaxPool1d
        return cls(kernel, stride=stride_arg, padding=tuple(lo), dilation=dilation, ceil_mode=ceil)

    def _op_MaxPool(self, node, tensor, stop, shape):
        return self._pool(node, shape, average=False)

    def _op_AveragePool(self, node, tensor, stop, shape):
        return self._pool(node, shape, average=True)

    def _op_GlobalAveragePool(self, node, tensor, stop, shape):
        out = node.output[0]
        for op in ("Flatten", "Reshape"):
            following = self.follower(out, stop, op)
            if following is None:
                continue
            flattened = self.nodes[following]
            if op == "Flatten" and self.attrs(flattened).get("axis", 1) != 1:
                continue
            if op == "Reshape" and self._reshape_target(flattened, (shape[0],) + (1,) * (len(shape) - 1)) \
                    != (shape[0],):
                continue
            self.take(following)
            return L.GlobalAvgPool(), flattened.output[0]
        if len(shape) != 3:
            raise self.fail(node, f"averages a {format_shape(shape)} input without a flatten after it; "
                                  "convscope has adaptive_avgpool2d for (C, H, W) only")
        return L.AdaptiveAvgPool2d(1)

    def _op_BatchNormalization(self, node, tensor, stop, shape):
        attrs = self.attrs(node)
        if attrs.get("training_mode", 0):
            raise self.fail(node, "is in training mode; export the model in eval mode")
        self.only_first_output(node)
        scale, shift, mean, var = (self.const(node, i, what) for i, what in
                                   enumerate(("scale", "bias", "mean", "variance"), start=1))
        if len(shape) not in (1, 2, 3):
            raise self.fail(node, f"normalises a {format_shape(shape)} input; convscope has batchnorm1d and "
                                  "batchnorm2d")
        cls = L.BatchNorm2d if len(shape) == 3 else L.BatchNorm1d
        momentum = round(1.0 - _float(attrs.get("momentum", 0.9)), 9)
        layer = cls(eps=_float(attrs.get("epsilon", 1e-5)), momentum=momentum)
        return self._layer(layer, weight=scale, bias=shift, running_mean=mean, running_var=var)

    def _op_LRN(self, node, tensor, stop, shape):
        attrs = self.attrs(node)
        size = int(attrs["size"])
        if size % 2 == 0:
            raise self.fail(node, f"has an even size {size}; ONNX centres it one channel later than PyTorch "
                                  "and convscope, so the outputs would differ")
        return L.LocalResponseNorm(size, alpha=_float(attrs.get("alpha", 1e-4)),
                                   beta=_float(attrs.get("beta", 0.75)), k=_float(attrs.get("bias", 1.0)))

    def _op_Flatten(self, node, tensor, stop, shape):
        axis = int(self.attrs(node).get("axis", 1))
        if axis not in (1, 1 - (len(shape) + 1)):
            raise self.fail(node, f"flattens from axis {axis}, which merges the batch with other axes; "
                                  "convscope flattens from axis 1")
        return L.Flatten()

    def _reshape_target(self, node, shape) -> Optional[tuple]:
        """The per-sample shape a batch-preserving Reshape gives, or None."""
        name = node.input[1] if len(node.input) > 1 else ""
        if name in self.shape_nodes:
            # Computed from Shape(x), as torch writes x.view(x.size(0), -1): its first entry must be
            # the batch size whatever that is, and the rest must not depend on it.
            probes = [self.shape_value(name, b).reshape(-1) for b in _PROBE_BATCHES]
            if any(p[0] != b for p, b in zip(probes, _PROBE_BATCHES)) or list(probes[0][1:]) != list(probes[1][1:]):
                return None
            target = [0] + [int(v) for v in probes[0][1:]]
        else:
            target = [int(v) for v in np.asarray(self.const(node, 1, "target shape")).reshape(-1)]
        if self.attrs(node).get("allowzero", 0) or not target:
            return None
        rest = [shape[i - 1] if v == 0 and i - 1 < len(shape) else v for i, v in enumerate(target) if i > 0]
        if target[0] == -1 and -1 in rest:
            return None
        if -1 in rest:
            known = prod(v for v in rest if v != -1)
            if rest.count(-1) > 1 or known == 0 or prod(shape) % known:
                return None
            rest[rest.index(-1)] = prod(shape) // known
        if prod(rest) != prod(shape) or any(v < 1 for v in rest):
            return None
        return tuple(rest)

    def _op_Reshape(self, node, tensor, stop, shape):
        out = self._reshape_target(node, shape)
        flatten = None if out is None else _flatten_for(tuple(shape), out)
        if flatten is None:
            raise self.fail(node, f"reshapes {format_shape(shape)} to {out or 'another layout'}; convscope reads "
                                  "a Reshape only when it flattens consecutive axes and keeps the batch")
        return flatten

    def _op_Dropout(self, node, tensor, stop, shape):
        self.only_first_output(node)
        ratio = self.const(node, 1, "ratio", optional=True) if self.opset >= 12 else None
        if ratio is None:
            ratio = self.attrs(node).get("ratio", 0.5)
        training = self.const(node, 2, "training mode", optional=True)
        if training is not None and bool(np.asarray(training)):
            raise self.fail(node, "is in training mode; export the model in eval mode")
        return L.Dropout(_float(np.asarray(ratio)))

    def _op_Identity(self, node, tensor, stop, shape):
        return []


def _float(value) -> float:
    """An ONNX float attribute (stored in float32) as the decimal it was written as: 1e-05, not 9.99e-06."""
    return float(str(np.float32(value)))


def _is_unfold(w: np.ndarray, groups: int, kernel) -> bool:
    """True for the one-hot kernels onnx_export writes for a locally connected layer."""
    window = int(prod(kernel))
    if w.shape != (groups * window, 1, *kernel):
        return False
    expected = np.zeros_like(w)
    for k in range(w.shape[0]):
        expected[k, 0, (k % window) // kernel[1], k % kernel[1]] = 1
    return bool(np.array_equal(w, expected))


def _flatten_for(shape: tuple, out: tuple) -> Optional[Layer]:
    """The Flatten(start_dim, end_dim) turning per-sample ``shape`` into ``out``, if one does."""
    for p in range(len(out)):
        q = len(out) - p - 1
        merged = len(shape) - p - q
        if merged >= 1 and shape[:p] == out[:p] and shape[len(shape) - q:] == out[p + 1:] \
                and prod(shape[p:p + merged]) == out[p]:
            start, end = p + 1, p + merged
            if end == len(shape):  # through the last axis: end_dim's default, -1
                return L.Flatten(start) if start > 1 else L.Flatten()
            return L.Flatten(start, end)
    return None


def _input_shape(reader: _Reader, given) -> Tuple[tuple, np.dtype]:
    kind = reader.input.type.tensor_type
    if kind.elem_type not in _DTYPES:
        raise ConvscopeError(f"{reader.path}: the input {reader.input.name!r} has ONNX element type "
                             f"{kind.elem_type}; convscope reads float (1) and double (11) inputs")
    dtype = np.dtype(_DTYPES[kind.elem_type])
    dims = [d.dim_value if d.HasField("dim_value") else None for d in kind.shape.dim][1:]
    if given is not None:
        shape = _check_shape(given)
        if kind.HasField("shape") and (len(dims) != len(shape) or any(d not in (None, s) for d, s in zip(dims, shape))):
            raise ConvscopeError(f"{reader.path}: input_shape {format_shape(shape)} does not match the graph's "
                                 f"input (N, {', '.join(str(d or '?') for d in dims)})")
        _check_size(reader.path, f"the input {reader.input.name!r}", shape)
        return shape, dtype
    if not kind.HasField("shape") or not dims or any(d is None or d < 1 for d in dims):
        raise ConvscopeError(f"{reader.path}: the graph's input has no fixed per-sample shape "
                             f"(N, {', '.join(str(d or '?') for d in dims)}); pass input_shape=(C, H, W)")
    shape = tuple(int(d) for d in dims)
    _check_size(reader.path, f"the input {reader.input.name!r}", shape)
    return shape, dtype


def _paths(layer: Layer, prefix: str = ""):
    yield layer, prefix
    for name, child in layer.children():
        yield from _paths(child, f"{prefix}{name}.")


def from_onnx(path, input_shape=None) -> Layer:
    """See :func:`convscope.interop.from_onnx`: a Sequential where the file is a chain of
    layers, concats and residual additions (the structural reader above), otherwise a
    :class:`~convscope.layers.graph.Graph` (:mod:`.onnx_graph`)."""
    onnx = require("onnx", "from_onnx")
    path = os.fspath(path)
    proto, consts = _load(path, onnx)
    try:
        reader = _Reader(proto, onnx, path, consts)
        shape, dtype = _input_shape(reader, input_shape)
        layers, _ = reader.chain(reader.input.name, reader.output, shape)
        left = [reader.name(n) for i, n in enumerate(reader.nodes) if i not in reader.visited]
        if left:
            raise ConvscopeError(f"{path}: {len(left)} nodes are not on the path from input to output "
                                 f"({', '.join(left[:3])}{' ...' if len(left) > 3 else ''})")
        model = Sequential(layers)
    except ConvscopeError as structural:
        from .onnx_graph import GraphReader
        try:
            graph_reader = GraphReader(proto, onnx, path, consts)
            shape, dtype = _input_shape(graph_reader, input_shape)
            records, out = graph_reader.read(shape)
        except ConvscopeError as error:
            raise (structural if _is_input_error(structural) else error) from None
        from ..layers.graph import Graph
        try:
            model = Graph(nodes=[tuple(r) for r in records], outputs=[out])
        except ConvscopeError as error:
            raise ConvscopeError(f"{path}: the graph read from the file is not valid: {error}") from None
        reader = graph_reader
    _load_weights(model, reader.weights, shape, dtype, path)
    from .onnx_notes import accounted_params, folded_own_biases, folding_note
    #: read by ``convscope summary``: what the exporter changed about the parameters
    model.import_note = folding_note(proto)
    model.import_folded_params = accounted_params(proto)
    model.import_folded_own_biases = folded_own_biases(proto)
    model.import_metadata = {entry.key: entry.value for entry in proto.metadata_props}
    return model


def _is_input_error(error: ConvscopeError) -> bool:
    """Errors about the model's input hold whichever reader reads it."""
    text = str(error)
    return "input_shape" in text or "inputs and" in text or "element type" in text or "per-sample shape" in text


def _load_weights(model: Layer, weights, shape, dtype, path: str) -> None:
    """Build ``model`` for ``shape`` and put the file's arrays into its parameters and buffers.
    The arrays are handed over, not copied through a state dict (a 500 MB file would be
    copied twice more)."""
    try:
        with without_initialisation():  # every weight comes from the file right below
            model.build(shape, seed=0, dtype=dtype)
    except ConvscopeError as error:
        raise ConvscopeError(f"{path}: the layers read from the graph do not fit its input: {error}") from None
    prefixes = {id(layer): prefix for layer, prefix in _paths(model)}
    taken: Dict[int, list] = {}  # memory already handed to a parameter: a second user gets a copy
    for layer, arrays in weights:
        for local, value in arrays.items():
            value = np.asarray(value)
            params, buffers = getattr(layer, "_params", {}), getattr(layer, "_buffers", {})
            current = params[local].value if local in params else buffers.get(local)
            if current is None or current.shape != value.shape:
                expected = "nothing" if current is None else current.shape
                raise ConvscopeError(f"{path}: {layer!r} ({prefixes[id(layer)] + local}) gets a constant of shape "
                                     f"{value.shape} from the graph but needs {expected}; the graph's weights do "
                                     "not fit its input")
            if local not in params:
                np.copyto(current, value, casting="unsafe")  # in place: layers may hold their buffers
                continue
            value = np.ascontiguousarray(value, dtype=current.dtype)
            if not value.flags.writeable or not _claim(value, taken):
                value = value.copy()  # parameters are trained in place: one writable array each
                _claim(value, taken)
            params[local].value = value


def _claim(array: np.ndarray, taken: Dict[int, list]) -> bool:
    """Record ``array``'s bytes as one parameter's; False when they overlap bytes already
    recorded (the file's arrays are views of one buffer, so the owner alone does not tell)."""
    start, end = np.lib.array_utils.byte_bounds(array)
    ranges = taken.setdefault(id(_root(array)), [])
    if any(start < e and s < end for s, e in ranges):
        return False
    ranges.append((start, end))
    return True


def _root(array: np.ndarray) -> np.ndarray:
    """The array that owns ``array``'s memory (itself unless it is a view)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array

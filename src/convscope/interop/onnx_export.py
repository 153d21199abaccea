"""convscope -> ONNX, written with the ``onnx`` package's helpers (no torch involved).

The graph uses opset 17 and float32 (ONNX Runtime's CPU kernels; a float64 model is
exported in float32), its input ``input`` has shape ``(N, *input_shape)`` with a symbolic
batch size ``N``, and its output is ``output``. Weights are initializers named like the
state dict (``"0.weight"``, ``"3.body.1.running_mean"``). Node names carry the layer path.

Each layer type writes its own nodes (:meth:`convscope.layers.Layer.to_onnx`, with this
module's builder: ``g.node``, ``g.const``, ``g.name``, ``g.refuse``); one-to-one types only
declare ``onnx_op``. Containers emit their children: Sequential in order, Concat each branch
from the same input then Concat(axis=1), Residual body and shortcut (or the input) then Add.
A layer without an exact ONNX form is refused with one line naming it and why (for example
avgpool2d's ``divisor_override``, batch norm without running statistics, an even LRN size).
"""
from __future__ import annotations

import os
from typing import List, Mapping, Optional

import numpy as np

from ..errors import ConvscopeError
from ..layers.base import Layer
from .optional import require
from .torch_export import check_built

OPSET = 17
IR_VERSION = 8  # the IR version of opset 17; older runtimes read it too


class _Builder:
    """Collects nodes and initializers; hands out unique tensor names."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.helper = onnx.helper
        self.nodes: List = []
        self.initializers: List = []
        self._taken = set()

    def _unique(self, name: str) -> str:
        base, n = name, 1
        while name in self._taken:
            n += 1
            name = f"{base}_{n}"
        self._taken.add(name)
        return name

    def const(self, name: str, array, dtype=np.float32) -> str:
        name = self._unique(name)
        tensor = self.onnx.numpy_helper.from_array(np.array(array, dtype=dtype, order="C"), name)
        self.initializers.append(tensor)
        return name

    def node(self, op: str, inputs: List[str], path: str, **attrs) -> str:
        """Append one node of type ``op`` (named after the layer ``path``); returns its output."""
        name = self._unique(f"/{path}/{op}")  # unique node names: the checker does not insist, ORT does
        output = self._unique(f"{name}_output")
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=name, **attrs))
        return output

    @staticmethod
    def name(path: str, local: str) -> str:
        """The dotted name of ``local`` inside the layer at ``path``: ``"3.weight"``, a child's
        path, or an initializer named like the state dict."""
        return f"{path}.{local}" if path else local

    @staticmethod
    def refuse(path: str, layer: Layer, why: str) -> ConvscopeError:
        """The error to raise when ``layer`` has no exact ONNX form."""
        return ConvscopeError(f"layer {path} ({layer!r}) cannot be exported to ONNX: {why}")


# The helpers layer modules on other branches may already import (kept for them).
_refuse = _Builder.refuse


def _prefix(path: str) -> str:
    return f"{path}." if path else ""


def _emit(g: _Builder, layer: Layer, x: str, path: str) -> str:
    outputs = layer.to_onnx(g, [x], path)
    if len(outputs) != 1:
        raise g.refuse(path, layer, f"it gives {len(outputs)} outputs; a model has one")
    return outputs[0]


def build_onnx_model(model: Layer, metadata: Optional[Mapping[str, str]] = None):
    """The checked ``onnx.ModelProto`` for a built convscope model; ``metadata``: entries of
    the model's ``metadata_props`` (ONNX's string key-value pairs)."""
    onnx = require("onnx", "to_onnx")
    check_built(model, "to_onnx")
    helper = onnx.helper
    g = _Builder(onnx)
    g._taken.update({"input", "output"})
    last = _emit(g, model, "input", "")
    if last == "input":  # a model without layers: the identity
        g.nodes.append(helper.make_node("Identity", ["input"], ["output"], name="/Identity"))
    else:
        producer = g.nodes[-1]
        producer.output[list(producer.output).index(last)] = "output"
    out_shape = model.output_shape(model.input_shape)
    graph = helper.make_graph(
        g.nodes, "convscope",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", *model.input_shape])],
        [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, ["N", *out_shape])],
        initializer=g.initializers)
    from .. import __version__
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="convscope",
                              producer_version=__version__, ir_version=IR_VERSION)
    proto.doc_string = "exported by convscope: " + _one_line(model)
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    onnx.checker.check_model(proto)
    return proto


def _one_line(model: Layer) -> str:
    import json
    return json.dumps(model.spec(), separators=(",", ":"))


def to_onnx(model: Layer, path, metadata: Optional[Mapping[str, str]] = None) -> str:
    """See :func:`convscope.interop.to_onnx`."""
    proto = build_onnx_model(model, metadata)
    onnx = require("onnx", "to_onnx")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConvscopeError(f"cannot write {path}: the folder {folder} does not exist; create it first")
    if os.path.isdir(path):
        raise ConvscopeError(f"cannot write {path}: it is a folder; give a file name such as "
                             f"{os.path.join(path, 'net.onnx')}")
    from ..files import atomic_write  # temporary file and rename: never half a model

    atomic_write(path, lambda handle: onnx.save(proto, handle))
    return path

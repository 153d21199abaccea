"""convscope -> ONNX, written with the ``onnx`` package's helpers (no torch involved).

The graph uses opset 17 and float32 (ONNX Runtime's CPU kernels; a float64 model is
exported in float32), its input ``input`` has shape ``(N, *input_shape)`` with a symbolic
batch size ``N``, and its output is ``output``. Weights are initializers named like the
state dict (``"0.weight"``, ``"3.body.1.running_mean"``). Node names carry the layer path.

Mapping (convscope layer -> ONNX nodes):

=======================  ====================================================================
conv1d, conv2d           Conv (pads before, then after, or auto_pad=SAME_UPPER for
                         padding="same"; group, dilations)
linear                   Gemm(transB=1) on (N, F); MatMul with the weight's transpose, then
                         Add, on (N, *, F)
maxpool1d/2d             MaxPool (dilations, ceil_mode)
avgpool1d/2d             AveragePool (count_include_pad, ceil_mode); ``divisor_override`` is
                         refused: ONNX has no such attribute
adaptive_avgpool2d       GlobalAveragePool for a 1×1 output; otherwise the exact averaging
                         matrices, ``MatMul(A_h, x)`` then ``MatMul(·, A_wᵀ)``
global_avgpool           GlobalAveragePool, Flatten(axis=1)
flatten                  Flatten(axis=1) when it merges every axis after the batch, else
                         Reshape to ``[0, *per-sample output shape]``
relu, relu6, leaky_relu  Relu, Clip(0, 6), LeakyRelu
sigmoid, tanh, softmax   Sigmoid, Tanh, Softmax(axis)
dropout                  Dropout (the identity at inference)
batchnorm1d/2d           BatchNormalization with the running statistics (inference form;
                         ONNX momentum = 1 − convscope momentum); ``track_running_stats=False``
                         is refused (it normalises with each batch's own statistics)
local_response_norm      LRN for an odd ``size``; an even size is refused (ONNX centres the
                         window one channel later than PyTorch does)
locally_connected2d      exported exactly in three nodes: an "unfold" Conv with one-hot
                         kernels (group = C, output (N, C·k_h·k_w, H_out, W_out), the windows),
                         ``Einsum("nkij,oijk->noij")`` with the weight viewed as
                         (C_out, H_out, W_out, C·k_h·k_w), then Add of the bias
concat                   each branch from the same input, Concat(axis=1)
residual                 body and shortcut (or the input), Add
=======================  ====================================================================
"""
from __future__ import annotations

import os
from typing import List

import numpy as np

from ..errors import ConvscopeError
from ..layers.base import Layer
from ..ops.pool import adaptive_matrix
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
        name = self._unique(f"/{path}/{op}")  # unique node names: the checker does not insist, ORT does
        output = self._unique(f"{name}_output")
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=name, **attrs))
        return output


def _prefix(path: str) -> str:
    return f"{path}." if path else ""


def _refuse(path: str, layer: Layer, why: str) -> ConvscopeError:
    return ConvscopeError(f"layer {path} ({layer!r}) cannot be exported to ONNX: {why}")


# ----- one function per layer family: (builder, layer, input name, path) -> output name --------

def _conv(g: _Builder, layer, x: str, path: str) -> str:
    params = dict(layer.named_parameters())
    inputs = [x, g.const(f"{_prefix(path)}weight", params["weight"].value)]
    if layer.bias:
        inputs.append(g.const(f"{_prefix(path)}bias", params["bias"].value))
    return g.node("Conv", inputs, path, kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                  dilations=list(layer.dilation), group=layer.groups, **_conv_padding(layer))


def _conv_padding(layer) -> dict:
    """padding="same" as ONNX's SAME_UPPER (the odd pixel after, as in PyTorch), else explicit pads."""
    if layer.padding == "same":
        return {"auto_pad": "SAME_UPPER"}
    pads = layer._pads()
    return {"pads": [lo for lo, _ in pads] + [hi for _, hi in pads]}


def _locally_connected(g: _Builder, layer, x: str, path: str) -> str:
    params = dict(layer.named_parameters())
    channels = layer.input_shape[0]
    k_h, k_w = layer.kernel_size
    window = k_h * k_w
    # One-hot kernels: output channel c·k_h·k_w + a·k_w + e copies input channel c at offset (a, e),
    # so the Conv's output holds every window in the weight's own (C, k_h, k_w) order.
    unfold = np.zeros((channels * window, 1, k_h, k_w), dtype=np.float32)
    for k in range(channels * window):
        unfold[k, 0, (k % window) // k_w, k % k_w] = 1.0
    cols = g.node("Conv", [x, g.const(f"{_prefix(path)}unfold", unfold)], path, kernel_shape=[k_h, k_w],
                  strides=list(layer.stride), group=channels, **_conv_padding(layer))
    weight = params["weight"].value
    flat = weight.reshape(weight.shape[:3] + (-1,))  # (C_out, H_out, W_out, C·k_h·k_w)
    y = g.node("Einsum", [cols, g.const(f"{_prefix(path)}weight", flat)], path, equation="nkij,oijk->noij")
    if layer.bias:
        y = g.node("Add", [y, g.const(f"{_prefix(path)}bias", params["bias"].value)], path)
    return y


def _linear(g: _Builder, layer, x: str, path: str) -> str:
    params = dict(layer.named_parameters())
    weight = params["weight"].value
    if len(layer.input_shape) == 1:
        inputs = [x, g.const(f"{_prefix(path)}weight", weight)]
        if layer.bias:
            inputs.append(g.const(f"{_prefix(path)}bias", params["bias"].value))
        return g.node("Gemm", inputs, path, transB=1)
    y = g.node("MatMul", [x, g.const(f"{_prefix(path)}weight_t", weight.T)], path)
    if layer.bias:
        y = g.node("Add", [y, g.const(f"{_prefix(path)}bias", params["bias"].value)], path)
    return y


def _maxpool(g: _Builder, layer, x: str, path: str) -> str:
    return g.node("MaxPool", [x], path, kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
                  pads=list(layer.padding) * 2, dilations=list(layer.dilation), ceil_mode=int(layer.ceil_mode))


def _avgpool(g: _Builder, layer, x: str, path: str) -> str:
    if getattr(layer, "divisor_override", None) is not None:
        raise _refuse(path, layer, "ONNX AveragePool has no divisor_override; remove it (divide by the "
                                   "window size) or export with to_torch instead")
    return g.node("AveragePool", [x], path, kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
                  pads=list(layer.padding) * 2, ceil_mode=int(layer.ceil_mode),
                  count_include_pad=int(layer.count_include_pad))


def _adaptive(g: _Builder, layer, x: str, path: str) -> str:
    out_h, out_w = layer.resolved_size(layer.input_shape)
    if (out_h, out_w) == (1, 1):
        return g.node("GlobalAveragePool", [x], path)
    _, height, width = layer.input_shape
    rows = g.const(f"{_prefix(path)}rows", adaptive_matrix(height, out_h))      # (H_out, H)
    cols = g.const(f"{_prefix(path)}cols", adaptive_matrix(width, out_w).T)     # (W, W_out)
    y = g.node("MatMul", [rows, x], path)
    return g.node("MatMul", [y, cols], path)


def _global_avgpool(g: _Builder, layer, x: str, path: str) -> str:
    return g.node("Flatten", [g.node("GlobalAveragePool", [x], path)], path, axis=1)


def _flatten(g: _Builder, layer, x: str, path: str) -> str:
    start, end = layer._axes(layer.input_shape)
    if start == 1 and end == len(layer.input_shape):
        return g.node("Flatten", [x], path, axis=1)
    shape = [0] + list(layer.output_shape(layer.input_shape))  # 0: keep the batch size
    return g.node("Reshape", [x, g.const(f"{_prefix(path)}shape", shape, np.int64)], path)


def _relu6(g: _Builder, layer, x: str, path: str) -> str:
    return g.node("Clip", [x, g.const(f"{_prefix(path)}min", 0.0), g.const(f"{_prefix(path)}max", 6.0)], path)


def _dropout(g: _Builder, layer, x: str, path: str) -> str:
    return g.node("Dropout", [x, g.const(f"{_prefix(path)}ratio", layer.p)], path)


def _batchnorm(g: _Builder, layer, x: str, path: str) -> str:
    if not layer.track_running_stats:
        raise _refuse(path, layer, "with track_running_stats=False it normalises with each batch's own "
                                   "statistics even at inference, which ONNX BatchNormalization cannot; "
                                   "train with track_running_stats=True")
    channels = layer.input_shape[0]
    params = dict(layer.named_parameters())
    buffers = dict(layer.named_buffers())
    scale = params["weight"].value if layer.affine else np.ones(channels)
    shift = params["bias"].value if layer.affine else np.zeros(channels)
    p = _prefix(path)
    inputs = [x, g.const(f"{p}weight", scale), g.const(f"{p}bias", shift),
              g.const(f"{p}running_mean", buffers["running_mean"]), g.const(f"{p}running_var", buffers["running_var"])]
    momentum = 0.1 if layer.momentum is None else layer.momentum
    return g.node("BatchNormalization", inputs, path, epsilon=layer.eps, momentum=1.0 - momentum)


def _lrn(g: _Builder, layer, x: str, path: str) -> str:
    if layer.size % 2 == 0:
        raise _refuse(path, layer, f"ONNX LRN centres an even window ({layer.size} channels) one channel "
                                   "later than PyTorch and convscope do, so the outputs would differ; use an "
                                   "odd size")
    return g.node("LRN", [x], path, size=layer.size, alpha=layer.alpha, beta=layer.beta, bias=layer.k)


def _simple(op: str, **attrs_from_layer):
    def emit(g: _Builder, layer, x: str, path: str) -> str:
        attrs = {key: read(layer) for key, read in attrs_from_layer.items()}
        return g.node(op, [x], path, **attrs)
    return emit


_EMITTERS = {
    "conv1d": _conv, "conv2d": _conv, "locally_connected2d": _locally_connected, "linear": _linear,
    "maxpool1d": _maxpool, "maxpool2d": _maxpool, "avgpool1d": _avgpool, "avgpool2d": _avgpool,
    "adaptive_avgpool2d": _adaptive, "global_avgpool": _global_avgpool, "flatten": _flatten,
    "relu": _simple("Relu"), "relu6": _relu6,
    "leaky_relu": _simple("LeakyRelu", alpha=lambda l: l.negative_slope),
    "sigmoid": _simple("Sigmoid"), "tanh": _simple("Tanh"),
    "softmax": _simple("Softmax", axis=lambda l: l.dim),  # negative axes count from the end in ONNX too
    "dropout": _dropout, "batchnorm1d": _batchnorm, "batchnorm2d": _batchnorm, "local_response_norm": _lrn,
}


def _emit(g: _Builder, layer: Layer, x: str, path: str) -> str:
    kind = layer.type_name
    if kind == "sequential":
        for name, child in layer.children():
            x = _emit(g, child, x, f"{_prefix(path)}{name}")
        return x
    if kind == "concat":
        outputs = [_emit(g, branch, x, f"{_prefix(path)}branches.{i}") for i, branch in enumerate(layer.branches)]
        return g.node("Concat", outputs, path, axis=1)
    if kind == "residual":
        body = _emit(g, layer.body, x, f"{_prefix(path)}body")
        shortcut = x if layer.shortcut is None else _emit(g, layer.shortcut, x, f"{_prefix(path)}shortcut")
        return g.node("Add", [body, shortcut], path)
    if kind not in _EMITTERS and hasattr(layer, "to_onnx"):  # types that declare their own
        return layer.to_onnx(g, [x], path)[0]
    if kind not in _EMITTERS:
        raise _refuse(path, layer, f"convscope has no ONNX form for {kind!r}")
    return _EMITTERS[kind](g, layer, x, path)


def build_onnx_model(model: Layer):
    """The checked ``onnx.ModelProto`` for a built convscope model."""
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
    onnx.checker.check_model(proto)
    return proto


def _one_line(model: Layer) -> str:
    import json
    return json.dumps(model.spec(), separators=(",", ":"))


def to_onnx(model: Layer, path) -> str:
    """See :func:`convscope.interop.to_onnx`."""
    proto = build_onnx_model(model)
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

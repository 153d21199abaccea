"""convscope -> PyTorch: each layer becomes the torch module that computes the same thing.

The conversion goes through a *description* of each module (:class:`TorchDesc`: a torch
class name and its keyword arguments) so that :func:`to_torch` (which builds modules) and
:mod:`.codegen` (which writes Python source for ``.pt`` exports) cannot disagree.

Mapping (convscope type -> torch module; arguments keep their names):

=====================================  ==============================================
conv1d, conv2d                         nn.Conv1d, nn.Conv2d (in_channels from the build)
linear                                 nn.Linear (in_features from the build)
maxpool1d/2d, avgpool1d/2d             nn.MaxPool1d/2d, nn.AvgPool1d/2d
adaptive_avgpool2d                     nn.AdaptiveAvgPool2d
batchnorm1d/2d, local_response_norm    nn.BatchNorm1d/2d, nn.LocalResponseNorm
relu, relu6, leaky_relu, sigmoid,      nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Sigmoid,
tanh, softmax, dropout, flatten        nn.Tanh, nn.Softmax, nn.Dropout, nn.Flatten
sequential                             nn.Sequential
concat, residual, global_avgpool,      Concat, Residual, GlobalAvgPool, LocallyConnected2d
locally_connected2d                    (:mod:`.torch_modules`)
=====================================  ==============================================

Module paths equal layer paths, so the state dicts have the same names; values (parameters
and the batch-norm buffers, ``num_batches_tracked`` included) are copied.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict

import numpy as np

from ..errors import ConvscopeError
from ..layers.base import Layer
from .optional import require


@dataclass
class TorchDesc:
    """One torch module to make: ``kind`` is a ``torch.nn`` class name or a name in
    :data:`.torch_modules.CUSTOM`; ``args`` its keyword arguments, in which nested modules
    are TorchDescs (``modules`` for Sequential, ``branches`` for Concat, ``body`` and
    ``shortcut`` for Residual)."""

    kind: str
    args: Dict[str, Any] = field(default_factory=dict)
    custom: bool = False


def _conv(layer: Layer) -> Dict[str, Any]:
    return {"in_channels": layer.input_shape[0], "out_channels": layer.out_channels,
            "kernel_size": layer.kernel_size, "stride": layer.stride, "padding": layer.padding,
            "dilation": layer.dilation, "groups": layer.groups, "bias": layer.bias}


def _attrs(*names):
    return lambda layer: {name: getattr(layer, name) for name in names}


#: convscope type -> (torch class name, custom?, arguments from the built layer)
_LEAVES = {
    "conv1d": ("Conv1d", False, _conv),
    "conv2d": ("Conv2d", False, _conv),
    "locally_connected2d": ("LocallyConnected2d", True, lambda l: {
        "in_channels": l.input_shape[0], "out_channels": l.out_channels, "input_size": tuple(l.input_shape[1:]),
        "kernel_size": l.kernel_size, "stride": l.stride, "padding": l.padding, "bias": l.bias}),
    "linear": ("Linear", False, lambda l: {"in_features": l.features_in(l.input_shape),
                                            "out_features": l.out_features, "bias": l.bias}),
    "maxpool1d": ("MaxPool1d", False, _attrs("kernel_size", "stride", "padding", "dilation", "ceil_mode")),
    "maxpool2d": ("MaxPool2d", False, _attrs("kernel_size", "stride", "padding", "dilation", "ceil_mode")),
    "avgpool1d": ("AvgPool1d", False, _attrs("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")),
    "avgpool2d": ("AvgPool2d", False, _attrs("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                             "divisor_override")),
    "adaptive_avgpool2d": ("AdaptiveAvgPool2d", False, _attrs("output_size")),
    "global_avgpool": ("GlobalAvgPool", True, _attrs()),
    "flatten": ("Flatten", False, _attrs("start_dim", "end_dim")),
    "relu": ("ReLU", False, _attrs()),
    "relu6": ("ReLU6", False, _attrs()),
    "leaky_relu": ("LeakyReLU", False, _attrs("negative_slope")),
    "sigmoid": ("Sigmoid", False, _attrs()),
    "tanh": ("Tanh", False, _attrs()),
    "softmax": ("Softmax", False, _attrs("dim")),
    "dropout": ("Dropout", False, _attrs("p")),
    "batchnorm1d": ("BatchNorm1d", False, lambda l: {"num_features": l.input_shape[0], "eps": l.eps,
                                                     "momentum": l.momentum, "affine": l.affine,
                                                     "track_running_stats": l.track_running_stats}),
    "batchnorm2d": ("BatchNorm2d", False, lambda l: {"num_features": l.input_shape[0], "eps": l.eps,
                                                     "momentum": l.momentum, "affine": l.affine,
                                                     "track_running_stats": l.track_running_stats}),
    "local_response_norm": ("LocalResponseNorm", False, _attrs("size", "alpha", "beta", "k")),
}


def describe(layer: Layer, path: str = "model") -> TorchDesc:
    """The torch module for a *built* layer (containers recursively)."""
    kind = layer.type_name
    if kind == "sequential":
        return TorchDesc("Sequential", {"modules": [describe(child, f"{path}.{name}" if path != "model" else name)
                                                    for name, child in layer.children()]})
    if kind == "concat":
        return TorchDesc("Concat", {"branches": [describe(b, f"{path}.branches.{i}")
                                                 for i, b in enumerate(layer.branches)]}, custom=True)
    if kind == "residual":
        shortcut = None if layer.shortcut is None else describe(layer.shortcut, f"{path}.shortcut")
        return TorchDesc("Residual", {"body": describe(layer.body, f"{path}.body"), "shortcut": shortcut},
                         custom=True)
    if kind not in _LEAVES and hasattr(layer, "torch_desc"):  # types that declare their own
        return layer.torch_desc(path)
    if kind not in _LEAVES:
        raise ConvscopeError(f"layer {path} ({type(layer).__name__}, type {kind!r}) has no PyTorch "
                             f"counterpart in convscope.interop; supported types: {', '.join(sorted(_LEAVES))}")
    name, custom, arguments = _LEAVES[kind]
    return TorchDesc(name, arguments(layer), custom=custom)


def instantiate(desc: TorchDesc, torch):
    """Make the (randomly initialised) torch module a description names."""
    from . import torch_modules

    args = dict(desc.args)
    if desc.kind == "Sequential":
        return torch.nn.Sequential(*[instantiate(d, torch) for d in args["modules"]])
    if desc.kind == "Concat":
        return torch_modules.Concat([instantiate(d, torch) for d in args["branches"]])
    if desc.kind == "Residual":
        shortcut = args["shortcut"]
        return torch_modules.Residual(instantiate(args["body"], torch),
                                      None if shortcut is None else instantiate(shortcut, torch))
    if desc.custom and desc.kind not in torch_modules.CUSTOM:
        from .graph_torch import instantiate as instantiate_ours
        return instantiate_ours(desc, torch, instantiate)
    cls = torch_modules.CUSTOM[desc.kind] if desc.custom else getattr(torch.nn, desc.kind)
    return cls(**args)


def torch_state_dict(model: Layer, torch) -> Dict[str, Any]:
    """convscope's state dict as torch tensors (copies), names unchanged."""
    return {name: torch.from_numpy(np.array(value, copy=True)) for name, value in model.state_dict().items()}


def torch_dtype(model: Layer, torch):
    return torch.float64 if np.dtype(model.dtype) == np.float64 else torch.float32


def check_built(model, what: str) -> None:
    if not isinstance(model, Layer):
        raise ConvscopeError(f"{what} takes a convscope model (such as cs.Sequential([...])), "
                             f"got {type(model).__name__}")
    if not model.built:
        raise ConvscopeError(f"{what} needs a built model (it copies the weights); call "
                             "model.build(input_shape) first")


def to_torch(model: Layer):
    """See :func:`convscope.interop.to_torch`."""
    torch = require("torch", "to_torch")
    check_built(model, "to_torch")
    module = instantiate(describe(model), torch).to(torch_dtype(model, torch))
    module.load_state_dict(torch_state_dict(model, torch), strict=True)
    return module

"""convscope -> PyTorch: each layer becomes the torch module that computes the same thing.

The conversion goes through a *description* of each module (:class:`TorchDesc`: a torch
class name and its keyword arguments) so that :func:`to_torch` (which builds modules) and
:mod:`.codegen` (which writes Python source for ``.pt`` exports) cannot disagree.

Each layer type declares its counterpart (:meth:`convscope.layers.Layer.torch_desc`; for
one-to-one types, ``torch_class`` with the constructor's own arguments): conv, pooling,
linear, batch norm, activations, dropout and flatten map to their ``torch.nn`` twins;
Sequential to ``nn.Sequential``; Concat, Residual, GlobalAvgPool and LocallyConnected2d to the
small modules of :mod:`.torch_modules`.

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
    are TorchDescs or lists of them (``modules`` for Sequential, ``branches`` for Concat,
    ``body`` and ``shortcut`` for Residual). With ``varargs`` the first argument (a list) is
    passed as positional arguments, as ``nn.Sequential(*modules)`` takes them."""

    kind: str
    args: Dict[str, Any] = field(default_factory=dict)
    custom: bool = False
    varargs: bool = False


def no_torch_counterpart(layer: Layer, path: str) -> ConvscopeError:
    from ..layers.registry import LAYER_TYPES
    supported = sorted(t for t, cls in LAYER_TYPES.items()
                       if cls.torch_class is not None or cls.torch_desc is not Layer.torch_desc)
    return ConvscopeError(f"layer {path} ({type(layer).__name__}, type {layer.type_name!r}) has no PyTorch "
                          f"counterpart in convscope.interop; supported types: {', '.join(supported)}")


def describe(layer: Layer, path: str = "model") -> TorchDesc:
    """The torch module for a *built* layer (containers recursively): the layer's own
    :meth:`~convscope.layers.Layer.torch_desc`."""
    return layer.torch_desc(path)


def instantiate(desc: TorchDesc, torch):
    """Make the (randomly initialised) torch module a description names."""
    from . import torch_modules

    def make(value):
        if isinstance(value, TorchDesc):
            return instantiate(value, torch)
        if isinstance(value, list) and any(isinstance(v, TorchDesc) for v in value):
            return [make(v) for v in value]
        return value

    args = {key: make(value) for key, value in desc.args.items()}
    cls = torch_modules.CUSTOM[desc.kind] if desc.custom else getattr(torch.nn, desc.kind)
    if desc.varargs:
        first = next(iter(args))
        return cls(*args.pop(first), **args)
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

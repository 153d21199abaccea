"""PyTorch -> convscope: read an ``nn.Sequential`` of supported modules, weights included.

Each torch module maps to the convscope layer of the same name and arguments (the reverse
of :mod:`.torch_export`); containers recurse, so module paths, and hence state-dict names,
stay equal. Modules are matched by exact type, so a subclass with its own ``forward`` is
refused rather than silently converted. The four modules of :mod:`.torch_modules` (also
when they come from a file written by ``convscope export``) are matched by class name and
their attributes.
"""
from __future__ import annotations

from typing import Any, Callable, Dict

import numpy as np

from .. import layers as L
from ..errors import ConvscopeError, format_shape
from ..layers.base import Layer, _check_shape
from ..layers.containers import Concat, Residual, Sequential
from .optional import require


def _stride_or_none(module) -> Any:
    """torch stores ``stride=kernel_size`` when none was given; convscope keeps None then."""
    def as_list(v):
        return list(v) if isinstance(v, (tuple, list)) else [v]
    kernel, stride = as_list(module.kernel_size), as_list(module.stride)
    if len(stride) == 1 and len(kernel) > 1:
        stride = stride * len(kernel)
    if len(kernel) == 1 and len(stride) > 1:
        kernel = kernel * len(stride)
    return None if stride == kernel else module.stride


def _conv(cls):
    def convert(m, path):
        if m.padding_mode != "zeros":
            raise ConvscopeError(f"module {path} ({type(m).__name__}) uses padding_mode={m.padding_mode!r}; "
                                 "convscope pads with zeros only, so use padding_mode='zeros'")
        return cls(m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation,
                   groups=m.groups, bias=m.bias is not None)
    return convert


def _maxpool(cls):
    def convert(m, path):
        if m.return_indices:
            raise ConvscopeError(f"module {path} ({type(m).__name__}) has return_indices=True, which returns "
                                 "two tensors; convscope layers return one, so set return_indices=False")
        return cls(m.kernel_size, stride=_stride_or_none(m), padding=m.padding, dilation=m.dilation,
                   ceil_mode=m.ceil_mode)
    return convert


def _linear(m, path, shape):
    # On a (C, ..., F) input convscope's linear wants in_features named (forgetting flatten is
    # the usual mistake there); on a vector it is inferred, as in convscope's own specs.
    return L.Linear(m.out_features, bias=m.bias is not None, in_features=m.in_features if len(shape) > 1 else None)


def _softmax(m, path):
    if m.dim is None:
        raise ConvscopeError(f"module {path} (Softmax) has dim=None (an implicit axis); give it an explicit "
                             "dim such as nn.Softmax(dim=1)")
    return L.Softmax(m.dim)


def _batchnorm(cls):
    return lambda m, path: cls(eps=m.eps, momentum=m.momentum, affine=m.affine,
                               track_running_stats=m.track_running_stats)


def _leaf_table(nn) -> Dict[type, Callable]:
    return {
        nn.Conv1d: _conv(L.Conv1d),
        nn.Conv2d: _conv(L.Conv2d),
        nn.Linear: _linear,
        nn.MaxPool1d: _maxpool(L.MaxPool1d),
        nn.MaxPool2d: _maxpool(L.MaxPool2d),
        nn.AvgPool1d: lambda m, path: L.AvgPool1d(m.kernel_size, stride=_stride_or_none(m), padding=m.padding,
                                                  ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad),
        nn.AvgPool2d: lambda m, path: L.AvgPool2d(m.kernel_size, stride=_stride_or_none(m), padding=m.padding,
                                                  ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad,
                                                  divisor_override=m.divisor_override),
        nn.AdaptiveAvgPool2d: lambda m, path: L.AdaptiveAvgPool2d(m.output_size),
        nn.BatchNorm1d: _batchnorm(L.BatchNorm1d),
        nn.BatchNorm2d: _batchnorm(L.BatchNorm2d),
        nn.LocalResponseNorm: lambda m, path: L.LocalResponseNorm(m.size, alpha=m.alpha, beta=m.beta, k=m.k),
        nn.Flatten: lambda m, path: L.Flatten(m.start_dim, m.end_dim),
        nn.ReLU: lambda m, path: L.ReLU(),
        nn.ReLU6: lambda m, path: L.ReLU6(),
        nn.LeakyReLU: lambda m, path: L.LeakyReLU(m.negative_slope),
        nn.Sigmoid: lambda m, path: L.Sigmoid(),
        nn.Tanh: lambda m, path: L.Tanh(),
        nn.Softmax: _softmax,
        nn.Dropout: lambda m, path: L.Dropout(m.p),
    }


def _is_custom(module, name: str, *attributes: str) -> bool:
    return type(module).__name__ == name and all(hasattr(module, a) for a in attributes)


class _Converter:
    def __init__(self, torch):
        self.nn = torch.nn
        self.leaves = _leaf_table(torch.nn)

    def sequential(self, module, path: str, shape) -> Sequential:
        """Convert the children in order; ``shape`` is the per-sample input, threaded through so
        that each layer is checked where it stands and linear knows its input's rank."""
        layers = []
        for name, child in module.named_children():
            child_path = f"{path}.{name}" if path else name
            layer = self.layer(child, child_path, shape)
            try:
                shape = tuple(layer.output_shape(shape))
            except ConvscopeError as error:
                raise ConvscopeError(f"module {child_path} ({type(child).__name__}) does not fit its input "
                                     f"{format_shape(shape)}: {error}") from None
            layers.append(layer)
        return Sequential(layers)

    def layer(self, module, path: str, shape) -> Layer:
        nn = self.nn
        if type(module) is nn.Sequential:
            return self.sequential(module, path, shape)
        if _is_custom(module, "Concat", "branches"):
            return Concat([self.branch(b, f"{path}.branches.{i}", shape) for i, b in enumerate(module.branches)])
        if _is_custom(module, "Residual", "body", "shortcut"):
            shortcut = module.shortcut
            return Residual(self.branch(module.body, f"{path}.body", shape),
                            None if shortcut is None else self.branch(shortcut, f"{path}.shortcut", shape))
        if _is_custom(module, "GlobalAvgPool"):
            return L.GlobalAvgPool()
        if _is_custom(module, "LocallyConnected2d", "kernel_size", "stride", "padding", "out_channels"):
            return L.LocallyConnected2d(module.out_channels, module.kernel_size, stride=module.stride,
                                        padding=module.padding, bias=module.bias is not None)
        convert = self.leaves.get(type(module))
        if convert is None:
            kind = f"{type(module).__module__}.{type(module).__qualname__}"
            names = sorted(c.__name__ for c in self.leaves)
            raise ConvscopeError(f"module {path or '(top)'} is a {kind}, which convscope cannot convert; "
                                 f"supported: nn.Sequential, {', '.join(names)} and convscope's Concat, "
                                 "Residual, GlobalAvgPool and LocallyConnected2d")
        try:
            return convert(module, path, shape) if convert is _linear else convert(module, path)
        except ConvscopeError as error:
            if str(error).startswith("module "):
                raise
            raise ConvscopeError(f"module {path} ({type(module).__name__}): {error}") from None

    def branch(self, module, path: str, shape) -> Sequential:
        if type(module) is not self.nn.Sequential:
            raise ConvscopeError(f"module {path} must be an nn.Sequential (a branch of layers), got "
                                 f"{type(module).__name__}; wrap it as nn.Sequential(...)")
        return self.sequential(module, path, shape)


def _dtype_of(module, torch) -> np.dtype:
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.is_floating_point():
            return np.dtype(np.float64) if tensor.dtype == torch.float64 else np.dtype(np.float32)
    return np.dtype(np.float32)


def from_torch(module, input_shape) -> Sequential:
    """See :func:`convscope.interop.from_torch`."""
    torch = require("torch", "from_torch")
    if not isinstance(module, torch.nn.Module):
        raise ConvscopeError(f"from_torch takes a torch.nn.Module (an nn.Sequential), got {type(module).__name__}")
    if type(module) is not torch.nn.Sequential:
        kind = f"{type(module).__module__}.{type(module).__qualname__}"
        raise ConvscopeError(f"from_torch converts an nn.Sequential of layers, got a {kind} (its forward "
                             "is Python code convscope cannot read); rebuild it as nn.Sequential(...)")
    shape = _check_shape(input_shape)
    model = _Converter(torch).sequential(module, "", shape)
    try:
        model.build(shape, seed=0, dtype=_dtype_of(module, torch))
    except ConvscopeError as error:
        raise ConvscopeError(f"the converted model does not fit input_shape {format_shape(shape)}: {error}") from None
    load_torch_state(model, module.state_dict(), shape)
    return model


def load_torch_state(model: Layer, torch_state, input_shape) -> None:
    """Copy a torch state dict into ``model``; names and shapes must match one to one."""
    ours = model.state_dict()
    theirs = {name: tensor.detach().cpu().numpy() for name, tensor in torch_state.items()}
    missing = [name for name in ours if name not in theirs]
    extra = [name for name in theirs if name not in ours]
    if missing or extra:
        parts = ([f"convscope expects {', '.join(missing[:4])}"] if missing else []) + \
                ([f"torch has {', '.join(extra[:4])} too"] if extra else [])
        raise ConvscopeError(f"the state dicts differ: {'; '.join(parts)}")
    for name, value in theirs.items():
        if value.shape != ours[name].shape:
            raise ConvscopeError(f"torch's {name} has shape {tuple(value.shape)} but convscope built "
                                 f"{tuple(ours[name].shape)} for input_shape {format_shape(input_shape)}; "
                                 "check input_shape (channels and size)")
    model.load_state_dict(theirs, strict=True)

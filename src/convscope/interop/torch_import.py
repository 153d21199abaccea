"""PyTorch -> convscope: read an ``nn.Sequential`` of supported modules, weights included.

Each torch module maps to the convscope layer type that declares it as its ``torch_class``
(the reverse of :mod:`.torch_export`), built by that class's ``from_torch_module`` (by
default from the module's attributes of the constructor's names); containers recurse, so
module paths, and hence state-dict names, stay equal. ``torch.nn`` modules are matched by
exact type, so a subclass with its own ``forward`` is refused rather than silently
converted. The modules of :mod:`.torch_modules` (also when they come from a file written by
``convscope export``) are matched by class name.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from .. import layers as _layers  # noqa: F401 (registers every layer type)
from ..errors import ConvscopeError, format_shape
from ..layers.base import Layer, _check_shape
from ..layers.containers import Sequential
from ..layers.registry import LAYER_TYPES
from .optional import require


def _tables(nn) -> Tuple[Dict[type, type], Dict[str, type]]:
    """The registry's torch counterparts: ``torch.nn`` classes (matched by exact type) and
    convscope's own modules (:mod:`.torch_modules`, also as copied into an exported ``net.py``;
    matched by class name)."""
    exact: Dict[type, type] = {}
    by_name: Dict[str, type] = {}
    for cls in LAYER_TYPES.values():
        name = cls.torch_class
        if name is None:
            continue
        if isinstance(getattr(nn, name, None), type):
            exact[getattr(nn, name)] = cls
        else:
            by_name[name] = cls
    return exact, by_name


class _Converter:
    def __init__(self, torch):
        self.nn = torch.nn
        self.exact, self.by_name = _tables(torch.nn)

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
        cls = self.exact.get(type(module))
        if cls is None and not isinstance(module, self.nn.Sequential):
            cls = self.by_name.get(type(module).__name__)
        if cls is None:
            raise self._unsupported(module, path)
        try:
            return cls.from_torch_module(module, path, shape, self)
        except AttributeError:  # a class of the same name that is not convscope's
            raise self._unsupported(module, path) from None
        except ConvscopeError as error:
            if str(error).startswith("module "):
                raise
            raise ConvscopeError(f"module {path} ({type(module).__name__}): {error}") from None

    def _unsupported(self, module, path: str) -> ConvscopeError:
        kind = f"{type(module).__module__}.{type(module).__qualname__}"
        names = sorted(c.__name__ for c in self.exact if c is not self.nn.Sequential)
        return ConvscopeError(f"module {path or '(top)'} is a {kind}, which convscope cannot convert; "
                              f"supported: nn.Sequential, {', '.join(names)} and convscope's "
                              f"{', '.join(sorted(self.by_name))}")

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
        raise ConvscopeError(f"from_torch takes a torch.nn.Module, got {type(module).__name__}")
    if type(module) is not torch.nn.Sequential:
        from .fx_import import from_torch_graph
        return from_torch_graph(module, input_shape)
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

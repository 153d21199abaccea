"""The torch modules for convscope's Graph and its merge and shape layers.

Self-contained (only ``torch``, ``nn`` and ``F``): :mod:`.codegen` copies their source into
the file written next to a ``.pt`` export. State-dict names equal convscope's: a Graph's
node ``"layer1.0.conv1"`` holding a conv has ``"layer1.0.conv1.weight"``.

This module imports torch at the top; :mod:`convscope.interop` imports it lazily.
"""
import torch
from torch import nn
import torch.nn.functional as F


class Graph(nn.Module):
    """Named nodes wired by name, run in the listed (topological) order.

    ``nodes`` is a list of ``(name, module, inputs)``; ``inputs`` names ``"input"`` or earlier
    nodes, and ``"node:i"`` the i-th output of a node returning a tuple (split, chunk). A
    ``module`` given as a string names an earlier node whose module is reused (shared
    weights). Modules sit at their node's dotted path, so ``"layer1.0.conv1"`` is
    ``self.layer1[0].conv1``-like and state-dict keys equal the node names.
    """

    def __init__(self, nodes, output):
        super().__init__()
        self.wiring = [(name, module if isinstance(module, str) else name, list(inputs))
                       for name, module, inputs in nodes]
        self.output = output
        owned = [(name, module) for name, module, _ in nodes if not isinstance(module, str)]
        for name, module in sorted(owned, key=lambda item: item[0].count(".")):  # parents first
            parent, *path = [self] + name.split(".")
            for part in path[:-1]:
                if part not in parent._modules:
                    parent.add_module(part, nn.Module())
                parent = parent._modules[part]
            parent.add_module(path[-1], module)

    def forward(self, x):
        values = {"input": x}
        for name, owner, inputs in self.wiring:
            y = self.get_submodule(owner)(*[values[ref] for ref in inputs])
            if isinstance(y, (tuple, list)):
                values.update({f"{name}:{i}": piece for i, piece in enumerate(y)})
            else:
                values[name] = y
        return values[self.output]


class Add(nn.Module):
    """``x_0 + x_1 + ...`` (broadcasting)."""

    def forward(self, *xs):
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        return y


class Mul(nn.Module):
    """``x_0 * x_1 * ...`` element-wise (broadcasting)."""

    def forward(self, *xs):
        y = xs[0]
        for x in xs[1:]:
            y = y * x
        return y


class Cat(nn.Module):
    """``torch.cat(xs, dim)``."""

    def __init__(self, dim=1):
        super().__init__()
        self.dim = dim

    def forward(self, *xs):
        return torch.cat(xs, dim=self.dim)


class Split(nn.Module):
    """``torch.split(x, split_size_or_sections, dim)``: a tuple of pieces."""

    def __init__(self, split_size_or_sections, dim=1):
        super().__init__()
        self.split_size_or_sections = split_size_or_sections
        self.dim = dim

    def forward(self, x):
        return torch.split(x, self.split_size_or_sections, dim=self.dim)


class Chunk(nn.Module):
    """``torch.chunk(x, chunks, dim)``: a tuple of pieces."""

    def __init__(self, chunks, dim=1):
        super().__init__()
        self.chunks = chunks
        self.dim = dim

    def forward(self, x):
        return torch.chunk(x, self.chunks, dim=self.dim)


class Reshape(nn.Module):
    """Each sample viewed as ``shape`` (one -1 allowed): ``x.reshape(N, *shape)``."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)


class Permute(nn.Module):
    """``x.permute(*dims)`` (dims of the batched tensor, batch first)."""

    def __init__(self, dims):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x):
        return x.permute(*self.dims)


class Pad(nn.Module):
    """``F.pad(x, pad, value=value)`` (constant mode; F.pad's order, last axis first)."""

    def __init__(self, pad, value=0.0):
        super().__init__()
        self.pad = tuple(pad)
        self.value = value

    def forward(self, x):
        return F.pad(x, self.pad, value=self.value)


class Mean(nn.Module):
    """``x.mean(dim, keepdim)``."""

    def __init__(self, dim, keepdim=False):
        super().__init__()
        self.dim = tuple(dim) if isinstance(dim, (tuple, list)) else dim
        self.keepdim = keepdim

    def forward(self, x):
        return x.mean(dim=self.dim, keepdim=self.keepdim)


CUSTOM = {cls.__name__: cls for cls in (Graph, Add, Mul, Cat, Split, Chunk, Reshape, Permute, Pad, Mean)}

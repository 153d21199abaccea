"""Exchange with PyTorch and ONNX: the same model, moved exactly, in both directions.

::

    cs.interop.to_torch(model)                  # -> torch.nn.Module, equal state dict and outputs
    cs.interop.from_torch(module, input_shape)  # -> convscope model, weights copied
    cs.interop.to_onnx(model, "net.onnx")       # opset 17, dynamic batch, runs in ONNX Runtime
    cs.interop.from_onnx("net.onnx")            # the layers convscope has; one error for the rest

torch and onnx are optional extras (``pip install convscope[torch]`` / ``convscope[onnx]``):
nothing here imports them until one of these functions is called, and a missing library
is a one-line :class:`~convscope.ConvscopeError` naming the extra to install.

How the pieces connect: :mod:`.torch_export` turns each layer into a description (a torch
class name and its arguments); :mod:`.torch_import` reads torch modules back;
:mod:`.torch_modules` holds the four small torch modules with no ``torch.nn`` twin
(Concat, Residual, GlobalAvgPool, LocallyConnected2d); :mod:`.codegen` writes the
descriptions and those modules' source as a stand-alone Python file for ``.pt`` exports;
:mod:`.onnx_export` and :mod:`.onnx_import` write and read ONNX graphs.
"""
from __future__ import annotations

__all__ = ["to_torch", "from_torch", "to_onnx", "from_onnx"]


def to_torch(model):
    """A ``torch.nn.Module`` of the same structure as the built ``model``: ``nn.Sequential``
    for sequences, small ``Concat``/``Residual`` modules for branches, equal state-dict names
    and values (parameters and batch-norm buffers) and equal outputs in eval and train mode."""
    from .torch_export import to_torch as convert
    return convert(model)


def from_torch(module, input_shape):
    """A built convscope model with ``module``'s structure and weights, for the per-sample
    ``input_shape``. A plain ``nn.Sequential`` (nested Sequentials, and the Concat and Residual
    modules :func:`to_torch` makes, included) comes back as a Sequential; any other module whose
    forward ``torch.fx`` can trace (torchvision's CNN classifiers, for example) as a
    :class:`~convscope.Graph` whose state-dict keys equal the module's (:mod:`.fx_import`)."""
    from .torch_import import from_torch as convert
    return convert(module, input_shape)


def to_onnx(model, path, metadata=None):
    """Write the built ``model`` to ``path`` as an ONNX model (opset 17, float32, dynamic
    batch dimension), checked with ``onnx.checker``; returns the path. ``metadata``: a dict of
    strings kept as the file's ``metadata_props`` (``convscope export`` keeps the checkpoint's
    preprocessing and class names there, under the key "convscope")."""
    from .onnx_export import to_onnx as convert
    return convert(model, path, metadata)


def from_onnx(path, input_shape=None):
    """A built convscope model from the ONNX file at ``path``: a Sequential when the file is a
    chain of layers, concats and residual additions, else a :class:`convscope.Graph`.
    ``input_shape`` (per-sample) is needed only when the graph's input has symbolic sizes
    beyond the batch. ``model.import_note`` is a line about batch norms the exporter folded
    into convolutions (None when none were), ``model.import_folded_params`` the parameters
    the original module had beyond the file's (``model.import_folded_own_biases`` more if the
    folded convolutions had biases of their own), ``model.import_metadata`` the file's
    ``metadata_props`` as a dict of strings."""
    from .onnx_import import from_onnx as convert
    return convert(path, input_shape)

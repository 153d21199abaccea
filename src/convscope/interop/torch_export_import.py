"""The torch.export fallback of :func:`convscope.interop.from_torch`, for forwards torch.fx
cannot trace (Python control flow on shapes, such as ``if x.shape[-1] > 32:``).

``torch.export.export`` runs the forward once on the example batch and records an ATen-level
graph (``aten.conv2d``, ``aten.batch_norm``, ``aten.relu``, ``aten.add``, ``aten.cat``,
``aten.mean``, ``aten.view``, ``aten.linear``, ``aten.max_pool2d``, ...); branches on shapes are
decided by the example's shape, which is the input shape convscope builds for. Its
``ExportedProgram.module()`` is a ``torch.fx.GraphModule`` whose parameters are ``get_attr``
nodes of their state-dict names, so the fx importer reads it with two differences:

* every operation records the stack of modules it ran in (``nn_module_stack``); the operations of
  one call of a module the registry knows (``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.Linear``,
  ``nn.ReLU``, ... : the fx importer's leaves) become that module's one layer, read by the layer
  type's ``from_torch_module`` and named by the module path, so parameters keep the module's
  state-dict names;
* the remaining ATen operators map by their name (``aten.add.Tensor`` -> ``add``) through the fx
  importer's function table (their arguments are those of the torch functions).

Anything else (a convolution with a free parameter outside its module, an operator with no
convscope counterpart) is the fx importer's one line.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any, Dict, List, Tuple

from ..errors import ConvscopeError


def exported_graph(torch, module, example, reader, fx_message: str):
    """``module`` (in eval mode) exported on ``example``: the GraphModule to read, with
    ``reader.groups`` set for the operations of known modules. Raises the one-line error naming
    both tracers when torch.export fails too."""
    quiet = logging.root.manager.disable
    logging.disable(logging.WARNING)  # a failed export logs and prints the graph it got so far
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.export.export(module, (example,), strict=False)
        gm = program.module()
    except Exception as error:  # export raises many kinds (UserError, GuardOnDataDependentSymNode, ...)
        from .fx_import import _first_line
        raise ConvscopeError(
            f"torch.fx cannot trace the forward of {type(module).__name__} ({fx_message}) and neither can "
            f"torch.export ({_first_line(error)}); export it to ONNX with torch.onnx.export(..., dynamo=False), "
            "which records one run, and read that with cs.interop.from_onnx (or `convscope ... model.onnx`)"
        ) from None
    finally:
        logging.disable(quiet)
    _group(module, gm, reader)
    return gm


def _leaf(module, node, reader) -> Tuple[str, str]:
    """(call key, module path) of the outermost known module ``node`` ran in, or ("", "")."""
    for key, entry in (node.meta.get("nn_module_stack") or {}).items():
        path = entry[0] if isinstance(entry, tuple) else ""
        if not path:
            continue
        try:
            sub = module.get_submodule(path)
        except AttributeError:
            continue
        if reader.known(sub) is not None:
            return key, path
    return "", ""


def _group(module, gm, reader) -> None:
    """Mark each known module's call: its output node reads the module, the rest are skipped."""
    calls: Dict[str, List[Any]] = {}
    paths: Dict[str, str] = {}
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        key, path = _leaf(module, node, reader)
        if key:
            calls.setdefault(key, []).append(node)
            paths[key] = path
    for key, nodes in calls.items():
        inside = set(nodes)
        inputs = []
        for node in nodes:
            for arg in node.all_input_nodes:
                if arg not in inside and arg.op != "get_attr" and arg not in inputs:
                    inputs.append(arg)
        outputs = [n for n in nodes if any(user not in inside for user in n.users)]
        reading = _reading(module, paths[key], inputs, outputs)
        for node in nodes:
            reader.groups[node] = reading if node in outputs else _skip


def _skip(reader, node) -> None:
    """An inner operation of a module's call (read with the call's output)."""


def _reading(module, path: str, inputs, outputs):
    from .fx_import import _Unsupported

    def read(reader, node):
        if len(inputs) != 1 or len(outputs) != 1:
            raise _Unsupported(f": module {path} is called with {len(inputs)} tensor inputs and gives "
                               f"{len(outputs)} outputs; convscope reads a module of one input and one output")
        sub = module.get_submodule(path)
        stateful = any(True for _ in sub.parameters()) or any(True for _ in sub.buffers())
        if path in reader.layers and stateful:  # a module called twice shares its parameters
            layer = reader.layers[path]
        else:
            try:
                layer = reader.known(sub).from_torch_module(sub, path, reader.per_sample(inputs[0]),
                                                            reader.converter)
            except ConvscopeError as error:
                raise _Unsupported(f": {error}") from None
            reader.layers[path] = layer
        reader.add(node, path, layer, inputs)
    return read

"""Python source for a ``.pt`` export: a file that rebuilds the network with PyTorch alone.

``convscope export CHECKPOINT -o net.pt`` writes the state dict (``torch.save`` of tensors
only) to ``net.pt`` and this module's output to ``net.py``::

    import torch
    from net import build_model
    model = build_model()
    model.load_state_dict(torch.load("net.pt", weights_only=True))

The file holds ``build_model()`` (the same ``nn.Sequential`` that :func:`~convscope.interop.to_torch`
makes, written out) and, when the model needs them, the source of the small modules in
:mod:`.torch_modules`, copied verbatim so the two cannot drift apart. Reading that source
needs no torch: it is cut out of the file with :mod:`ast`.
"""
from __future__ import annotations

import ast
import keyword
import math
import os
from typing import Dict, List

from .torch_export import TorchDesc

from .graph_torch import MODULE_NAMES as _GRAPH_MODULES

_CUSTOM_ORDER = ["Concat", "Residual", "GlobalAvgPool", "LocallyConnected2d"] + _GRAPH_MODULES
_INDENT = "    "


def custom_sources() -> Dict[str, str]:
    """{class name: its source} for the classes of :mod:`.torch_modules` and :mod:`.graph_modules`."""
    sources = {}
    for module in ("torch_modules.py", "graph_modules.py"):
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), module)
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        tree = ast.parse(text)
        sources.update({node.name: ast.get_source_segment(text, node)
                        for node in tree.body if isinstance(node, ast.ClassDef)})
    return sources


def _used(desc: TorchDesc, found: set) -> set:
    if desc.custom:
        found.add(desc.kind)
    for value in desc.args.values():
        children = value if isinstance(value, list) else [value]
        for child in children:
            if isinstance(child, TorchDesc):
                _used(child, found)
    return found


def render(desc: TorchDesc, depth: int = 0) -> str:
    """One module as a Python expression, nested modules indented one level deeper."""
    inner = _INDENT * (depth + 1)
    if desc.kind == "Sequential":
        items = [render(d, depth + 1) for d in desc.args["modules"]]
        if not items:
            return "nn.Sequential()"
        return "nn.Sequential(\n" + "".join(f"{inner}{item},\n" for item in items) + _INDENT * depth + ")"
    if desc.kind == "Concat":
        items = [render(d, depth + 1) for d in desc.args["branches"]]
        return "Concat([\n" + "".join(f"{inner}{item},\n" for item in items) + _INDENT * depth + "])"
    if desc.kind == "Residual":
        shortcut = desc.args["shortcut"]
        body = render(desc.args["body"], depth + 1)
        short = "None" if shortcut is None else render(shortcut, depth + 1)
        return f"Residual(\n{inner}body={body},\n{inner}shortcut={short},\n{_INDENT * depth})"
    if desc.kind == "Graph":
        from .graph_torch import render_graph
        return render_graph(desc, depth, render, literal, _INDENT)
    prefix = "" if desc.custom else "nn."
    arguments = ", ".join(f"{key}={literal(value)}" for key, value in desc.args.items())
    return f"{prefix}{desc.kind}({arguments})"


def literal(value) -> str:
    """``value`` as Python source that evaluates back to it.

    ``repr`` does this for strings, ints, bools, None and finite floats; infinities and NaN
    repr as ``inf``/``nan``, which are names, not literals, so they are written as
    ``float("inf")``. Lists and tuples are rendered item by item. Anything else is refused:
    generated code never carries an object whose repr we do not control.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return f'float("{value}")'
    if isinstance(value, (bool, int, float, str)) or value is None:
        return repr(value)
    if isinstance(value, tuple):
        inner = ", ".join(literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} into generated code")


def _import_line(weights_file: str) -> str:
    """The usage example's import: the module's own name when it is a plain identifier
    (anything else could not be imported by name and must not be pasted into source)."""
    stem = os.path.splitext(weights_file)[0]
    if stem.isidentifier() and not keyword.iskeyword(stem):
        return f"from {stem} import build_model"
    return "from <this module> import build_model"


def module_source(desc: TorchDesc, *, input_shape, dtype: str, weights_file: str, source: str,
                  version: str) -> str:
    """The whole generated file for one exported model."""
    used = _used(desc, set())
    sources = custom_sources()
    classes: List[str] = [sources[name] for name in _CUSTOM_ORDER if name in used]
    torch_dtype = "torch.float64" if dtype == "float64" else "torch.float32"
    # User strings (file names, the version) never go into the docstring: a name holding
    # three quotes would end it. They are module constants written with repr instead.
    parts = [
        '"""A PyTorch module exported by convscope from the checkpoint named in SOURCE.\n\n'
        "It needs only PyTorch. Rebuild the network and load the exported weights::\n\n"
        "    import torch\n"
        f"    {_import_line(weights_file)}\n"
        "    model = build_model()\n"
        "    model.load_state_dict(torch.load(WEIGHTS_FILE, weights_only=True))\n\n"
        "or call ``load()``, which reads WEIGHTS_FILE from this file's folder. The input is a\n"
        f"batch of shape (N, {', '.join(str(s) for s in input_shape)}); layers, parameter names and\n"
        "outputs equal the convscope model's, and training can continue as with any\n"
        "nn.Module (DistributedDataParallel included).\n"
        '"""',
        "import os\n\nimport torch\nfrom torch import nn\nimport torch.nn.functional as F  # noqa: F401 (used by some modules)",
        f"CONVSCOPE_VERSION = {str(version)!r}\n"
        f"SOURCE = {str(source)!r}  # the checkpoint this file was exported from\n"
        f"WEIGHTS_FILE = {str(weights_file)!r}  # the state dict saved beside this file\n"
        f"INPUT_SHAPE = {tuple(int(s) for s in input_shape)!r}  # per sample, without the batch axis\n"
        f"DTYPE = {torch_dtype}",
        *classes,
        'def build_model():\n'
        '    """The network with fresh random weights; load the exported state dict into it."""\n'
        f"    model = {render(desc, 1)}\n"
        "    return model.to(DTYPE)",
        "def load(weights=None):\n"
        '    """build_model() with the weights of ``weights`` (default: WEIGHTS_FILE next to this file)."""\n'
        "    path = weights or os.path.join(os.path.dirname(os.path.abspath(__file__)), WEIGHTS_FILE)\n"
        "    model = build_model()\n"
        "    model.load_state_dict(torch.load(path, weights_only=True))\n"
        "    return model",
    ]
    return "\n\n\n".join(parts) + "\n"

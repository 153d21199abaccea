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

_INDENT = "    "


def custom_sources() -> Dict[str, str]:
    """{class name: its source} for the classes of :mod:`.torch_modules`."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_modules.py")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    tree = ast.parse(text)
    return {node.name: ast.get_source_segment(text, node) for node in tree.body if isinstance(node, ast.ClassDef)}


def _used(desc: TorchDesc, found: set) -> set:
    if desc.custom:
        found.add(desc.kind)
    for value in desc.args.values():
        children = value if isinstance(value, list) else [value]
        for child in children:
            if isinstance(child, TorchDesc):
                _used(child, found)
    return found


def _nests(value) -> bool:
    return isinstance(value, TorchDesc) or (isinstance(value, list) and any(isinstance(v, TorchDesc) for v in value))


def render(desc: TorchDesc, depth: int = 0) -> str:
    """One module as a Python expression, nested modules indented one level deeper.

    A leaf is one line, ``nn.Conv2d(in_channels=3, ...)``. A module holding modules puts each
    on its own line: ``nn.Sequential(`` one per line ``)`` for positional modules (``varargs``),
    ``Concat([`` one per line ``])`` for a single list argument, else one ``key=value`` per line.
    """
    prefix = "" if desc.custom else "nn."
    inner = _INDENT * (depth + 1)
    close = _INDENT * depth
    if not any(_nests(v) for v in desc.args.values()) and not desc.varargs:
        arguments = ", ".join(f"{key}={literal(value)}" for key, value in desc.args.items())
        return f"{prefix}{desc.kind}({arguments})"
    values = list(desc.args.items())
    if desc.varargs:
        items = [render(d, depth + 1) for d in values[0][1]]
        rest = "".join(f"{inner}{key}={_value(v, depth + 1)},\n" for key, v in values[1:])
        if not items and not rest:
            return f"{prefix}{desc.kind}()"
        return f"{prefix}{desc.kind}(\n" + "".join(f"{inner}{item},\n" for item in items) + rest + close + ")"
    if len(values) == 1 and isinstance(values[0][1], list):
        items = [render(d, depth + 1) for d in values[0][1]]
        return f"{prefix}{desc.kind}([\n" + "".join(f"{inner}{item},\n" for item in items) + close + "])"
    body = "".join(f"{inner}{key}={_value(v, depth + 1)},\n" for key, v in values)
    return f"{prefix}{desc.kind}(\n{body}{close})"


def _value(value, depth: int) -> str:
    if isinstance(value, TorchDesc):
        return render(value, depth)
    if _nests(value):
        inner = _INDENT * (depth + 1)
        return "[\n" + "".join(f"{inner}{render(d, depth + 1)},\n" for d in value) + _INDENT * depth + "]"
    return literal(value)


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
    classes: List[str] = [text for name, text in sources.items() if name in used]  # the file's order
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

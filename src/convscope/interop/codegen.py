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
import os
from typing import Dict, List

from .torch_export import TorchDesc

_CUSTOM_ORDER = ["Concat", "Residual", "GlobalAvgPool", "LocallyConnected2d"]
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
    prefix = "" if desc.custom else "nn."
    arguments = ", ".join(f"{key}={value!r}" for key, value in desc.args.items())
    return f"{prefix}{desc.kind}({arguments})"


def module_source(desc: TorchDesc, *, input_shape, dtype: str, weights_file: str, source: str,
                  version: str) -> str:
    """The whole generated file for one exported model."""
    stem = os.path.splitext(weights_file)[0]
    used = _used(desc, set())
    sources = custom_sources()
    classes: List[str] = [sources[name] for name in _CUSTOM_ORDER if name in used]
    torch_dtype = "torch.float64" if dtype == "float64" else "torch.float32"
    parts = [
        f'"""A PyTorch module exported by convscope {version} from {source}.\n\n'
        "It needs only PyTorch. Rebuild the network and load the exported weights::\n\n"
        "    import torch\n"
        f"    from {stem} import build_model\n"
        "    model = build_model()\n"
        f'    model.load_state_dict(torch.load("{weights_file}", weights_only=True))\n\n'
        f"or call ``load()``, which reads {weights_file} from this file's folder. The input is a\n"
        f"batch of shape (N, {', '.join(str(s) for s in input_shape)}); layers, parameter names and\n"
        "outputs equal the convscope model's, and training can continue as with any\n"
        "nn.Module (DistributedDataParallel included).\n"
        '"""',
        "import os\n\nimport torch\nfrom torch import nn\nimport torch.nn.functional as F  # noqa: F401 (used by some modules)",
        f"INPUT_SHAPE = {tuple(int(s) for s in input_shape)!r}  # per sample, without the batch axis\n"
        f"DTYPE = {torch_dtype}",
        *classes,
        'def build_model():\n'
        '    """The network with fresh random weights; load the exported state dict into it."""\n'
        f"    model = {render(desc, 1)}\n"
        "    return model.to(DTYPE)",
        "def load(weights=None):\n"
        f'    """build_model() with the weights of ``weights`` (default: {weights_file} next to this file)."""\n'
        f'    path = weights or os.path.join(os.path.dirname(os.path.abspath(__file__)), "{weights_file}")\n'
        "    model = build_model()\n"
        "    model.load_state_dict(torch.load(path, weights_only=True))\n"
        "    return model",
    ]
    return "\n\n\n".join(parts) + "\n"

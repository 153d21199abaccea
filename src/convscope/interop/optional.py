"""Importing the optional libraries, with the install hint users need when one is missing."""
from __future__ import annotations

import importlib

from ..errors import ConvscopeError

#: library -> the convscope extra that installs it
EXTRAS = {"torch": "torch", "onnx": "onnx", "onnxruntime": "onnx"}


def require(name: str, purpose: str):
    """Import ``name`` or raise a one-line ConvscopeError saying which extra installs it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        extra = EXTRAS.get(name, name)
        raise ConvscopeError(f"{purpose} needs the {name} package, which is not installed; install it "
                             f"with pip install 'convscope[{extra}]'") from None

"""Checks on files users name, shared by every loader: one clear line when a path is wrong."""
from __future__ import annotations

import os

from .errors import ConvscopeError


def require_file(path, what: str, folder_hint: str) -> str:
    """Return ``path`` as a string if it names an existing file.

    ``what`` names the kind of file in the not-found message ("checkpoint", "image");
    ``folder_hint`` finishes the sentence when the path is a folder ("give the .onnx file
    inside it").
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ConvscopeError(f"{what} not found: {path}")
    if os.path.isdir(path):
        raise ConvscopeError(f"{path} is a folder; {folder_hint}")
    return path

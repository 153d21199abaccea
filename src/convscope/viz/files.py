"""Writing pictures: atomically (temporary file, then rename), with one-line errors."""
from __future__ import annotations

import os

from ..errors import ConvscopeError
from ..files import atomic_write, require_output_path


def write_text(path: str, text: str) -> None:
    """Write text (UTF-8) atomically (temporary file, then rename)."""
    require_output_path(path, "picture")
    atomic_write(path, lambda handle: handle.write(text), mode="w")


def save_figure(fig, path: str) -> None:
    """Save a figure, written to a temporary file and renamed (never a half-written picture)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".png", ".pdf", ".svg"):
        raise ConvscopeError(f"-o must end in .png, .svg or .pdf, got {path!r}")
    require_output_path(path, "picture")
    atomic_write(path, lambda handle: fig.savefig(handle, format=ext[1:], facecolor="white"))

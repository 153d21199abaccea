"""Writing pictures: atomically (temporary file, then rename), with one-line errors."""
from __future__ import annotations

import os

from ..errors import ConvscopeError
from ..files import atomic_write, require_output_path


def write_text(path: str, text: str, inputs=(), force: bool = True) -> None:
    """Write text (UTF-8) atomically (temporary file, then rename)."""
    require_output_path(path, "picture", inputs, force)
    if text.startswith("<svg") or text.startswith("<?xml"):
        text = text.rstrip("\n") + "\n<!-- written by convscope -->\n"  # files.MARK: ours to overwrite
    atomic_write(path, lambda handle: handle.write(text), mode="w")


#: matplotlib metadata carrying files.MARK, so a later -o may replace the picture without --force.
_METADATA = {"png": {"Software": "convscope"}, "pdf": {"Creator": "convscope"}, "svg": {"Creator": "convscope"}}


def save_figure(fig, path: str, inputs=(), force: bool = True) -> None:
    """Save a figure, written to a temporary file and renamed (never a half-written picture)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".png", ".pdf", ".svg"):
        raise ConvscopeError(f"-o must end in .png, .svg or .pdf, got {path!r}")
    require_output_path(path, "picture", inputs, force)
    atomic_write(path, lambda handle: fig.savefig(handle, format=ext[1:], facecolor="white",
                                                  metadata=_METADATA[ext[1:]]))

"""Writing pictures: atomically (temporary file, then rename), with one-line errors."""
from __future__ import annotations

import os

from ..errors import ConvscopeError


def _check_folder(path: str) -> str:
    if os.path.isdir(path):
        raise ConvscopeError(f"cannot write {path}: it is a folder; give a file name such as "
                             f"{os.path.join(path, 'picture' + os.path.splitext(path)[1])}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConvscopeError(f"cannot write {path}: the folder {directory} does not exist; create it first")
    return directory


def write_text(path: str, text: str) -> None:
    """Write text atomically (temporary file, then rename)."""
    _check_folder(path)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_figure(fig, path: str) -> None:
    """Save a figure, written to a temporary file and renamed (never a half-written picture)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".png", ".pdf", ".svg"):
        raise ConvscopeError(f"-o must end in .png, .svg or .pdf, got {path!r}")
    directory = _check_folder(path)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp{os.getpid()}{ext}")
    try:
        fig.savefig(tmp, format=ext[1:], facecolor="white")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)

"""Files users name: checks shared by every loader and writer (one clear line when a path is
wrong), and the one atomic writer (temporary file, then rename) every output goes through."""
from __future__ import annotations

import os
import tempfile

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


def require_output_path(path: str, example_stem: str) -> str:
    """Check that ``path`` can be written: not a folder, and its folder exists; returns that folder.

    ``example_stem`` names the file suggested when ``path`` is a folder ("net" gives
    ``DIR/net.onnx`` for ``-o DIR.onnx``).
    """
    if os.path.isdir(path):
        raise ConvscopeError(f"cannot write {path}: it is a folder; give a file name such as "
                             f"{os.path.join(path, example_stem + os.path.splitext(path)[1])}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConvscopeError(f"cannot write {path}: the folder {folder} does not exist; create it first")
    return folder


def atomic_write(path: str, write, mode: str = "wb") -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, flush it to disk, then rename
    it over ``path``; on any exception (Ctrl-C included) the temporary file is removed and
    ``path`` keeps its previous content. Text modes write UTF-8. Creates ``path``'s folder."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(mode, dir=folder, prefix=f".{os.path.basename(path)}.",
                                         suffix=".tmp", delete=False,
                                         encoding=None if "b" in mode else "utf-8")
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        # NamedTemporaryFile creates files readable by the owner only; give the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(handle.name, 0o666 & ~umask)
        os.replace(handle.name, path)
    except BaseException:
        if os.path.exists(handle.name):
            os.unlink(handle.name)
        raise

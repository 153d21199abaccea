"""Files users name: checks shared by every loader and writer (one clear line when a path is
wrong), and the one atomic writer (temporary file, then rename) every output goes through.

Inputs are regular files only: a FIFO would block forever and a device (or a symlink to
``/dev/zero``) would be read until memory runs out, so both are refused before reading (symlinks
to regular files are followed, as every Unix tool does).

Outputs (``-o``): never over one of the command's inputs; never over an existing file that
convscope did not write (it carries :data:`MARK`) unless ``--force``; never through a symbolic
link. Links are refused rather than written through because writing through one writes a file
the command line did not name, and replacing the link silently breaks whatever it pointed to.
"""
from __future__ import annotations

import os
import stat
import tempfile

from .errors import ConvscopeError

#: Bytes every file convscope writes carries (PNG/PDF/SVG metadata, ONNX producer name, the
#: comment of a .pt archive, the header of generated code): how an overwrite is recognised.
MARK = b"convscope"
_MARK_SCAN = 64 * 1024


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def require_regular(path, what: str) -> str:
    """``path`` as a string if it is a regular file (following symlinks); else one clear error."""
    path = os.fspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ConvscopeError(f"{what} not found: {path}") from None
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        link = " (through a symbolic link)" if os.path.islink(path) else ""
        raise ConvscopeError(f"{path} is {_kind(mode)}{link}; convscope reads {what}s from regular files only")
    return path


def open_regular(path, what: str = "input file"):
    """Open ``path`` for binary reading, refusing anything but a regular file. Opened without
    blocking, then checked with fstat, so a FIFO swapped in after a check cannot hang us."""
    path = require_regular(path, what)
    if os.path.isdir(path):
        raise ConvscopeError(f"{path} is a folder; give a {what}")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConvscopeError(f"{path} is {_kind(mode)}; convscope reads {what}s from regular files only")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path, what: str, budget_name: str = "MAX_DECODED_BYTES") -> bytes:
    """The bytes of a regular file, its size checked against a budget in :mod:`convscope.limits`."""
    from . import limits

    with open_regular(path, what) as handle:
        size = os.fstat(handle.fileno()).st_size
        limits.check(f"{os.fspath(path)}: the {what}'s size", size, budget_name, "bytes")
        return handle.read(getattr(limits, budget_name) + 1)


def require_file(path, what: str, folder_hint: str) -> str:
    """Return ``path`` as a string if it names an existing file.

    ``what`` names the kind of file in the not-found message ("checkpoint", "image");
    ``folder_hint`` finishes the sentence when the path is a folder ("give the .onnx file
    inside it").
    """
    path = require_regular(path, what)
    if os.path.isdir(path):
        raise ConvscopeError(f"{path} is a folder; {folder_hint}")
    return path


def written_by_convscope(path: str) -> bool:
    """True when the file at ``path`` carries :data:`MARK` near its start or end."""
    try:
        with open_regular(path, "output") as handle:
            head = handle.read(_MARK_SCAN)
            size = os.fstat(handle.fileno()).st_size
            if size > _MARK_SCAN:
                handle.seek(max(_MARK_SCAN, size - _MARK_SCAN))
                head += handle.read(_MARK_SCAN)
    except (OSError, ConvscopeError):
        return False
    return MARK in head


def check_output(path: str, inputs=(), force: bool = False) -> None:
    """Refuse to write ``path`` over an input, through a symlink, or over a file convscope did
    not write (unless ``force``). See the module docstring for why links are refused."""
    if os.path.islink(path):
        raise ConvscopeError(f"cannot write {path}: it is a symbolic link; convscope does not write "
                             f"through links, give the target ({os.path.realpath(path)}) or another name")
    if not os.path.lexists(path):
        return
    for source in inputs:
        try:
            same = os.path.samefile(path, source)
        except (OSError, TypeError, ValueError):
            same = False
        if same:
            raise ConvscopeError(f"cannot write {path}: it is one of this command's inputs; give another -o")
    if os.path.isfile(path) and not force and not written_by_convscope(path):
        raise ConvscopeError(f"{path} exists and was not written by convscope; pass --force to overwrite "
                             "it, or give another -o")
    if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
        raise ConvscopeError(f"cannot write {path}: it is {_kind(os.stat(path).st_mode)}")


def require_output_path(path: str, example_stem: str, inputs=(), force: bool = True) -> str:
    """Check that ``path`` can be written: not a folder, its folder exists, and
    :func:`check_output` allows it (``force=True``, the default for library calls, allows
    overwriting files convscope did not write; commands pass their ``--force``); returns the folder.

    ``example_stem`` names the file suggested when ``path`` is a folder ("net" gives
    ``DIR/net.onnx`` for ``-o DIR.onnx``).
    """
    path = os.fspath(path)
    check_output(path, inputs, force)
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

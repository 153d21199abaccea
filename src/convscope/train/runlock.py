"""One training run per run folder at a time, and ``--overwrite`` that never mixes runs.

* **Lock.** ``fcntl.flock`` on the run folder itself (a directory can be flocked on Linux and
  the BSDs, so no lock file is added to the run's three files), held for the whole run. The
  kernel drops a flock when its process dies, however it dies, so a crash never leaves a stale
  lock. A second ``convscope train --out DIR`` (with or
  without ``--resume``) is refused with one line instead of writing beside the first.
* **Overwrite.** The old run's files are removed BEFORE the new run writes anything, in the
  order last.npz, history.json, model.npz: at every moment (a SIGKILL included) the folder holds
  files of one run only. Without last.npz a half-removed old run cannot be resumed (resume needs
  it), and what is left (model.npz) is that old run's complete best model.
"""
from __future__ import annotations

import os
from typing import Optional

from ..errors import ConvscopeError

#: Removal order for --overwrite (see the module docstring for why this order).
OVERWRITE_ORDER = ("last.npz", "history.json", "model.npz")


class RunLock:
    """An exclusive flock on a run folder; released by :meth:`release` or when the process ends
    (and when the object is garbage-collected, which closes the file)."""

    def __init__(self, fd: int):
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    __del__ = release


def _remove_stale_temporaries(out: str) -> None:
    """Temporary files of files.atomic_write that a killed run left half-written (under the lock,
    so no live writer owns them)."""
    for name in os.listdir(out):
        if name.endswith(".tmp") and any(name.startswith(f".{kept}.") for kept in OVERWRITE_ORDER):
            try:
                os.unlink(os.path.join(out, name))
            except FileNotFoundError:
                pass


def take(out: Optional[str], overwrite: bool = False) -> Optional[RunLock]:
    """Lock ``out`` (created if missing) for one run; with ``overwrite``, then remove the old
    run's files in :data:`OVERWRITE_ORDER`. None when there is no run folder."""
    if out is None:
        return None
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX: no lock, as before
        return None
    os.makedirs(out, exist_ok=True)
    fd = os.open(out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConvscopeError(f"{out} is in use by another convscope train; wait for it to finish or choose "
                             "another --out") from None
    lock = RunLock(fd)
    _remove_stale_temporaries(out)
    if overwrite:
        for name in OVERWRITE_ORDER:
            try:
                os.unlink(os.path.join(out, name))
            except FileNotFoundError:
                pass
    return lock

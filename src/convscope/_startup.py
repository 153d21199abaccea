"""Quiet signals while the command line starts: a Ctrl-C (or SIGTERM) that arrives while
NumPy and friends are still importing exits 130 (143) with one line instead of a
KeyboardInterrupt traceback from deep inside an import. :func:`convscope.cli.main` hands
signals back to Python (KeyboardInterrupt) once its own handlers are in place.

Only when the process IS the command line (``convscope ...`` or ``python -m convscope``): a
library user's ``import convscope`` keeps Python's usual Ctrl-C behaviour. Uses the C module
``_signal`` because importing ``signal`` (and ``enum``) is itself slow enough to be interrupted.
(A signal before Python has finished its own start-up, before any convscope code runs, is
Python's to handle.)
"""
import _signal
import os
import sys

_SIGNALS = (_signal.SIGINT, _signal.SIGTERM)
#: Set once the run has written its one stderr line (cli.say): the handler, which main puts
#: back when it returns, then exits without a second line (torchrun's SIGTERM to a rank that
#: already reported a lost peer can arrive while the interpreter shuts down).
_SAID = [False]


def mark_said() -> None:
    _SAID[0] = True


def secondary_rank() -> bool:
    """Whether this process is a rank other than 0 of a torchrun job (WORLD_SIZE and RANK set).
    Such a rank leaves "interrupted" to rank 0: torchrun stops every other rank with SIGTERM
    once one has exited, often before they reach the error rank 0 reports."""
    return "WORLD_SIZE" in os.environ and os.environ.get("RANK", "0") != "0"


def _quit(signum, frame):  # pragma: no cover - exercised in a subprocess
    try:
        if not _SAID[0] and not secondary_rank():
            os.write(2, b"convscope: interrupted\n")
    finally:
        os._exit(128 + signum)


def quiet_while_starting() -> None:
    argv0 = os.path.basename(sys.argv[0]) if sys.argv else ""
    if argv0 not in ("convscope", "-m"):
        return
    for signum in _SIGNALS:
        try:
            if _signal.getsignal(signum) in (_signal.default_int_handler, _signal.SIG_DFL):
                _signal.signal(signum, _quit)
        except ValueError:  # not the main thread
            return

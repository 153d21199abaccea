"""The ``convscope`` command: a thin layer over the Python API.

Each sub-command lives in its own module under :mod:`convscope.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``handler`` to a function taking the
parsed arguments and returning an exit code. Every user mistake surfaces as one line on
stderr and exit code 2; Ctrl-C exits with 130; never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import List, Optional

from .errors import ConvscopeError

COMMAND_MODULES = ["summary", "train", "evaluate", "predict", "show", "trace", "export", "explore"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="convscope", description="A glass-box CNN engine: analyse, train, show, exchange.")
    parser.add_argument("--version", action="version", version=_version())
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"convscope.commands.{name}")
        module.register(subparsers)
    return parser


def _version() -> str:
    from . import __version__
    return f"convscope {__version__}"


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (exit 128 + 15 = 143)."""


def _terminate(signum, frame):
    raise Terminated


_said = False  # whether this run already wrote its one line to stderr


def say(line: str) -> None:
    """Write the run's one stderr line. A signal arriving after it (torchrun sends SIGTERM to
    the survivors of a failed rank, often while they are already reporting the failure) must
    not add a second line, so :func:`main` checks ``_said`` before saying "interrupted"."""
    global _said
    from . import _startup
    print(line, file=sys.stderr)
    _said = True
    _startup.mark_said()


def _say_interrupted() -> None:
    """"interrupted", unless the run already said its line or a torchrun rank other than 0
    is stopping (rank 0 reports; see :func:`convscope._startup.secondary_rank`)."""
    from . import _startup
    if not _said and not _startup.secondary_rank():
        say("convscope: interrupted")


def main(argv: Optional[List[str]] = None) -> int:
    import signal
    import threading

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
                    signal.SIGTERM: signal.signal(signal.SIGTERM, _terminate)}
    try:
        return _main(argv)
    except KeyboardInterrupt as stop:  # e.g. while the parser imports the commands
        _say_interrupted()
        return 143 if isinstance(stop, Terminated) else 130
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _main(argv: Optional[List[str]]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except ConvscopeError as error:
        say(f"convscope: error: {error}")
        return 2
    except KeyboardInterrupt as stop:
        _say_interrupted()
        return 143 if isinstance(stop, Terminated) else 130
    except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
        say(f"convscope: error: {error.strerror}: {error.filename}")
        return 2
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and point stdout at /dev/null so the
        # interpreter's final flush cannot print a second BrokenPipeError.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except OSError as error:  # NotADirectoryError, a full disk, ...: one line, never a traceback
        where = f": {error.filename}" if error.filename else ""
        say(f"convscope: error: {error.strerror or error}{where}")
        return 2
    except RecursionError:  # a defence in depth: inputs are depth-checked (limits.MAX_SPEC_DEPTH)
        say("convscope: error: the input is nested too deeply to process")
        return 2
    except MemoryError as error:  # e.g. a model or input too large for this machine
        detail = str(error).splitlines()[0] if str(error) else "out of memory"
        say(f"convscope: error: not enough memory ({detail}); use a smaller model, input or --batch-size")
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``python -m convscope ...`` (and ``torchrun -m convscope ...``) runs the command line."""
import sys

try:
    from .cli import main
except KeyboardInterrupt:  # pragma: no cover - Ctrl-C while importing
    sys.stderr.write("convscope: interrupted\n")
    sys.exit(130)

sys.exit(main())

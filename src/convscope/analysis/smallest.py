"""The smallest square input a model takes, for shape errors ("use at least 3×63×63").

Found with the model's own shape rules (``model.output_shape``, no weights): every side
length s = 1, 2, ... up to ``limit`` is tried on ``(C, s, s)`` (``(C, s)`` for 1-D inputs), and
the first that passes is returned. Shape rules are cheap (microseconds a layer), so a scan is
fine, and needed: validity need not be monotonic in s (e.g. a layer that wants an exact
flattened size accepts one s only).
"""
from __future__ import annotations

from typing import Optional, Tuple

from ..errors import ConvscopeError


def smallest_input(model, input_shape, limit: int = 2048) -> Optional[Tuple[int, ...]]:
    """Smallest ``(C, s, s)`` (or ``(C, s)``) the model maps to an output; None if none up to ``limit``."""
    shape = tuple(int(v) for v in input_shape)
    if len(shape) not in (2, 3):
        return None
    for side in range(1, limit + 1):
        candidate = (shape[0],) + (side,) * (len(shape) - 1)
        try:
            model.output_shape(candidate)
        except (ConvscopeError, ValueError, ZeroDivisionError, IndexError):
            continue
        return candidate
    return None


def hint(model, input_shape) -> str:
    """'; the smallest square input that works is 3×63×63 (--input 3x63x63)', or ''."""
    found = smallest_input(model, input_shape)
    if found is None or tuple(found) == tuple(input_shape):
        return ""
    what = "square input" if len(found) == 3 else "input length"
    return (f"; the smallest {what} that works is {'×'.join(map(str, found))} "
            f"(--input {'x'.join(map(str, found))})")
